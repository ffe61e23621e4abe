"""PKCS#8 by hand where ``cryptography`` cannot help: a small DER reader and PBES2 (RFC 8018).

Two uses:
- ``check_limits``: before ``cryptography`` decrypts an ``ENCRYPTED PRIVATE KEY``, its key-derivation
  cost is bounded here. A hostile file can ask for 2^40 PBKDF2 iterations (cryptography 50 panics
  on it) or gigabytes of scrypt memory.
- ``decrypt``: the PrivateKeyInfo inside, for keys ``cryptography`` cannot parse after decrypting
  (ML-DSA in the ``both`` form), so that a right password is never called wrong.

Supported: PBES2 with PBKDF2 (HMAC-SHA-1/224/256/384/512) or scrypt, and AES-128/192/256-CBC.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from .errors import InputError, NotSupportedError, SecretError

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_HMAC_SHA1 = "1.2.840.113549.2.7"
_PRFS = {
    _HMAC_SHA1: "SHA1",
    "1.2.840.113549.2.8": "SHA224",
    "1.2.840.113549.2.9": "SHA256",
    "1.2.840.113549.2.10": "SHA384",
    "1.2.840.113549.2.11": "SHA512",
}
_AES_CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
#: a key file must not make us burn minutes or gigabytes before the password is even checked
MAX_PBKDF2_ITERATIONS = 10_000_000
MAX_SCRYPT_MEMORY = 1 << 30


# ---------------------------------------------------------------- a small DER reader


class Malformed(Exception):
    pass


class Der:
    """Reads a run of DER elements from ``data[start:end]`` (definite lengths only)."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, start, len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int | None:
        return None if self.at_end() else self.data[self.pos]

    def _element(self, tag: int) -> tuple[int, int]:
        d, pos = self.data, self.pos
        if pos + 2 > self.end or d[pos] != tag:
            raise Malformed
        n, pos = d[pos + 1], pos + 2
        if n & 0x80:
            count = n & 0x7F
            if not 1 <= count <= 4 or pos + count > self.end:
                raise Malformed
            n, pos = int.from_bytes(d[pos : pos + count], "big"), pos + count
        if pos + n > self.end:
            raise Malformed
        self.pos = pos + n
        return pos, pos + n

    def read(self, tag: int) -> bytes:
        start, end = self._element(tag)
        return self.data[start:end]

    def sequence(self) -> Der:
        start, end = self._element(0x30)
        return Der(self.data, start, end)

    def integer(self) -> int:
        raw = self.read(0x02)
        if not raw or raw[0] & 0x80:
            raise Malformed
        return int.from_bytes(raw, "big")

    def oid(self) -> str:
        raw = self.read(0x06)
        arcs: list[int] = []
        value = 0
        for b in raw:
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                arcs.append(value)
                value = 0
        if not arcs or raw[-1] & 0x80:
            raise Malformed
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def pem_body(block: bytes, label: str) -> bytes | None:
    """The DER inside the first ``-----BEGIN label-----`` block, or None."""
    m = re.search(
        rb"-----BEGIN " + label.encode() + rb"-----(.*?)-----END " + label.encode() + rb"-----", block, re.DOTALL
    )
    if m is None or b":" in m.group(1):  # RFC 7468 blocks carry no headers
        return None
    try:
        return base64.b64decode(b"".join(m.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------- PBES2


@dataclass(frozen=True)
class Pbes2:
    kdf: str  # "pbkdf2" or "scrypt"
    salt: bytes
    iterations: int  # PBKDF2
    prf: str  # PBKDF2: the cryptography hash class name
    n: int  # scrypt cost, block size, parallelization
    r: int
    p: int
    key_bytes: int
    iv: bytes
    encrypted: bytes


def parse_pbes2(der: bytes, source: str) -> Pbes2:
    """Read an EncryptedPrivateKeyInfo's PBES2 parameters; refuse what is unsupported or too costly."""
    damaged = InputError(f"encrypted private key {source} is damaged")
    salt, iterations, prf, n, r, p = b"", 0, "", 0, 0, 0
    try:
        outer = Der(der).sequence()
        algorithm = outer.sequence()
        scheme = algorithm.oid()
        if scheme != _PBES2:
            raise NotSupportedError(
                f"encrypted private key {source} uses encryption scheme {scheme}, which is not supported",
                hint="re-encrypt it with PBES2 and AES-CBC (openssl pkcs8 -topk8 -v2 aes-256-cbc)",
            )
        params = algorithm.sequence()
        kdf = params.sequence()
        kdf_oid = kdf.oid()
        kdf_params = kdf.sequence()
        cipher = params.sequence()
        cipher_oid = cipher.oid()
        if cipher_oid not in _AES_CBC:
            raise NotSupportedError(
                f"encrypted private key {source} uses cipher {cipher_oid}, which is not supported",
                hint="re-encrypt it with AES-CBC (openssl pkcs8 -topk8 -v2 aes-256-cbc)",
            )
        key_bytes = _AES_CBC[cipher_oid]
        iv = cipher.read(0x04)
        encrypted = outer.read(0x04)
        if kdf_oid == _PBKDF2:
            salt, iterations = kdf_params.read(0x04), kdf_params.integer()
            if kdf_params.peek() == 0x02 and kdf_params.integer() != key_bytes:
                raise damaged
            prf_oid = _HMAC_SHA1  # the default when absent (RFC 8018 A.2)
            if kdf_params.peek() == 0x30:
                prf_oid = kdf_params.sequence().oid()
            if prf_oid not in _PRFS:
                raise NotSupportedError(f"encrypted private key {source} uses PBKDF2 with PRF {prf_oid}, not supported")
            prf = _PRFS[prf_oid]
            if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
                raise InputError(f"encrypted private key {source} asks for {iterations} PBKDF2 iterations; refused")
        elif kdf_oid == _SCRYPT:
            salt, n, r, p = kdf_params.read(0x04), kdf_params.integer(), kdf_params.integer(), kdf_params.integer()
            if kdf_params.peek() == 0x02 and kdf_params.integer() != key_bytes:
                raise damaged
            if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 64 or 128 * r * (n + p) > MAX_SCRYPT_MEMORY:
                raise InputError(f"encrypted private key {source} asks for scrypt N={n} r={r} p={p}; refused")
        else:
            raise NotSupportedError(
                f"encrypted private key {source} uses key derivation {kdf_oid}, which is not supported",
                hint="re-encrypt it with PBKDF2 or scrypt",
            )
    except Malformed:
        raise damaged from None
    if len(iv) != 16 or not encrypted or len(encrypted) % 16:
        raise damaged
    kind = "pbkdf2" if kdf_oid == _PBKDF2 else "scrypt"
    return Pbes2(kind, salt, iterations, prf, n, r, p, key_bytes, iv, encrypted)


def check_limits(data: bytes, source: str) -> None:
    """Refuse, before any key derivation, a PBES2 file that asks for too much (PEM or DER)."""
    der = pem_body(data, "ENCRYPTED PRIVATE KEY") if b"-----BEGIN" in data else data
    if der is None:
        return  # not PKCS#8 PEM: cryptography reports it
    try:
        Der(der).sequence().sequence().oid()
    except Malformed:
        return  # not an EncryptedPrivateKeyInfo
    try:
        parse_pbes2(der, source)
    except NotSupportedError:
        return  # PBES1 and other schemes: cryptography handles or reports them


def decrypt(der: bytes, password: bytes, source: str) -> bytes:
    """The PrivateKeyInfo inside an EncryptedPrivateKeyInfo."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    e = parse_pbes2(der, source)
    if e.kdf == "pbkdf2":
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

        derived = PBKDF2HMAC(getattr(hashes, e.prf)(), e.key_bytes, e.salt, e.iterations).derive(password)
    else:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        derived = Scrypt(e.salt, e.key_bytes, e.n, e.r, e.p).derive(password)
    decryptor = Cipher(algorithms.AES(derived), modes.CBC(e.iv)).decryptor()
    plain = decryptor.update(e.encrypted) + decryptor.finalize()
    pad = plain[-1]
    # bad padding is what a wrong password looks like (PKCS#8 has no other check value)
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise SecretError(f"wrong password for encrypted private key {source}")
    return plain[:-pad]
