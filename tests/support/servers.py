"""Small misbehaving HTTP servers on loopback, for the endpoint cases of the bad-input matrix.

``ScriptedServer`` answers each request with the next step of a script: a canned reply (status,
body, headers, optional delay) or ``FORWARD``, which passes the request unchanged to a real
verifying ``LocalEndpoint`` and relays its answer. Every request is recorded, headers included,
so a test can check that a retry was signed again (a new ``X-Amz-Date`` and ``Authorization``).
``HangServer`` accepts connections and never answers. ``closed_port_url`` names a port nobody
listens on. ``untrusted_tls_endpoint`` is a verifying endpoint behind a certificate from a CA the
client does not trust.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rolesanywhere_signer.endpoint_server import LocalEndpoint

from .util import free_port


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    #: seconds to wait before answering (makes the next attempt's X-Amz-Date differ)
    delay: float = 0.0


class _Forward:
    def __repr__(self) -> str:
        return "FORWARD"


#: script step: relay the request to the upstream verifying endpoint
FORWARD = _Forward()
Step = Reply | _Forward


def aws_error(status: int, error_type: str, message: str, delay: float = 0.0) -> Reply:
    """An answer shaped like a real AWS JSON error."""
    return Reply(
        status,
        json.dumps({"message": message}).encode(),
        (("Content-Type", "application/json"), ("x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/")),
        delay,
    )


def html_page(status: int, title: str = "502 Bad Gateway") -> Reply:
    body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><hr>nginx</body></html>"
    return Reply(status, body.encode(), (("Content-Type", "text/html"),))


def session_body(credentials: dict[str, Any] | None = None, *, credential_set: list[Any] | None = None) -> Reply:
    """A 201 CreateSession answer; ``credentials`` replaces the credentials object."""
    # shaped as AWS sends them (credentials are validated before use): expiring within the hour
    expiration = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(minutes=59)
    creds = {
        "accessKeyId": "ASIAFAKEFAKEFAKE1234",
        "secretAccessKey": "fake/secret/key/that/should/never/print+0",
        "sessionToken": "FAKE/SESSION/TOKEN+that/should/never/print==",
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if credentials is not None:
        creds = credentials
    cset = credential_set if credential_set is not None else [{"credentials": creds}]
    return Reply(201, json.dumps({"credentialSet": cset}).encode(), (("Content-Type", "application/json"),))


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class _State:
    script: list[Step]
    #: what to answer once the script is used up
    after: Step
    upstream: str | None
    seen: list[SeenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = SeenRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with state.lock:
            state.seen.append(seen)
            step = state.script.pop(0) if state.script else state.after
        if isinstance(step, _Forward):
            step = self._forward(seen, state.upstream)
        if step.delay:
            time.sleep(step.delay)
        self.send_response(step.status)
        for k, v in step.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(step.body)))
        self.end_headers()
        self.wfile.write(step.body)

    def _forward(self, seen: SeenRequest, upstream: str | None) -> Reply:
        if upstream is None:
            raise RuntimeError("FORWARD in a script without an upstream endpoint")
        u = urlsplit(upstream)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
        try:
            # the Host header is relayed as received: it is signed, the upstream must see it unchanged
            conn.request(seen.method, seen.path, body=seen.body, headers=dict(self.headers.items()))
            r = conn.getresponse()
            data = r.read()
            keep = tuple((k, v) for k, v in r.getheaders() if k.lower() in ("content-type", "x-amzn-errortype"))
            return Reply(r.status, data, keep)
        finally:
            conn.close()

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class ScriptedServer:
    """Answer requests from a script; see the module docstring."""

    def __init__(
        self,
        script: Sequence[Step],
        *,
        after: Step | None = None,
        upstream: LocalEndpoint | None = None,
    ) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(
            list(script),
            after if after is not None else Reply(599, b"script exhausted"),
            upstream.url if upstream else None,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[SeenRequest]:
        with self._server.state.lock:
            return list(self._server.state.seen)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangServer:
    """Accepts TCP connections and never reads or answers: a wedged service or a black hole."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hang-server", daemon=True)
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1

    def start(self) -> HangServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self._held:
            c.close()
        self._sock.close()

    def __enter__(self) -> HangServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def untrusted_tls_endpoint(anchors: Sequence[Any], workdir: Path) -> Iterator[LocalEndpoint]:
    """A verifying endpoint over HTTPS whose server certificate comes from a CA nobody trusts."""
    import datetime as dt

    from cryptography import x509

    from .pki import issue

    workdir.mkdir(parents=True, exist_ok=True)
    rogue_ca = issue("Rogue TLS CA", ca=True)
    server = issue("127.0.0.1", issuer=rogue_ca, client_auth=False)
    # add the IP SAN so that only the CA, not the name, is what fails verification
    import ipaddress

    from cryptography.hazmat.primitives import hashes

    cert = (
        x509.CertificateBuilder()
        .subject_name(server.cert.subject)
        .issuer_name(rogue_ca.cert.subject)
        .public_key(server.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
        .not_valid_after(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(rogue_ca.key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    cert_path = workdir / "tls.crt"
    key_path = workdir / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server.key_pem())
    ep = LocalEndpoint(anchors, tls=(str(cert_path), str(key_path))).start()
    try:
        yield ep
    finally:
        ep.stop()


class FlappingEndpoint:
    """A verifying endpoint that can be taken down and brought back on the same port.

    While down nothing listens, so clients see "connection refused", as during a network outage.
    ``sessions_created`` and ``requests_seen`` add up over every period it was up.
    """

    def __init__(self, anchors: Sequence[Any], **state_kwargs: Any) -> None:
        self._anchors = list(anchors)
        self._kwargs = state_kwargs
        self.port = free_port()
        self._ep: LocalEndpoint | None = None
        self._done_sessions = 0
        self._done_requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._ep is not None

    def up(self) -> None:
        if self._ep is None:
            for _ in range(50):  # the port may linger for a moment after down()
                try:
                    self._ep = LocalEndpoint(self._anchors, port=self.port, **self._kwargs).start()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError(f"cannot listen again on port {self.port}")

    def down(self) -> None:
        if self._ep is not None:
            self._done_sessions += self._ep.state.sessions_created
            self._done_requests += self._ep.state.requests_seen
            self._ep.stop()
            self._ep = None

    @property
    def sessions_created(self) -> int:
        return self._done_sessions + (self._ep.state.sessions_created if self._ep else 0)

    @property
    def requests_seen(self) -> int:
        return self._done_requests + (self._ep.state.requests_seen if self._ep else 0)

    def __enter__(self) -> FlappingEndpoint:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def spawn_cli(args: Sequence[object], log: Path, env: dict[str, str] | None = None) -> Any:
    """Start ``rolesanywhere-signer`` in the background, as a service manager would (no terminal).

    stdout and stderr go to ``log`` (a pipe could fill up and block a chatty long-running process).
    """
    import subprocess
    import sys

    from .util import clean_env

    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)],
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
