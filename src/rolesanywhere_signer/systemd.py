"""The two systemd protocols ``serve`` speaks: sd_notify and socket activation.

Both are a few lines of documented wire format (sd_notify(3), sd_listen_fds(3)): one datagram to
``$NOTIFY_SOCKET``, and descriptors from 3 on named by ``$LISTEN_FDS`` for ``$LISTEN_PID``. The
python-systemd bindings would add a C extension and libsystemd for that, so they are written here.
Outside systemd every function is a no-op.
"""

from __future__ import annotations

import os
import socket

from .logs import get_logger

log = get_logger("rolesanywhere_signer.serve")

#: the first descriptor passed by socket activation (SD_LISTEN_FDS_START)
LISTEN_FDS_START = 3


class Notifier:
    """Sends ``READY=1``, ``STATUS=…`` and ``WATCHDOG=1`` to the service manager, if there is one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self._address = address if address.startswith(("/", "\0")) else ""
        self._sock: socket.socket | None = None
        self.watchdog_interval = _watchdog_interval(env)
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> bool:
        if not self._address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as e:  # the manager went away: serving goes on
            log.debug("sd_notify failed: %s", e.strerror or type(e).__name__)
            return False
        return True

    def status(self, text: str) -> None:
        """``STATUS=`` when it changed (one line: systemctl status shows it)."""
        text = " ".join(text.split())
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), None without a watchdog."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


def listen_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Listening sockets passed by socket activation, or [] when none were passed to this process.

    The variables are removed afterwards (as ``sd_listen_fds(1)`` does) so that no child inherits them.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if not count or pid != str(os.getpid()):
        return []
    from .errors import InputError

    if not count.isdigit() or not 0 < int(count) <= 64:
        raise InputError(f"LISTEN_FDS={count!r} is not a usable count", hint="check the .socket unit")
    sockets: list[socket.socket] = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise InputError(
                f"descriptor {fd} from socket activation is not a socket ({e.strerror})",
                hint="use ListenStream= in the .socket unit",
            ) from None
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise InputError(
                f"descriptor {fd} from socket activation is not a TCP socket", hint="use ListenStream=ADDRESS:PORT"
            )
        sock.set_inheritable(False)
        sockets.append(sock)
    return sockets
