"""Strict checks on a certificate a CA handed back, before anything is installed.

A CA that answers with someone else's key, a CA certificate, a certificate without
``digitalSignature`` or one that ends sooner than the current one would leave the machine without
working credentials; each is refused with one line and the old pair stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from ..certs import describe, issues, public_keys_equal
from ..errors import CertificateError
from .issuer import IssuedCertificate

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

#: a chain longer than this is not followed (Roles Anywhere accepts at most 5 intermediates)
MAX_PATH = 8
#: a notBefore this far in the future is still accepted (clock skew between us and the CA)
SKEW = timedelta(minutes=5)


def _refuse(problem: str, hint: str = "the old certificate is kept; check the CA's template and settings") -> NoReturn:
    raise CertificateError(f"the issued certificate was refused: {problem}", hint=hint)


def check_issued(
    issued: IssuedCertificate,
    *,
    public_key: PublicKeyTypes,
    anchors: Sequence[x509.Certificate],
    old: x509.Certificate | None,
    asked: timedelta,
    now: datetime,
) -> tuple[x509.Certificate, ...]:
    """Raise ``CertificateError`` unless ``issued`` is safe to install; return the intermediates to keep.

    The returned chain holds the certificates between the leaf and the trust anchor, nearest issuer
    first, without the self-signed root (Roles Anywhere wants intermediates only).
    """
    from .. import certs

    cert = issued.certificate
    if not public_keys_equal(cert.public_key(), public_key):
        _refuse("its public key is not ours", hint="the CA issued it for another key; the old certificate is kept")
    # what Roles Anywhere refuses in an end-entity certificate, decided by the shared checks; the
    # validity window is judged below with a little clock skew allowed
    found = certs.end_entity_issues(cert) + certs.certificate_issues(cert, cert.not_valid_before_utc)
    if certs.IS_CA in found:
        _refuse("it is a CA certificate (basicConstraints CA=true)")
    if certs.NO_DIGITAL_SIGNATURE in found:
        _refuse("its keyUsage lacks digitalSignature, which Roles Anywhere requires")
    if certs.NO_KEY_USAGE in found:
        _refuse(
            "it has no keyUsage extension (Roles Anywhere requires digitalSignature)",
            hint="use a template that sets keyUsage, such as EndEntityCertificate/V1; the old certificate is kept",
        )
    if certs.WEAK_HASH in found or certs.NO_HASH in found:
        _refuse(
            f"it is signed with {certs.signature_hash_name(cert) or 'no separate hash'}, which Roles Anywhere rejects"
        )
    if certs.NOT_V3 in found:
        _refuse("it is not an X.509 v3 certificate")
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not_before > now + SKEW:
        _refuse(f"it is not valid until {not_before:%Y-%m-%d %H:%M} UTC")
    if old is not None and not_after <= old.not_valid_after_utc:
        _refuse(
            f"it expires {not_after:%Y-%m-%d %H:%M} UTC, no later than the current one "
            f"({old.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
        )
    lifetime = not_after - not_before
    if lifetime < asked / 2:
        _refuse(
            f"it is valid for {lifetime.total_seconds() / 86400:.1f} days, less than half of the "
            f"{asked.total_seconds() / 86400:.1f} asked for"
        )
    _check_path(cert, issued.chain, anchors)
    from ..certs import chain_from_pool

    # intermediates to send: every real issuer up to, not including, a self-signed root
    return tuple(chain_from_pool(cert, [*issued.chain, *anchors]))


def _check_path(leaf: x509.Certificate, chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> None:
    if not anchors:
        _refuse("there is no CA certificate to check it against", hint="pass --trust-anchor-certificate")
    path: list[x509.Certificate] = []
    child = leaf
    for _ in range(MAX_PATH):
        if any(issues(a, child) for a in anchors):
            return
        nxt = next((c for c in chain if c not in path and c != child and issues(c, child)), None)
        if nxt is None:
            break
        if not _is_ca(nxt):
            _refuse(
                f"its issuer {describe(nxt)} is not marked as a CA (no basicConstraints CA=true)",
                hint="Roles Anywhere refuses such a chain; reissue the intermediate with CA extensions",
            )
        path.append(nxt)
        child = nxt
    _refuse(
        f"it does not chain to the CA certificate ({', '.join(describe(a) for a in anchors)})",
        hint="check --ca-arn or --trust-anchor-certificate; the old certificate is kept",
    )


def _is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509 as _x509

    try:
        return bool(cert.extensions.get_extension_for_class(_x509.BasicConstraints).value.ca)
    except _x509.ExtensionNotFound:
        return False
