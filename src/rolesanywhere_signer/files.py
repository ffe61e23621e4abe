"""Safe file I/O against hostile local users: every read of a user-named file, every write we make.

Reads: every input is opened non-blocking (a FIFO or a device cannot hang us), must be a regular
file (or, for PINs and passwords, a character device such as ``/dev/tty``), is bounded, and a key,
PIN or password file readable by group or others draws a warning that names the ``chmod`` fixing
it. Symlinks in input paths are followed: ``/etc/pki`` setups rely on them.

Writes follow OpenSSH's StrictModes: every directory on the way to the file must be owned by root
or by the file's user and not writable by group or others (a sticky ancestor such as ``/tmp`` is
allowed; the directory written into never), and a symlink is followed only when root or that user
owns it, since nobody else could have planted it. The new content goes to an ``O_EXCL`` temporary
file (removed on every exit, SIGTERM and SIGINT included; a stale one left by ``kill -9`` is swept
on the next write, under the lock) and is renamed over the target. Lock files are opened with
``O_NOFOLLOW`` and mode 0600, then ``fstat``-checked for owner and type. Files are never chowned to
anyone but the user they are written for, and only when root names that user (``update --as-user``).

Only ``os``/``stat``/``errno`` at import: ``credential-process`` reads its inputs through here.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import InputError
from .logs import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

log = get_logger("rolesanywhere_signer.files")

#: certificates, keys and bundles are small; anything larger is a wrong path
MAX_INPUT_BYTES = 1024 * 1024
#: symlinks followed while resolving one path, as the kernel's limit
MAX_SYMLINKS = 40

# ---- reads ---------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def open_input(
    path: str, what: str, *, allow_chardev: bool = False, nofollow: bool = False
) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without blocking and check its type; return the fd and its stat.

    ``O_NONBLOCK`` makes opening a FIFO with no writer (or a device that waits for carrier) return
    at once; the type check then refuses it, and the flag is cleared again for ordinary reads.
    """
    if not path:
        raise InputError(f"{what} path is empty")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{what} {path} is not readable by this user", hint="check its permissions") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{what} {path} is a symlink loop" + (" or a symlink" if nofollow else "")) from None
        if e.errno == errno.ENXIO:  # a UNIX socket
            raise InputError(f"{what} {path} is a socket, not a regular file") from None
        raise InputError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {path} is a directory, not a file")
        if not (stat.S_ISREG(st.st_mode) or (allow_chardev and stat.S_ISCHR(st.st_mode))):
            raise InputError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file", hint="name a file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes (so a caller can tell "too large")."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def warn_if_exposed(path: str, what: str, mode: int | None = None) -> None:
    """Warn when a secret-bearing file (key, PIN, password) is readable by group or others."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
    if stat.S_ISREG(mode) and mode & 0o044:
        log.warning(
            "%s %s is readable by %s (mode %04o); fix it with: chmod go-rwx %s",
            what,
            path,
            "group and others" if mode & 0o044 == 0o044 else ("others" if mode & 0o004 else "group"),
            stat.S_IMODE(mode),
            path,
        )


def read_input_file(
    path: str,
    what: str,
    *,
    limit: int = MAX_INPUT_BYTES,
    secret: bool = False,
    allow_chardev: bool = False,
    allow_empty: bool = False,
) -> bytes:
    """Read a small input file; every failure becomes one clear ``InputError``.

    ``secret``: the file holds a key, PIN or password (warn when group or others can read it).
    """
    fd, st = open_input(path, what, allow_chardev=allow_chardev)
    try:
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise InputError(
                f"{what} {path} is too large ({st.st_size} bytes; at most {limit})",
                hint="check that the path names a certificate or key file",
            )
        try:
            data = read_fd(fd, limit)
        except OSError as e:
            raise InputError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(f"{what} {path} is too large (more than {limit} bytes)")
    if not allow_empty and not data.strip():
        raise InputError(f"{what} {path} is empty")
    if secret:
        warn_if_exposed(path, what, st.st_mode)
    return data


def read_head(path: str, n: int = 4096) -> bytes | None:
    """The first ``n`` bytes of a regular file, or None (for sniffing; the real read reports errors)."""
    try:
        fd, _ = open_input(path, "file")
    except InputError:
        return None
    try:
        return os.read(fd, n)
    except OSError:
        return None
    finally:
        os.close(fd)


# ---- who a file is written for -------------------------------------------------------------------


class Owner:
    """The user a written file belongs to: ourselves, or (root only) a user named explicitly."""

    __slots__ = ("gid", "home", "name", "uid")

    def __init__(self, uid: int, gid: int, name: str, home: str) -> None:
        self.uid, self.gid, self.name, self.home = uid, gid, name, home

    def __repr__(self) -> str:
        return f"Owner({self.name!r}, uid={self.uid})"

    @property
    def trusted(self) -> tuple[int, int]:
        return (0, self.uid)

    @classmethod
    def me(cls) -> Owner:
        uid = os.geteuid()
        return cls(uid, os.getegid(), str(uid), os.path.expanduser("~"))

    @classmethod
    def named(cls, name: str) -> Owner:
        """``--as-user NAME``: only root may write files for another user."""
        import pwd

        try:
            pw = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
        except KeyError:
            raise InputError(f"--as-user {name}: no such user") from None
        if pw.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise InputError(f"--as-user {name}: only root can write files for another user")
        return cls(pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir)


def user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


# ---- StrictModes ---------------------------------------------------------------------------------


def _check_dir(path: str, st: os.stat_result, owner: Owner, *, final: bool, why: str) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{why}: {path} is not a directory")
    if st.st_uid not in owner.trusted:
        raise InputError(
            f"{why}: directory {path} belongs to {user_name(st.st_uid)}, who could replace the file",
            hint=f"use a directory owned by root or {user_name(owner.uid)}",
        )
    if st.st_mode & 0o022 and (final or not st.st_mode & stat.S_ISVTX):
        raise InputError(
            f"{why}: directory {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"run chmod go-w {path}, or use another directory",
        )


def resolve_strict(path: str, owner: Owner, *, why: str, follow_final: bool = True) -> tuple[str, list[str]]:
    """Resolve ``path`` as the kernel would, checking every directory and symlink on the way.

    Returns the real path of the file (which may not exist yet) and the names of directories still
    to be created below the last existing one. With ``follow_final`` false, a symlink as the last
    component is not followed (the rename replaces the link itself). Raises ``InputError`` on any
    component that a user other than root or ``owner`` controls. POSIX ACLs are not consulted.
    """
    # not abspath: it folds "link/.." lexically, while the kernel (and so this walk) goes physically
    pending = [c for c in (path if path.startswith("/") else os.path.join(os.getcwd(), path)).split("/") if c]
    resolved = "/"
    _check_dir("/", os.lstat("/"), owner, final=not pending[:-1], why=why)
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        cand = os.path.join(resolved, name)
        try:
            st = os.lstat(cand)
        except FileNotFoundError:
            return os.path.join(cand, *pending), [name, *pending[:-1]] if pending else []
        except OSError as e:
            raise InputError(f"{why}: cannot inspect {cand}: {e.strerror or type(e).__name__}") from None
        if stat.S_ISLNK(st.st_mode) and (pending or follow_final):
            if st.st_uid not in owner.trusted:
                raise InputError(
                    f"{why}: {cand} is a symlink owned by {user_name(st.st_uid)}; refusing to follow it",
                    hint="remove the link, or point to the real file",
                )
            hops += 1
            if hops > MAX_SYMLINKS:
                raise InputError(f"{why}: {path} is a symlink loop")
            target = os.readlink(cand)
            if target.startswith("/"):
                resolved = "/"
            pending = [c for c in target.split("/") if c] + pending
            continue
        if pending:  # a directory on the way
            _check_dir(cand, st, owner, final=len(pending) == 1, why=why)
        resolved = cand
    return resolved, []


class Target:
    """A file we may write: its real path, checked directory, and the user it belongs to."""

    __slots__ = ("directory", "owner", "path")

    def __init__(self, path: str, directory: str, owner: Owner) -> None:
        self.path, self.directory, self.owner = path, directory, owner

    def __repr__(self) -> str:
        return f"Target({self.path!r}, owner={self.owner!r})"

    def sibling(self, suffix: str) -> str:
        return os.path.join(self.directory, "." + os.path.basename(self.path) + suffix)


def prepare_target(
    path: str, what: str, *, owner: Owner | None = None, create_dirs: bool = True, follow: bool = True
) -> Target:
    """Check (and create, 0700) the way to ``path``; refuse what another user controls.

    ``follow``: a symlink at ``path`` itself (owned by root or the owner) is followed, as dotfile
    managers need for ``~/.aws/credentials``; otherwise it is replaced, never written through.
    """
    owner = owner or Owner.me()
    why = f"refusing to write {what} {path}"
    real, missing = resolve_strict(path, owner, why=why, follow_final=follow)
    if missing:
        if not create_dirs:
            raise InputError(f"cannot create {what} {path}: its directory does not exist")
        # create each missing directory below the last existing (checked) one, 0700 and the owner's
        top = os.path.dirname(real)
        for _ in missing:
            top = os.path.dirname(top)
        for name in missing:
            top = os.path.join(top, name)
            try:
                os.mkdir(top, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise InputError(f"cannot create directory {top}: {e.strerror or type(e).__name__}") from None
            st = os.lstat(top)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                os.chmod(top, 0o700)  # mkdir's mode is filtered by the umask
                if owner.uid != os.geteuid():
                    os.chown(top, owner.uid, owner.gid, follow_symlinks=False)
        real, missing = resolve_strict(path, owner, why=why, follow_final=follow)
        assert not missing
    directory = os.path.dirname(real) or "/"
    for_other = owner.uid != os.geteuid()  # root writing for a user: checked as that user
    if for_other and os.lstat(directory).st_uid != owner.uid:
        raise InputError(
            f"{why}: {user_name(owner.uid)} cannot write to {directory} itself",
            hint="use a path in that user's own directories",
        )
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {path} is a directory", hint="name a file")
        if not stat.S_ISREG(st.st_mode) and not (stat.S_ISLNK(st.st_mode) and not follow):
            raise InputError(f"{why}: it is {_kind(st.st_mode)}, not a regular file")
        if for_other and st.st_uid != owner.uid:
            raise InputError(f"{why}: {real} belongs to {user_name(st.st_uid)}, not {user_name(owner.uid)}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to directory {directory}", hint="check its owner and permissions")
    return Target(real, directory, owner)


# ---- temporary files and their clean-up ----------------------------------------------------------

_TEMPS: set[str] = set()


def _remove_temps() -> None:
    for p in list(_TEMPS):
        try:
            os.unlink(p)
        except OSError:
            pass
        _TEMPS.discard(p)


def _on_signal(signum: int, frame: object) -> None:
    _remove_temps()
    raise SystemExit(128 + signum)


class _SignalCleanup:
    """While a temporary file exists, SIGTERM (whose default kills without clean-up) removes it.

    Only a default disposition is replaced: ``serve``/``update`` install their own handlers that
    stop gracefully, and SIGINT already raises ``KeyboardInterrupt`` through our ``finally``.
    """

    def __enter__(self) -> None:
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.getsignal(signal.SIGTERM)
            if old in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_signal)
                self._old = old

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            import signal

            signal.signal(signal.SIGTERM, self._old)


def sweep_temps(target: Target) -> None:
    """Remove temporary files of ours left by a killed writer. Call under the target's lock."""
    prefix = "." + os.path.basename(target.path) + "."
    try:
        names = os.listdir(target.directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            p = os.path.join(target.directory, name)
            try:
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and st.st_uid == target.owner.uid:
                    os.unlink(p)
                    log.info("removed a stale temporary file %s", p)
            except OSError:
                pass


def write_atomic(target: Target, data: bytes | bytearray) -> None:
    """Write ``data`` to a new 0600 ``O_EXCL`` temporary file beside the target, fsync, rename.

    On any failure (or SIGTERM/SIGINT) the temporary file is removed and the old file is untouched.
    The file is chowned only to ``target.owner`` and only when root writes for that user.
    """
    tmp = target.sibling("." + os.urandom(8).hex() + ".tmp")
    with _SignalCleanup():
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            _TEMPS.add(tmp)
            try:
                os.fchmod(fd, 0o600)
                if target.owner.uid != os.geteuid():
                    os.fchown(fd, target.owner.uid, target.owner.gid)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target.path)
            _TEMPS.discard(tmp)
        except OSError as e:
            reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else e.strerror
            raise InputError(
                f"cannot write {target.path}: {reason or type(e).__name__}; the previous file was left intact"
            ) from None
        finally:
            if tmp in _TEMPS:
                _TEMPS.discard(tmp)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
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


