"""What each key type means, in one table: everything that branches on RSA vs EC reads it.

One row per key type holds the Roles Anywhere algorithm, how a signature is made (which hash the
host applies, how the result is encoded), the X.509/CSR signature algorithm identifier, how a
signature is verified locally, the PKCS#11 key type and mechanisms, and the TPM scheme.

A new key type is a new row; a new *family* (ML-DSA) is rows plus one entry in the per-encoding
tables at the bottom (``_VERIFIERS``, ``_SOFTWARE_SIGNERS``, ...). A row whose ``prehash`` is
``None`` signs the message itself (no host-side hash), as ML-DSA does.

This module is on the credential-process cold path: nothing heavy at import time, so the rows
hold names and OIDs, and ``cryptography`` is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from .errors import NotSupportedError
from .protocol import ALGORITHM_ECDSA, ALGORITHM_MLDSA, ALGORITHM_RSA
from .records import Record

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurve
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

DigestName = Literal["sha256", "sha384", "sha512"]
DIGESTS: tuple[DigestName, ...] = ("sha256", "sha384", "sha512")
Family = Literal["rsa", "ec", "ml-dsa"]
#: how the bytes that leave the key are laid out on the wire
#: ("pkcs1v15": RSASSA-PKCS1-v1_5; "ecdsa-der": ASN.1 DER SEQUENCE{r, s}; "ml-dsa": the FIPS 204 signature)
Encoding = str

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): what the host prepends to its hash when a token
# only offers raw PKCS#1 v1.5 (CKM_RSA_PKCS).
DIGEST_INFO_PREFIX: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

#: X.509 AlgorithmIdentifier OIDs of the signature made with each family's prehash (SHA-256)
OID_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"


class KeyType(Record):
    """One kind of key Roles Anywhere accepts, and everything the code needs to know about it.

    A ``Record``, not a dataclass: this module is on every cold run, and ``@dataclass`` compiles its
    methods from source when the class is made (records.py).
    """

    _fields = (
        "name",
        "family",
        "cli_name",
        "title",
        "bits",
        "algorithm",
        "prehash",
        "encoding",
        "signature_oid",
        "signature_params_null",
        "curve",
        "curve_oid",
        "pkcs11_key_type",
        "pkcs11_raw_mechanism",
        "pkcs11_hashing_mechanisms",
        "tpm_scheme",
        "tpm_curve",
    )
    __slots__ = _fields
    _shown = _fields

    name: str  # "RSA-2048", "EC-P256"
    family: Family
    cli_name: str  # the spelling of ``generate-key --key-type``: "rsa2048", "ec-p256"
    title: str  # for people: "RSA 2048", "EC P-256"
    bits: int  # RSA modulus size; EC field size; ML-DSA: 0 (a parameter set, not a size)
    algorithm: str  # the Roles Anywhere ALGORITHM of the Authorization header
    #: the hash the host applies before the key signs (the ALGORITHM's hash); ``None``: the key
    #: signs the message itself (ML-DSA)
    prehash: DigestName | None
    encoding: Encoding
    #: the X.509/CSR signatureAlgorithm for a signature with ``prehash``; RSA's carries NULL parameters
    signature_oid: str
    signature_params_null: bool
    curve: str | None  # cryptography/OpenSSL curve name ("secp256r1")
    curve_oid: str | None  # namedCurve OID (PKCS#11 CKA_EC_PARAMS, key generation)
    #: PKCS#11: the ``pkcs11.KeyType`` member, the mechanism fed the host's hash (plus DigestInfo
    #: for RSA), and the mechanisms that hash on the token, by digest
    pkcs11_key_type: str | None
    pkcs11_raw_mechanism: str | None
    pkcs11_hashing_mechanisms: tuple[tuple[DigestName, str], ...]
    #: TPM 2.0: the ``TPM2_ALG`` signing scheme and, for EC, the ``TPM2_ECC`` curve
    tpm_scheme: str | None
    tpm_curve: str | None

    def __init__(
        self,
        *,
        name: str,
        family: Family,
        cli_name: str,
        title: str,
        bits: int,
        algorithm: str,
        prehash: DigestName | None,
        encoding: Encoding,
        signature_oid: str,
        signature_params_null: bool,
        curve: str | None = None,
        curve_oid: str | None = None,
        pkcs11_key_type: str | None = None,
        pkcs11_raw_mechanism: str | None = None,
        pkcs11_hashing_mechanisms: tuple[tuple[DigestName, str], ...] = (),
        tpm_scheme: str | None = None,
        tpm_curve: str | None = None,
    ) -> None:
        self._init(
            name=name,
            family=family,
            cli_name=cli_name,
            title=title,
            bits=bits,
            algorithm=algorithm,
            prehash=prehash,
            encoding=encoding,
            signature_oid=signature_oid,
            signature_params_null=signature_params_null,
            curve=curve,
            curve_oid=curve_oid,
            pkcs11_key_type=pkcs11_key_type,
            pkcs11_raw_mechanism=pkcs11_raw_mechanism,
            pkcs11_hashing_mechanisms=pkcs11_hashing_mechanisms,
            tpm_scheme=tpm_scheme,
            tpm_curve=tpm_curve,
        )

    # -- how a signature is made and checked

    def host_input(self, data: bytes, digest: DigestName) -> bytes:
        """What a PKCS#11 raw mechanism signs: the host's hash, as DigestInfo for PKCS#1 v1.5 (CKM_RSA_PKCS)."""
        if self.prehash is None:
            return data
        hashed = hashlib.new(digest, data).digest()
        return DIGEST_INFO_PREFIX[digest] + hashed if self.encoding == "pkcs1v15" else hashed

    def encode_raw(self, raw: bytes) -> bytes:
        """The wire form of what a token returned (PKCS#11 ECDSA gives ``r || s``, wanted is DER)."""
        return self.raw_encoder()(raw)

    def raw_encoder(self) -> Callable[[bytes], bytes]:
        """``encode_raw`` as a plain function, for signing loops to look up once."""
        return _RAW_ENCODERS.get(self.encoding, bytes)

    def verify(self, public_key: PublicKeyTypes, signature: bytes, data: bytes, digest: DigestName = "sha256") -> bool:
        """True when ``signature`` over ``data`` verifies with ``public_key`` (the local check)."""
        return _VERIFIERS[self.encoding](public_key, signature, data, digest)

    def software_signer(self, key: PrivateKeyTypes) -> Callable[[bytes, DigestName], bytes]:
        """``sign(data, digest)`` for a key held by ``cryptography``, with its padding/hash objects prebuilt."""
        return _SOFTWARE_SIGNERS[self.encoding](key)

    def generate_private_key(self) -> PrivateKeyTypes:
        """A new software key of this type."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if self.family == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
        if self.family == "ec":
            return ec.generate_private_key(self.curve_object())
        if self.family == "ml-dsa":
            from . import mldsa

            return mldsa.generate(self.cli_name)  # written in the PKCS#8 seed form by private_bytes
        raise NotSupportedError(f"cannot make a software {self.title} key")

    def curve_object(self) -> EllipticCurve:
        """The ``cryptography`` curve of an EC row."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509 import ObjectIdentifier

        if self.curve_oid is None:
            raise NotSupportedError(f"{self.title} keys have no curve")
        return ec.get_curve_for_oid(ObjectIdentifier(self.curve_oid))()

    def signature_algorithm_der(self) -> bytes:
        """DER ``AlgorithmIdentifier`` of this key's signature (CSRs)."""
        from .der import DER_NULL, der_oid, der_seq

        return der_seq(der_oid(self.signature_oid), *([DER_NULL] if self.signature_params_null else []))


