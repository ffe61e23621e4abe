"""PKCS#11 URIs (RFC 7512): an exact parser and a formatter that round-trips.

Parsing is strict on purpose: a typo in an attribute name would otherwise widen the search
to every object on the token. Unknown or repeated attributes, ``pin-value`` together with
``pin-source``, characters that must be percent-encoded, and broken ``%XX`` escapes are
refused with a message that names the offending part (``pin-value`` is never echoed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InputError
from .secret import Secret

SCHEME = "pkcs11:"

# RFC 7512 §2.3: characters allowed unescaped in path and query attribute values
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PATH_SAFE = frozenset(_UNRESERVED + ":[]@!$'()*+,=&")
_QUERY_SAFE = frozenset(_UNRESERVED + ":[]@!$'()*+,=/?|")
# what the formatter leaves bare: a conservative subset that no reader misparses
_FORMAT_SAFE = frozenset(_UNRESERVED + ":@!$'()*+,")

OBJECT_TYPES = ("public", "private", "cert", "secret-key", "data")
_LIB_VERSION = re.compile(r"[0-9]+(\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")

#: URI attribute name -> dataclass field, path part then query part
PATH_ATTRS: dict[str, str] = {
    "token": "token",
    "manufacturer": "manufacturer",
    "serial": "serial",
    "model": "model",
    "library-manufacturer": "library_manufacturer",
    "library-description": "library_description",
    "library-version": "library_version",
    "slot-id": "slot_id",
    "slot-description": "slot_description",
    "slot-manufacturer": "slot_manufacturer",
    "object": "object",
    "id": "id",
    "type": "type",
}
QUERY_ATTRS: dict[str, str] = {
    "pin-value": "pin_value",
    "pin-source": "pin_source",
    "module-path": "module_path",
    "module-name": "module_name",
}


class UriError(InputError):
    """A ``pkcs11:`` URI that cannot be parsed."""


@dataclass(frozen=True)
class Pkcs11Uri:
    """The attributes of one PKCS#11 URI; ``None`` means "not given" (matches anything)."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    library_manufacturer: str | None = None
    library_description: str | None = None
    library_version: str | None = None
    slot_id: int | None = None
    slot_description: str | None = None
    slot_manufacturer: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    pin_value: Secret | None = field(default=None, repr=False)
    pin_source: str | None = None
    module_path: str | None = None
    module_name: str | None = None

    def __post_init__(self) -> None:
        if self.pin_value is not None and self.pin_source is not None:
            raise UriError(
                "PKCS#11 URI has both pin-value and pin-source",
                hint="keep one: pin-source=file:/path is safer than pin-value",
            )
        if self.type is not None and self.type not in OBJECT_TYPES:
            raise UriError(f"PKCS#11 URI type={self.type!r} is not one of {', '.join(OBJECT_TYPES)}")
        if self.library_version is not None and not _LIB_VERSION.fullmatch(self.library_version):
            raise UriError(f"PKCS#11 URI library-version={self.library_version!r} is not N or N.M")
        if self.slot_id is not None and self.slot_id < 0:
            raise UriError("PKCS#11 URI slot-id must be a non-negative integer")

    def replace(self, **changes: Any) -> Pkcs11Uri:
        from dataclasses import replace

        return replace(self, **changes)

    def without_secrets(self) -> Pkcs11Uri:
        return self.replace(pin_value=None)

    def __str__(self) -> str:
        """For messages: the path only (no PIN, no file paths, no module)."""
        return format_uri(self.replace(pin_value=None, pin_source=None, module_path=None, module_name=None))


def _decode(raw: str, attr: str, safe: frozenset[str]) -> bytes:
    """Exact percent-decoding: every ``%`` starts two hex digits; other characters must be allowed."""
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                shown = "" if attr == "pin-value" else f": {raw[i : i + 3]!r}"
                raise UriError(
                    f"PKCS#11 URI attribute {attr} has a malformed percent-encoding{shown}",
                    hint="every % must be followed by two hex digits; write a literal % as %25",
                )
            out.append(int(pair, 16))
            i += 3
            continue
        if ch not in safe:
            shown = "a character" if attr == "pin-value" else repr(ch)
            raise UriError(
                f"PKCS#11 URI attribute {attr} contains {shown} that must be percent-encoded",
                hint=f"write it as {''.join(f'%{b:02X}' for b in _raw_bytes(ch))}" if attr != "pin-value" else None,
            )
        out += ch.encode()
        i += 1
    return bytes(out)


