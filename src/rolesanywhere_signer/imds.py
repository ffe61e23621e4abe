"""The ``serve`` HTTP server: an IMDSv2 emulation and a container credentials endpoint.

The request path only reads the refresher's cache: it never signs, so it answers in
microseconds while a refresh (or a slow token) takes seconds. With nothing valid it answers 500,
never 200 with empty or expired credentials. Tokens are random, kept in a bounded store, expire,
and never appear in a log line.

Defences: loopback listeners by default with IP TTL / hop limit 1 (as on EC2), peers that are
not loopback refused unless allowed, ``X-Forwarded-For`` refused, and a ``Host`` header that must
be an IP literal we serve, ``localhost`` or the IMDS address — a DNS-rebinding page's
``Host: evil.example`` never gets credentials.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .credentials import EXPIRATION_FORMAT
from .refresher import Refresher, describe_error

log = logging.getLogger("rolesanywhere_signer.serve")

TOKEN_PATH = "/latest/api/token"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/"
CONTAINER_PATH = "/credentials"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
IMDS_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254"})
DEFAULT_BIND = ("127.0.0.1", "::1")


class TokenStore:
    """IMDSv2 session tokens: random, expiring, at most ``limit`` at once (oldest dropped)."""

    def __init__(self, limit: int = 4096, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._tokens: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        now = self._monotonic()
        with self._lock:
            for t in [t for t, exp in self._tokens.items() if exp <= now]:
                del self._tokens[t]
            while len(self._tokens) >= self._limit:
                self._tokens.popitem(last=False)
            self._tokens[token] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expires = self._tokens.get(token)
            if expires is None:
                return False
            if expires <= self._monotonic():
                del self._tokens[token]
                return False
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def __repr__(self) -> str:
        return f"TokenStore({len(self)} tokens)"


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def host_of(header: str) -> str:
    """The host part of a Host header (``[::1]:9911`` -> ``::1``), lowercased."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@dataclass(frozen=True)
class ServeConfig:
    role_name: str
    binds: Sequence[str] = DEFAULT_BIND
    port: int = 9911
    hop_limit: int = 1
    allow_remote: bool = False
    #: the container endpoint answers only when a token exists (written with --container-token-file)
    container_token: str | None = None

    def __repr__(self) -> str:
        return (
            f"ServeConfig(role_name={self.role_name!r}, binds={list(self.binds)!r}, port={self.port}, "
            f"hop_limit={self.hop_limit}, allow_remote={self.allow_remote}, "
            f"container_endpoint={self.container_token is not None})"
        )

    def host_allowed(self, host: str) -> bool:
        if host in IMDS_HOSTS or host == "localhost":
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False  # a name: only a DNS-rebinding page would send one
        wildcard = any(b in ("0.0.0.0", "::") for b in self.binds)
        return wildcard or host in {b.lower() for b in self.binds}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    app: CredentialServer

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer is routine; never print a traceback to the service log
        log.debug("connection from %s ended with an error", client_address[0] if client_address else "?")

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        self.app.set_hop_limit(conn, self.address_family)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, a keep-alive client (botocore's
    # PUT-then-GET) waits ~40 ms for the delayed ACK on every answer
    disable_nagle_algorithm = True
    server_version = "rolesanywhere-signer"
    sys_version = ""
    #: idle keep-alive connections and slow senders are dropped after this many seconds
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        # the request line carries no token (tokens travel in headers, which are never logged)
        log.debug("%s %s", self.client_address[0], format % args)

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"Code": "Error", "Message": message}), "application/json")

    def _guard(self) -> bool:
        """Refusals common to every route; True when the request may go on."""
        app = self.server.app
        if not app.config.allow_remote and not is_loopback(self.client_address[0]):
            self._error(403, "requests from other hosts are refused")
            return False
        if self.headers.get("X-Forwarded-For") is not None:
            self._error(400, "X-Forwarded-For is not accepted")
            return False
        host = self.headers.get("Host")
        if host is None or not app.config.host_allowed(host_of(host)):
            self._error(403, "Host header is not an address this server listens on")
            return False
        return True

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= 65536:
            self.rfile.read(int(length))
        elif length or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a body we will not read: do not reuse the connection

    def do_PUT(self) -> None:
        self._drain()
        if not self._guard():
            return
        if self.path != TOKEN_PATH:
            self._error(404, "not found")
            return
        ttl_text = self.headers.get(TTL_HEADER, "")
        if not ttl_text.strip().isdigit() or not 1 <= int(ttl_text) <= MAX_TTL:
            self._error(400, f"{TTL_HEADER} must be 1..{MAX_TTL}")
            return
        self._send(200, self.server.app.tokens.issue(int(ttl_text)))

    def do_GET(self) -> None:
        self._drain()
        if not self._guard():
            return
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == CONTAINER_PATH and app.config.container_token is not None:
            given = self.headers.get("Authorization") or ""
            if not hmac.compare_digest(given.encode(), app.config.container_token.encode()):
                self._error(401, "missing or wrong Authorization token")
                return
            self._credentials(container=True)
            return
        if path.rstrip("/") + "/" == CREDS_PATH or path.startswith(CREDS_PATH):
            if not app.tokens.valid(self.headers.get(TOKEN_HEADER)):
                self._error(401, "missing, unknown or expired IMDSv2 token")
                return
            role = path[len(CREDS_PATH) :] if path.startswith(CREDS_PATH) else ""
            if not role:
                self._send(200, app.config.role_name)
            elif role.rstrip("/") == app.config.role_name:
                self._credentials(container=False)
            else:
                self._error(404, "not found")
            return
        self._error(404, "not found")

    def do_POST(self) -> None:
        self._drain()
        if self._guard():
            self._error(405, "method not allowed")

    do_DELETE = do_POST
    do_PATCH = do_POST

    def _credentials(self, *, container: bool) -> None:
        app = self.server.app
        creds = app.refresher.current()  # a cache read: never signs, never waits on a refresh
        if creds is None:
            self._error(500, f"no valid credentials: {describe_error(app.refresher.last_error)}")
            return
        obtained = app.refresher.obtained_at
        doc: dict[str, str] = {
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": creds.expiration_text(),
        }
        if not container:
            doc = {"Code": "Success", "LastUpdated": "", "Type": "AWS-HMAC", **doc}
            doc["LastUpdated"] = (obtained or app.refresher.now()).strftime(EXPIRATION_FORMAT)
        self._send(200, json.dumps(doc), "application/json")