def _rsa(bits: int) -> KeyType:
    return KeyType(
        name=f"RSA-{bits}",
        family="rsa",
        cli_name=f"rsa{bits}",
        title=f"RSA {bits}",
        bits=bits,
        algorithm=ALGORITHM_RSA,
        prehash="sha256",
        encoding="pkcs1v15",
        signature_oid=OID_SHA256_WITH_RSA,
        signature_params_null=True,
        pkcs11_key_type="RSA",
        pkcs11_raw_mechanism="RSA_PKCS",
        pkcs11_hashing_mechanisms=(
            ("sha256", "SHA256_RSA_PKCS"),
            ("sha384", "SHA384_RSA_PKCS"),
            ("sha512", "SHA512_RSA_PKCS"),
        ),
        tpm_scheme="RSASSA",
    )


def _ec(bits: int, curve: str, curve_oid: str, tpm_curve: str) -> KeyType:
    return KeyType(
        name=f"EC-P{bits}",
        family="ec",
        cli_name=f"ec-p{bits}",
        title=f"EC P-{bits}",
        bits=bits,
        algorithm=ALGORITHM_ECDSA,
        prehash="sha256",  # SHA-256 for every curve (P-384 and P-521 too): the ALGORITHM says so
        encoding="ecdsa-der",
        signature_oid=OID_ECDSA_WITH_SHA256,
        signature_params_null=False,
        curve=curve,
        curve_oid=curve_oid,
        pkcs11_key_type="EC",
        pkcs11_raw_mechanism="ECDSA",  # the host hashes; tokens' CKM_ECDSA_SHA* are rarely offered
        tpm_scheme="ECDSA",
        tpm_curve=tpm_curve,
    )


