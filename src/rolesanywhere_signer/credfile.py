"""Writing ``~/.aws/credentials`` without ever losing a byte that is not ours.

Only ``aws_access_key_id``, ``aws_secret_access_key`` and ``aws_session_token`` of one profile
change; comments, other profiles, other keys, ordering, CRLF line ends and a missing final newline
all survive. The new file is written next to the old one, fsynced and renamed over it, under an
advisory lock, so a crash, a full disk or a second updater never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .credentials import Credentials
from .errors import InputError, UsageError

log = logging.getLogger("rolesanywhere_signer.credfile")

KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SECTION = re.compile(rb"^\s*\[([^\]\r\n]*)\]")
_KEY = re.compile(rb"^(\s*)([A-Za-z0-9_.-]+)(\s*[=:]\s*)")
_PROFILE_BAD = re.compile(r"[\[\]\r\n\x00]")
LOCK_TIMEOUT = 30.0


def check_profile_name(name: str) -> str:
    """A profile name that can stand as ``[name]`` in the credentials file."""
    if not name or name != name.strip() or _PROFILE_BAD.search(name) or name.startswith(("#", ";")):
        raise UsageError(
            f"--profile {name!r} is not a usable profile name",
            hint="use a name without brackets, line breaks or surrounding spaces",
        )
    return name


def credentials_path(env: Mapping[str, str] | None = None) -> str:
    """``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials`` (as botocore resolves it)."""
    env = os.environ if env is None else env
    return os.path.expanduser(env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join("~", ".aws", "credentials"))


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


@dataclass(frozen=True)
class Target:
    """The file really written (a symlink's target) and its directory."""

    path: str
    directory: str


def resolve_target(path: str) -> Target:
    real = os.path.realpath(path)  # follow a symlinked credentials file (dotfile managers do this)
    return Target(real, os.path.dirname(real) or ".")


def prepare_directory(directory: str) -> None:
    """Create the directory 0700 when missing; refuse one we cannot write into."""
    if os.path.isdir(directory):
        if not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"cannot write to directory {directory}", hint="check its owner and permissions")
        return
    parent = os.path.dirname(directory.rstrip("/")) or "."
    if parent != directory:
        prepare_directory(parent)
    try:
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        if not os.path.isdir(directory):
            raise InputError(f"{directory} exists and is not a directory") from None
    except OSError as e:
        raise InputError(f"cannot create directory {directory}: {e.strerror or type(e).__name__}") from None


@contextlib.contextmanager
def locked(target: Target, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An advisory lock on a lock file beside the credentials file (never deleted: no races)."""
    import fcntl

    lock_path = os.path.join(target.directory, "." + os.path.basename(target.path) + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InputError(
            f"cannot create lock file {lock_path}: {e.strerror or type(e).__name__}",
            hint="check that the credentials directory is writable",
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(
                        f"another process holds the lock {lock_path} for more than {timeout:g}s",
                        hint="is another update running for this file?",
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_existing(path: str) -> tuple[bytes, os.stat_result | None]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"credentials file {path} is not a regular file")
            return f.read(), st
    except FileNotFoundError:
        return b"", None
    except IsADirectoryError:
        raise InputError(f"credentials file {path} is a directory") from None
    except OSError as e:
        raise InputError(f"cannot read credentials file {path}: {e.strerror or type(e).__name__}") from None


def write_atomic(target: Target, data: bytes, *, owner: os.stat_result | None = None) -> None:
    """Write ``data`` to a 0600 temporary file in the same directory, fsync, rename over the target.

    On any failure the temporary file is removed and the old file is untouched.
    """
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target.path) + ".", suffix=".tmp", dir=target.directory)
    try:
        try:
            os.fchmod(fd, 0o600)
            if owner is not None and os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
                os.fchown(fd, owner.st_uid, owner.st_gid)  # root updating a user's file keeps it theirs
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target.path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else e.strerror
        raise InputError(
            f"cannot write {target.path}: {reason or type(e).__name__}; the previous file was left intact"
        ) from None
    _fsync_dir(target.directory)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(dfd)


def write_credentials(path: str, profile: str, creds: Credentials) -> str:
    """Set ``profile``'s three keys in the credentials file at ``path``; return the file written."""
    target = resolve_target(path)
    prepare_directory(target.directory)
    with locked(target):
        old, st = _read_existing(target.path)
        if st is not None and st.st_mode & 0o077:
            log.warning(
                "credentials file %s was readable by others (mode %o); it is now 0600",
                target.path,
                stat.S_IMODE(st.st_mode),
            )
        write_atomic(target, update_profile(old, profile, credential_values(creds)), owner=st)
    return target.path


def write_private_file(path: str, data: bytes) -> None:
    """Write a small secret file (e.g. a token) atomically with mode 0600."""
    target = resolve_target(path)
    prepare_directory(target.directory)
    write_atomic(target, data)
