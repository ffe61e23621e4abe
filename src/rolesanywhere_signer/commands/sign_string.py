"""``sign-string``: sign the reference's fixed test message with the key (a diagnostic).

As ``aws_signing_helper``: the message is fixed (see ``fixed_message``), the output is a JSON
string of the hex signature by default (``text``: the hex, ``bin``: the raw bytes), with no
newline. A certificate is not needed: the key alone signs. ``--stdin`` (ours) signs standard
input instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..cliargs import debug_parent, identity_parent

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..options import IdentityOptions
    from ..signer import KeyHandle

FIXED_PREFIX = b"AWS Roles Anywhere Credential Helper Signing Test"
FIXED_VERSION = 1
#: bound on ``--stdin`` (a diagnostic, not a file signer)
MAX_STDIN = 1024 * 1024


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), debug_parent()],
        help="sign a fixed test message with the key",
        description="Sign the reference helper's fixed test message (or standard input with --stdin) with the key.",
    )
    p.add_argument(
        "--format",
        choices=["json", "text", "bin"],
        default="json",
        help="a JSON string of the hex signature, the hex, or raw bytes (default %(default)s)",
    )
    p.add_argument("--digest", choices=["SHA256", "SHA384", "SHA512"], default="SHA256")
    p.add_argument("--stdin", action="store_true", help="sign the bytes on standard input instead [ours]")
    p.set_defaults(func=run)


def public_key_bytes(public_key: PublicKeyTypes) -> bytes:
    """What the reference hashes into the message: the uncompressed point (EC), PKCS#1 DER (RSA);
    nothing for other key types (the reference adds no suffix for them)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    return b""


def fixed_message(public_key: PublicKeyTypes) -> bytes:
    """``"AWS Roles Anywhere Credential Helper Signing Test" || "1" || SHA256("IAM RA" || key)``."""
    import hashlib

    raw = public_key_bytes(public_key)
    suffix = hashlib.sha256(b"IAM RA" + raw).digest() if raw else b""
    return FIXED_PREFIX + str(FIXED_VERSION).encode() + suffix


def _read_stdin(identity: IdentityOptions) -> bytes:
    from ..errors import InputError, UsageError

    if "-" in (identity.certificate, identity.private_key, identity.intermediates):
        raise UsageError("--stdin cannot be used when standard input holds the certificate or key")
    data = sys.stdin.buffer.read(MAX_STDIN + 1)
    if len(data) > MAX_STDIN:
        raise InputError(f"standard input is larger than {MAX_STDIN} bytes", hint="sign-string is a diagnostic")
    return data


def _open(identity: IdentityOptions) -> KeyHandle:
    """The certificate's key, checked against it; the key alone when no certificate is named."""
    from ..backends import backend_for
    from ..errors import NoCertificateError

    backend = backend_for(identity)
    try:
        signer = backend.load(identity)
    except NoCertificateError:
        if not (identity.private_key or identity.pkcs11_uri):
            raise
        return backend.open_key(identity)
    return _SignerKey(signer)


class _SignerKey:
    """A loaded ``Signer`` seen as a key handle: its public key is the certificate's."""

    def __init__(self, signer: Any) -> None:
        self._signer = signer

    def public_key(self) -> PublicKeyTypes:
        key: PublicKeyTypes = self._signer.certificate.public_key()
        return key

    def sign(self, data: bytes, digest: Any = "sha256") -> bytes:
        signature: bytes = self._signer.sign(data, digest)
        return signature

    def close(self) -> None:
        self._signer.close()


def run(args: argparse.Namespace) -> int:
    import json

    from ..cliargs import identity_from_args
    from ..signer import DigestName

    identity = identity_from_args(args)
    data = _read_stdin(identity) if args.stdin else None
    digest: DigestName = args.digest.lower()
    key = _open(identity)
    try:
        if data is None:
            data = fixed_message(key.public_key())
        signature = key.sign(data, digest)
    finally:
        key.close()
    if args.format == "bin":
        sys.stdout.buffer.write(signature)
    elif args.format == "json":
        sys.stdout.write(json.dumps(signature.hex()))
    else:
        sys.stdout.write(signature.hex())
    sys.stdout.flush()
    return 0
