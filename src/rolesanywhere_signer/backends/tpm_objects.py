"""TPM object templates, public areas as ``cryptography`` keys, and what a signing key must be.

Only imported once a TPM key is in use: it imports tpm2-pytss at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tpm2_pytss import (
    TPM2_ALG,
    TPM2_ECC,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMS_ECC_PARMS,
    TPMS_RSA_PARMS,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_RSA_SCHEME,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF_OBJECT,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

from ..errors import NotSupportedError
from ..keytypes import KEY_TYPES as ALL_KEY_TYPES
from ..keytypes import KeyType, key_type_named, rsa_key_type

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..keytypes import DigestName

_STORAGE_ATTRS = (
    TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
)
_AES128_CFB = TPMT_SYM_DEF_OBJECT(
    algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128), mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB)
)

#: the EC rows by TPM curve id
CURVES: dict[int, KeyType] = {
    int(getattr(TPM2_ECC, kt.tpm_curve)): kt for kt in ALL_KEY_TYPES if kt.tpm_curve is not None
}
#: what ``generate-key --tpm`` makes
KEY_TYPES = ("rsa2048", "rsa3072", "ec-p256", "ec-p384")
_HASH_ALGS: dict[str, Any] = {"sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384, "sha512": TPM2_ALG.SHA512}


def storage_primary(*, rsa: bool = False) -> Any:
    """The standard owner-hierarchy storage key template (TCG provisioning guidance, as tpm2-openssl
    and tpm2-pytss use it): ECC P-256 unless the key file says its parent is RSA."""
    if rsa:
        parms = TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=_AES128_CFB, scheme=TPMT_RSA_SCHEME(scheme=TPM2_ALG.NULL), keyBits=2048, exponent=0
            )
        )
        kind = TPM2_ALG.RSA
    else:
        parms = TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=_AES128_CFB,
                scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
                curveID=TPM2_ECC.NIST_P256,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        )
        kind = TPM2_ALG.ECC
    area = TPMT_PUBLIC(
        type=kind, nameAlg=TPM2_ALG.SHA256, objectAttributes=_STORAGE_ATTRS, authPolicy=b"", parameters=parms
    )
    return TPM2B_PUBLIC(publicArea=area)


def signing_template(key_type: str, *, with_auth: bool) -> Any:
    """A sign-only key that never leaves this TPM. With a password it counts toward DA lockout."""
    row = key_type_named(key_type)
    attrs = (
        TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
    )
    if not with_auth:
        attrs |= TPMA_OBJECT.NODA  # an empty password cannot be guessed; don't let mistakes lock the TPM
    null_sym = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    if row.family == "rsa":
        parms = TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=null_sym, scheme=TPMT_RSA_SCHEME(scheme=TPM2_ALG.NULL), keyBits=row.bits, exponent=0
            )
        )
        kind = TPM2_ALG.RSA
    else:
        parms = TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=null_sym,
                scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
                curveID=getattr(TPM2_ECC, str(row.tpm_curve)),
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        )
        kind = TPM2_ALG.ECC
    area = TPMT_PUBLIC(type=kind, nameAlg=TPM2_ALG.SHA256, objectAttributes=attrs, authPolicy=b"", parameters=parms)
    return TPM2B_PUBLIC(publicArea=area)


@dataclass(frozen=True)
class KeyInfo:
    """What the TPM says about a key: its kind, size, public key and the scheme it may sign with."""

    key_type: KeyType
    public_key: PublicKeyTypes
    fixed_hash: str | None  # the key's own scheme hash, when it is not TPM2_ALG_NULL

    @property
    def kind(self) -> str:
        return self.key_type.family  # "rsa" or "ec"

    @property
    def label(self) -> str:
        return self.key_type.title  # "RSA 2048", "EC P-256"


def public_key_of(area: Any) -> PublicKeyTypes:
    """A ``TPMT_PUBLIC`` (RSA or ECC) as a ``cryptography`` public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if area.type == TPM2_ALG.RSA:
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        n = int.from_bytes(bytes(area.unique.rsa), "big")
        return rsa.RSAPublicNumbers(exponent, n).public_key()
    curve = CURVES[int(area.parameters.eccDetail.curveID)].curve_object()
    x = int.from_bytes(bytes(area.unique.ecc.x), "big")
    y = int.from_bytes(bytes(area.unique.ecc.y), "big")
    return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()


