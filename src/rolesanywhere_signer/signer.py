"""The interface every key backend implements, and small helpers they share.

A backend hands over the certificate, its chain and ``sign(data)``; the protocol never sees
where the key lives. ``sign`` takes the *message* (the string to sign) and returns a signature
over its SHA-256 digest (or the digest named), DER-encoded for ECDSA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from . import keytypes
from .keytypes import DIGEST_INFO_PREFIX, DIGESTS, DigestName, ecdsa_der_from_raw, hash_algorithm, key_type_of
from .protocol import Identity

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "DIGESTS",
    "DIGEST_INFO_PREFIX",
    "DigestName",
    "KeyHandle",
    "KeySigner",
    "Signer",
    "algorithm_for_key",
    "digest",
    "digest_info",
    "ecdsa_der_from_raw",
    "ecdsa_der_from_rs",
    "hash_algorithm",
    "identity_of",
    "verify_signature",
]


@runtime_checkable
class Signer(Protocol):
    """A private key somewhere, and the certificate that names it."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> Sequence[x509.Certificate]:
        """Intermediates to send, nearest issuer first, leaf and root excluded."""
        ...

    @property
    def algorithm(self) -> str:
        """``AWS4-X509-RSA-SHA256`` or ``AWS4-X509-ECDSA-SHA256``, from the key type only."""
        ...

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        """Sign ``data`` with the key: PKCS#1 v1.5 for RSA, DER ECDSA for EC."""
        ...

    def close(self) -> None:
        """Release sessions/handles. Safe to call twice."""
        ...


@runtime_checkable
class KeyHandle(Protocol):
    """A private key without (or before) its certificate: for CSRs, enrollment and doctor.

    Every backend module exposes ``open_key(opts: IdentityOptions) -> KeyHandle``.
    """

    def public_key(self) -> PublicKeyTypes: ...

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes: ...

    def close(self) -> None: ...


class KeySigner:
    """A ``Signer`` made of a ``KeyHandle`` held elsewhere (token, TPM) and its checked certificate."""

    def __init__(self, key: KeyHandle, certificate: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
        self._key = key
        self.certificate = certificate
        self.chain = tuple(chain)
        self.algorithm = algorithm_for_key(certificate.public_key())
        self.sign = key.sign  # type: ignore[method-assign]  # no extra call per signature

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r}, {self.certificate.subject.rfc4514_string()!r})"

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        return self._key.sign(data, digest)

    def close(self) -> None:
        self._key.close()


def digest(data: bytes, name: DigestName = "sha256") -> bytes:
    import hashlib

    return hashlib.new(name, data).digest()


def digest_info(data: bytes, name: DigestName = "sha256") -> bytes:
    """DigestInfo for raw RSA PKCS#1 v1.5 signing (CKM_RSA_PKCS), hashed on the host."""
    return DIGEST_INFO_PREFIX[name] + digest(data, name)


def ecdsa_der_from_rs(r: int, s: int) -> bytes:
    """ASN.1 DER ``SEQUENCE { r INTEGER, s INTEGER }`` (TPMs return r and s separately)."""
    return keytypes.encode_dss_signature(r, s)


def algorithm_for_key(public_key: PublicKeyTypes) -> str:
    """The AWS algorithm name, from the key type alone (never from the cert's signature hash)."""
    return key_type_of(public_key).algorithm


def identity_of(signer: Signer) -> Identity:
    """The wire form of a signer's certificate and chain."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return Identity(
        certificate_der=signer.certificate.public_bytes(Encoding.DER),
        serial=signer.certificate.serial_number,
        algorithm=signer.algorithm,
        chain_der=tuple(c.public_bytes(Encoding.DER) for c in signer.chain),
    )


def verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes, name: DigestName = "sha256") -> bool:
    """True when ``signature`` over ``data`` verifies with ``public_key``; False for keys outside the table."""
    from .errors import NotSupportedError

    try:
        key_type = key_type_of(public_key)
    except NotSupportedError:
        return False
    return key_type.verify(public_key, signature, data, name)
