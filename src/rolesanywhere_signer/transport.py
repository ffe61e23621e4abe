"""HTTP transport behind CreateSession. Injectable, so unit tests need no sockets.

Every attempt is bounded, whatever the other end does:

- **one deadline per attempt** (``--timeout``, default 10 s) covers connecting, the TLS handshake,
  sending and the whole answer: every socket wait gets only the time left, so a server that
  trickles a byte every few seconds is cut off at the deadline, not after each byte;
- **the answer is capped at 1 MiB**: a larger ``Content-Length`` is refused before any of the body
  is read, and a chunked or unsized body is counted while it is read;
- an optional ``CancelToken`` ends the attempt at once (SIGTERM in ``serve`` and ``update``).

Two paths. Without a proxy, ``http.client`` and ``ssl`` on a socket we open ourselves: importing
``requests`` costs about a third of a cold ``credential-process``, for one POST. When a proxy
applies (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, not excluded by ``NO_PROXY``), the request
goes through ``requests`` (imported only then): it speaks TLS to an ``https://`` proxy, sends the
proxy credentials inside that TLS session, and tunnels with CONNECT; ``requests`` also decides
which ``NO_PROXY`` entries match (names, ``.suffix``, ``*``, ``host:port``, IPv4 CIDR; we add IPv6
CIDR). Both paths use the one TLS context from ``tls_context`` and the same bounds.

Errors are mapped by exception type, never by message text: the tree is in ``httpio``.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .errors import EndpointError, InputError
from .httpio import (
    MAX_ANSWER,
    AnswerTooLarge,
    Cancelled,
    ConnectError,
    DeadlineError,
    HttpResponse,
    ProtocolError,
    TlsError,
    TransientError,
    map_error,
    read_capped,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER",
    "AnswerTooLarge",
    "Cancelled",
    "ConnectError",
    "DeadlineError",
    "DefaultTransport",
    "HttpResponse",
    "HttpTransport",
    "ProtocolError",
    "TlsError",
    "TransientError",
    "Transport",
    "ca_file",
    "map_error",
    "proxy_for",
    "resolve_verify",
    "tls_context",
]

if TYPE_CHECKING:
    import ssl

    from .cancel import CancelToken

DEFAULT_TIMEOUT = 10.0


class Transport(Protocol):
    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse: ...

    def close(self) -> None: ...


def resolve_verify(verify: bool | str, env: Mapping[str, str] | None = None) -> bool | str:
    """``--no-verify-ssl`` wins; else a CA bundle from ``AWS_CA_BUNDLE``; else the default store."""
    env = os.environ if env is None else env
    if verify is False:
        return False
    bundle = verify if isinstance(verify, str) else env.get("AWS_CA_BUNDLE")
    if bundle:
        if not os.path.isfile(bundle):
            raise InputError(f"CA bundle {bundle} (AWS_CA_BUNDLE) does not exist or is not a file")
        return bundle
    return True


def ca_file(verify: bool | str, env: Mapping[str, str] | None = None) -> str:
    """The CA bundle trusted, in this order: the one given (``AWS_CA_BUNDLE``), then
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (what the ``requests``-based peers honour), then
    certifi's bundle (a declared dependency: the same roots on every machine, as botocore)."""
    if isinstance(verify, str):
        return verify
    env = os.environ if env is None else env
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = env.get(var)
        if value:
            return value
    import certifi

    return str(certifi.where())


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The one TLS client context, for the endpoint and for an ``https://`` proxy alike."""
    import ssl

    if verify is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file(verify))