def _hash_name(alg: Any) -> str:
    for name, value in _HASH_ALGS.items():
        if int(alg) == int(value):
            return name
    return str(alg)


def check_signing_key(area: Any, source: str) -> KeyInfo:
    """Refuse keys that cannot make a Roles Anywhere signature, naming why."""
    attrs = int(area.objectAttributes)
    if area.type not in (TPM2_ALG.RSA, TPM2_ALG.ECC):
        raise NotSupportedError(f"TPM key {source} is a {area.type} object, not an RSA or EC key")
    if not attrs & int(TPMA_OBJECT.SIGN_ENCRYPT):
        raise NotSupportedError(
            f"TPM key {source} is a decrypt-only key; it cannot sign",
            hint="create a signing key (openssl genpkey -provider tpm2, or tpm2_create -a …|sign)",
        )
    if attrs & int(TPMA_OBJECT.RESTRICTED):
        raise NotSupportedError(
            f"TPM key {source} is a restricted key: it signs only data the TPM made itself (attestation)",
            hint="use an unrestricted signing key",
        )
    fixed: str | None = None
    if area.type == TPM2_ALG.RSA:
        bits = int(area.parameters.rsaDetail.keyBits)
        row = rsa_key_type(bits)
        if row is None:
            raise NotSupportedError(f"TPM key {source} is RSA {bits}; use 2048 bits or more")
        scheme = area.parameters.rsaDetail.scheme
        if scheme.scheme not in (TPM2_ALG.NULL, getattr(TPM2_ALG, str(row.tpm_scheme))):
            raise NotSupportedError(
                f"TPM key {source} may only sign with {scheme.scheme}; Roles Anywhere needs RSASSA (PKCS#1 v1.5)"
            )
        if scheme.scheme == getattr(TPM2_ALG, str(row.tpm_scheme)):
            fixed = _hash_name(scheme.details.anySig.hashAlg)
    else:
        curve = int(area.parameters.eccDetail.curveID)
        if curve not in CURVES:
            raise NotSupportedError(
                f"TPM key {source} is on curve {area.parameters.eccDetail.curveID}; use P-256 or P-384"
            )
        row = CURVES[curve]
        scheme = area.parameters.eccDetail.scheme
        if scheme.scheme not in (TPM2_ALG.NULL, getattr(TPM2_ALG, str(row.tpm_scheme))):
            raise NotSupportedError(f"TPM key {source} may only sign with {scheme.scheme}; Roles Anywhere needs ECDSA")
        if scheme.scheme == getattr(TPM2_ALG, str(row.tpm_scheme)):
            fixed = _hash_name(scheme.details.anySig.hashAlg)
    if fixed is not None and fixed != row.prehash:
        raise NotSupportedError(f"TPM key {source} is bound to hash {fixed}; Roles Anywhere signs SHA-256 digests")
    if not attrs & int(TPMA_OBJECT.USERWITHAUTH):
        raise NotSupportedError(
            f"TPM key {source} can only be used through a policy session, which this tool does not run",
            hint="create the key with a plain password or none (userwithauth)",
        )
    return KeyInfo(row, public_key_of(area), fixed)


def sig_scheme(key_type: KeyType, digest: DigestName) -> Any:
    """The ``TPMT_SIG_SCHEME`` for one sign call (built once per digest and cached by the caller)."""
    if key_type.tpm_scheme is None:
        raise NotSupportedError(f"{key_type.title} keys cannot sign in a TPM")
    scheme = TPMT_SIG_SCHEME(scheme=getattr(TPM2_ALG, key_type.tpm_scheme))
    scheme.details.any.hashAlg = _HASH_ALGS[digest]
    return scheme
