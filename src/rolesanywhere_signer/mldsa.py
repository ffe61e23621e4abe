"""ML-DSA (FIPS 204) keys: parameter sets, ``cryptography``'s support, and the PKCS#8 private-key CHOICE.

``cryptography`` loads, signs and verifies ML-DSA keys, but reads only the ``seed`` form of the
PKCS#8 private key. OpenSSL 3.5 (and the reference helper's test keys) write the ``both`` form,
so this module reads the CHOICE itself (docs/protocol.md, "ML-DSA private keys"):

- ``seed [0] OCTET STRING (32)``: the key;
- ``expandedKey OCTET STRING``: refused, since the seed cannot be recovered from it;
- ``both SEQUENCE { seed, expandedKey }``: the seed, once the expanded key is shown to belong to it.

An encrypted ``both`` key fails inside ``cryptography`` after decryption, which would read as a
wrong password; so it is decrypted by ``pkcs8.decrypt`` first. Only imported for ML-DSA keys and
certificates, or when a key file did not load: RSA and EC runs never import it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError, NotSupportedError, SecretError
from .pkcs8 import Der, Malformed, decrypt, pem_body
from .protocol import ALGORITHM_MLDSA as ALGORITHM

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = ["ALGORITHM", "BY_KEY_TYPE", "BY_OID", "PARAMETER_SETS", "ParameterSet", "pem_body"]
#: the version this project is tested with; older ones lack the ML-DSA classes or the OpenSSL support
CRYPTOGRAPHY_NEEDED = "50"
SEED_BYTES = 32


@dataclass(frozen=True)
class ParameterSet:
    """One FIPS 204 parameter set. The key-type table's ML-DSA rows (keytypes) are found by ``name``;
    this module sits below that table and does not import it."""

    name: str  # "ML-DSA-65", as the reference helper names the key type (and the row's name)
    oid: str  # id-ml-dsa-*: the SPKI, PKCS#8 and signature algorithm alike (the row's signature_oid)
    public_bytes: int
    expanded_bytes: int
    signature_bytes: int

    @property
    def cli_name(self) -> str:
        return self.name.lower()  # ml-dsa-65

    @property
    def class_prefix(self) -> str:
        return self.name.replace("-", "")  # cryptography's MLDSA65PrivateKey


PARAMETER_SETS = (
    ParameterSet("ML-DSA-44", "2.16.840.1.101.3.4.3.17", 1312, 2560, 2420),
    ParameterSet("ML-DSA-65", "2.16.840.1.101.3.4.3.18", 1952, 4032, 3309),
    ParameterSet("ML-DSA-87", "2.16.840.1.101.3.4.3.19", 2592, 4896, 4627),
)
BY_OID = {p.oid: p for p in PARAMETER_SETS}
#: by the ``--key-type`` spelling, ``ml-dsa-65``
BY_KEY_TYPE = {p.cli_name: p for p in PARAMETER_SETS}


# ---------------------------------------------------------------- cryptography's ML-DSA support


def _module() -> Any:
    """``cryptography``'s ML-DSA module, or a clear "upgrade cryptography" error."""
    import cryptography

    try:
        from cryptography.hazmat.backends.openssl.backend import backend
        from cryptography.hazmat.primitives.asymmetric import mldsa

        supported = hasattr(mldsa, "MLDSA65PrivateKey") and backend.mldsa_supported()
    except (ImportError, AttributeError):
        supported = False
    if not supported:
        raise NotSupportedError(
            f"ML-DSA keys need cryptography {CRYPTOGRAPHY_NEEDED} or later built with ML-DSA support "
            f"(this is cryptography {cryptography.__version__})",
            hint=f"upgrade cryptography: pip install 'cryptography>={CRYPTOGRAPHY_NEEDED}'",
        )
    return mldsa


