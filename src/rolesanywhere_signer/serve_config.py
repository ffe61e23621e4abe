"""``serve --config FILE``: named identities in TOML, one ``[identities.NAME]`` table each.

Keys are spelled as the command-line flags are (``private-key``, ``session-duration``, …); keys at
the top level are defaults for every identity. Everything that can be checked without opening a
key or calling the endpoint is checked here, and any problem is one line naming the file, the
table and the key: an invalid file ends ``serve`` before it listens.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, SignerError
from .options import MAX_DURATION, MIN_DURATION, IdentityOptions, RequestOptions

#: key -> Python type of its value (bool before int: a TOML boolean is not a number here)
KEYS: dict[str, type] = {
    "certificate": str,
    "private-key": str,
    "intermediates": str,
    "pkcs11-uri": str,
    "pkcs11-lib": str,
    "reuse-pin": bool,
    "tpm-key-password-file": str,
    "no-tpm-key-password": bool,
    "tcti": str,
    "trust-anchor-arn": str,
    "profile-arn": str,
    "role-arn": str,
    "session-duration": int,
    "role-session-name": str,
    "region": str,
    "endpoint": str,
    "no-verify-ssl": bool,
    "container-token-file": str,
}
#: allowed only inside an identity's table
IDENTITY_ONLY: dict[str, type] = {"default": bool}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TYPE_WORDS = {str: "a non-empty string", bool: "true or false", int: "an integer"}


@dataclass(frozen=True)
class IdentitySpec:
    """One identity to serve, as read from the file (or from the command-line flags)."""

    name: str
    identity: IdentityOptions
    request: RequestOptions
    container_token_file: str | None = None
    default: bool = False
    #: where it came from, for messages: "[identities.web] in serve.toml"
    origin: str = field(default="", compare=False)


def _load_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = f.read(1024 * 1024 + 1)
    except OSError as e:
        raise InputError(
            f"cannot read config file {path}: {e.strerror or type(e).__name__}", hint="check --config"
        ) from None
    if len(data) > 1024 * 1024:
        raise InputError(f"config file {path} is larger than 1 MiB", hint="check --config")
    try:
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"config file {path} is not UTF-8 text", hint="write it as TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file {path} is not valid TOML: {e}", hint="fix the syntax") from None
    return doc


def _bad(path: str, where: str, message: str, hint: str = "fix the config file") -> InputError:
    return InputError(f"config file {path}: {where}{message}", hint=hint)


def _check_values(path: str, where: str, table: dict[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        kind = allowed.get(key)
        if kind is None:
            raise _bad(
                path,
                where,
                f"unknown key {key!r}",
                hint="keys are spelled as the serve flags: " + ", ".join(sorted(allowed)),
            )
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is str and ok and not value.strip():
            ok = False
        if not ok:
            raise _bad(path, where, f"{key} must be {_TYPE_WORDS[kind]}")
        if key == "session-duration" and not MIN_DURATION <= value <= MAX_DURATION:
            raise _bad(
                path, where, f"session-duration {value} is out of range", hint=f"use {MIN_DURATION}..{MAX_DURATION}"
            )
        if key == "endpoint" and not value.lower().startswith(("http://", "https://")):
            raise _bad(path, where, f"endpoint {value!r} is not an http or https URL")
        out[key] = value
    return out


def _spec(path: str, name: str, values: dict[str, Any]) -> IdentitySpec:
    where = f"[identities.{name}] "
    for key in ("trust-anchor-arn", "profile-arn", "role-arn"):
        if key not in values:
            raise _bad(path, where, f"{key} is missing", hint="set it in the table or at the top level")
    if "certificate" not in values and "pkcs11-uri" not in values:
        raise _bad(path, where, "certificate is missing", hint="set certificate (and private-key) or pkcs11-uri")
    identity = IdentityOptions(
        certificate=values.get("certificate"),
        private_key=values.get("private-key"),
        intermediates=values.get("intermediates"),
        pkcs11_uri=values.get("pkcs11-uri"),
        pkcs11_lib=values.get("pkcs11-lib"),
        reuse_pin=values.get("reuse-pin", False),
        tpm_key_password_file=values.get("tpm-key-password-file"),
        no_tpm_key_password=values.get("no-tpm-key-password", False),
        tcti=values.get("tcti"),
    )
    request = RequestOptions(
        trust_anchor_arn=values["trust-anchor-arn"],
        profile_arn=values["profile-arn"],
        role_arn=values["role-arn"],
        session_duration=values.get("session-duration", 3600),
        role_session_name=values.get("role-session-name"),
        region=values.get("region"),
        endpoint=values.get("endpoint"),
        verify=not values.get("no-verify-ssl", False),
    )
    from .arn import validate_request

    try:
        validate_request(request)
    except SignerError as e:
        message = e.message  # the flag names of the message are the file's keys without "--"
        for key in ("trust-anchor-arn", "profile-arn", "role-arn", "region", "role-session-name"):
            message = message.replace(f"--{key}", key)
        raise _bad(path, where, message, hint=e.hint or "fix the config file") from None
    return IdentitySpec(
        name=name,
        identity=identity,
        request=request,
        container_token_file=values.get("container-token-file"),
        default=values.get("default", False),
        origin=f"{where.strip()} in {path}",
    )


def load_config(path: str) -> list[IdentitySpec]:
    """The identities of a config file, checked; raises ``InputError`` (one line) on any problem."""
    doc = _load_toml(path)
    tables = doc.pop("identities", None)
    defaults = _check_values(path, "", doc, KEYS)
    if not isinstance(tables, dict) or not tables:
        raise _bad(path, "", "no [identities.NAME] table", hint="add one table per identity")
    specs: list[IdentitySpec] = []
    for name, table in tables.items():
        if not NAME_RE.fullmatch(name):
            raise _bad(
                path,
                "",
                f"identity name {name!r} is not usable in a URL path",
                hint="use letters, digits, '-', '_', '.'",
            )
        if not isinstance(table, dict):
            raise _bad(path, f"[identities.{name}] ", "must be a table")
        values = {**defaults, **_check_values(path, f"[identities.{name}] ", table, {**KEYS, **IDENTITY_ONLY})}
        specs.append(_spec(path, name, values))
    defaults_marked = [s.name for s in specs if s.default]
    if len(defaults_marked) > 1:
        raise _bad(path, "", f"more than one identity has default = true ({', '.join(defaults_marked)})")
    if len(specs) == 1 and not specs[0].default:
        only = specs[0]
        specs = [IdentitySpec(only.name, only.identity, only.request, only.container_token_file, True, only.origin)]
    token_files = [s.container_token_file for s in specs if s.container_token_file]
    for f in token_files:
        if token_files.count(f) > 1:
            raise _bad(path, "", f"container-token-file {f} is used by two identities", hint="give each its own")
    return specs
