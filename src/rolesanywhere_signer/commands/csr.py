"""``csr``: a PKCS#10 request signed by the key wherever it lives (file, pkcs11:, handle:, TSS2 file)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), debug_parent()],
        help="make a certificate signing request signed by the key",
        description="Print (or write) a PEM CSR signed with SHA-256 by --private-key, asking for "
        "keyUsage digitalSignature and extendedKeyUsage clientAuth, as Roles Anywhere needs. "
        "With --certificate (a renewal) its subject and SANs are used unless given.",
    )
    p.add_argument(
        "--subject",
        metavar="DN",
        help='subject, RFC 4514 style: "CN=host.example.com,O=Example" (escape , + " \\ with a backslash)',
    )
    p.add_argument(
        "--san",
        metavar="TYPE:VALUE",
        action="append",
        default=[],
        help="subject alternative name: DNS:name, IP:address, URI:uri or email:address (repeatable)",
    )
    p.add_argument("--output", metavar="FILE", help="write the CSR here instead of standard output (never overwritten)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import keys
    from ..backends import backend_for
    from ..cliargs import identity_from_args
    from ..csrgen import spec_from_args
    from ..errors import UsageError

    opts = identity_from_args(args)
    if not (opts.private_key or opts.pkcs11_uri or opts.certificate):
        raise UsageError("--private-key is required", hint="a key file, pkcs11: URI, handle:0x81… or TSS2 key file")
    certificate = None
    if opts.certificate and not opts.certificate.startswith("pkcs11:") and opts.private_key:
        from ..certs import load_certificate_file

        certificate = load_certificate_file(opts.certificate)[0]
    # parse the user's text before touching the key: no PIN prompt for a typo
    spec = spec_from_args(args.subject, args.san, certificate)
    if args.output:
        import os

        if os.path.lexists(args.output):
            raise UsageError(
                f"CSR file {args.output} already exists; refusing to overwrite it", hint="choose a new path"
            )
    key = backend_for(opts).open_key(opts)
    try:
        if certificate is not None:
            from ..certs import check_key_matches

            check_key_matches(certificate, key.public_key(), opts.key_source())
        from ..csrgen import build_csr

        csr = build_csr(spec, key)
    finally:
        key.close()
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = csr.public_bytes(Encoding.PEM)
    if args.output:
        keys.write_new_file(args.output, pem, mode=0o644, what="CSR file")
    else:
        sys.stdout.write(pem.decode())
        sys.stdout.flush()
    return 0
