"""Reading user-named files with errors that say exactly what is wrong."""

from __future__ import annotations

import errno
import os

from .errors import InputError

#: certificates, keys and bundles are small; anything larger is a wrong path
MAX_INPUT_BYTES = 1024 * 1024


def read_input_file(path: str, what: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Read a small input file; every failure becomes one clear ``InputError``."""
    if not path:
        raise InputError(f"{what} path is empty")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > limit:
                raise InputError(
                    f"{what} {path} is too large ({st.st_size} bytes; at most {limit})",
                    hint="check that the path names a certificate or key file",
                )
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{what} {path} is not readable by this user", hint="check its permissions") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{what} {path} is a symlink loop") from None
        raise InputError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} is too large (more than {limit} bytes)")
    if not data.strip():
        raise InputError(f"{what} {path} is empty")
    return data
