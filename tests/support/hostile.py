"""Hostile peers on loopback: an endpoint that misbehaves on purpose, and clients that attack ``serve``.

``HostileEndpoint`` reads one request per connection and then, by ``mode``:

- ``endless``: 201, no length, then 64 KiB blocks as fast as the client reads them;
- ``endless-chunked``: the same as an endless chunked body;
- ``huge``: ``Content-Length`` of 10 GiB, then blocks as fast as they go;
- ``trickle``: the answer one byte every ``interval`` seconds, forever;
- ``nested``: 201 with ``[[[[…]]]]`` 100,000 deep (400 KB, under the 1 MiB cap);
- ``headers``: a status line, then header lines forever;
- ``garbage``: a line that is not HTTP.

``flood`` (also a script: ``python -m support.hostile flood PORT CONNS SECONDS``, from tests/) pipelines
thousands of token PUTs per write on a few connections; ``Drippers`` holds many connections that
each send one header line a second and never finish.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from .listener import Listener

MODES = ("endless", "endless-chunked", "huge", "trickle", "nested", "headers", "garbage")
BLOCK = b"x" * 65536


class HostileEndpoint:
    def __init__(self, mode: str, interval: float = 0.3) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.interval = interval
        self._listener = Listener()
        self._stop = self._listener.stop
        #: bytes written to clients, summed over connections
        self.sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.port}"

    @property
    def accepted(self) -> int:
        return self._listener.accepted

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            self._read_request(conn)
            mode = self.mode
            if mode == "endless":
                self._send(conn, b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
                while not self._stop.is_set():
                    self._send(conn, BLOCK)
            elif mode == "endless-chunked":
                self._send(conn, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
                while not self._stop.is_set():
                    self._send(conn, chunk)
            elif mode == "huge":
                self._send(conn, b"HTTP/1.1 201 Created\r\nContent-Length: 10737418240\r\n\r\n")
                while not self._stop.is_set():
                    self._send(conn, BLOCK)
            elif mode == "trickle":
                answer = b"HTTP/1.1 201 Created\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000
                for i in range(len(answer)):
                    if self._stop.wait(self.interval):
                        break
                    self._send(conn, answer[i : i + 1])
            elif mode == "nested":
                depth = 100_000
                body = b"[" * depth + b"]" * depth
                self._send(conn, b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            elif mode == "headers":
                self._send(conn, b"HTTP/1.1 201 Created\r\n")
                i = 0
                while not self._stop.is_set():
                    self._send(conn, b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
                    i += 1
            elif mode == "garbage":
                self._send(conn, b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> HostileEndpoint:
        self._listener.serve(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close(join=5)


# ---- hostile clients of serve ----------------------------------------------------------------------

PUT = b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n"


def _flood_one(port: int, until: float, per_write: int, counts: list[int]) -> None:
    batch = PUT * per_write
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    done = threading.Event()

    def drain() -> None:
        try:
            while not done.is_set():
                data = s.recv(1 << 20)
                if not data:
                    return
                counts[0] += data.count(b"HTTP/1.1 200")
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        while time.monotonic() < until:
            s.sendall(batch)
    except OSError:
        pass
    done.set()
    s.close()
    reader.join(timeout=2)


def flood(port: int, conns: int, seconds: float, per_write: int = 2000) -> int:
    """Pipeline ``per_write`` token PUTs per write on ``conns`` connections; return answers seen."""
    until = time.monotonic() + seconds
    counts = [0]
    threads = [threading.Thread(target=_flood_one, args=(port, until, per_write, counts)) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0]


def start_flood(port: int, conns: int, seconds: float) -> subprocess.Popen[str]:
    """``flood`` in another process (its own GIL), as real attackers would be."""
    return subprocess.Popen(
        [sys.executable, "-m", "support.hostile", "flood", str(port), str(conns), str(seconds)],
        cwd=Path(__file__).resolve().parents[1],  # tests/: where the support package is found
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


class Drippers:
    """``count`` connections sending one header line every ``every`` seconds, never the blank line."""

    def __init__(self, port: int, count: int, every: float = 1.0) -> None:
        self.port = port
        self.count = count
        self.every = every
        self.socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.connected = 0

    def _open(self) -> None:
        for _ in range(self.count):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            self.socks.append(s)

    def _run(self) -> None:
        line = 0
        while not self._stop.is_set():
            for s in self.socks:
                try:
                    s.send(b"GET / HTTP/1.1\r\n" if line == 0 else b"X-Drip-%d: 1\r\n" % line)
                except OSError:
                    pass
            line += 1
            self._stop.wait(self.every)

    def open_count(self) -> int:
        """Connections the server has not closed (a read that would block means still open)."""
        alive = 0
        for s in self.socks:
            try:
                data = s.recv(65536)
            except BlockingIOError:
                alive += 1
                continue
            except OSError:
                continue
            if data:
                alive += 1  # an answer (not expected), but still open
        return alive

    def __enter__(self) -> Drippers:
        self._open()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in self.socks:
            s.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "flood":
        print(flood(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    else:
        sys.exit("usage: python -m support.hostile flood PORT CONNS SECONDS")