@functools.cache
def _classes() -> tuple[tuple[ParameterSet, type, type], ...]:
    """(parameter set, private key class, public key class); empty when cryptography has no ML-DSA."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError:
        return ()
    out = []
    for p in PARAMETER_SETS:
        prefix = p.class_prefix
        priv, pub = getattr(mldsa, f"{prefix}PrivateKey", None), getattr(mldsa, f"{prefix}PublicKey", None)
        if priv is not None and pub is not None:
            out.append((p, priv, pub))
    return tuple(out)


def parameter_set(key: PublicKeyTypes | PrivateKeyTypes | object) -> ParameterSet | None:
    """The parameter set of an ML-DSA public or private key; None for any other key."""
    for p, priv, pub in _classes():
        if isinstance(key, (priv, pub)):
            return p
    return None


def generate(key_type: str) -> PrivateKeyTypes:
    """A new private key for ``ml-dsa-44|65|87``."""
    p = BY_KEY_TYPE[key_type]
    cls = getattr(_module(), f"{p.class_prefix}PrivateKey")
    key: PrivateKeyTypes = cls.generate()
    return key


def from_seed(p: ParameterSet, seed: bytes) -> PrivateKeyTypes:
    cls = getattr(_module(), f"{p.class_prefix}PrivateKey")
    key: PrivateKeyTypes = cls.from_seed_bytes(seed)
    return key


def verify(public_key: Any, signature: bytes, data: bytes) -> bool:
    """Pure ML-DSA over the message itself, empty context (no pre-hash: not HashML-DSA)."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def expanded_key_matches(public_raw: bytes, expanded: bytes) -> bool:
    """FIPS 204 skEncode starts rho (32) || K (32) || tr (64), with tr = SHAKE256(pk, 64 bytes).

    rho is the public key's first 32 bytes. Checking rho and tr ties the expanded key to the
    public key (and so to the seed) without re-deriving s1, s2 and t0.
    """
    return expanded[:32] == public_raw[:32] and expanded[64:128] == hashlib.shake_256(public_raw).digest(64)


# ---------------------------------------------------------------- PKCS#8 PrivateKeyInfo


def sniff(der: bytes) -> ParameterSet | None:
    """The parameter set when ``der`` is a PKCS#8 PrivateKeyInfo of an ML-DSA key, else None."""
    try:
        info = Der(der).sequence()
        info.integer()
        return BY_OID.get(info.sequence().oid())
    except Malformed:
        return None


def load_private_key_info(der: bytes, source: str) -> PrivateKeyTypes:
    """An ML-DSA private key from PKCS#8 (RFC 5958 v1 or v2), in the seed or both form."""
    damaged = InputError(f"private key {source} is a damaged ML-DSA PKCS#8 key")
    try:
        info = Der(der).sequence()
        if info.integer() not in (0, 1):
            raise damaged
        algorithm = info.sequence()
        p = BY_OID.get(algorithm.oid())
        if p is None:
            raise damaged
        if not algorithm.at_end():  # id-ml-dsa-* parameters are absent
            raise damaged
        inner = info.read(0x04)
    except Malformed:
        raise damaged from None
    choice = Der(inner)
    try:
        tag = choice.peek()
        if tag == 0x80:  # seed [0] IMPLICIT OCTET STRING
            seed, expanded = choice.read(0x80), None
        elif tag == 0x04:
            raise InputError(
                f"private key {source} holds only the expanded {p.name} key, without its seed",
                hint="re-export the key with the seed (PKCS#8 seed or both form)",
            )
        elif tag == 0x30:  # both SEQUENCE { seed, expandedKey }
            both = choice.sequence()
            seed, expanded = both.read(0x04), both.read(0x04)
            if not both.at_end():
                raise damaged
        else:
            raise damaged
        if not choice.at_end():
            raise damaged
    except Malformed:
        raise damaged from None
    if len(seed) != SEED_BYTES or (expanded is not None and len(expanded) != p.expanded_bytes):
        raise damaged
    key = from_seed(p, seed)
    if expanded is not None:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if not expanded_key_matches(public_raw, expanded):
            raise InputError(
                f"private key {source}: its expanded {p.name} key does not belong to its seed",
                hint="the file is damaged or was altered; export the key again",
            )
    return key


def load_pkcs8(data: bytes, password: bytes | None, source: str) -> PrivateKeyTypes | None:
    """An ML-DSA key from a PEM or DER PKCS#8 file that ``cryptography`` could not load; None otherwise.

    With a password the file is decrypted here, so a right password is never called wrong.
    """
    if b"-----BEGIN" in data:
        der = pem_body(data, "ENCRYPTED PRIVATE KEY" if password is not None else "PRIVATE KEY")
        if der is None:
            return None
    else:
        der = data
    if password is not None:
        try:
            Der(der).sequence().sequence().oid()
        except Malformed:
            return None
        try:
            der = decrypt(der, password, source)
        except NotSupportedError:
            return None  # PBES1 and the like: cryptography already said what it could
        if sniff(der) is None:
            # the padding matched by chance (1 in 256 for a wrong password), or the key is damaged
            raise SecretError(f"wrong password for encrypted private key {source} (or the key is damaged)")
    elif sniff(der) is None:
        return None
    return load_private_key_info(der, source)
