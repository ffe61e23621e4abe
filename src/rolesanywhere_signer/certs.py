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


# --- the checks Roles Anywhere makes, written once ------------------------------------------------
# credential-process (check_leaf), doctor (one row per check) and local-endpoint (a 403 like AWS's)
# all decide with these; each words the outcome for its own audience.

NOT_V3 = "not-v3"
NOT_YET_VALID = "not-yet-valid"
EXPIRED = "expired"
WEAK_HASH = "weak-hash"  # MD5, SHA-1, SHA-224, or an algorithm cryptography cannot name
NO_HASH = "no-hash"  # signed without a separate hash (Ed25519): AWS refuses it
IS_CA = "is-ca"
NO_KEY_USAGE = "no-key-usage"
NO_DIGITAL_SIGNATURE = "no-digital-signature"


def certificate_issues(cert: x509.Certificate, now: datetime) -> list[str]:
    """What AWS refuses in any certificate of the path (leaf or intermediate), in check order."""
    from cryptography import x509 as _x509

    found = []
    if cert.version != _x509.Version.v3:
        found.append(NOT_V3)
    if now < _not_before(cert):
        found.append(NOT_YET_VALID)
    elif now > _not_after(cert):
        found.append(EXPIRED)
    hname = signature_hash_name(cert)
    if hname is None:
        found.append(NO_HASH)
    elif hname in WEAK_HASHES or hname == "unknown":
        found.append(WEAK_HASH)
    return found


def end_entity_issues(cert: x509.Certificate) -> list[str]:
    """What AWS refuses in the end-entity certificate on top: a CA flag, no digitalSignature usage."""
    from cryptography import x509 as _x509

    found = []
    try:
        if cert.extensions.get_extension_for_class(_x509.BasicConstraints).value.ca:
            found.append(IS_CA)
    except _x509.ExtensionNotFound:
        pass
    try:
        if not cert.extensions.get_extension_for_class(_x509.KeyUsage).value.digital_signature:
            found.append(NO_DIGITAL_SIGNATURE)
    except _x509.ExtensionNotFound:
        found.append(NO_KEY_USAGE)
    return found


#: what credential-process refuses, in the order it reports them; a certificate without keyUsage
#: or without a separate hash is left to the service (it never refused those)
_LEAF_ORDER = (NOT_V3, NOT_YET_VALID, EXPIRED, IS_CA, NO_DIGITAL_SIGNATURE, WEAK_HASH)


def check_leaf(cert: x509.Certificate, now: datetime | None = None) -> None:
    """Refuse, before any network call, a leaf that Roles Anywhere would refuse."""
    now = now or now_utc()
    found = set(certificate_issues(cert, now) + end_entity_issues(cert))
    issue = next((i for i in _LEAF_ORDER if i in found), None)
    if issue is None:
        return
    if issue == NOT_V3:
        raise CertificateError(f"certificate {describe(cert)} is not X.509 v3", hint="Roles Anywhere needs v3")
    if issue in (NOT_YET_VALID, EXPIRED):
        check_validity(cert, now)
    if issue == IS_CA:
        raise CertificateError(
            f"certificate {describe(cert)} is a CA certificate (basicConstraints CA=true), not an "
            "end-entity certificate",
            hint="use the certificate issued to this machine, not its CA",
        )
    if issue == NO_DIGITAL_SIGNATURE:
        raise CertificateError(
            f"certificate {describe(cert)} lacks the digitalSignature key usage",
            hint="reissue it with keyUsage=digitalSignature",
        )
    hname = signature_hash_name(cert) or "unknown"
    raise CertificateError(
        f"certificate {describe(cert)} is signed with {hname.upper()}, which Roles Anywhere rejects",
        hint="reissue it signed with SHA-256 or stronger",
    )


class PathRefused(Exception):
    """The certificate path does not validate to a trust anchor; ``detail`` says why ("" : no path)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


_PATH_WORDS = {
    NOT_V3: "is not X.509 v3",
    NOT_YET_VALID: "is outside its validity period",
    EXPIRED: "is outside its validity period",
}


def verify_path(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: datetime
) -> None:
    """Raise ``PathRefused`` unless ``leaf`` chains through ``chain`` to one of ``anchors`` as AWS checks it."""
    from cryptography import x509 as _x509

    def common(cert: x509.Certificate, what: str) -> None:
        for issue in certificate_issues(cert, now):
            if issue in (WEAK_HASH, NO_HASH):
                raise PathRefused(f"{what} is signed with {signature_hash_name(cert)}")
            raise PathRefused(f"{what} {_PATH_WORDS[issue]}")

    common(leaf, "the end-entity certificate")
    ee = end_entity_issues(leaf)
    if IS_CA in ee:
        raise PathRefused("the end-entity certificate is a CA")
    if NO_KEY_USAGE in ee or NO_DIGITAL_SIGNATURE in ee:
        raise PathRefused("keyUsage lacks digitalSignature")
    if len(chain) > MAX_CHAIN:
        raise PathRefused(f"the chain is longer than {MAX_CHAIN}")

    def ext(cert: x509.Certificate, cls: type[_x509.ExtensionType]) -> _x509.ExtensionType | None:
        try:
            return cert.extensions.get_extension_for_class(cls).value
        except _x509.ExtensionNotFound:
            return None

    child, remaining = leaf, list(chain)
    for _depth in range(MAX_CHAIN + 1):
        anchor = next((a for a in anchors if issues(a, child)), None)
        if anchor is not None:
            abc, aku = ext(anchor, _x509.BasicConstraints), ext(anchor, _x509.KeyUsage)
            if not isinstance(abc, _x509.BasicConstraints) or not abc.ca:
                raise PathRefused("the trust anchor is not a CA")
            if not isinstance(aku, _x509.KeyUsage) or not aku.key_cert_sign:
                raise PathRefused("the trust anchor is not a CA")
            if not _not_before(anchor) <= now <= _not_after(anchor):
                raise PathRefused("the trust anchor is outside its validity")
            return
        parent = next((c for c in remaining if issues(c, child)), None)
        if parent is None:
            raise PathRefused("")
        common(parent, "an intermediate certificate")
        pbc = ext(parent, _x509.BasicConstraints)
        if not isinstance(pbc, _x509.BasicConstraints) or not pbc.ca:
            raise PathRefused("an intermediate is not a CA")
        remaining.remove(parent)
        child = parent
    raise PathRefused(f"the chain is longer than {MAX_CHAIN}")


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


def choose_chain(
    leaf: x509.Certificate, extra: Sequence[x509.Certificate], intermediates: str | None
) -> list[x509.Certificate]:
    """The chain to send: issuers stored after the leaf in its own file win over ``--intermediates``.

    ``renew`` installs leaf and chain as one file (one rename switches both), so a reader of that
    file never pairs a new leaf with a stale intermediates file.
    """
    embedded = chain_from_pool(leaf, extra) if extra else []
    if embedded:
        return embedded
    if intermediates:
        return load_intermediates(intermediates)
    return []


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
