"""Writing ``~/.aws/credentials`` without ever losing a byte that is not ours.

Only ``aws_access_key_id``, ``aws_secret_access_key`` and ``aws_session_token`` of one profile
change; comments, other profiles, other keys, ordering, CRLF line ends and a missing final newline
all survive. The new file is written next to the old one, fsynced and renamed over it, under an
advisory lock, so a crash, a full disk or a second updater never leaves a half-written file.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping

from . import files
from .credentials import Credentials
from .errors import EndpointError, InputError, UsageError
from .files import Owner, locked, open_input, prepare_target, read_fd, sweep_temps, write_atomic

log = logging.getLogger("rolesanywhere_signer.credfile")

KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SECTION = re.compile(rb"^\s*\[([^\]\r\n]*)\]")
_KEY = re.compile(rb"^(\s*)([A-Za-z0-9_.-]+)(\s*[=:]\s*)")
_PROFILE_BAD = re.compile(r"[\[\]\r\n\x00]")
LOCK_TIMEOUT = 30.0
MAX_CREDENTIALS_FILE = 4 * 1024 * 1024


def check_profile_name(name: str) -> str:
    """A profile name that can stand as ``[name]`` in the credentials file."""
    if not name or name != name.strip() or _PROFILE_BAD.search(name) or name.startswith(("#", ";")):
        raise UsageError(
            f"--profile {name!r} is not a usable profile name",
            hint="use a name without brackets, line breaks or surrounding spaces",
        )
    return name


def credentials_path(env: Mapping[str, str] | None = None, *, home: str | None = None) -> str:
    """``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials`` (as botocore resolves it).

    ``home``: the home directory of the user the file is written for (``update --as-user``).
    """
    env = os.environ if env is None else env
    named = env.get("AWS_SHARED_CREDENTIALS_FILE")
    if named:
        return os.path.expanduser(named)
    return os.path.join(home or os.path.expanduser("~"), ".aws", "credentials")


def _lines(data: bytes) -> list[bytes]:
    """Split keeping each line's own ending (``\\n`` or ``\\r\\n``); the last may have none."""
    return re.findall(rb"[^\n]*\n|[^\n]+$", data)


def _ending(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n" if line.endswith(b"\n") else b""


def update_profile(data: bytes, profile: str, values: Mapping[str, str]) -> bytes:
    """Return ``data`` with ``values`` set in section ``[profile]``; every other byte kept.

    Keys are matched exactly (case-insensitively, as botocore's parser lowercases them), so
    ``aws_access_key_id_backup`` is left alone. Missing keys go after the section's last setting;
    a missing section is appended.
    """
    nl = b"\r\n" if b"\r\n" in data else b"\n"
    wanted = {k.lower(): v.encode() for k, v in values.items()}
    lines = _lines(data)
    target = profile.encode()
    start = end = None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m is None:
            continue
        if start is not None:
            end = i
            break
        if m.group(1) == target:  # exactly as configparser (and so botocore) reads the name
            start = i
    if start is None:
        return _append_section(data, nl, target, wanted)
    if end is None:
        end = len(lines)
    out = lines[: start + 1]
    done: set[str] = set()
    last_setting = len(out)  # index in ``out`` after which missing keys go
    i = start + 1
    while i < end:
        line = lines[i]
        m = _KEY.match(line)
        key = m.group(2).decode().lower() if m else None
        if m and key in wanted:
            # lines indented deeper than the key continue its old value, as configparser reads
            # them, even across blank lines and comments; the comments are not ours and are kept
            indent = len(line) - len(line.lstrip())
            j = k = i + 1
            while k < end:
                nxt = lines[k]
                if not nxt.strip() or nxt.lstrip().startswith((b"#", b";")):
                    k += 1
                elif len(nxt) - len(nxt.lstrip()) > indent:
                    k = j = k + 1
                else:
                    break
            kept = [ln for ln in lines[i + 1 : j] if ln.lstrip().startswith((b"#", b";"))]
            if kept:
                kept[-1] = kept[-1].rstrip(b"\r\n") + _ending(lines[j - 1])
            if key not in done:
                out.append(line[: m.end()] + wanted[key] + (_ending(line) if kept else _ending(lines[j - 1])))
                done.add(key)
                last_setting = len(out)
            out.extend(kept)
            i = j
            continue
        out.append(line)
        if line.strip() and not line.lstrip().startswith((b"#", b";")):
            last_setting = len(out)
        i += 1
    missing = [k for k in wanted if k not in done]
    if missing:
        before = out[last_setting - 1]
        ending = _ending(before)
        if not ending:  # the section's last line ends the file without a newline: keep it that way
            out[last_setting - 1] = before + nl
        new = [k.encode() + b" = " + wanted[k] + nl for k in missing]
        if not ending:
            new[-1] = new[-1][: -len(nl)]
        out[last_setting:last_setting] = new
    out.extend(lines[end:])
    return b"".join(out)


def _append_section(data: bytes, nl: bytes, profile: bytes, wanted: Mapping[str, bytes]) -> bytes:
    body = [b"[" + profile + b"]", *(k.encode() + b" = " + v for k, v in wanted.items())]
    if not data:
        return nl.join(body) + nl
    final_newline = data.endswith(b"\n")
    prefix = data if final_newline else data + nl
    if prefix.strip() and not prefix.endswith(nl + nl) and not prefix.endswith(b"\n\n"):
        prefix += nl  # a blank line between sections, as people write them
    return prefix + nl.join(body) + (nl if final_newline else b"")


def credential_values(creds: Credentials) -> dict[str, str]:
    return {
        "aws_access_key_id": creds.access_key_id,
        "aws_secret_access_key": creds.secret_access_key,
        "aws_session_token": creds.session_token,
    }


def check_values(values: Mapping[str, str]) -> None:
    """Last line of defence: a value with a line break or control character would inject lines."""
    for key, value in values.items():
        if not value or not value.isprintable() or value != value.strip():
            raise EndpointError(
                "the endpoint returned malformed credentials",
                hint=f"{key} holds spaces or control characters; nothing was written",
            )


def write_credentials(path: str, profile: str, creds: Credentials, *, owner: Owner | None = None) -> str:
    """Set ``profile``'s three keys in the credentials file at ``path``; return the file written.

    The way to the file is checked as ``owner`` (default: ourselves) would trust it (see files.py).
    """
    values = credential_values(creds)
    check_values(values)
    target = prepare_target(path, "credentials file", owner=owner)
    with locked(target, LOCK_TIMEOUT, what="credentials file"):
        sweep_temps(target)
        old, st = _read_existing(target.path)
        if st is not None and st.st_mode & 0o077:
            log.warning(
                "credentials file %s was readable by others (mode %o); it is now 0600",
                target.path,
                stat.S_IMODE(st.st_mode),
            )
        write_atomic(target, update_profile(old, profile, values))
    return target.path


def _read_existing(path: str) -> tuple[bytes, os.stat_result | None]:
    try:
        fd, st = open_input(path, "credentials file", nofollow=True)
    except InputError:
        if not os.path.lexists(path):
            return b"", None
        raise
    try:
        data = read_fd(fd, MAX_CREDENTIALS_FILE)
    except OSError as e:
        raise InputError(f"cannot read credentials file {path}: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIALS_FILE:
        raise InputError(f"credentials file {path} is too large (more than {MAX_CREDENTIALS_FILE} bytes)")
    return data, st


def write_private_file(path: str, data: bytes | bytearray, *, what: str = "file") -> str:
    """Write a small secret file (e.g. a token) atomically with mode 0600."""
    return files.write_private_file(path, data, what=what)
