"""Where certificate and key bytes come from: a file path, ``env:NAME`` or ``-`` (standard input).

CI systems keep the certificate and key in variables, not files. ``env:NAME`` reads PEM text from
the environment variable NAME; ``-`` reads one PEM bundle (combo) or PKCS#12 bundle from standard
input, read once per process however many flags name it. Real paths go to ``files.read_input_file``,
which owns the checks on files. The bytes read here are key material: messages name the source
(``env:NAME``, ``standard input``), never the value.
"""

from __future__ import annotations

import os
import re

from .errors import InputError
from .files import MAX_INPUT_BYTES, read_input_file

STDIN = "-"
ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_stdin_data: bytes | None = None


def is_env(source: str | None) -> bool:
    return bool(source) and str(source).startswith(ENV_PREFIX)


def is_stdin(source: str | None) -> bool:
    return source == STDIN


def is_inline(source: str | None) -> bool:
    """True for inputs that are not files (``env:NAME``, ``-``)."""
    return is_env(source) or is_stdin(source)


def label(source: str) -> str:
    """A printable name of the source (never its content)."""
    return "standard input" if is_stdin(source) else source


def read_input(source: str, what: str, *, flag: str | None = None, secret: bool = False) -> bytes:
    """The bytes of a certificate/key/bundle input named by a flag value."""
    if is_env(source):
        return _read_env(source[len(ENV_PREFIX) :], what, flag)
    if is_stdin(source):
        return _read_stdin(what, flag)
    return read_input_file(source, what, secret=secret)  # secret: warn when group/others can read it


def _read_env(name: str, what: str, flag: str | None) -> bytes:
    by = f" (from {flag} env:{name})" if flag else ""
    if not _ENV_NAME.fullmatch(name):
        raise InputError(
            f"{what}: {name!r} is not an environment variable name{by}", hint="use env:NAME with letters, digits and _"
        )
    value = os.environ.get(name)
    if value is None:
        raise InputError(f"environment variable {name} is not set{by}", hint=f"export {name} with the PEM text")
    if not value.strip():
        raise InputError(f"environment variable {name} is empty{by}", hint=f"put the PEM text of the {what} in it")
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"environment variable {name} is too large for a {what} (more than {MAX_INPUT_BYTES} bytes)")
    # CI secret stores often flatten line breaks to a literal backslash-n
    if b"\n" not in data.strip() and b"\\n" in data:
        data = data.replace(b"\\n", b"\n")
    return data


def _read_stdin(what: str, flag: str | None) -> bytes:
    global _stdin_data
    if _stdin_data is not None:
        return _stdin_data
    by = f" ({flag} -)" if flag else ""
    try:
        tty = os.isatty(0)
    except OSError:
        tty = False
    if tty:
        raise InputError(
            f"the {what} is to be read from standard input{by}, but standard input is a terminal",
            hint="pipe the PEM or PKCS#12 bundle in, e.g. printf '%s' \"$BUNDLE\" | rolesanywhere-signer …",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_INPUT_BYTES:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise InputError(f"cannot read the {what} from standard input: {e.strerror or type(e).__name__}") from None
    data = b"".join(chunks)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"standard input is too large for a {what} (more than {MAX_INPUT_BYTES} bytes)")
    if not data.strip():
        raise InputError(f"standard input is empty{by}", hint=f"pipe the {what} in")
    _stdin_data = data
    return data
