"""RFC 7512 parsing: exact percent-decoding, the full attribute set, refusals, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolesanywhere_signer.errors import InputError
from rolesanywhere_signer.pkcs11_uri import OBJECT_TYPES, Pkcs11Uri, format_uri, parse_uri
from rolesanywhere_signer.secret import Secret


def test_full_attribute_set() -> None:
    u = parse_uri(
        "pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;serial=abc123;model=SoftHSM%20v2;"
        "library-manufacturer=OpenSC;library-description=lib;library-version=2.6;slot-id=42;"
        "slot-description=Slot%201;slot-manufacturer=ACME;object=my%20key;id=%01%02%FF;type=private"
        "?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so&module-name=softhsm2"
    )
    assert u == Pkcs11Uri(
        token="My Token",
        manufacturer="SoftHSM project",
        serial="abc123",
        model="SoftHSM v2",
        library_manufacturer="OpenSC",
        library_description="lib",
        library_version="2.6",
        slot_id=42,
        slot_description="Slot 1",
        slot_manufacturer="ACME",
        object="my key",
        id=b"\x01\x02\xff",
        type="private",
        pin_source="file:/run/pin",
        module_path="/usr/lib/softhsm/libsofthsm2.so",
        module_name="softhsm2",
    )


def test_exact_percent_decoding() -> None:
    assert parse_uri("pkcs11:object=a%2Fb%3Bc%25d").object == "a/b;c%d"
    assert parse_uri("pkcs11:object=caf%C3%A9").object == "café"
    assert parse_uri("pkcs11:id=%00%0a%7E").id == b"\x00\n~"
    assert parse_uri("pkcs11:id=AB").id == b"AB"  # literal bytes, not hex
    assert parse_uri("pkcs11:object=a+b").object == "a+b"  # '+' is not a space in RFC 7512
    assert parse_uri("pkcs11:").object is None
    assert parse_uri("pkcs11:object=").object == ""


def test_pin_value_is_a_secret_and_never_printed() -> None:
    u = parse_uri("pkcs11:token=t?pin-value=12%2034")
    assert isinstance(u.pin_value, Secret)
    assert u.pin_value.reveal() == "12 34"
    assert "12" not in repr(u) and "12" not in str(u)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("pkcs11:tokn=x", "unknown path attribute 'tokn'"),
        ("pkcs11:token=a;token=b", "repeats the attribute token"),
        ("pkcs11:token=a?pin-source=/p&pin-source=/q", "repeats the attribute pin-source"),
        ("pkcs11:token=a?pin-value=1&pin-source=/p", "both pin-value and pin-source"),
        ("pkcs11:object=a%2", "malformed percent-encoding"),
        ("pkcs11:object=a%zz", "malformed percent-encoding"),
        ("pkcs11:object=a%", "malformed percent-encoding"),
        ("pkcs11:object=a b", "must be percent-encoded"),
        ("pkcs11:object=a/b", "must be percent-encoded"),
        ("pkcs11:object=%FF", "not valid UTF-8"),
        ("pkcs11:object=a#b", "'#'"),
        ("pkcs11:token", "not name=value"),
        ("pkcs11:type=key", "type='key' is not one of"),
        ("pkcs11:slot-id=x1", "slot-id='x1' is not a decimal"),
        ("pkcs11:library-version=v2", "library-version"),
        ("pkcs11:pin-value=1", "pin-value belongs in the query"),
        ("pkcs11:token=a?object=b", "object belongs in the path"),
        ("pkcs11:token=a?x-vendor=1", "unknown query attribute"),
        ("pkcs11:token=a?", "empty query"),
        ("pkcs12:token=a", "must start with 'pkcs11:'"),
    ],
)
def test_refusals(text: str, phrase: str) -> None:
    with pytest.raises(InputError) as ei:
        parse_uri(text)
    assert phrase in str(ei.value)


def test_malformed_pin_value_is_not_echoed() -> None:
    with pytest.raises(InputError) as ei:
        parse_uri("pkcs11:token=a?pin-value=secret%zz")
    assert "secret" not in str(ei.value) and "%zz" not in str(ei.value)


def test_format_encodes_ids_and_specials() -> None:
    u = Pkcs11Uri(token="My Token;x", id=b"\x01\xab", object="a&b", module_path="/usr/lib/x.so")
    text = format_uri(u)
    assert text == "pkcs11:token=My%20Token%3Bx;object=a%26b;id=%01%AB?module-path=/usr/lib/x.so"
    assert parse_uri(text) == u


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_uris = st.builds(
    Pkcs11Uri,
    token=st.none() | _text,
    manufacturer=st.none() | _text,
    serial=st.none() | _text,
    model=st.none() | _text,
    library_manufacturer=st.none() | _text,
    library_description=st.none() | _text,
    library_version=st.none() | st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True),
    slot_id=st.none() | st.integers(min_value=0, max_value=2**32),
    slot_description=st.none() | _text,
    slot_manufacturer=st.none() | _text,
    object=st.none() | _text,
    id=st.none() | st.binary(max_size=20),
    type=st.none() | st.sampled_from(OBJECT_TYPES),
    pin_value=st.none() | _text.map(Secret),
    pin_source=st.none(),
    module_path=st.none() | _text,
    module_name=st.none() | _text,
)


@given(_uris)
def test_round_trip(u: Pkcs11Uri) -> None:
    assert parse_uri(format_uri(u)) == u


@given(st.text(max_size=60))
def test_parser_only_raises_input_errors(tail: str) -> None:
    try:
        parse_uri("pkcs11:" + tail)
    except InputError:
        pass
