"""Installing a renewed certificate (and a rotated key file) so that a crash never splits a pair.

The certificate file is the commit point. It is written as one file holding the leaf *and* its
chain, and renamed over the old one in a single ``rename``: a reader (``credential-process``,
``serve``'s next refresh) sees either the old pair or the new pair, never a new leaf with an old
chain. A certificate file that carries its chain is read with that chain (see ``backends.pem``).
The separate ``--intermediates`` file, when there is one, is replaced right after for other tools.

The previous files are kept as ``<path>.prev``: hard links made before the switch, so the old pair
stays usable at every instant.

A rotated key file goes through ``<key>.next``: the new key is created there first, the certificate
is installed, then ``<key>.next`` is renamed over the key. A crash between the two renames leaves a
certificate that matches ``<key>.next``; ``repair`` (run by ``renew``, ``serve`` and ``update`` at
start) finishes the switch, or drops a ``.next`` that never got its certificate.

All file writes live here, in one place, to move onto the shared safe-write helpers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InputError
from ..options import IdentityOptions

if TYPE_CHECKING:
    from cryptography import x509

PREV = ".prev"
NEXT = ".next"


def identity_with(identity: IdentityOptions, **changes: object) -> IdentityOptions:
    values = {f: getattr(identity, f) for f in IdentityOptions._fields}
    values.update(changes)
    return IdentityOptions(**values)  # type: ignore[arg-type]


def _fail(what: str, path: str, e: OSError) -> InputError:
    return InputError(f"cannot {what} {path}: {e.strerror or type(e).__name__}", hint="the old certificate is kept")


def _check_target(path: str) -> int:
    """The mode to give the replacement; refuses a symlink or a non-file target."""
    import stat

    from ..files import prepare_target

    # StrictModes (files.py): no directory on the way that another user could write or own
    prepare_target(path, "certificate or chain file", create_dirs=False, follow=False)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0o644
    except OSError as e:
        raise _fail("inspect", path, e) from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{path} is a symlink; refusing to replace it", hint="point the flag at the real file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file")
    return stat.S_IMODE(st.st_mode)


def write_temp(path: str, data: bytes, mode: int) -> str:
    """A new file beside ``path`` (O_EXCL, no symlink followed), fsynced; returns its name."""
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as e:
        raise _fail("create a file beside", path, e) from None
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        _unlink(tmp)
        raise _fail("write beside", path, e) from None
    os.close(fd)
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def keep_previous(path: str) -> None:
    """Point ``<path>.prev`` at the current file (a hard link, swapped in by rename)."""
    if not os.path.lexists(path):
        return
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.prev.tmp")
    try:
        os.link(path, tmp, follow_symlinks=False)
        os.replace(tmp, path + PREV)
    except OSError as e:
        _unlink(tmp)
        raise _fail("keep the previous file as", path + PREV, e) from None


def _sync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pem_of(certs: Sequence[x509.Certificate]) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def install_certificate(
    cert_path: str, chain_path: str | None, leaf: x509.Certificate, chain: Sequence[x509.Certificate]
) -> None:
    """Switch ``cert_path`` (leaf + chain in one file) and then ``chain_path`` to the new pair."""
    if chain_path and not chain:
        raise InputError(
            f"the new certificate needs no intermediates, but {chain_path} would keep the old ones",
            hint="drop --intermediates; the old certificate is kept",
        )
    cert_mode = _check_target(cert_path)
    chain_mode = _check_target(chain_path) if chain_path else 0o644
    cert_tmp = write_temp(cert_path, pem_of([leaf, *chain]), cert_mode)
    chain_tmp = None
    try:
        if chain_path:
            chain_tmp = write_temp(chain_path, pem_of(chain), chain_mode)
        keep_previous(cert_path)
        if chain_path:
            keep_previous(chain_path)
        os.replace(cert_tmp, cert_path)  # the commit point
    except BaseException:
        _unlink(cert_tmp)
        if chain_tmp:
            _unlink(chain_tmp)
        raise
    if chain_path and chain_tmp:
        try:
            os.replace(chain_tmp, chain_path)
        except OSError as e:
            _unlink(chain_tmp)
            raise _fail("replace", chain_path, e) from None
    _sync_directory(cert_path)


def commit_key(key_path: str) -> None:
    """Switch the key file to ``<key>.next``, keeping the old one as ``<key>.prev``."""
    keep_previous(key_path)
    try:
        os.replace(key_path + NEXT, key_path)
    except OSError as e:
        raise _fail("switch to the new key", key_path, e) from None
    _sync_directory(key_path)


def repair(identity: IdentityOptions) -> str | None:
    """Finish or undo a key-file switch that a crash interrupted; say what was done (None: nothing)."""
    key_path = identity.private_key
    cert_path = identity.certificate
    if not key_path or not cert_path or not os.path.lexists(key_path + NEXT):
        return None
    from ..backends import backend_for
    from ..certs import load_certificate_file, public_keys_equal

    cert = load_certificate_file(cert_path)[0]
    next_identity = identity_with(identity, private_key=key_path + NEXT)
    nxt = backend_for(next_identity).open_key(next_identity)
    try:
        matches_next = public_keys_equal(cert.public_key(), nxt.public_key())
    finally:
        nxt.close()
    if matches_next:
        commit_key(key_path)
        return f"finished switching {key_path} to the new key its certificate was issued for"
    os.unlink(key_path + NEXT)
    return f"removed {key_path + NEXT}, a new key that never got its certificate"


def repair_interrupted_switch(identity: IdentityOptions) -> None:
    """``repair`` for start-up: say what was done, as a warning."""
    done = repair(identity)
    if done:
        from ..logs import get_logger

        get_logger("rolesanywhere_signer.renew").warning("%s", done)
