"""``read-certificate-data``: describe the certificate(s) a --certificate names."""

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
        description="Print key type, serial and base64 DER of a certificate file or pkcs11: URI.",
    )
    p.add_argument("--certificate", metavar="PATH|URI", required=False)
    p.add_argument("--pkcs11-uri", metavar="URI", help="list certificates on a token matching this URI [ours]")
    p.add_argument("--pkcs11-lib", metavar="PATH", help="PKCS#11 module to load")
    p.set_defaults(func=run)


def certificate_data(cert: Any) -> dict[str, Any]:
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    from ..keytypes import family_of

    family = family_of(cert.public_key())
    key_type = family.upper() if family else "unknown"  # "RSA", "EC"
    return {
        "keyType": key_type,
        "certificate": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
        "serialNumber": str(cert.serial_number),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "algorithms": ["SHA256", "SHA384", "SHA512"],
    }


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import UsageError

    uri = args.pkcs11_uri or (args.certificate if args.certificate and args.certificate.startswith("pkcs11:") else None)
    if uri:
        from ..backends import pkcs11

        for found in pkcs11.list_certificates(uri, args.pkcs11_lib):
            entry: dict[str, object] = {"uri": found.uri, "label": found.label, "id": found.id.hex()}
            entry.update(certificate_data(found.certificate))
            if found.attestation:
                entry["attestation"] = True
            sys.stdout.write(json.dumps(entry) + "\n")
        return 0
    if not args.certificate:
        raise UsageError("--certificate is required", hint="see --help")
    from ..certs import load_certificate_file

    for cert in load_certificate_file(args.certificate)[:1]:
        sys.stdout.write(json.dumps(certificate_data(cert)) + "\n")
    return 0
