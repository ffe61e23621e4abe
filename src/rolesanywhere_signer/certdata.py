"""``read-certificate-data`` output, as ``aws_signing_helper`` prints it.

A certificate file gives one compact JSON object with ``keyType``, ``certificateData`` (base64
DER), ``serialNumber`` (decimal) and ``supportedAlgorithms`` (the reference's names, from
``KEY_TYPE_NAMES``). Certificates on a PKCS#11 token are listed as the reference's "Matching
identities" text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

#: public key algorithm OID -> (keyType, supportedAlgorithms), the reference's names.
#: One row per key family; ML-DSA certificates carry their variant as both.
KEY_TYPE_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "1.2.840.113549.1.1.1": ("RSA", ("RSASHA256", "RSASHA384", "RSASHA512")),  # rsaEncryption
    "1.2.840.10045.2.1": ("EC", ("ECSHA256", "ECSHA384", "ECSHA512")),  # id-ecPublicKey
    "2.16.840.1.101.3.4.3.17": ("ML-DSA-44", ("ML-DSA-44",)),
    "2.16.840.1.101.3.4.3.18": ("ML-DSA-65", ("ML-DSA-65",)),
    "2.16.840.1.101.3.4.3.19": ("ML-DSA-87", ("ML-DSA-87",)),
}
#: any other key: the reference prints an empty type and the bare digest names
UNKNOWN_KEY_TYPE: tuple[str, tuple[str, ...]] = ("", ("SHA256", "SHA384", "SHA512"))


def key_type_names(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    return KEY_TYPE_NAMES.get(cert.public_key_algorithm_oid.dotted_string, UNKNOWN_KEY_TYPE)


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