class HttpTransport:
    """One request per call on a fresh connection, bounded as the module docstring says."""

    def __init__(
        self,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cancel: CancelToken | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self._verify = resolve_verify(verify)
        self._timeout = timeout
        self._cancel = cancel
        self._max_answer = max_answer
        self._context: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context(self._verify)
        return self._context

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        if self._cancel is not None and self._cancel.cancelled:
            raise Cancelled("cancelled")
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EndpointError(f"endpoint URL {url.split('?')[0]} is invalid") from None
        hostname = parts.hostname or ""
        if not hostname or parts.scheme not in ("http", "https"):
            raise EndpointError(f"endpoint URL {url.split('?')[0]} is invalid")
        deadline = time.monotonic() + self._timeout
        headers = dict(headers)
        names = {k.lower() for k in headers}
        if "user-agent" not in names:
            headers["User-Agent"] = _user_agent()
        proxy = proxy_for(url)
        if proxy is not None:
            return self._send_proxied(method, url, headers, body, proxy, deadline)
        if "host" not in names:
            headers["Host"] = parts.netloc
        return self._send_direct(method, parts.scheme, hostname, port, _target(parts), headers, body, deadline)

    # ---- the direct path: http.client on our own socket ------------------------------------------

    def _send_direct(
        self,
        method: str,
        scheme: str,
        hostname: str,
        port: int,
        target: str,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
    ) -> HttpResponse:
        import http.client

        host = hostname  # messages name the host as the user wrote it
        sock: socket.socket | None = None
        watched: socket.socket | None = None
        try:
            try:
                sock = _connect(hostname, port, deadline, self._cancel)
                if self._cancel is not None:
                    watched = sock.dup()  # TLS wrapping detaches ``sock``; the duplicate stays usable
                    self._cancel.watch(watched)
                if scheme == "https":
                    sock.settimeout(_left(deadline))  # the handshake has one deadline inside ssl
                    # an ASCII name goes in as bytes: ssl then skips its IDNA codec (encodings.idna,
                    # stringprep, unicodedata: ~2 ms of every cold run) for a name that needs none
                    name: str | bytes = hostname.encode() if hostname.isascii() else hostname
                    sock = self._ssl_context().wrap_socket(sock, server_hostname=name)
            except Exception as e:  # noqa: BLE001 - mapped by type below, anything else re-raised
                raise self._mapped(e, host, connected=False) from None
            try:
                conn = http.client.HTTPConnection(hostname, port)
            except ValueError:
                raise EndpointError(f"endpoint host {hostname!r} is invalid") from None
            conn.sock = _DeadlineSocket(sock, deadline)  # type: ignore[assignment]
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                if "content-length" not in {k.lower() for k in headers}:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)  # headers and body in one send: no Nagle/delayed-ACK stall
                resp = conn.getresponse()
                data = read_capped(resp.length, resp.read, self._max_answer, host)
                return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            except AnswerTooLarge:
                raise
            except Exception as e:  # noqa: BLE001 - as above
                raise self._mapped(e, host, connected=True) from None
        finally:
            if watched is not None:
                assert self._cancel is not None
                self._cancel.forget(watched)
                watched.close()
            if sock is not None:
                sock.close()

    def _mapped(self, e: BaseException, host: str, *, connected: bool) -> BaseException:
        if self._cancel is not None and self._cancel.cancelled:
            return Cancelled("cancelled")
        return map_error(e, host, self._timeout, connected=connected)

    # ---- through a proxy: requests -------------------------------------------------------------

    def _send_proxied(
        self, method: str, url: str, headers: dict[str, str], body: bytes, proxy: str, deadline: float
    ) -> HttpResponse:
        from . import proxied

        host = urlsplit(url).hostname or ""
        try:
            return proxied.send(
                method,
                url,
                headers,
                body,
                proxy=proxy,
                context=self._ssl_context() if url.startswith("https:") or proxy.startswith("https:") else None,
                verify=self._verify is not False,
                deadline=deadline,
                cancel=self._cancel,
                max_answer=self._max_answer,
            )
        except proxied.Expired:
            if self._cancel is not None and self._cancel.cancelled:
                raise Cancelled("cancelled") from None
            raise DeadlineError(f"{host} did not answer within {self._timeout:g}s (through the proxy)") from None

    def close(self) -> None:
        pass


#: the transport ``create_session`` uses unless given another
DefaultTransport = HttpTransport


def _target(parts: Any) -> str:
    target = str(parts.path or "/")
    if parts.query:
        target += "?" + str(parts.query)
    return target


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return left


def _connect(hostname: str, port: int, deadline: float, cancel: CancelToken | None) -> socket.socket:
    """``socket.create_connection`` with the socket registered for cancelling before it connects."""
    error: OSError | None = None
    # name resolution is not bounded by the deadline (getaddrinfo has no timeout); the endpoint
    # is a name the user configured, and a local resolver answers or fails on its own
    # an ASCII name goes in as bytes: a str is run through the IDNA codec first, whose import
    # (encodings.idna, stringprep, unicodedata) costs ~2 ms of every cold run and which leaves an
    # ASCII name as it is
    host: str | bytes = hostname.encode() if hostname.isascii() else hostname
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            if cancel is not None:
                cancel.watch(sock)
            sock.settimeout(_left(deadline))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as e:
            sock.close()
            error = e
            if isinstance(e, TimeoutError) or (cancel is not None and cancel.cancelled):
                raise
        finally:
            if cancel is not None:
                cancel.forget(sock)
    raise error or OSError("no address to connect to")


class _DeadlineSocket:
    """The socket ``http.client`` sees: every wait gets only the time left until the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def _arm(self) -> None:
        self.sock.settimeout(_left(self.deadline))

    def sendall(self, data: bytes) -> None:
        self._arm()  # since Python 3.5 the timeout bounds the whole sendall
        self.sock.sendall(data)

    def recv_into(self, buffer: Any) -> int:
        self._arm()
        return self.sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        pass  # http.client closes a Connection: close socket before the body is read; send() closes it


class _DeadlineReader(io.RawIOBase):
    def __init__(self, owner: _DeadlineSocket) -> None:
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._owner.recv_into(buffer)


def _user_agent() -> str:
    from ._version import __version__

    return f"rolesanywhere-signer/{__version__}"


_PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy")


def proxy_for(url: str) -> str | None:
    """The proxy URL for this request, or None (no proxy variable, or ``NO_PROXY`` matches).

    With no proxy variable set (the common case) nothing is imported.
    """
    if not any(k.lower() in _PROXY_VARS and v for k, v in os.environ.items()):
        return None
    from . import proxied

    return proxied.choose(url)
