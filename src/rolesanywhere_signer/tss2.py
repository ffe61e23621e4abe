"""``TSS2 PRIVATE KEY`` files: the TPM key format of openssl's tpm2 provider, tpm2-tools and tpm2-pytss.

The file holds the key's public area and its private area wrapped by the parent key; only the
TPM that made it can load it. Layout (draft-bottomley-tpm2-keys)::

    TPMKey ::= SEQUENCE {
        type        OBJECT IDENTIFIER,             -- 2.23.133.10.1.3 loadable key
        emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
        policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
        secret      [2] EXPLICIT OCTET STRING OPTIONAL,
        authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
        description [4] EXPLICIT UTF8String OPTIONAL,
        rsaParent   [5] EXPLICIT BOOLEAN OPTIONAL,
        parent      INTEGER,                       -- 0x40000001 owner, or a persistent handle
        pubkey      OCTET STRING,                  -- TPM2B_PUBLIC
        privkey     OCTET STRING }                 -- TPM2B_PRIVATE

A tiny DER reader/writer of our own keeps this free of extra dependencies and lets us accept
the non-DER BOOLEAN (``01 01 01`` for TRUE) that tpm2-tss-engine and tpm2-openssl write.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from .der import der_bool, der_int, der_octets, der_oid, der_seq, der_tlv
from .errors import InputError, NotSupportedError

PEM_LABEL = "TSS2 PRIVATE KEY"
_BEGIN = b"-----BEGIN TSS2 PRIVATE KEY-----"
_END = b"-----END TSS2 PRIVATE KEY-----"

OID_LOADABLE = "2.23.133.10.1.3"
OID_IMPORTABLE = "2.23.133.10.1.4"
OID_SEALED = "2.23.133.10.1.5"

#: TPM_RH_OWNER: the key's parent is the owner hierarchy's standard storage primary
RH_OWNER = 0x40000001

_SEQUENCE, _INTEGER, _OCTETS, _OID, _BOOLEAN, _UTF8 = 0x30, 0x02, 0x04, 0x06, 0x01, 0x0C


def _ctx(n: int) -> int:
    """Tag of ``[n] EXPLICIT`` (context-specific, constructed)."""
    return 0xA0 | n


@dataclass(frozen=True)
class Tss2Key:
    """A loadable TPM key as stored in a file."""

    public: bytes  # TPM2B_PUBLIC, marshalled (size prefix included)
    private: bytes = field(repr=False)  # TPM2B_PRIVATE: wrapped by the parent, still not for logs
    parent: int = RH_OWNER
    empty_auth: bool = True
    rsa_parent: bool = False  # the owner primary uses the RSA-2048 storage template
    description: str | None = None


# ---------------------------------------------------------------- DER reading


class _DerError(ValueError):
    pass


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One element at ``pos``: (tag, content, position after it)."""
    if pos + 2 > len(data):
        raise _DerError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("multi-byte tags are not used in TSS2 keys")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise _DerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise _DerError("truncated")
    return tag, data[pos:end], end


