"""``generate-key``: a new key in a TPM, on a PKCS#11 token, or in a PEM file; prints its public key."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent
from ..keys import KEY_TYPES

#: TPM 2.0 persistent handles of the owner hierarchy (TCG "Registry of Reserved TPM 2.0 Handles")
OWNER_PERSISTENT = (0x81000000, 0x817FFFFF)


def persistent_handle(text: str) -> int:
    """Parse ``0x81…`` (hex only: handles are always written in hex)."""
    t = text.strip().lower().removeprefix("handle:")
    if not t.startswith("0x"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex handle such as 0x81000001")
    try:
        value = int(t, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex handle such as 0x81000001") from None
    lo, hi = OWNER_PERSISTENT
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an owner-hierarchy persistent handle (0x{lo:08x}..0x{hi:08x})"
        )
    return value


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), debug_parent()],
        help="create a key in a TPM, on a PKCS#11 token or in a PEM file",
        description="Create a new key pair and print its public key (PEM) on standard output. "
        "With --tpm the key is made inside the TPM (--output writes a TSS2 PRIVATE KEY file, "
        "--persistent-handle persists it); with --pkcs11-uri it is made on the token, sensitive "
        "and not extractable; with --output alone it is a PEM PKCS#8 file (0600).",
    )
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256", help="default %(default)s")
    p.add_argument("--tpm", action="store_true", help="create the key inside the TPM (see --tcti)")
    p.add_argument("--output", metavar="FILE", help="key file to create (never overwritten)")
    p.add_argument(
        "--persistent-handle",
        metavar="0x81…",
        type=persistent_handle,
        help="with --tpm: persist the key at this owner-hierarchy handle (refused when in use)",
    )
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the PEM key file with a password (--pkcs8-password, "
        "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD, or asked on the terminal)",
    )
    p.set_defaults(func=run)


def _refuse(args: argparse.Namespace, flags: dict[str, Any], why: str) -> None:
    from ..errors import UsageError

    for flag, value in flags.items():
        if value:
            raise UsageError(f"{flag} {why}")


def run(args: argparse.Namespace) -> int:
    import os

    from .. import keys
    from ..cliargs import identity_from_args
    from ..errors import UsageError

    _refuse(
        args,
        {"--certificate": args.certificate, "--private-key": args.private_key, "--intermediates": args.intermediates},
        "does not apply to generate-key (it creates a new key)",
    )
    opts = identity_from_args(args)
    if args.pkcs11_uri:
        if not args.pkcs11_uri.startswith("pkcs11:"):
            raise UsageError(f"--pkcs11-uri {opts.pkcs11_uri_redacted()!r} does not start with pkcs11:")
        _refuse(
            args,
            {
                "--tpm": args.tpm,
                "--output": args.output,
                "--persistent-handle": args.persistent_handle,
                "--encrypt": args.encrypt,
            },
            "does not apply with --pkcs11-uri (the key is made on the token)",
        )
        from ..backends import pkcs11

        public = pkcs11.generate_key(opts, args.key_type)
        where = f"on the token ({opts.pkcs11_uri_redacted()})"
    elif args.tpm:
        _refuse(
            args,
            {"--encrypt": args.encrypt, "--pkcs8-password": args.pkcs8_password},
            "does not apply with --tpm (use --tpm-key-password-file for a key password)",
        )
        if bool(args.output) == (args.persistent_handle is not None):
            raise UsageError("--tpm needs exactly one of --output FILE or --persistent-handle 0x81…")
        if args.output and os.path.lexists(args.output):
            raise UsageError(
                f"key file {args.output} already exists; refusing to overwrite it", hint="choose a new path"
            )
        from ..backends import tpm

        public = tpm.generate_key(opts, args.key_type, output=args.output, persistent_handle=args.persistent_handle)
        where = f"in the TPM, {args.output}" if args.output else f"in the TPM at 0x{args.persistent_handle:08x}"
    else:
        _refuse(
            args,
            {"--persistent-handle": args.persistent_handle is not None},
            "needs --tpm",
        )
        _refuse(
            args,
            {
                "--tcti": args.tcti,
                "--tpm-key-password": args.tpm_key_password,
                "--tpm-key-password-file": args.tpm_key_password_file,
            },
            "needs --tpm",
        )
        if not args.output:
            raise UsageError(
                "say where to create the key: --output FILE, --tpm, or --pkcs11-uri", hint="see generate-key --help"
            )
        password = keys.new_password(opts, ask=args.encrypt, what=f"key file {args.output}")
        public = keys.generate_pem(args.output, args.key_type, password)
        where = f"in {args.output}" + (" (encrypted)" if password else "")
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sys.stderr.write(f"rolesanywhere-signer: created a new {keys.describe_public_key(public)} key {where}\n")
    sys.stdout.write(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode())
    sys.stdout.flush()
    return 0
