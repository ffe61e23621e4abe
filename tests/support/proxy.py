"""A small HTTP proxy on loopback, and a tap that records every byte between a client and it.

``ConnectProxy`` speaks plain TCP or TLS to its clients (``tls=(cert, key)``), may require Basic
authentication (``auth=(user, password)``, else 407), tunnels ``CONNECT host:port`` and forwards
absolute-form requests (``POST http://host:port/path``). Every request head it read (after TLS)
is kept in ``seen``. ``Tap`` sits in front of it and keeps the raw bytes of both directions, so a
test can show what crossed the wire in clear. ``tls_material`` makes a CA and a server
certificate for ``127.0.0.1`` and ``localhost``.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import select
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .listener import Listener


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: Path
    cert: Path
    key: Path


def tls_material(directory: Path) -> TlsMaterial:
    """A throwaway TLS CA and a server certificate for 127.0.0.1, ::1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy tests TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = TlsMaterial(directory / "tls-ca.pem", directory / "tls.crt", directory / "tls.key")
    out.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names
    refused: bool = False


def _relay(a: socket.socket, b: socket.socket, record: list[bytes] | None = None) -> None:
    """Copy both ways until either side closes (``record`` keeps every chunk, either direction)."""
    socks = [a, b]
    try:
        while True:
            readable, _, _ = select.select(socks, [], [], 30)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                if record is not None:
                    record.append(data)
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


class ConnectProxy:
    def __init__(self, *, tls: TlsMaterial | None = None, auth: tuple[str, str] | None = None) -> None:
        self.tls = tls
        self.auth = auth
        self.seen: list[SeenRequest] = []
        self._listener = Listener()
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(tls.cert), str(tls.key))

    @property
    def port(self) -> int:
        return self._listener.port

    def _handle(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            raw.settimeout(10)
            if self._context is not None:
                conn = self._context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk or len(data) > 65536:
                    conn.close()
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            seen = SeenRequest(method, target, headers)
            self.seen.append(seen)
            if self.auth is not None:
                expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
                if headers.get("proxy-authorization") != expected:
                    seen.refused = True
                    conn.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="tests"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
                    )
                    conn.close()
                    return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                _relay(conn, upstream)
                return
            # absolute form: forward with the proxy's own headers removed
            url = target.split("://", 1)[1]
            hostport, _, path = url.partition("/")
            host, _, port = hostport.rpartition(":")
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            kept = [ln for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
            upstream.sendall(
                f"{method} /{path} HTTP/1.1\r\n".encode()
                + "".join(f"{ln}\r\n" for ln in kept).encode("latin-1")
                + b"Connection: close\r\n\r\n"
                + rest
            )
            _relay(conn, upstream)
        except (OSError, ValueError):
            conn.close()

    def __enter__(self) -> ConnectProxy:
        self._listener.serve(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()


_HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


@dataclass
class Tap:
    """A TCP relay to ``target_port`` that keeps every byte it passes, both ways."""

    target_port: int
    chunks: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = Listener()

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def raw(self) -> bytes:
        return b"".join(self.chunks)

    def _handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            conn.close()
            return
        _relay(conn, upstream, self.chunks)

    def __enter__(self) -> Tap:
        self._listener.serve(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
