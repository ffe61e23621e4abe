"""A small DER writer (definite lengths only), shared by the CSR builder, TSS2 key files and ECDSA.

Only what those need: no general ASN.1. Readers stay next to their one format (tss2.py).
"""

from __future__ import annotations


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_len(len(content)) + content


def der_seq(*items: bytes) -> bytes:
    return der_tlv(0x30, b"".join(items))


def der_set(*items: bytes) -> bytes:
    # DER orders the members of a SET OF by their encodings (X.690 §11.6)
    return der_tlv(0x31, b"".join(sorted(items)))


def der_int(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are needed here")
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return der_tlv(0x02, raw)


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"bad object identifier {dotted}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def der_bool(value: bool) -> bytes:
    return der_tlv(0x01, b"\xff" if value else b"\x00")


def der_octets(value: bytes) -> bytes:
    return der_tlv(0x04, value)


def der_bits(value: bytes) -> bytes:
    return der_tlv(0x03, b"\x00" + value)  # no unused bits


DER_NULL = b"\x05\x00"
