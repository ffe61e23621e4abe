"""Property tests for the parsers and editors that take text from users and files.

- PKCS#11 URIs: any text either parses or raises our ``UriError`` (never another exception, never
  echoing a ``pin-value``), and every parsed URI survives ``format_uri`` -> ``parse_uri``.
- The credentials-file editor: editing a random INI changes only the target keys of the target
  profile; every other byte of the file is kept, and botocore's parser reads the new values.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rolesanywhere_signer.errors import InputError, SignerError

_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# PKCS#11 URIs

pkcs11_uri = pytest.importorskip("rolesanywhere_signer.pkcs11_uri")

_URI_ALPHABET = st.sampled_from(
    [
        *"abcdefgz0189-._~:;=?&%/[]@!$'()*+,# \"<>\\^`{|}é",
        *("token", "object", "id", "type", "slot-id", "pin-value", "pin-source", "module-path", "%4", "%zz", "%C3"),
    ]
)
uri_text = st.lists(_URI_ALPHABET, max_size=30).map("".join)
# argv can carry lone surrogates (undecodable bytes, decoded with surrogateescape)
wild_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)


@_FUZZ
@given(tail=uri_text | wild_text)
@example(tail="object=k%\udcff")
@example(tail="object=\udcff")
def test_pkcs11_uri_parses_or_raises_our_error(tail: str) -> None:
    text = "pkcs11:" + tail
    try:
        uri = pkcs11_uri.parse_uri(text)
    except pkcs11_uri.UriError as e:
        error: InputError = e
    else:
        again = pkcs11_uri.parse_uri(pkcs11_uri.format_uri(uri))
        assert again == uri
        return
    line = error.diagnostics()
    assert "\n" not in line
    line.encode("utf-8")  # printable on any terminal: no lone surrogates in the message


_value = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="!"), max_size=12)


@st.composite
def uris(draw: st.DrawFn) -> object:
    fields: dict[str, object] = {}
    for name in ("token", "manufacturer", "serial", "model", "object", "slot_description"):
        if draw(st.booleans()):
            fields[name] = draw(_value)
    if draw(st.booleans()):
        fields["id"] = draw(st.binary(max_size=8))
    if draw(st.booleans()):
        fields["slot_id"] = draw(st.integers(min_value=0, max_value=2**32))
    if draw(st.booleans()):
        fields["type"] = draw(st.sampled_from(pkcs11_uri.OBJECT_TYPES))
    if draw(st.booleans()):
        fields["library_version"] = draw(st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3})?\Z"))
    which = draw(st.sampled_from(["none", "value", "source"]))
    if which == "value":
        from rolesanywhere_signer.secret import Secret

        fields["pin_value"] = Secret("PIN!" + draw(_value))  # "!" never appears in other values
    elif which == "source":
        fields["pin_source"] = "file:" + draw(_value)
    if draw(st.booleans()):
        fields["module_path"] = "/usr/lib/" + draw(_value)
    return pkcs11_uri.Pkcs11Uri(**fields)


@_FUZZ
@given(uri=uris())
def test_pkcs11_uri_round_trip(uri: object) -> None:
    text = pkcs11_uri.format_uri(uri)
    assert pkcs11_uri.parse_uri(text) == uri
    assert pkcs11_uri.format_uri(pkcs11_uri.parse_uri(text)) == text
    # str() is for messages: it never carries the PIN
    pin = getattr(uri, "pin_value", None)
    if pin is not None:
        assert pin.reveal() not in str(uri)
        assert pin.reveal() not in repr(uri)


@_FUZZ
@given(pin=st.from_regex(r"\APIN[0-9a-f]{10}\Z"), bad=st.sampled_from(["%", "%g1", " ", "#", "<", "%zz"]))
def test_pkcs11_uri_errors_never_echo_the_pin(pin: str, bad: str) -> None:
    with pytest.raises(SignerError) as info:
        pkcs11_uri.parse_uri(f"pkcs11:object=k?pin-value={pin}{bad}")
    assert pin not in info.value.diagnostics()
    assert pin not in repr(info.value)


# ---------------------------------------------------------------------------------------------
# the credentials-file editor

credfile = pytest.importorskip("rolesanywhere_signer.credfile")

_KEYS = ["aws_access_key_id", "aws_secret_access_key", "aws_session_token"]
_OTHER_KEYS = ["region", "output", "aws_access_key_id_backup", "x_aws_session_token", "role_arn", "source_profile"]
_name = st.text(alphabet="abcdefgh-_.0123456789 @", min_size=1, max_size=10).filter(lambda n: n == n.strip())
_val = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16).filter(
    lambda v: not v.startswith(("#", ";", "[")) and "%" not in v
)
_comment = st.sampled_from(["# a comment", "; another", "#", "   # indented comment"])


@st.composite
def ini_files(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A credentials file configparser accepts: unique sections, unique keys, comments, blanks."""
    names = draw(st.lists(_name, max_size=5, unique=True))
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append(draw(_comment))
    for name in names:
        # an indented header after a setting is a continuation line to configparser: not generated
        lines.append(f"[{name}]")
        keys = draw(st.lists(st.sampled_from(_KEYS + _OTHER_KEYS), max_size=6, unique=True))
        for k in keys:
            sep = draw(st.sampled_from([" = ", "=", " =", ": ", " : "]))
            shown = k.upper() if draw(st.integers(0, 6)) == 0 else k
            lines.append(f"{shown}{sep}{draw(_val)}")
            if draw(st.integers(0, 3)) == 0:
                lines.append(draw(_comment))
            if draw(st.integers(0, 5)) == 0:  # a multi-line value: indented continuation
                lines.append(f"    {draw(_val)}")
        if draw(st.booleans()):
            lines.append("")
    text = nl.join(lines)
    if len(lines) > 0 and draw(st.booleans()):
        text += nl
    return text.encode(), names


