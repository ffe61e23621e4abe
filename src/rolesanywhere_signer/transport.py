"""HTTP transport behind CreateSession. Injectable, so unit tests need no sockets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import EndpointError, InputError
from .records import Record

DEFAULT_TIMEOUT = 10.0


class HttpResponse(Record):
    __slots__ = ("body", "headers", "status")
    _fields = _shown = ("status", "headers", "body")

    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self._init(status=status, headers=headers, body=body)


class TransientError(EndpointError):
    """A failure worth another attempt (connection refused, reset, timeout)."""


class Transport(Protocol):
    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse: ...

    def close(self) -> None: ...


def resolve_verify(verify: bool | str, env: Mapping[str, str] | None = None) -> bool | str:
    """``--no-verify-ssl`` wins; else a CA bundle from ``AWS_CA_BUNDLE``; else the system store."""
    env = os.environ if env is None else env
    if verify is False:
        return False
    bundle = verify if isinstance(verify, str) else env.get("AWS_CA_BUNDLE")
    if bundle:
        if not os.path.isfile(bundle):
            raise InputError(f"CA bundle {bundle} (AWS_CA_BUNDLE) does not exist or is not a file")
        return bundle
    return True


class HttpTransport:
    """``http.client`` + ``ssl`` with timeouts always on; proxies from the environment are honoured.

    Not ``requests``: importing it costs about a third of a cold ``credential-process`` run, for
    one POST on a fresh connection. Kept to what requests did for us: ``HTTPS_PROXY``/``HTTP_PROXY``/
    ``ALL_PROXY`` with ``NO_PROXY`` (names, suffixes, ``*`` and CIDR blocks), ``AWS_CA_BUNDLE`` (then
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, then certifi's bundle when installed, else the system
    store), ``--no-verify-ssl``, a connect timeout of at most 5 s and a read timeout, and the same
    error messages.
    """

    def __init__(self, verify: bool | str = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._verify = resolve_verify(verify)
        self._timeout = timeout
        self._connect_timeout = min(5.0, timeout)
        self._context: Any = None

    def _ssl_context(self) -> Any:
        if self._context is None:
            import ssl

            if self._verify is False:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=_ca_file(self._verify))
            self._context = ctx
        return self._context

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        import http.client
        import socket
        import ssl

        parts = urlsplit(url)
        host = parts.netloc
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EndpointError(f"endpoint URL {url.split('?')[0]} is invalid") from None
        hostname = parts.hostname or ""
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        proxy = _proxy_for(parts.scheme, hostname)
        conn: http.client.HTTPConnection
        try:
            if proxy is None:
                if parts.scheme == "https":
                    conn = http.client.HTTPSConnection(
                        hostname, port, timeout=self._connect_timeout, context=self._ssl_context()
                    )
                else:
                    conn = http.client.HTTPConnection(hostname, port, timeout=self._connect_timeout)
            else:
                conn = _proxied_connection(proxy, parts.scheme, hostname, port, self)
                if parts.scheme == "http":
                    target = url  # plain HTTP through a proxy: absolute URI, no tunnel
        except ValueError:
            raise EndpointError(f"endpoint URL {url.split('?')[0]} is invalid") from None
        try:
            try:
                conn.connect()
            except ssl.SSLError as e:
                raise EndpointError(
                    f"TLS verification of {host} failed: {_reason(e)}",
                    hint="trust its CA with AWS_CA_BUNDLE, or use --no-verify-ssl for local tests",
                ) from None
            except TimeoutError:
                if proxy is not None:
                    raise TransientError(f"the proxy refused or failed the connection to {host}") from None
                raise TransientError(f"connecting to {host} timed out after {self._connect_timeout:g}s") from None
            except OSError as e:
                if proxy is not None:
                    raise TransientError(f"the proxy refused or failed the connection to {host}") from None
                raise TransientError(f"cannot connect to {host}: {_reason(e)}") from None
            assert conn.sock is not None
            conn.sock.settimeout(self._timeout)
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                names = {k.lower() for k in headers}
                for k, v in headers.items():
                    conn.putheader(k, v)
                if "host" not in names:
                    conn.putheader("Host", host)
                if "content-length" not in names:
                    conn.putheader("Content-Length", str(len(body)))
                if "user-agent" not in names:
                    conn.putheader("User-Agent", _user_agent())
                conn.endheaders(body)  # headers and body in one send: no Nagle/delayed-ACK stall
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                raise TransientError(f"{host} did not answer within {self._timeout:g}s") from None
            except (http.client.HTTPException, OSError) as e:
                raise TransientError(f"cannot connect to {host}: {_reason(e)}") from None
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def close(self) -> None:
        pass


#: the transport ``create_session`` uses unless given another
DefaultTransport = HttpTransport


def _user_agent() -> str:
    from ._version import __version__

    return f"rolesanywhere-signer/{__version__}"


def _ca_file(verify: bool | str) -> str | None:
    """The CA bundle to trust: the one given, else requests' variables, else certifi, else None (system)."""
    if isinstance(verify, str):
        return verify
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


_PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy")


def _proxy_for(scheme: str, hostname: str) -> str | None:
    """The proxy URL for this request from the environment, or None (no proxy, or NO_PROXY matches)."""
    names = {k.lower() for k in os.environ}
    if not any(v in names for v in _PROXY_VARS):
        return None  # the common case: no urllib.request import at all
    import urllib.request

    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or _bypass(hostname):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _bypass(hostname: str) -> bool:
    import urllib.request

    if urllib.request.proxy_bypass(hostname):  # type: ignore[attr-defined]
        return True
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    import ipaddress

    try:
        addr = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    for entry in no_proxy.replace(" ", "").split(","):
        if "/" in entry:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _proxied_connection(proxy: str, scheme: str, hostname: str, port: int, transport: HttpTransport) -> Any:
    """A connection through an HTTP proxy: CONNECT tunnel for https, absolute URI for http."""
    import base64
    import http.client
    from urllib.parse import unquote

    p = urlsplit(proxy)
    headers: dict[str, str] = {}
    if p.username is not None:
        cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred).decode()
    proxy_port = p.port or (443 if p.scheme == "https" else 80)
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            p.hostname or "", proxy_port, timeout=transport._connect_timeout, context=transport._ssl_context()
        )
        conn.set_tunnel(hostname, port, headers=headers)
        return conn
    conn2 = http.client.HTTPConnection(p.hostname or "", proxy_port, timeout=transport._connect_timeout)
    if headers:
        conn2.putheader = _with_headers(conn2.putheader, headers)  # type: ignore[method-assign]
    return conn2


def _with_headers(putheader: Any, extra: dict[str, str]) -> Any:
    sent = False

    def wrapped(header: str, *values: str) -> None:
        nonlocal sent
        if not sent:
            sent = True
            for k, v in extra.items():
                putheader(k, v)
        putheader(header, *values)

    return wrapped


def _reason(e: BaseException) -> str:
    """The innermost, human part of a socket, ssl or http.client error."""
    text = str(e)
    for marker in ("Errno 111", "Connection refused"):
        if marker in text:
            return "connection refused"
    if (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or "Temporary failure in name resolution" in text
    ):
        return "host name not found"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        import re

        m = re.search(r"certificate verify failed: ([^(')]+)", text)
        return m.group(1).strip() if m else "certificate verify failed"
    if (
        "Connection reset" in text
        or "RemoteDisconnected" in text
        or "Connection aborted" in text
        or "Remote end closed connection" in text
        or isinstance(e, (ConnectionResetError, BrokenPipeError))
        or type(e).__name__ in ("RemoteDisconnected", "IncompleteRead", "BadStatusLine")
    ):
        return "the connection was closed without an answer"
    if isinstance(e, OSError) and not type(e).__module__.startswith("requests"):
        return "ConnectionError"  # the name requests gave every other socket failure
    return type(e).__name__
