"""Requests that go through a proxy: ``requests`` (and urllib3) do the proxy part.

Imported only when a proxy variable is set. What ``requests`` does for us here: TLS to an
``https://`` proxy (so the ``Proxy-Authorization`` header and everything after it travel
encrypted), the CONNECT tunnel with the proxy credentials from the proxy URL, the absolute-form
request for ``http://`` endpoints, and the ``NO_PROXY`` rules. What we keep: the TLS context
(``transport.tls_context``, for the proxy and the endpoint alike: ``requests`` would otherwise add
certifi's roots to any verified context), the deadline over the whole attempt, the 1 MiB cap, the
cancel token, and no ``.netrc``, no redirects, no default headers.

The deadline: urllib3's timeouts apply per socket operation, so a watchdog timer shuts the
attempt's sockets down when the deadline passes (they are registered as urllib3 opens them).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.utils import select_proxy, should_bypass_proxies

from .cancel import CancelToken
from .errors import EndpointError, InputError
from .httpio import (
    AnswerTooLarge,
    ConnectError,
    DeadlineError,
    HttpResponse,
    ProtocolError,
    TlsError,
    map_error,
    read_capped,
)

if TYPE_CHECKING:
    import ssl

_local = threading.local()


class Expired(Exception):
    """The watchdog (deadline) or the cancel token ended the attempt."""


def choose(url: str) -> str | None:
    """The proxy for ``url`` from the environment, or None when ``NO_PROXY`` excludes it."""
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
    host = urlsplit(url).hostname or ""
    if should_bypass_proxies(url, no_proxy=no_proxy) or _in_ipv6_block(host, no_proxy or ""):
        return None
    from urllib.request import getproxies

    proxy = select_proxy(url, getproxies())
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    scheme = proxy.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise InputError(
            f"proxy scheme {scheme}:// is not supported",
            hint="use an http:// or https:// proxy in HTTPS_PROXY/HTTP_PROXY/ALL_PROXY",
        )
    return proxy


def _in_ipv6_block(host: str, no_proxy: str) -> bool:
    """IPv6 CIDR entries (``fd00::/8``), which requests' matcher leaves out."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.version != 6:
        return False
    for entry in no_proxy.replace(" ", "").split(","):
        if "/" in entry:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _register(sock: socket.socket) -> None:
    tokens = getattr(_local, "tokens", ())
    for token in tokens:
        token.watch(sock)
    if tokens:
        _local.socks.append(sock)


class _WatchedHTTP(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _WatchedHTTPS(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """Our TLS context for the endpoint and the proxy; sockets registered with the watchdog."""

    def __init__(self, context: ssl.SSLContext | None, verify: bool) -> None:
        self._context = context
        self._verify = verify
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if proxy not in self.proxy_manager and proxy.lower().startswith("https:") and self._context is not None:
            kwargs["proxy_ssl_context"] = self._context
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        return host_params, ({"ssl_context": self._context} if self._context is not None else {})

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # the context decides what is trusted; requests would load certifi's bundle on top
        conn.cert_reqs = "CERT_REQUIRED" if self._verify else "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None


def send(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    proxy: str,
    context: ssl.SSLContext | None,
    verify: bool,
    deadline: float,
    cancel: CancelToken | None,
    max_answer: int,
) -> HttpResponse:
    import time

    parts = urlsplit(url)
    host = parts.hostname or ""
    left = deadline - time.monotonic()
    watchdog = CancelToken()
    timer = threading.Timer(max(0.0, left), watchdog.cancel)
    timer.daemon = True
    tokens = [watchdog] if cancel is None else [watchdog, cancel]
    session = requests.Session()
    session.trust_env = False  # the proxy is chosen already; never .netrc or REQUESTS_CA_BUNDLE
    session.headers.clear()  # only our (signed) headers, plus Host and Content-Length
    session.mount("http://", _Adapter(context, verify))
    session.mount("https://", _Adapter(context, verify))
    _local.tokens = tokens
    _local.socks = []
    timer.start()
    try:
        try:
            resp = session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                proxies={parts.scheme: proxy},
                timeout=(max(0.001, left), max(0.001, left)),
                allow_redirects=False,
                stream=True,
                verify=verify,
            )
            try:
                length_text = resp.headers.get("content-length")
                length = int(length_text) if length_text and length_text.isdigit() and len(length_text) < 19 else None
                data = read_capped(length, lambda n: resp.raw.read(n, decode_content=False), max_answer, host)
            finally:
                resp.close()
        except AnswerTooLarge:
            raise
        except Exception as e:  # noqa: BLE001 - mapped by type
            if any(t.cancelled for t in tokens):
                raise Expired from None
            raise _mapped(e, host, proxy, deadline) from None
        if any(t.cancelled for t in tokens):
            raise Expired
        return HttpResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, data)
    finally:
        timer.cancel()
        for sock in _local.socks:  # the refresher's token lives on: it must not keep them
            for token in tokens:
                token.forget(sock)
        _local.tokens, _local.socks = (), []
        session.close()


def _mapped(e: BaseException, host: str, proxy: str, deadline: float) -> BaseException:
    from requests import exceptions as rx

    shown = _proxy_shown(proxy)
    if isinstance(e, rx.ProxyError):
        return ConnectError(
            f"the proxy {shown} refused or failed the connection to {host}",
            hint="check the proxy address and its credentials in HTTPS_PROXY/HTTP_PROXY",
        )
    if isinstance(e, rx.SSLError):
        cause = _root(e)
        mapped = map_error(cause, host, 0, connected=False) if cause is not e else None
        if isinstance(mapped, TlsError):
            return mapped
        return TlsError(f"TLS with {host} or the proxy {shown} failed", hint="trust its CA with AWS_CA_BUNDLE")
    if isinstance(e, rx.Timeout):
        return DeadlineError(f"{host} did not answer in time (through the proxy {shown})")
    if isinstance(e, rx.ConnectionError):
        cause = _root(e)
        if cause is not e and isinstance(cause, OSError):
            mapped = map_error(cause, shown, 0, connected=False)
            if isinstance(mapped, EndpointError):
                return type(mapped)(f"{mapped.message} (the proxy)", hint=mapped.hint)
        return ConnectError(f"cannot reach {host} through the proxy {shown}")
    if isinstance(e, (rx.RequestException, urllib3.exceptions.HTTPError)):
        return ProtocolError(f"{host} sent a malformed answer or closed the connection (through the proxy)")
    raise e


def _root(e: BaseException) -> BaseException:
    """The innermost cause: requests wraps urllib3's error, which wraps the OSError or ssl error."""
    seen: set[int] = set()
    cur: BaseException = e
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt: BaseException | None = None
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            nxt = reason
        elif cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        elif cur.__cause__ is not None:
            nxt = cur.__cause__
        if nxt is None:
            break
        cur = nxt
    return cur


def _proxy_shown(proxy: str) -> str:
    """The proxy without its credentials: they never appear in a message."""
    p = urlsplit(proxy)
    return f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}"