def _sections(data: bytes) -> dict[str, dict[str, str]]:
    cp = configparser.RawConfigParser()  # what botocore uses to read ~/.aws/credentials
    cp.read_string(data.decode())
    return {s: dict(cp.items(s)) for s in cp.sections()}


def _without_section(data: bytes, name: str) -> bytes:
    """The file with section ``name`` (header to next header) cut out."""
    lines = re.findall(rb"[^\n]*\n|[^\n]+$", data)
    out: list[bytes] = []
    skipping = False
    for ln in lines:
        m = re.match(rb"^\s*\[([^\]\r\n]*)\]", ln)
        if m:
            skipping = m.group(1) == name.encode()
        if not skipping:
            out.append(ln)
    return b"".join(out)


_TARGET_KEY_LINE = re.compile(rb"^\s*(aws_access_key_id|aws_secret_access_key|aws_session_token)\s*[=:]", re.I)


def _other_lines(data: bytes, name: str) -> list[bytes]:
    """Non-blank lines of section ``name`` other than target keys and their continuation lines."""
    out: list[bytes] = []
    inside = False
    value_indent: int | None = None  # set while inside a target key's (possibly multi-line) value
    for ln in data.splitlines():
        m = re.match(rb"^\s*\[([^\]\r\n]*)\]", ln)
        if m:
            inside, value_indent = m.group(1) == name.encode(), None
            continue
        if not inside or not ln.strip():
            continue
        indent = len(ln) - len(ln.lstrip())
        if ln.lstrip().startswith((b"#", b";")):
            out.append(ln)
        elif value_indent is not None and indent > value_indent:
            continue  # continues the old value of a target key
        elif _TARGET_KEY_LINE.match(ln):
            value_indent = indent
        else:
            value_indent = None
            out.append(ln)
    return out


