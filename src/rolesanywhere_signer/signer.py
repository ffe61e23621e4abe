"""The interface every key backend implements, and small helpers they share.

A backend hands over the certificate, its chain and ``sign(data)``; the protocol never sees
where the key lives. ``sign`` takes the *message* (the string to sign) and returns a signature
over its SHA-256 digest (or the digest named), DER-encoded for ECDSA; ML-DSA signs the message itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .der import der_len
from .protocol import ALGORITHM_ECDSA, ALGORITHM_RSA, Identity

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

DigestName = Literal["sha256", "sha384", "sha512"]
DIGESTS: tuple[DigestName, ...] = ("sha256", "sha384", "sha512")

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1) for tokens that only offer raw PKCS#1 v1.5.
DIGEST_INFO_PREFIX: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


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
        """``AWS4-X509-RSA-SHA256``, ``AWS4-X509-ECDSA-SHA256`` or ``AWS4-X509-MLDSA``, from the key type only."""
        ...

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        """Sign ``data`` with the key: PKCS#1 v1.5 for RSA, DER ECDSA for EC, pure ML-DSA (no digest) for ML-DSA."""
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
    return hashlib.new(name, data).digest()


def digest_info(data: bytes, name: DigestName = "sha256") -> bytes:
    """DigestInfo for raw RSA PKCS#1 v1.5 signing (CKM_RSA_PKCS), hashed on the host."""
    return DIGEST_INFO_PREFIX[name] + digest(data, name)


def _der_uint(big_endian: bytes) -> bytes:
    # straight from bytes: this runs once per signature on the token and TPM paths
    value = big_endian.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + der_len(len(value)) + value


def ecdsa_der_from_rs(r: int, s: int) -> bytes:
    """ASN.1 DER ``SEQUENCE { r INTEGER, s INTEGER }``."""
    body = _der_uint(r.to_bytes((r.bit_length() + 7) // 8, "big")) + _der_uint(
        s.to_bytes((s.bit_length() + 7) // 8, "big")
    )
    return b"\x30" + der_len(len(body)) + body


def ecdsa_der_from_raw(raw: bytes) -> bytes:
    """Convert PKCS#11's raw ``r || s`` (equal halves) to DER."""
    if not raw or len(raw) % 2:
        raise ValueError(f"raw ECDSA signature has odd length {len(raw)}")
    half = len(raw) // 2
    body = _der_uint(raw[:half]) + _der_uint(raw[half:])
    return b"\x30" + der_len(len(body)) + body


def algorithm_for_key(public_key: PublicKeyTypes) -> str:
    """The AWS algorithm name, from the key type alone (never from the cert's signature hash)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from .errors import NotSupportedError

    if isinstance(public_key, rsa.RSAPublicKey):
        return ALGORITHM_RSA
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ALGORITHM_ECDSA
    from . import mldsa

    if mldsa.parameter_set(public_key) is not None:
        return mldsa.ALGORITHM
    raise NotSupportedError(
        f"{type(public_key).__name__.removeprefix('_')} keys are not supported by Roles Anywhere",
        hint="use an RSA, EC (P-256, P-384, P-521) or ML-DSA (44, 65, 87) key",
    )


def identity_of(signer: Signer) -> Identity:
    """The wire form of a signer's certificate and chain."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return Identity(
        certificate_der=signer.certificate.public_bytes(Encoding.DER),
        serial=signer.certificate.serial_number,
        algorithm=signer.algorithm,
        chain_der=tuple(c.public_bytes(Encoding.DER) for c in signer.chain),
    )


def hash_algorithm(name: DigestName) -> HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    algos: dict[str, HashAlgorithm] = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }
    return algos[name]


def verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes, name: DigestName = "sha256") -> bool:
    """True when ``signature`` over ``data`` verifies with ``public_key`` (RSA PKCS#1 v1.5, DER ECDSA, ML-DSA)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    algo = hash_algorithm(name)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algo)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algo))
        else:
            from . import mldsa

            # pure ML-DSA over ``data`` itself, empty context: ``name`` does not apply
            return mldsa.parameter_set(public_key) is not None and mldsa.verify(public_key, signature, data)
    except InvalidSignature:
        return False
    return True