class CredentialServer:
    """Listeners on every bound address, sharing one refresher and one token store."""

    def __init__(
        self,
        refresher: Refresher,
        config: ServeConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresher = refresher
        self.config = config
        self.tokens = TokenStore(monotonic=monotonic)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def set_hop_limit(self, sock: socket.socket, family: int) -> None:
        # EC2's IMDS answers with TTL 1 so that a container behind a NAT hop cannot reach it
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, self.config.hop_limit)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.config.hop_limit)

    def bind(self) -> None:
        """Bind every address (errors surface before the first CreateSession); do not listen yet."""
        port = self.config.port
        for address in self.config.binds:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            server_cls = type("_BoundServer", (_Server,), {"address_family": family})
            server = server_cls((address, port), _Handler, bind_and_activate=False)
            server.app = self
            try:
                server.server_bind()
            except OSError as e:
                server.server_close()
                if family == socket.AF_INET6 and address == "::1" and tuple(self.config.binds) == DEFAULT_BIND:
                    log.warning("IPv6 loopback is unavailable (%s); serving on 127.0.0.1 only", e.strerror)
                    continue
                self.close()
                from .errors import InputError

                raise InputError(
                    f"cannot listen on {address} port {port}: {e.strerror or type(e).__name__}",
                    hint="is another serve running? pick another --port",
                ) from None
            self.set_hop_limit(server.socket, family)
            port = port or int(server.server_address[1])  # --port 0: every address on the same port
            self._servers.append(server)

    @property
    def port(self) -> int:
        return int(self._servers[0].server_address[1])

    @property
    def addresses(self) -> list[str]:
        return [str(s.server_address[0]) for s in self._servers]

    def start(self) -> CredentialServer:
        """Listen and answer in background threads."""
        for server in self._servers:
            server.server_activate()
            t = threading.Thread(target=server.serve_forever, args=(0.1,), name="serve-http", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        for server in self._servers:
            if self._threads:
                server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> CredentialServer:
        if not self._servers:
            self.bind()
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def role_name_of(role_arn: str) -> str:
    """The IMDS role name: the last path element of the role ARN."""
    return role_arn.rsplit("/", 1)[-1] or "rolesanywhere"


def new_container_token() -> str:
    return secrets.token_urlsafe(32)
