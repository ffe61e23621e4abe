"""A loopback TCP listener for the test servers that speak raw bytes (proxies, hostile endpoints)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class Listener:
    """Listens on 127.0.0.1; every connection it accepts gets a thread of its own running ``handle``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.2)  # the accept loop sees ``stop`` within 0.2 s
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self, handle: Callable[[socket.socket], object]) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.accepted += 1
                t = threading.Thread(target=handle, args=(conn,), daemon=True)
                t.start()
                self.threads.append(t)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self, join: float = 2.0) -> None:
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=join)
