"""Certificates: loading (PEM, DER, PKCS#12), the checks AWS makes on a leaf, and chain order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .errors import CertificateError, InputError, KeyMismatchError
from .inputs import label, read_input

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
MAX_CHAIN = 5
WEAK_HASHES = frozenset({"md5", "sha1", "sha224"})


def pem_labels(data: bytes) -> list[str]:
    return [m.group(1).decode() for m in _PEM_BLOCK.finditer(data)]


def describe(cert: x509.Certificate) -> str:
    """A short human name for a certificate: its subject (RFC 4514)."""
    try:
        return cert.subject.rfc4514_string() or f"serial {cert.serial_number}"
    except ValueError:
        return f"serial {cert.serial_number}"


def parse_certificates(data: bytes, source: str, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in ``data`` (PEM blocks, or one DER certificate)."""
    from cryptography import x509

    labels = pem_labels(data)
    if labels:
        if "CERTIFICATE" not in labels:
            kinds = ", ".join(sorted(set(labels)))
            if any("PRIVATE KEY" in k for k in labels):
                raise InputError(
                    f"{what} file {source} holds a private key ({kinds}), not a certificate",
                    hint="did you swap --certificate and --private-key?",
                )
            raise InputError(f"{what} file {source} holds no certificate (found {kinds})")
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise InputError(f"{what} file {source} has a damaged or truncated PEM certificate") from None
    if b"-----BEGIN" in data:
        raise InputError(f"{what} file {source} has a damaged or truncated PEM block")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    raise InputError(f"{what} file {source} is neither a PEM nor a DER certificate")


def load_certificate_file(path: str) -> list[x509.Certificate]:
    """Certificates from a file path, ``env:NAME`` or ``-`` (standard input)."""
    return parse_certificates(read_input(path, "certificate", flag="--certificate"), label(path))


def load_intermediates(path: str) -> list[x509.Certificate]:
    if path == "-":
        from .errors import UsageError

        raise UsageError(
            "--intermediates cannot be read from standard input",
            hint="put the chain after the certificate in the bundle on stdin, or use env:NAME",
        )
    data = read_input(path, "intermediates", flag="--intermediates")
    certs = parse_certificates(data, label(path), "intermediates")
    return certs


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def _not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def check_validity(cert: x509.Certificate, now: datetime, label: str = "certificate") -> None:
    if now < _not_before(cert):
        raise CertificateError(
            f"{label} {describe(cert)} is not valid yet: notBefore is {_not_before(cert):%Y-%m-%d %H:%M:%S} UTC",
            hint="check the system clock or wait",
        )
    if now > _not_after(cert):
        raise CertificateError(
            f"{label} {describe(cert)} expired on {_not_after(cert):%Y-%m-%d %H:%M:%S} UTC",
            hint="renew the certificate",
        )


def signature_hash_name(cert: x509.Certificate) -> str | None:
    try:
        algo = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - unsupported algorithms raise various errors
        return "unknown"
    return algo.name if algo is not None else None  # None: Ed25519 etc.


def check_leaf(cert: x509.Certificate, now: datetime | None = None) -> None:
    """Refuse, before any network call, a leaf that Roles Anywhere would refuse."""
    from cryptography import x509 as _x509

    if cert.version != _x509.Version.v3:
        raise CertificateError(f"certificate {describe(cert)} is not X.509 v3", hint="Roles Anywhere needs v3")
    check_validity(cert, now or now_utc())
    try:
        bc = cert.extensions.get_extension_for_class(_x509.BasicConstraints).value
        if bc.ca:
            raise CertificateError(
                f"certificate {describe(cert)} is a CA certificate (basicConstraints CA=true), not an "
                "end-entity certificate",
                hint="use the certificate issued to this machine, not its CA",
            )
    except _x509.ExtensionNotFound:
        pass
    try:
        ku = cert.extensions.get_extension_for_class(_x509.KeyUsage).value
        if not ku.digital_signature:
            raise CertificateError(
                f"certificate {describe(cert)} lacks the digitalSignature key usage",
                hint="reissue it with keyUsage=digitalSignature",
            )
    except _x509.ExtensionNotFound:
        pass
    hname = signature_hash_name(cert)
    if hname in WEAK_HASHES or hname == "unknown":
        raise CertificateError(
            f"certificate {describe(cert)} is signed with {hname.upper()}, which Roles Anywhere rejects",
            hint="reissue it signed with SHA-256 or stronger",
        )


def issues(issuer: x509.Certificate, subject: x509.Certificate) -> bool:
    """True when ``issuer``'s key really signed ``subject`` (names match and signature verifies)."""
    if issuer.subject != subject.issuer:
        return False
    try:
        subject.verify_directly_issued_by(issuer)
    except (ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - InvalidSignature and friends
        return False
    return True


def check_chain(leaf: x509.Certificate, chain: Sequence[x509.Certificate], now: datetime | None = None) -> None:
    """Intermediates must each issue the previous certificate, nearest issuer first."""
    if len(chain) > MAX_CHAIN:
        raise CertificateError(
            f"the intermediates bundle has {len(chain)} certificates; Roles Anywhere accepts at most {MAX_CHAIN}"
        )
    child = leaf
    for i, cert in enumerate(chain, start=1):
        if not issues(cert, child):
            others = [c for c in chain if c is not cert and issues(c, child)]
            hint = (
                "list intermediates nearest issuer first"
                if others
                else "remove certificates that are not in this leaf's chain"
            )
            raise CertificateError(f"intermediate {i} ({describe(cert)}) did not issue {describe(child)}", hint=hint)
        check_validity(cert, now or now_utc(), label="intermediate")
        child = cert


def public_keys_equal(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return a.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == b.public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def check_key_matches(cert: x509.Certificate, public_key: PublicKeyTypes, key_source: str) -> None:
    if not public_keys_equal(cert.public_key(), public_key):
        raise KeyMismatchError(
            f"private key {key_source} does not match certificate {describe(cert)}",
            hint="pass the key that the certificate was issued for",
        )


def chain_from_pool(leaf: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Only the certificates that really issue the leaf, in order, stopping before a self-signed root.

    Used by backends that find certificates in a store (a token holds unrelated ones too).
    """
    chain: list[x509.Certificate] = []
    child = leaf
    while len(chain) < MAX_CHAIN:
        nxt = next((c for c in pool if c is not child and issues(c, child) and c not in chain), None)
        if nxt is None or nxt.subject == nxt.issuer or nxt == leaf:
            break
        chain.append(nxt)
        child = nxt
    return chain
