"""The TSS2 PRIVATE KEY reader and writer, on hand-made DER and on files from openssl's tpm2 provider."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from rolesanywhere_signer.der import der_int, der_oid, der_tlv
from rolesanywhere_signer.errors import InputError, NotSupportedError
from rolesanywhere_signer.tss2 import (
    OID_IMPORTABLE,
    OID_LOADABLE,
    OID_SEALED,
    RH_OWNER,
    Tss2Key,
    decode_der,
    encode_der,
    parse_pem,
    to_pem,
)

PUB = b"\x00\x04" + b"pubk"
PRIV = b"\x00\x05" + b"privk"


def _der(*fields: bytes, oid: str = OID_LOADABLE) -> bytes:
    return der_tlv(0x30, der_oid(oid) + b"".join(fields))


def _tail(parent: int = RH_OWNER) -> bytes:
    return der_int(parent) + der_tlv(0x04, PUB) + der_tlv(0x04, PRIV)


def _pem(der: bytes) -> bytes:
    return b"-----BEGIN TSS2 PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END TSS2 PRIVATE KEY-----\n"


@pytest.mark.parametrize("empty_auth", [True, False])
@pytest.mark.parametrize("parent", [RH_OWNER, 0x81000001])
def test_round_trip(empty_auth: bool, parent: int) -> None:
    key = Tss2Key(PUB, PRIV, parent, empty_auth, description="made by tests")
    assert parse_pem(to_pem(key), "k") == key
    assert b"privk" not in repr(key).encode()


def test_writer_uses_der_true_and_explicit_false() -> None:
    assert b"\xa0\x03\x01\x01\xff" in encode_der(Tss2Key(PUB, PRIV, empty_auth=True))
    assert b"\xa0\x03\x01\x01\x00" in encode_der(Tss2Key(PUB, PRIV, empty_auth=False))
    assert encode_der(Tss2Key(PUB, PRIV, parent=0x81000001)).count(b"\x02\x05\x00\x81\x00\x00\x01") == 1


def test_non_der_boolean_true_is_accepted() -> None:
    """tpm2-tss-engine and tpm2-openssl write TRUE as 01, not FF."""
    key = decode_der(_der(der_tlv(0xA0, b"\x01\x01\x01"), _tail()), "k")
    assert key.empty_auth is True


def test_absent_empty_auth_means_a_password() -> None:
    assert decode_der(_der(_tail()), "k").empty_auth is False


def test_rsa_parent_flag_and_unknown_later_fields() -> None:
    key = decode_der(_der(der_tlv(0xA5, b"\x01\x01\xff"), der_tlv(0xA9, b"\x05\x00"), _tail()), "k")
    assert key.rsa_parent is True


@pytest.mark.parametrize(
    ("field", "phrase"),
    [
        (der_tlv(0xA1, der_tlv(0x30, b"")), "policy"),
        (der_tlv(0xA2, der_tlv(0x04, b"sec")), "secret"),
        (der_tlv(0xA3, der_tlv(0x30, b"")), "authPolicy"),
    ],
)
def test_policy_and_secret_keys_are_refused(field: bytes, phrase: str) -> None:
    with pytest.raises(NotSupportedError, match=phrase):
        decode_der(_der(der_tlv(0xA0, b"\x01\x01\xff"), field, _tail()), "k")


@pytest.mark.parametrize(
    ("oid", "phrase"), [(OID_IMPORTABLE, "importable"), (OID_SEALED, "sealed data"), ("1.2.3.4", "unknown key type")]
)
def test_other_key_kinds_are_refused(oid: str, phrase: str) -> None:
    with pytest.raises(NotSupportedError, match=phrase):
        decode_der(_der(_tail(), oid=oid), "k")


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30\x05\x06\x03",
        der_tlv(0x30, der_oid(OID_LOADABLE)),
        der_tlv(0x30, der_oid(OID_LOADABLE) + der_int(RH_OWNER) + der_tlv(0x04, b"\x00\x09ab") + der_tlv(0x04, PRIV)),
        der_tlv(0x30, der_oid(OID_LOADABLE) + der_tlv(0x02, b"\xff") + der_tlv(0x04, PUB) + der_tlv(0x04, PRIV)),
        der_tlv(0x04, b""),
    ],
)
def test_damaged_der_is_an_input_error(der: bytes) -> None:
    with pytest.raises(InputError, match="damaged"):
        decode_der(der, "k")


def test_pem_errors() -> None:
    with pytest.raises(InputError, match="no TSS2 PRIVATE KEY"):
        parse_pem(b"-----BEGIN PRIVATE KEY-----\n", "k")
    with pytest.raises(InputError, match="truncated"):
        parse_pem(b"-----BEGIN TSS2 PRIVATE KEY-----\nMIIB\n", "k")
    with pytest.raises(InputError, match="base64"):
        parse_pem(b"-----BEGIN TSS2 PRIVATE KEY-----\n!!!!\n-----END TSS2 PRIVATE KEY-----\n", "k")


def test_reads_what_openssl_tpm2_provider_writes(keys) -> None:  # type: ignore[no-untyped-def]
    with_pw = parse_pem(Path(keys["openssl-rsa-pw"].arg).read_bytes(), "k")
    assert with_pw.empty_auth is False and with_pw.parent == RH_OWNER
    without = parse_pem(Path(keys["openssl-ec"].arg).read_bytes(), "k")
    assert without.empty_auth is True
    tools = parse_pem(Path(keys["tools-ec"].arg).read_bytes(), "k")
    assert tools.parent == 0x81000001
    # the writer reproduces the same key for a reader that re-encodes
    assert parse_pem(to_pem(without), "k") == without