@_FUZZ
@example(
    ini=(b"[p]\naws_session_token = old\n   # indented comment\nregion = x\n", ["p"]),
    pick=0,
    new_name="p",
    values=("A", "S", "T"),
)
@example(
    ini=(b"[p]\r\naws_session_token = old\r\n\r\n  more\r\n # c\r\n  more2\r\n[q]\r\nk = v", ["p", "q"]),
    pick=0,
    new_name="p",
    values=("A", "S", "T"),
)
@given(
    ini=ini_files(),
    pick=st.integers(min_value=0, max_value=10),
    new_name=_name,
    values=st.tuples(_val, _val, _val),
)
def test_credentials_editor_changes_only_the_target_keys(
    ini: tuple[bytes, list[str]], pick: int, new_name: str, values: tuple[str, str, str]
) -> None:
    data, names = ini
    profile = names[pick] if names and pick < len(names) else new_name
    assume(profile == profile.strip())
    wanted = dict(zip(_KEYS, values, strict=True))
    before = _sections(data)
    after_bytes = credfile.update_profile(data, profile, wanted)
    after = _sections(after_bytes)
    # the target profile now has the new values and kept its other keys
    assert {k: after[profile][k] for k in _KEYS} == wanted
    assert {k: v for k, v in after[profile].items() if k not in _KEYS} == {
        k: v for k, v in before.get(profile, {}).items() if k not in _KEYS
    }
    # every other profile is unchanged, and so is every byte outside the target section
    assert {s: v for s, v in after.items() if s != profile} == {s: v for s, v in before.items() if s != profile}
    if profile in before:
        assert _without_section(after_bytes, profile) == _without_section(data, profile)
        # inside the target section, every line that is not a target key survives, in order
        assert _other_lines(after_bytes, profile) == _other_lines(data, profile)
    else:
        assert after_bytes.startswith(data)
    # line endings are kept: a CRLF file gets no bare LF
    if b"\r\n" in data:
        assert re.search(rb"(?<!\r)\n", after_bytes) is None
    # editing again with the same values is a no-op
    assert credfile.update_profile(after_bytes, profile, wanted) == after_bytes


# ---------------------------------------------------------------------------------------------
# TSS2 PRIVATE KEY files

tss2 = pytest.importorskip("rolesanywhere_signer.tss2")


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


@st.composite
def tss2_keys(draw: st.DrawFn) -> object:
    return tss2.Tss2Key(
        public=_tpm2b(draw(st.binary(max_size=300))),
        private=_tpm2b(draw(st.binary(max_size=200))),
        parent=draw(st.sampled_from([tss2.RH_OWNER, 0x81000001]) | st.integers(0, 0xFFFFFFFF)),
        empty_auth=draw(st.booleans()),
        rsa_parent=draw(st.booleans()),
        description=draw(st.none() | st.text(max_size=40)),
    )


@_FUZZ
@given(key=tss2_keys())
def test_tss2_round_trip(key: object) -> None:
    assert tss2.decode_der(tss2.encode_der(key), "k.tss2") == key
    assert tss2.parse_pem(tss2.to_pem(key), "k.tss2") == key
    assert "private=" not in repr(key)  # the wrapped private area stays out of logs too


@_FUZZ
@given(
    key=tss2_keys(),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, 10_000),
)
def test_tss2_damaged_files_raise_only_our_errors(key: object, edits: list[tuple[int, int]], cut: int | None) -> None:
    der = bytearray(tss2.encode_der(key))
    for pos, value in edits:
        der[pos % len(der)] = value
    data = bytes(der if cut is None else der[: cut % (len(der) + 1)])
    attempts: tuple[Callable[[], object], ...] = (
        lambda: tss2.decode_der(data, "k.tss2"),
        lambda: tss2.parse_pem(_pem(data), "k.tss2"),
    )
    for attempt in attempts:
        try:
            attempt()
        except SignerError as e:
            message = e.diagnostics()
        else:
            continue
        assert "\n" not in message


@_FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_tss2_random_input_raises_only_our_errors(data: bytes) -> None:
    for blob in (data, _pem(data), b"-----BEGIN TSS2 PRIVATE KEY-----\n" + data):
        try:
            tss2.parse_pem(blob, "k.tss2")
        except SignerError:
            pass
    try:
        tss2.decode_der(data, "k.tss2")
    except SignerError:
        pass


def _pem(der: bytes) -> bytes:
    import base64

    return b"-----BEGIN TSS2 PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END TSS2 PRIVATE KEY-----\n"
