"""ML-DSA key files in every PKCS#8 form, for tests.

``cryptography`` writes only the seed form and never exposes the expanded key, so the pure-Python
FIPS 204 implementation ``dilithium-py`` (a test-only dependency) derives the expanded key from the
seed; the project's DER writer wraps it. Encrypted files are PBES2, written with ``cryptography``'s
primitives: PBKDF2 (HMAC-SHA-1 or -SHA-256) or scrypt, then AES-CBC.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from rolesanywhere_signer.der import der_int, der_octets, der_oid, der_seq, der_tlv
from rolesanywhere_signer.mldsa import BY_KEY_TYPE

FORMS = ("seed", "both", "expanded")
KDFS = ("pbkdf2-sha1", "pbkdf2-sha256", "scrypt")


def _dilithium(key_type: str) -> Any:
    from dilithium_py import ml_dsa

    return getattr(ml_dsa, key_type.upper().replace("-", "_"))  # ML_DSA_65


def seed_of(key: Any) -> bytes:
    seed: bytes = key.private_bytes_raw()
    return seed


def expanded_of(key_type: str, seed: bytes) -> tuple[bytes, bytes]:
    """(public key, expanded private key) for ``seed``, from dilithium-py."""
    pk, sk = _dilithium(key_type).key_derive(seed)
    return bytes(pk), bytes(sk)


def pkcs8(key_type: str, seed: bytes, form: str, *, expanded: bytes | None = None) -> bytes:
    """DER PrivateKeyInfo holding ``seed`` in ``form``; ``expanded`` overrides the derived expanded key."""
    p = BY_KEY_TYPE[key_type]
    if expanded is None and form != "seed":
        expanded = expanded_of(key_type, seed)[1]
    if form == "seed":
        inner = der_tlv(0x80, seed)
    elif form == "both":
        assert expanded is not None
        inner = der_seq(der_octets(seed), der_octets(expanded))
    else:
        assert expanded is not None
        inner = der_octets(expanded)
    return der_seq(der_int(0), der_seq(der_oid(p.oid)), der_octets(inner))


def pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN " + label.encode() + b"-----\n" + b"\n".join(lines) + b"\n-----END " + label.encode() + b"-----\n"
    )


def encrypt(der: bytes, password: bytes, kdf: str, *, key_bytes: int = 32) -> bytes:
    """DER EncryptedPrivateKeyInfo (PBES2) around ``der``."""
    salt, iv = os.urandom(16), os.urandom(16)
    if kdf.startswith("pbkdf2"):
        iterations = 2048
        sha256 = kdf == "pbkdf2-sha256"
        algo: hashes.HashAlgorithm = hashes.SHA256() if sha256 else hashes.SHA1()
        key = PBKDF2HMAC(algo, key_bytes, salt, iterations).derive(password)
        # the PRF is absent for HMAC-SHA-1 (its DEFAULT), as OpenSSL writes it
        prf = [der_seq(der_oid("1.2.840.113549.2.9"), b"\x05\x00")] if sha256 else []
        kdf_alg = der_seq(der_oid("1.2.840.113549.1.5.12"), der_seq(der_octets(salt), der_int(iterations), *prf))
    else:
        n, r, p = 1 << 14, 8, 1
        key = Scrypt(salt, key_bytes, n, r, p).derive(password)
        kdf_alg = der_seq(
            der_oid("1.3.6.1.4.1.11591.4.11"), der_seq(der_octets(salt), der_int(n), der_int(r), der_int(p))
        )
    cipher_oid = {16: "2.16.840.1.101.3.4.1.2", 24: "2.16.840.1.101.3.4.1.22", 32: "2.16.840.1.101.3.4.1.42"}
    padder = padding.PKCS7(128).padder()
    padded = padder.update(der) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padded) + enc.finalize()
    scheme = der_seq(
        der_oid("1.2.840.113549.1.5.13"), der_seq(kdf_alg, der_seq(der_oid(cipher_oid[key_bytes]), der_octets(iv)))
    )
    return der_seq(scheme, der_octets(ciphertext))


def key_file(key: Any, key_type: str, form: str, password: bytes | None = None, kdf: str = "pbkdf2-sha256") -> bytes:
    """A PEM key file for ``key`` in ``form``, encrypted with ``password`` when given."""
    der = pkcs8(key_type, seed_of(key), form)
    if form == "seed":  # cryptography's own writer, to keep both writers honest
        assert der == key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    if password is None:
        return pem(der, "PRIVATE KEY")
    return pem(encrypt(der, password, kdf), "ENCRYPTED PRIVATE KEY")