def _raw_bytes(ch: str) -> bytes:
    """The bytes a character stands for; an undecodable argv byte arrives as a lone surrogate."""
    return ch.encode("utf-8", "surrogateescape" if "\udc80" <= ch <= "\udcff" else "surrogatepass")


def _text(value: bytes, attr: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UriError(f"PKCS#11 URI attribute {attr} is not valid UTF-8 after percent-decoding") from None


def _split(part: str, sep: str, safe: frozenset[str], known: dict[str, str], where: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    if not part:
        return found
    for item in part.split(sep):
        name, eq, raw = item.partition("=")
        if not eq:
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise UriError(f"PKCS#11 URI {where} element {shown!r} is not name=value")
        if name not in known:
            other = QUERY_ATTRS if known is PATH_ATTRS else PATH_ATTRS
            hint = (
                f"{name} belongs in the {'query (after ?)' if known is PATH_ATTRS else 'path (before ?)'}"
                if name in other
                else f"known {where} attributes: {', '.join(known)}"
            )
            raise UriError(f"PKCS#11 URI has an unknown {where} attribute {name!r}", hint=hint)
        if name in found:
            raise UriError(f"PKCS#11 URI repeats the attribute {name}", hint="give each attribute once")
        found[name] = _decode(raw, name, safe)
    return found


def parse_uri(text: str) -> Pkcs11Uri:
    """Parse a ``pkcs11:`` URI, refusing anything RFC 7512 (or our attribute set) does not allow."""
    if not text.lower().startswith(SCHEME):
        raise UriError("a PKCS#11 URI must start with 'pkcs11:'")
    rest = text[len(SCHEME) :]
    if "#" in rest:
        raise UriError("PKCS#11 URI contains '#', which must be percent-encoded as %23")
    path, q, query = rest.partition("?")
    if q and not query:
        raise UriError("PKCS#11 URI has an empty query after '?'", hint="remove the trailing '?'")
    values: dict[str, object] = {}
    for name, raw in _split(path, ";", _PATH_SAFE, PATH_ATTRS, "path").items():
        if name == "id":
            values["id"] = raw
        elif name == "slot-id":
            s = _text(raw, name)
            if not _DIGITS.fullmatch(s):
                raise UriError(f"PKCS#11 URI slot-id={s!r} is not a decimal number")
            values["slot_id"] = int(s)
        else:
            values[PATH_ATTRS[name]] = _text(raw, name)
    for name, raw in _split(query, "&", _QUERY_SAFE, QUERY_ATTRS, "query").items():
        if name == "pin-value":
            values["pin_value"] = Secret(_text(raw, name))
        else:
            values[QUERY_ATTRS[name]] = _text(raw, name)
    return Pkcs11Uri(**values)  # type: ignore[arg-type]


def _encode(value: bytes, *, all_bytes: bool = False) -> str:
    return "".join(chr(b) if not all_bytes and chr(b) in _FORMAT_SAFE else f"%{b:02X}" for b in value)


def format_uri(uri: Pkcs11Uri) -> str:
    """The URI text; ``parse_uri(format_uri(u)) == u``. ``id`` is always fully percent-encoded."""
    path: list[str] = []
    query: list[str] = []
    by_field = {f.name: f for f in fields(uri)}
    for name, fname in PATH_ATTRS.items():
        value = getattr(uri, by_field[fname].name)
        if value is None:
            continue
        if isinstance(value, bytes):
            path.append(f"{name}={_encode(value, all_bytes=True)}")
        else:
            path.append(f"{name}={_encode(str(value).encode())}")
    for name, fname in QUERY_ATTRS.items():
        value = getattr(uri, fname)
        if value is None:
            continue
        text = value.reveal() if isinstance(value, Secret) else str(value)
        # '/' stays bare in the query (module-path=/usr/lib/...), as RFC 7512 allows
        query.append(f"{name}={''.join(c if c == '/' else _encode(c.encode()) for c in text)}")
    out = SCHEME + ";".join(path)
    if query:
        out += "?" + "&".join(query)
    return out


def is_pkcs11_uri(value: str | None) -> bool:
    return bool(value) and str(value).lower().startswith(SCHEME)