def _ml_dsa(level: int, oid: str) -> KeyType:
    return KeyType(
        name=f"ML-DSA-{level}",  # as the reference helper names the key type
        family="ml-dsa",
        cli_name=f"ml-dsa-{level}",
        title=f"ML-DSA-{level}",
        bits=0,
        algorithm=ALGORITHM_MLDSA,
        prehash=None,  # pure ML-DSA over the string to sign itself, empty context
        encoding="ml-dsa",
        signature_oid=oid,  # id-ml-dsa-*: also the SPKI and PKCS#8 algorithm; parameters absent
        signature_params_null=False,
        pkcs11_key_type="ML_DSA",  # CKK_ML_DSA, signing with CKM_ML_DSA (PKCS#11 3.2)
        pkcs11_raw_mechanism="ML_DSA",
        tpm_scheme=None,  # TPM 2.0 has no ML-DSA
    )


RSA_2048 = _rsa(2048)
RSA_3072 = _rsa(3072)
RSA_4096 = _rsa(4096)
EC_P256 = _ec(256, "secp256r1", "1.2.840.10045.3.1.7", "NIST_P256")
EC_P384 = _ec(384, "secp384r1", "1.3.132.0.34", "NIST_P384")
EC_P521 = _ec(521, "secp521r1", "1.3.132.0.35", "NIST_P521")
ML_DSA_44 = _ml_dsa(44, "2.16.840.1.101.3.4.3.17")
ML_DSA_65 = _ml_dsa(65, "2.16.840.1.101.3.4.3.18")
ML_DSA_87 = _ml_dsa(87, "2.16.840.1.101.3.4.3.19")

KEY_TYPES: tuple[KeyType, ...] = (
    RSA_2048,
    RSA_3072,
    RSA_4096,
    EC_P256,
    EC_P384,
    EC_P521,
    ML_DSA_44,
    ML_DSA_65,
    ML_DSA_87,
)
#: every ALGORITHM a row signs with (what an endpoint accepts)
ALGORITHMS: frozenset[str] = frozenset(kt.algorithm for kt in KEY_TYPES)

#: RSA keys below this are refused; sizes between the rows (RSA 2560, 8192) sign like the rows do
MIN_RSA_BITS = 2048

_SUPPORTED_HINT = "use an RSA (2048 bits or more), EC (P-256, P-384, P-521) or ML-DSA (44, 65, 87) key"


def key_type_named(name: str) -> KeyType:
    """The row called ``name`` ("EC-P256") or spelt as ``generate-key --key-type`` takes it ("ec-p256")."""
    wanted = name.strip().lower()
    for kt in KEY_TYPES:
        if wanted in (kt.name.lower(), kt.cli_name):
            return kt
    raise NotSupportedError(
        f"unknown key type {name!r}", hint=f"use one of {', '.join(kt.cli_name for kt in KEY_TYPES)}"
    )


def key_type_for_curve(curve: str) -> KeyType | None:
    """The EC row on ``curve`` (a cryptography/OpenSSL name such as "secp384r1"), if any."""
    for kt in KEY_TYPES:
        if kt.curve == curve:
            return kt
    return None


def key_type_for_curve_oid(oid: str) -> KeyType | None:
    for kt in KEY_TYPES:
        if kt.curve_oid is not None and kt.curve_oid == oid:
            return kt
    return None


def rsa_key_type(bits: int) -> KeyType | None:
    """The RSA row for a modulus of ``bits``; ``None`` below 2048. Other sizes behave as the rows do."""
    if bits < MIN_RSA_BITS:
        return None
    for kt in KEY_TYPES:
        if kt.family == "rsa" and kt.bits == bits:
            return kt
    return RSA_2048.with_changes(name=f"RSA-{bits}", cli_name=f"rsa{bits}", title=f"RSA {bits}", bits=bits)


def key_type_of(public_key: PublicKeyTypes, what: str = "") -> KeyType:
    """The row for a public key; ``NotSupportedError`` naming ``what`` for anything Roles Anywhere refuses."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    named = f" {what}" if what else ""
    if isinstance(public_key, rsa.RSAPublicKey):
        kt = rsa_key_type(public_key.key_size)
        if kt is None:
            raise NotSupportedError(
                f"RSA key{named} has {public_key.key_size} bits; use {MIN_RSA_BITS} or more", hint=_SUPPORTED_HINT
            )
        return kt
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        found = key_type_for_curve(public_key.curve.name)
        if found is None:
            raise NotSupportedError(
                f"EC key{named} is on curve {public_key.curve.name}; use P-256, P-384 or P-521", hint=_SUPPORTED_HINT
            )
        return found
    from . import mldsa  # after RSA and EC: their runs never import the ML-DSA module

    p = mldsa.parameter_set(public_key)
    if p is not None:
        return key_type_named(p.name)
    kind = type(public_key).__name__.lstrip("_").removesuffix("PublicKey").removesuffix("PrivateKey")
    raise NotSupportedError(
        f"key{named} is a {kind} key; Roles Anywhere takes RSA, EC or ML-DSA keys", hint=_SUPPORTED_HINT
    )


def family_of(public_key: PublicKeyTypes) -> Family | None:
    """The family of any key, supported size or curve or not (for descriptions, not for signing)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec"
    from . import mldsa

    return "ml-dsa" if mldsa.parameter_set(public_key) is not None else None


