"""Process hygiene for the long-running modes (``serve``, ``update``), which hold credentials for hours.

``prctl(PR_SET_DUMPABLE, 0)`` makes the kernel treat the process like a set-uid one: another
process of the same user can no longer ptrace it or read ``/proc/PID/mem``, ``environ`` or its
file descriptors (root still can). ``RLIMIT_CORE = 0`` keeps a crash from writing secrets into a
core file. Not called on ``credential-process``'s path: loading ``ctypes`` alone costs more than
that path's whole budget for this, and its secrets live for a fraction of a second.
"""

from __future__ import annotations

import sys

from .logs import get_logger

log = get_logger("rolesanywhere_signer.hardening")

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def harden_process() -> None:
    """No core dumps, not dumpable (Linux). Failures only warn: the service still works."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as e:
        log.warning("could not disable core dumps: %s", e)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            import os

            log.warning("could not make the process non-dumpable: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        log.warning("could not make the process non-dumpable: %s", e)


def wipe(buf: bytearray | None) -> None:
    """Overwrite a secret held in a bytearray (the only secrets Python lets us erase)."""
    if buf is not None:
        buf[:] = bytes(len(buf))
