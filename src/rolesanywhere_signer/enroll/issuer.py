"""The interface every CA integration implements: a PEM CSR in, a certificate and its chain out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class IssuedCertificate:
    """What a CA returned for one CSR."""

    certificate: x509.Certificate
    #: intermediates, nearest issuer first; the leaf and the trust anchor excluded
    chain: tuple[x509.Certificate, ...] = ()


class Issuer(Protocol):
    """A certificate authority this tool can ask for a certificate (ACM Private CA, a command, ...).

    ``issue`` raises a ``SignerError`` subclass with user-facing text when the CA refuses or
    cannot be reached; it never returns a certificate for a different key than the CSR's
    (callers check that with ``certs.check_key_matches`` all the same).
    """

    def issue(self, csr_pem: bytes) -> IssuedCertificate: ...