# ---- lock files ----------------------------------------------------------------------------------


class LockBusy(InputError):
    """Another process held the lock for longer than we were willing to wait."""


def open_lock(target: Target) -> int:
    """The target's lock file: ``O_NOFOLLOW``, 0600, a regular file of the target's user."""
    lock_path = target.sibling(".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"lock file {lock_path} is a symlink; refusing to follow it", hint="remove it") from None
        raise InputError(
            f"cannot create lock file {lock_path}: {e.strerror or type(e).__name__}",
            hint="check that the directory is writable",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"lock file {lock_path} is {_kind(st.st_mode)}, not a regular file", hint="remove it")
        if st.st_uid != target.owner.uid and st.st_uid == os.geteuid() == 0:
            os.fchown(fd, target.owner.uid, target.owner.gid)  # root made it for the target's user
            st = os.fstat(fd)
        if st.st_uid != target.owner.uid:
            raise InputError(
                f"lock file {lock_path} belongs to {user_name(st.st_uid)}, not {user_name(target.owner.uid)}",
                hint="remove it",
            )
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def locked(target: Target, timeout: float, *, what: str = "file") -> AbstractContextManager[None]:
    """An exclusive advisory lock on the target's lock file (never deleted: no races)."""
    import contextlib

    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        import fcntl
        import time

        fd = open_lock(target)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(
                            f"another process holds the lock {target.sibling('.lock')} for more than {timeout:g}s",
                            hint=f"is another writer of this {what} running?",
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    return hold()


def write_private_file(path: str, data: bytes | bytearray, *, what: str = "file", owner: Owner | None = None) -> str:
    """Write a small secret file (e.g. a token) atomically, 0600, under its lock; return the real path."""
    target = prepare_target(path, what, owner=owner)
    with locked(target, 30.0, what=what):
        sweep_temps(target)
        write_atomic(target, data)
    return target.path
