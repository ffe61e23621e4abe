"""Cancelling a CreateSession attempt from a signal handler or another thread.

``serve`` and ``update`` must end within two seconds of SIGTERM even while an attempt waits on a
hung endpoint, including the very first one, which runs on the main thread. A signal handler may
not take a lock or log (it runs between two bytecodes of whatever the main thread was doing), so
``cancel()`` only sets a flag and calls ``shutdown()`` on the attempt's sockets: both are safe in a
handler, and ``shutdown`` wakes a ``connect``, ``recv`` or TLS handshake blocked in another thread
or in the interrupted one (PEP 475 retries the call, which then returns at once).
"""

from __future__ import annotations

import socket
import time


class CancelToken:
    """A one-way switch shared by the refresher, the client and the transport."""

    __slots__ = ("_sockets", "cancelled")

    def __init__(self) -> None:
        self.cancelled = False
        #: sockets of the attempt in flight (list operations are atomic: no lock needed)
        self._sockets: list[socket.socket] = []

    def cancel(self) -> None:
        """Signal-safe: no lock, no logging, no allocation beyond a list copy."""
        self.cancelled = True
        for sock in list(self._sockets):
            _shutdown(sock)

    def watch(self, sock: socket.socket) -> None:
        self._sockets.append(sock)
        if self.cancelled:  # cancelled between the check and the registration
            _shutdown(sock)

    def forget(self, sock: socket.socket) -> None:
        try:
            self._sockets.remove(sock)
        except ValueError:
            pass

    def sleep(self, seconds: float) -> None:
        """Sleep, returning early (within 50 ms) once cancelled."""
        end = time.monotonic() + seconds
        while not self.cancelled:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected yet or already closed: the flag stops the next step