def describe_key(public_key: PublicKeyTypes) -> str:
    """ "RSA 2048", "EC P-256"; for keys outside the table, what they are."""
    try:
        return key_type_of(public_key).title
    except NotSupportedError:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if isinstance(public_key, rsa.RSAPublicKey):
            return f"RSA {public_key.key_size}"
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            return f"EC {public_key.curve.name}"
        return type(public_key).__name__.lstrip("_")


# ---------------------------------------------------------------- per-encoding behaviour


_DSS_ENCODER: list[Callable[[int, int], bytes]] = []  # cryptography's, imported on first use


def encode_dss_signature(r: int, s: int) -> bytes:
    """ASN.1 DER ``SEQUENCE {r INTEGER, s INTEGER}``, by ``cryptography``.

    Once per signature on the token and TPM paths: the function is looked up once, not imported
    on every call, and ``cryptography`` stays off the cold path until a signature is made.
    """
    if not _DSS_ENCODER:
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature as encode

        _DSS_ENCODER.append(encode)
    return _DSS_ENCODER[0](r, s)


def ecdsa_der_from_raw(raw: bytes) -> bytes:
    """PKCS#11's raw ``r || s`` (equal halves) as DER ``SEQUENCE {r INTEGER, s INTEGER}``."""
    if not raw or len(raw) % 2:
        raise ValueError(f"raw ECDSA signature has odd length {len(raw)}")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def hash_algorithm(digest: DigestName) -> HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    algorithms: dict[str, type[HashAlgorithm]] = {
        "sha256": hashes.SHA256,
        "sha384": hashes.SHA384,
        "sha512": hashes.SHA512,
    }
    return algorithms[digest]()


def _verify_pkcs1v15(public_key: PublicKeyTypes, signature: bytes, data: bytes, digest: DigestName) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm(digest))
    except InvalidSignature:
        return False
    return True


def _verify_ecdsa(public_key: PublicKeyTypes, signature: bytes, data: bytes, digest: DigestName) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm(digest)))
    except InvalidSignature:
        return False
    return True


def _sign_pkcs1v15(key: PrivateKeyTypes) -> Callable[[bytes, DigestName], bytes]:
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if not isinstance(key, rsa.RSAPrivateKey):
        raise NotSupportedError(f"cannot sign with a {type(key).__name__} key")
    pkcs1 = padding.PKCS1v15()
    hashes = {name: hash_algorithm(name) for name in DIGESTS}
    return lambda data, digest: key.sign(data, pkcs1, hashes[digest])


def _sign_ecdsa(key: PrivateKeyTypes) -> Callable[[bytes, DigestName], bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NotSupportedError(f"cannot sign with a {type(key).__name__} key")
    ecdsa = {name: ec.ECDSA(hash_algorithm(name)) for name in DIGESTS}
    return lambda data, digest: key.sign(data, ecdsa[digest])


def _verify_mldsa(public_key: PublicKeyTypes, signature: bytes, data: bytes, digest: DigestName) -> bool:
    from . import mldsa

    # pure ML-DSA over ``data`` itself, empty context: ``digest`` does not apply
    return mldsa.parameter_set(public_key) is not None and mldsa.verify(public_key, signature, data)


def _sign_mldsa(key: PrivateKeyTypes) -> Callable[[bytes, DigestName], bytes]:
    from . import mldsa

    if mldsa.parameter_set(key) is None:
        raise NotSupportedError(f"cannot sign with a {type(key).__name__} key")
    sign: Callable[[bytes], bytes] = key.sign  # type: ignore[union-attr,assignment]
    return lambda data, digest: sign(data)  # no digest to choose: ML-DSA signs the message itself


_VERIFIERS: dict[Encoding, Callable[[PublicKeyTypes, bytes, bytes, DigestName], bool]] = {
    "pkcs1v15": _verify_pkcs1v15,
    "ecdsa-der": _verify_ecdsa,
    "ml-dsa": _verify_mldsa,
}
_SOFTWARE_SIGNERS: dict[Encoding, Callable[[PrivateKeyTypes], Callable[[bytes, DigestName], bytes]]] = {
    "pkcs1v15": _sign_pkcs1v15,
    "ecdsa-der": _sign_ecdsa,
    "ml-dsa": _sign_mldsa,
}
_RAW_ENCODERS: dict[Encoding, Callable[[bytes], bytes]] = {"ecdsa-der": ecdsa_der_from_raw}