def _elements(content: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(content):
        tag, value, pos = _read_tlv(content, pos)
        out.append((tag, value))
    return out


def _decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise _DerError("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for b in body:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _decode_bool(body: bytes) -> bool:
    # DER says TRUE is FF; some writers emit 01. Any non-zero octet is TRUE in BER.
    if len(body) != 1:
        raise _DerError("bad BOOLEAN")
    return body[0] != 0


def _explicit(body: bytes, tag: int) -> bytes:
    inner = _elements(body)
    if len(inner) != 1 or inner[0][0] != tag:
        raise _DerError("bad explicit field")
    return inner[0][1]


def decode_der(der: bytes, source: str) -> Tss2Key:
    """Parse the DER ``TPMKey``; refuse what cannot be used to sign without a policy."""
    try:
        tag, body, end = _read_tlv(der, 0)
        if tag != _SEQUENCE or der[end:].strip(b"\x00"):
            raise _DerError("not one SEQUENCE")
        fields = _elements(body)
        if not fields or fields[0][0] != _OID:
            raise _DerError("no key type OID")
        oid = _decode_oid(fields[0][1])
    except _DerError as e:
        raise InputError(f"TSS2 key file {source} is damaged ({e})", hint="recreate or re-export the key") from None
    if oid == OID_IMPORTABLE:
        raise NotSupportedError(
            f"TSS2 key file {source} holds an importable key, which must first be imported into the TPM",
            hint="import it with tpm2_import and save the result as a loadable key (tpm2_encodeobject)",
        )
    if oid == OID_SEALED:
        raise NotSupportedError(f"TSS2 key file {source} holds sealed data, not a signing key")
    if oid != OID_LOADABLE:
        raise NotSupportedError(f"TSS2 key file {source} has an unknown key type ({oid})")
    empty_auth = False  # absent: the key has a password
    rsa_parent = False
    description: str | None = None
    rest = fields[1:]
    try:
        while rest and rest[0][0] & 0xE0 == 0xA0:
            tag, value = rest.pop(0)
            n = tag & 0x1F
            if n in (1, 3):
                raise NotSupportedError(
                    f"TSS2 key file {source} is bound to a TPM policy ({'policy' if n == 1 else 'authPolicy'}), "
                    "which this tool does not satisfy",
                    hint="create the key with a plain password or none",
                )
            if n == 2:
                raise NotSupportedError(
                    f"TSS2 key file {source} carries an import secret (a duplicated key), which is not supported",
                    hint="create the key inside this TPM instead",
                )
            if n == 0:
                empty_auth = _decode_bool(_explicit(value, _BOOLEAN))
            elif n == 4:
                description = _explicit(value, _UTF8).decode("utf-8", "replace")
            elif n == 5:
                rsa_parent = _decode_bool(_explicit(value, _BOOLEAN))
            # higher tags are later additions of the format: ignored, as the spec asks
        if len(rest) != 3 or [t for t, _ in rest] != [_INTEGER, _OCTETS, _OCTETS]:
            raise _DerError("expected parent, pubkey and privkey")
        parent_raw, public, private = (v for _, v in rest)
        if not parent_raw or parent_raw[0] & 0x80:
            raise _DerError("bad parent handle")
        parent = int.from_bytes(parent_raw, "big")
        for name, blob in (("pubkey", public), ("privkey", private)):
            if len(blob) < 2 or int.from_bytes(blob[:2], "big") != len(blob) - 2:
                raise _DerError(f"bad {name} size")
    except _DerError as e:
        raise InputError(f"TSS2 key file {source} is damaged ({e})", hint="recreate or re-export the key") from None
    if parent > 0xFFFFFFFF:
        raise InputError(f"TSS2 key file {source} names an impossible parent handle")
    return Tss2Key(public, private, parent, empty_auth, rsa_parent, description)


def parse_pem(data: bytes, source: str) -> Tss2Key:
    """The first ``TSS2 PRIVATE KEY`` block of ``data``."""
    start = data.find(_BEGIN)
    if start < 0:
        raise InputError(f"{source} holds no {PEM_LABEL} block")
    end = data.find(_END, start)
    if end < 0:
        raise InputError(f"TSS2 key file {source} is truncated (no END line)")
    text = data[start + len(_BEGIN) : end]
    try:
        der = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"TSS2 key file {source} has damaged base64 text") from None
    return decode_der(der, source)


# ---------------------------------------------------------------- DER writing


def encode_der(key: Tss2Key) -> bytes:
    # emptyAuth is written even when FALSE: readers disagree on what an absent field means
    parts = [der_oid(OID_LOADABLE), der_tlv(_ctx(0), der_bool(key.empty_auth))]
    if key.description is not None:
        parts.append(der_tlv(_ctx(4), der_tlv(_UTF8, key.description.encode())))
    if key.rsa_parent:
        parts.append(der_tlv(_ctx(5), der_bool(True)))
    parts += [der_int(key.parent), der_octets(key.public), der_octets(key.private)]
    return der_seq(*parts)


def to_pem(key: Tss2Key) -> bytes:
    b64 = base64.b64encode(encode_der(key))
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"\n".join([_BEGIN, *lines, _END]) + b"\n"
