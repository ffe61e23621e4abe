"""``read-certificate-data``: describe the certificate a --certificate names, as the reference does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[debug_parent()],
        help="show the certificate(s) that would be used",
        description="Print key type, serial number, base64 DER and algorithms of a certificate; "
        "list the certificates on a token for a pkcs11: URI.",
    )
    p.add_argument("--certificate", metavar="PATH|URI", required=False)
    p.add_argument("--pkcs11-uri", metavar="URI", help="list certificates on a token matching this URI [ours]")
    p.add_argument("--pkcs11-lib", metavar="PATH", help="PKCS#11 module to load")
    p.add_argument(
        "--json",
        action="store_true",
        help="for pkcs11: URIs, one JSON object per certificate (with label, id, attestation) [ours]",
    )
    # the reference's certificate-store flags: accepted so that they are refused with a reason
    for flag in ("--cert-selector", "--system-store-name"):
        p.add_argument(flag, help=argparse.SUPPRESS, default=None, nargs="?", const=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..certdata import certificate_json
    from ..cliargs import check_exclusive, refuse_store_flags
    from ..errors import UsageError

    refuse_store_flags(args)
    check_exclusive(args)
    uri = args.pkcs11_uri or (args.certificate if args.certificate and args.certificate.startswith("pkcs11:") else None)
    if uri:
        return _list(uri, args)
    if not args.certificate:
        raise UsageError("--certificate is required", hint="see --help")
    from ..certs import load_certificate_file

    cert = load_certificate_file(args.certificate)[0]
    sys.stdout.write(certificate_json(cert))  # no newline, as the reference
    sys.stdout.flush()
    return 0


def _list(uri: str, args: argparse.Namespace) -> int:
    import json

    from ..backends import pkcs11
    from ..certdata import certificate_data, identities_text

    found = pkcs11.list_certificates(uri, args.pkcs11_lib)
    if args.json:
        for c in found:
            doc: dict[str, object] = {"uri": c.uri, "label": c.label, "id": c.id.hex()}
            doc.update(certificate_data(c.certificate))
            doc.update(
                subject=c.certificate.subject.rfc4514_string(),
                issuer=c.certificate.issuer.rfc4514_string(),
                notAfter=c.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            if c.attestation:
                doc["attestation"] = True
            sys.stdout.write(json.dumps(doc) + "\n")
    else:
        sys.stdout.write(identities_text([(c.certificate, c.uri) for c in found]))
    sys.stdout.flush()
    return 0
