"""``read-certificate-data`` output, as ``aws_signing_helper`` prints it.

A certificate file gives one compact JSON object with ``keyType``, ``certificateData`` (base64
DER), ``serialNumber`` (decimal) and ``supportedAlgorithms`` (the reference's names, from the
key-type table ``keytypes``). Certificates on a PKCS#11 token are listed as the reference's "Matching
identities" text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

#: keytypes family -> the reference's keyType; its supportedAlgorithms are keyType + each digest.
#: A family missing here (ML-DSA) is named by its row, as the reference does: keyType and the one
#: algorithm are the variant ("ML-DSA-65").
FAMILY_NAMES: dict[str, str] = {"rsa": "RSA", "ec": "EC"}
#: for keys outside the key-type table (RSA-1024, P-224...): the family from the certificate's OID
OID_FAMILIES: dict[str, str] = {"1.2.840.113549.1.1.1": "rsa", "1.2.840.10045.2.1": "ec"}
DIGEST_NAMES = ("SHA256", "SHA384", "SHA512")


def key_type_names(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(keyType, supportedAlgorithms) as aws_signing_helper prints them."""
    from .errors import SignerError
    from .keytypes import key_type_of

    family: str
    try:
        row = key_type_of(cert.public_key())
        family, variant = row.family, row.name
    except (SignerError, ValueError, TypeError, NotImplementedError):
        # a key Roles Anywhere refuses, or one cryptography cannot load: still describe it
        family, variant = OID_FAMILIES.get(cert.public_key_algorithm_oid.dotted_string, ""), ""
    if family in FAMILY_NAMES or not variant:
        name = FAMILY_NAMES.get(family, "")
        return name, tuple(name + d for d in DIGEST_NAMES)
    return variant, (variant,)


def certificate_data(cert: x509.Certificate) -> dict[str, object]:
    """The reference's ``CertificateData``, keys in its order."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    key_type, algorithms = key_type_names(cert)
    return {
        "keyType": key_type,
        "certificateData": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
        "serialNumber": str(cert.serial_number),
        "supportedAlgorithms": list(algorithms),
    }


def certificate_json(cert: x509.Certificate) -> str:
    """Compact JSON with no newline, as Go's ``json.Marshal`` and ``fmt.Print`` give it."""
    import json

    return json.dumps(certificate_data(cert), separators=(",", ":"))


def identity_text(cert: x509.Certificate, uri: str | None) -> str:
    """One entry of the reference's listing (without its ``N) `` prefix)."""
    from cryptography.hazmat.primitives import hashes

    lines = [
        f"Hex Fingerprint: {cert.fingerprint(hashes.SHA1()).hex()}",  # noqa: S303 - a name, as in the reference
        f"Subject: {cert.subject.rfc4514_string()}",
        f"Issuer: {cert.issuer.rfc4514_string()}",
        f"Serial Number: {format(cert.serial_number, 'X')}",
    ]
    if uri:
        lines.append(f"URI: {uri}")
    return "\n".join(lines) + "\n\n"


def identities_text(entries: Sequence[tuple[x509.Certificate, str | None]]) -> str:
    """``Matching identities`` and a numbered entry per certificate, or ``No matching identities``."""
    if not entries:
        return "No matching identities\n"
    return "Matching identities\n" + "".join(
        f"{i}) {identity_text(cert, uri)}" for i, (cert, uri) in enumerate(entries, 1)
    )
