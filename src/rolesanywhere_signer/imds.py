"""The ``serve`` HTTP server: an IMDSv2 emulation and a container credentials endpoint.

The request path only reads the refresher's cache: it never signs, so it answers in
microseconds while a refresh (or a slow token) takes seconds. With nothing valid it answers 500,
never 200 with empty or expired credentials. Tokens are random, kept in a bounded store, expire,
and never appear in a log line.

Defences: loopback listeners by default with IP TTL / hop limit 1 (as on EC2), peers that are
not loopback refused unless allowed, ``X-Forwarded-For`` refused, and a ``Host`` header that must
be an IP literal we serve, ``localhost`` or the IMDS address — a DNS-rebinding page's
``Host: evil.example`` never gets credentials.

This module holds the configuration, the token store and ``CredentialServer``; the HTTP layer
(parser, routes, the asyncio thread) is ``imds_server``.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .imds_wire import (
    CONTAINER_PATH,
    CREDS_PATH,
    IMDS_HOSTS,
    MAX_TTL,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
    host_of,
    is_loopback,
)
from .refresher import Refresher

__all__ = [
    "CONTAINER_PATH",
    "CREDS_PATH",
    "DEFAULT_BIND",
    "IMDS_HOSTS",
    "MAX_TTL",
    "TOKEN_HEADER",
    "TOKEN_PATH",
    "TTL_HEADER",
    "CredentialServer",
    "ServeConfig",
    "TokenStore",
    "host_of",
    "is_loopback",
    "new_container_token",
    "role_name_of",
]

if TYPE_CHECKING:
    from .imds_server import HttpService, Listener

log = logging.getLogger("rolesanywhere_signer.serve")

DEFAULT_BIND = ("127.0.0.1", "::1")


#: the stand-in for an expiry bucket whose tokens have all left early (never added to: every
#: use checks for it by identity first)
_EMPTIED: set[str] = set()


class TokenStore:
    """IMDSv2 session tokens: random, expiring, bounded; PUT and GET cost the same at any size.

    Two insertion-ordered maps: tokens never presented yet (``_fresh``) and tokens a client has
    used (``_used``, in least-recently-used order). A PUT that finds ``limit`` fresh tokens drops
    the oldest *fresh* one, so a flood of PUTs can never evict a token a client is using; used
    tokens have their own bound (``used_limit``, least recently used dropped first), which only
    GETs with valid tokens can fill.

    Expiry is bucketed by the second: every live token sits in the bucket of the second after it
    expires, and a heap holds each bucket's second once. A PUT empties the buckets whose second
    has passed; a token dropped early (evicted, or found expired by a GET) leaves its bucket at
    once. So every operation is O(1) plus O(log n) heap steps per second of expiry, nothing is
    ever rebuilt, the buckets hold exactly the live tokens, and the heap at most one entry per
    second of the longest TTL.
    """

    def __init__(
        self, limit: int = 4096, monotonic: Callable[[], float] = time.monotonic, *, used_limit: int | None = None
    ) -> None:
        self._fresh: OrderedDict[str, float] = OrderedDict()
        self._used: OrderedDict[str, float] = OrderedDict()
        #: expiry second -> the tokens expiring in the second before it; and those seconds, a heap
        self._buckets: dict[int, set[str]] = {}
        self._seconds: list[int] = []
        self._limit = limit
        self._used_limit = limit if used_limit is None else used_limit
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def issue(self, ttl: int) -> str:
        # 256 bits from the OS, as secrets.token_hex(32) makes them, minus its two Python-level
        # calls (a PUT is half of every IMDSv2 fetch)
        token = os.urandom(32).hex()
        now = self._monotonic()
        expires = now + ttl
        with self._lock:
            if self._seconds and self._seconds[0] <= now:
                self._expire(now)
            fresh = self._fresh
            while len(fresh) >= self._limit:
                old, old_expires = fresh.popitem(last=False)  # the oldest never-used token
                self._unbucket(old, old_expires)
            fresh[token] = expires
            second = int(expires) + 1
            bucket = self._buckets.get(second)
            if bucket is None:
                bucket = self._buckets[second] = set()
                heapq.heappush(self._seconds, second)
            elif bucket is _EMPTIED:
                bucket = self._buckets[second] = set()  # its second is still in the heap
            bucket.add(token)
        return token

    def _unbucket(self, token: str, expires: float) -> None:
        second = int(expires) + 1
        bucket = self._buckets.get(second)
        if bucket is not None and bucket is not _EMPTIED:
            bucket.discard(token)
            if not bucket:
                # the second stays (its heap entry is popped when it passes, so a second is never
                # pushed twice), its set goes: a flood of distinct TTLs keeps no empty sets
                self._buckets[second] = _EMPTIED

    def _expire(self, now: float) -> None:
        seconds, buckets, fresh, used = self._seconds, self._buckets, self._fresh, self._used
        while seconds and seconds[0] <= now:
            for token in buckets.pop(heapq.heappop(seconds), ()):
                if fresh.pop(token, None) is None:
                    used.pop(token, None)

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        now = self._monotonic()
        with self._lock:
            used = self._used
            expires = used.get(token)
            if expires is not None:
                if expires <= now:
                    del used[token]
                    self._unbucket(token, expires)
                    return False
                used.move_to_end(token)
                return True
            expires = self._fresh.pop(token, None)
            if expires is None:
                return False
            if expires <= now:
                self._unbucket(token, expires)
                return False
            while len(used) >= self._used_limit:
                old, old_expires = used.popitem(last=False)
                self._unbucket(old, old_expires)
            used[token] = expires
        return True

    def bookkeeping(self) -> tuple[int, int]:
        """(tokens in expiry buckets, seconds in the heap): what tests check stays bounded."""
        with self._lock:
            return sum(len(b) for b in self._buckets.values()), len(self._seconds)

    def __len__(self) -> int:
        with self._lock:
            return len(self._fresh) + len(self._used)

    def __repr__(self) -> str:
        return f"TokenStore({len(self)} tokens)"


@dataclass(frozen=True)
class ServeConfig:
    role_name: str
    binds: Sequence[str] = DEFAULT_BIND
    port: int = 9911
    hop_limit: int = 1
    allow_remote: bool = False
    #: the container endpoint answers only when a token exists (written with --container-token-file)
    #: a bytearray from serve, so it can be overwritten on close (str accepted for the library)
    container_token: str | bytearray | None = None
    #: open connections at most; past it the oldest idle one is dropped (also bounded by the
    #: open-files limit)
    max_connections: int = 256
    #: seconds a client has to send its request line and headers
    header_timeout: float = 5.0

    def __repr__(self) -> str:
        return (
            f"ServeConfig(role_name={self.role_name!r}, binds={list(self.binds)!r}, port={self.port}, "
            f"hop_limit={self.hop_limit}, allow_remote={self.allow_remote}, "
            f"container_endpoint={self.container_token is not None}, max_connections={self.max_connections}, "
            f"header_timeout={self.header_timeout:g})"
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


@dataclass(frozen=True)
class ServedIdentity:
    """One named identity: its refresher and where it is served.

    The default identity answers IMDS (an instance has one role) and ``/credentials``; every
    identity with a container token answers ``/credentials/<name>``.
    """

    name: str
    refresher: Refresher
    role_name: str
    container_token: str | bytearray | None = field(default=None, repr=False)
    default: bool = False
    #: renewal (issue 17) reports its state here for the metrics: "off", "due", "failed", …
    renewal_state: Callable[[], str] | None = field(default=None, repr=False, compare=False)


class CredentialServer:
    """Listeners on every bound address, sharing one token store; one refresher per identity."""

    def __init__(
        self,
        refresher: Refresher,
        config: ServeConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        identities: Sequence[ServedIdentity] | None = None,
    ) -> None:
        #: the default identity's refresher (the only one with the command-line flags)
        self.refresher = refresher
        self.config = config
        self.identities: tuple[ServedIdentity, ...] = tuple(
            identities
            if identities is not None
            else (ServedIdentity("default", refresher, config.role_name, config.container_token, default=True),)
        )
        self.tokens = TokenStore(monotonic=monotonic)
        #: bound sockets, one per address (the HTTP layer is imds_server: one asyncio thread)
        self._servers: list[Listener] = []
        self._service: HttpService | None = None

    def set_hop_limit(self, sock: socket.socket, family: int) -> None:
        # EC2's IMDS answers with TTL 1 so that a container behind a NAT hop cannot reach it
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, self.config.hop_limit)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.config.hop_limit)

    def bind(self) -> None:
        """Bind every address (errors surface before the first CreateSession); do not listen yet."""
        from .imds_server import bind_listener

        port = self.config.port
        for address in self.config.binds:
            try:
                listener = bind_listener(self, address, port)
            except OSError as e:
                if ":" in address and address == "::1" and tuple(self.config.binds) == DEFAULT_BIND:
                    log.warning("IPv6 loopback is unavailable (%s); serving on 127.0.0.1 only", e.strerror)
                    continue
                self.close()
                from .errors import InputError

                raise InputError(
                    f"cannot listen on {address} port {port}: {e.strerror or type(e).__name__}",
                    hint="is another serve running? pick another --port",
                ) from None
            port = port or int(listener.server_address[1])  # --port 0: every address on the same port
            self._servers.append(listener)

    def adopt(self, sockets: Sequence[socket.socket]) -> None:
        """Serve on listening sockets handed over by the service manager (socket activation)."""
        from .imds_server import Listener

        for sock in sockets:
            self.set_hop_limit(sock, sock.family)
            self._servers.append(Listener(sock, sock.family))

    @property
    def serving(self) -> bool:
        """Whether the HTTP thread is still running (systemd's watchdog is fed only while it is)."""
        thread = getattr(self._service, "_thread", None)
        return thread is not None and thread.is_alive()

    @property
    def port(self) -> int:
        return int(self._servers[0].server_address[1])

    @property
    def addresses(self) -> list[str]:
        return [str(s.server_address[0]) for s in self._servers]

    def start(self) -> CredentialServer:
        """Listen, and answer from one background thread running an asyncio loop."""
        from .imds_server import HttpService

        self._service = HttpService(
            self,
            list(self._servers),
            max_connections=self.config.max_connections,
            header_timeout=self.config.header_timeout,
        )
        self._service.start()
        return self

    def close(self) -> None:
        if self._service is not None:
            self._service.close()  # stops the loop, drops connections, closes the listeners
        for listener in self._servers:
            listener.socket.close()
        self._servers, self._service = [], None

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
