"""The HTTP/1.1 layer of ``serve``: one asyncio loop in one thread, a small strict parser.

``http.server`` parses every request's headers with ``email.parser`` and runs a thread per
connection; at 64 keep-alive clients those threads fight over the GIL and the p99 reaches
hundreds of milliseconds. Here one thread owns every connection: requests are parsed with
``bytes`` operations, the answer goes out in one write, and the credentials document is rendered
once per refresher generation, not per request.

The routes, status codes, headers and bodies are those of the ``http.server`` handler this
replaced (``imds.answer`` holds them); protocol errors get the same ``http.server`` error pages.
Limits: a 64 KiB request line, 64 KiB and 100 lines of headers, 64 KiB bodies (a longer or chunked
body is not read and the connection closes after the answer), 10 s idle keep-alive.

Hostile clients cannot starve the others:

- **a connection cap** (``--max-connections``, default 256, and never more than the open-files
  limit allows; serve raises the soft limit to the hard one at start): past it the oldest idle
  connection is dropped, else the one that has been sending its headers longest;
- **a header deadline** (``--header-timeout``, default 5 s) to send the request line and headers,
  so connections that drip a line every few seconds are dropped;
- **back-pressure**: a connection whose answers queue up (it does not read them) is not read
  until they drain, and at most ``PER_TURN`` pipelined requests are answered per turn of the loop
  before the other connections get theirs;
- **out of descriptors** (EMFILE/ENFILE at accept): one warning a minute, idle connections
  dropped, and asyncio accepts again a second later; asyncio's own errors never print tracebacks;
- **request smuggling**: Content-Length with Transfer-Encoding, two Content-Length or two Host
  headers, and numbers longer than 10 digits (Content-Length, the token TTL) get 400 and a close.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import functools
import hmac
import html
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .credentials import EXPIRATION_FORMAT
from .imds_wire import (
    CONTAINER_PATH,
    CREDS_PATH,
    MAX_TTL,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
    host_of,
    is_loopback,
)
from .refresher import describe_error

if TYPE_CHECKING:
    from .imds import CredentialServer, ServedIdentity

log = logging.getLogger("rolesanywhere_signer.serve")

MAX_REQUEST_LINE = 65536
MAX_HEADER_BYTES = 65536
MAX_HEADERS = 100
MAX_BODY = 65536
IDLE_TIMEOUT = 10.0
BACKLOG = 256
#: the methods the old handler had ``do_*`` for; anything else is 501 before any other check
METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH"})
SERVER_HEADER = b"Server: rolesanywhere-signer \r\n"  # what http.server sent ("name" + " " + "")
_CR_LF = frozenset(b"\r\n")
#: the characters of an RFC 9110 token (a header name)
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_EXPLAIN = {s.value: s.description for s in HTTPStatus}
_TTL_KEY = TTL_HEADER.lower()
_TOKEN_KEY = TOKEN_HEADER.lower()
_TOO_LONG = f"got more than {MAX_HEADER_BYTES} bytes when reading header line"
#: headers that must appear at most once (RFC 9110/9112: a second one is a smuggling attempt)
_SINGLE = frozenset({"host", "content-length"})
#: the longest number accepted in a header (Content-Length, the token TTL): int() of 5,000 digits
#: is slow and raises on Python 3.11+
MAX_DIGITS = 10
#: requests answered from one connection before the others get a turn (pipelining floods)
PER_TURN = 4
#: the write buffer above which a connection that does not read its answers stops being read
WRITE_HIGH_WATER = 65536
#: default connection cap and header deadline (``serve --max-connections``, ``--header-timeout``)
MAX_CONNECTIONS = 256
HEADER_TIMEOUT = 5.0
#: descriptors kept for everything but connections (listeners, the loop, the refresher, files)
FD_RESERVE = 24
SWEEP_INTERVAL = 0.5
#: connections accepted per readiness of a listener, and the pause after running out of descriptors
ACCEPT_BATCH = 64
ACCEPT_RETRY = 0.1


class Headers(dict[str, str]):
    """Request headers by lowercased name; the first occurrence wins (as ``email.message.get``)."""


class Listener:
    """One bound socket (``address_family``, ``socket``, ``server_address``, ``handle_error``
    keep the attribute names of the ``socketserver`` servers it replaced)."""

    def __init__(self, sock: socket.socket, family: int) -> None:
        self.socket = sock
        self.address_family = family
        self.server_address: tuple[Any, ...] = sock.getsockname()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # called inside the except block; a crashing request must never print a traceback
        log.debug("connection from %s ended with an error", client_address[0] if client_address else "?")


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode("latin-1")
        return self._line


_date = _Date()


#: per status: the status line and the Server header, and per content type the start of the
#: headers that follow the Date line (an answer is these pieces joined, not a format per request)
_HEADS: dict[int, bytes] = {}
_TYPES: dict[str, bytes] = {}
_TAIL = b"\r\nCache-Control: no-store\r\n\r\n"


def response(status: int, body: bytes, content_type: str, *, version: str = "HTTP/1.1", extra: bytes = b"") -> bytes:
    """A whole answer as the old handler's ``_send`` wrote it (status, Server, Date, type, length)."""
    if version == "HTTP/0.9":
        return body  # http.server wrote neither status line nor headers to an HTTP/0.9 client
    head = _HEADS.get(status)
    if head is None:
        head = _HEADS[status] = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n".encode("latin-1") + SERVER_HEADER
    ctype = _TYPES.get(content_type)
    if ctype is None:
        ctype = f"Content-Type: {content_type}\r\nContent-Length: ".encode("latin-1")
        if len(_TYPES) < 16:  # the routes use three
            _TYPES[content_type] = ctype
    return b"".join((head, _date.line(), extra, ctype, b"%d" % len(body), _TAIL, body))


def error_page(
    status: int,
    message: str | None = None,
    explain: str | None = None,
    *,
    head: bool = False,
    version: str = "HTTP/1.1",
) -> bytes:
    """``http.server``'s ``send_error``: an HTML page and ``Connection: close``."""
    short = message if message is not None else _REASONS.get(status, "???")
    body = (
        BaseHTTPRequestHandler.error_message_format
        % {
            "code": status,
            "message": html.escape(short, quote=False),
            "explain": html.escape(explain or _EXPLAIN.get(status, "???"), quote=False),
        }
    ).encode("utf-8", "replace")
    if version == "HTTP/0.9":
        return b"" if head else body
    status_line = f"HTTP/1.1 {status} {short}\r\n".encode("latin-1", "replace")
    content_type = BaseHTTPRequestHandler.error_content_type
    headers = f"Connection: close\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return b"".join((status_line, SERVER_HEADER, _date.line(), headers, b"" if head else body))


class _Request:
    __slots__ = ("close", "headers", "method", "need", "path", "requestline", "version")

    def __init__(self, method: str, path: str, version: str, headers: Headers, close: bool, requestline: str) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.close = close
        self.need = 0  # body bytes still to read before answering
        self.requestline = requestline


class _BadRequest(Exception):
    def __init__(self, answer: bytes) -> None:
        self.answer = answer


def _parse_version(version: str) -> tuple[int, int]:
    if not version.startswith("HTTP/"):
        raise ValueError
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() and len(p) <= 10 for p in parts):
        raise ValueError
    return int(parts[0]), int(parts[1])


#: request lines seen before -> (method, path, version, close, requestline): clients repeat the
#: same few lines, so the checks below run once per distinct line. Only accepted lines of at most
#: ``_LINE_CACHE_MAX_LEN`` bytes are kept, and at most ``_LINE_CACHE_SIZE`` of them.
_LINE_CACHE: dict[bytes, tuple[str, str, str, bool, str]] = {}
_LINE_CACHE_SIZE = 256
_LINE_CACHE_MAX_LEN = 512


#: header lines seen before -> (name, value), the same way: Host, User-Agent and the TTL header
#: repeat from request to request. Lines that carry a secret are never kept.
_HEADER_CACHE: dict[bytes, tuple[str, str]] = {}
_HEADER_CACHE_SIZE = 512
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", _TOKEN_KEY})


def _request_line(first: bytes) -> tuple[str, str, str, bool, str]:
    """Method, path, version, whether the connection closes after it, and the line as text."""
    cached = _LINE_CACHE.get(first)
    if cached is not None:
        return cached
    if len(first) > MAX_REQUEST_LINE:
        raise _BadRequest(error_page(414, version=""))
    requestline = first.decode("latin-1")
    words = requestline.split()
    version, close = "HTTP/0.9", True
    if len(words) >= 3:
        version = words[-1]
        try:
            number = _parse_version(version)
        except ValueError:
            raise _BadRequest(error_page(400, f"Bad request version ({version!r})")) from None
        if number >= (2, 0):
            raise _BadRequest(error_page(505, f"Invalid HTTP version ({version[5:]})"))
        close = number < (1, 1)
    if not 2 <= len(words) <= 3:
        raise _BadRequest(error_page(400, f"Bad request syntax ({requestline!r})", version=version))
    method, path = words[0], words[1]
    if len(words) == 2:
        close = True
        if method != "GET":
            raise _BadRequest(error_page(400, f"Bad HTTP/0.9 request type ({method!r})", version=version))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # as http.server: never an open redirect or a scheme-relative path
    parsed = (method, path, version, close, requestline)
    if len(first) <= _LINE_CACHE_MAX_LEN:
        if len(_LINE_CACHE) >= _LINE_CACHE_SIZE:
            _LINE_CACHE.clear()  # a client cycling through distinct lines: start over, stay bounded
        _LINE_CACHE[first] = parsed
    return parsed


#: whole heads seen before -> what parse_head made of them, for heads that carry no secret (a
#: token PUT is the same bytes every time; a GET carries its token and is parsed line by line).
#: The headers dict is shared by every request with that head: nothing writes to it after parsing.
_HEAD_CACHE: dict[bytes, tuple[str, str, str, Headers, bool, str]] = {}
_HEAD_CACHE_SIZE = 256
_HEAD_CACHE_MAX_LEN = 1024


def parse_head(head: bytes) -> _Request:
    """Request line and headers (without the blank line); raise ``_BadRequest`` with the answer."""
    seen = _HEAD_CACHE.get(head)
    if seen is not None:
        return _Request(*seen)
    req = _parse_head(head)
    if len(head) <= _HEAD_CACHE_MAX_LEN and _SECRET_HEADERS.isdisjoint(req.headers):
        if len(_HEAD_CACHE) >= _HEAD_CACHE_SIZE:
            _HEAD_CACHE.clear()
        _HEAD_CACHE[head] = (req.method, req.path, req.version, req.headers, req.close, req.requestline)
    return req


def _parse_head(head: bytes) -> _Request:
    lines = head.split(b"\n")
    method, path, version, close, requestline = _request_line(lines[0].rstrip(b"\r"))
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest(error_page(431, "Too many headers", f"got more than {MAX_HEADERS} headers", version=version))
    if len(head) - len(lines[0]) > MAX_HEADER_BYTES:
        raise _BadRequest(error_page(431, "Line too long", _TOO_LONG, version=version))
    headers = Headers()
    del lines[0]
    known = _HEADER_CACHE
    for raw in lines:
        parsed = known.get(raw)
        if parsed is None:
            line = raw.rstrip(b"\r")
            colon = line.find(b":")
            name_bytes = line[:colon]
            # strict: a name is a token right before the colon; folded lines and garbage are
            # refused (deleting every token character from the name must leave nothing)
            if colon <= 0 or name_bytes.translate(None, _TOKEN_BYTES):
                raise _BadRequest(error_page(400, "Bad header line", version=version))
            parsed = (name_bytes.lower().decode("ascii"), line[colon + 1 :].decode("latin-1").strip(" \t"))
            if len(raw) <= _LINE_CACHE_MAX_LEN and parsed[0] not in _SECRET_HEADERS:
                if len(known) >= _HEADER_CACHE_SIZE:
                    known.clear()
                known[raw] = parsed
        name = parsed[0]
        if name not in headers:
            headers[name] = parsed[1]
        elif name in _SINGLE:
            # two Hosts or two lengths: a proxy in front may have read the other one (smuggling)
            raise _BadRequest(error_page(400, f"Duplicate {name} header", version=version))
    length = headers.get("content-length")
    if length is not None:
        if "transfer-encoding" in headers:
            raise _BadRequest(error_page(400, "Content-Length with Transfer-Encoding", version=version))
        if not (length.isascii() and length.isdigit()) or len(length) > MAX_DIGITS:
            raise _BadRequest(error_page(400, "Bad Content-Length", version=version))
    conntype = headers.get("connection")
    if conntype is not None:
        conntype = conntype.lower()
        if conntype == "close":
            close = True
        elif conntype == "keep-alive":
            close = False
    return _Request(method, path, version, headers, close, requestline)


class _Connection(asyncio.Protocol):
    """One client connection: a buffer, a strict parser, and the bounds of the module docstring."""

    def __init__(self, service: HttpService, listener: Listener) -> None:
        self.service = service
        self.listener = listener
        self._route = service.routes.answer
        self._time = service.loop.time
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: _Request | None = None
        self.peer: tuple[Any, ...] = ("?",)
        self.peer_ok = False
        self.last = 0.0
        #: when the request line and headers now awaited began (None: idle between requests)
        self.head_started: float | None = 0.0
        self.closing = False
        self.scanned = 0  # how much of buf has been searched for the end of the headers
        self._write_paused = False
        self._scheduled = False  # a turn is queued: requests are left in buf
        self._reading = True
        self._dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.service.opening -= 1
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("?",)
        self.peer_ok = is_loopback(str(self.peer[0]))
        sock = transport.get_extra_info("socket")
        try:
            self.service.app.set_hop_limit(sock, self.listener.address_family)
            # asyncio sets this only for sockets made with proto=IPPROTO_TCP; answers are one write,
            # but a 100 Continue is a second one and must not wait for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            transport.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.last = self.head_started = self._time()
        self.service.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._dropped:
            self.service.closing_fds -= 1
        else:
            self.service.connections.pop(self, None)
        self.closing = True

    @property
    def idle(self) -> bool:
        """Between requests, with nothing half-received: the first to go when the cap is reached."""
        return self.head_started is None and not self.buf and self.pending is None

    def drop(self) -> None:
        """Abort: asyncio closes the socket on the next turn of the loop (counted until then)."""
        self.closing = True
        if not self._dropped and self.transport is not None:
            self._dropped = True
            self.service.connections.pop(self, None)
            self.service.closing_fds += 1
            self.transport.abort()

    # reading stops while answers are queued (a client that does not read them) or while
    # requests are left in the buffer for the next turn (a client that pipelines thousands)
    def _update_reading(self) -> None:
        want = not (self._write_paused or self._scheduled or self.closing)
        if want != self._reading and self.transport is not None:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.buf and not self._scheduled and not self.closing:
            self._scheduled = True
            self.service.loop.call_soon(self._turn)
        self._update_reading()

    def eof_received(self) -> bool:
        if self.pending is not None and not self.closing:
            self._run(self.pending, b"")  # a short body: answer what came, as http.server did
        # requests still queued for later turns are not answered after a half-close: the
        # transport is closing, and writes to it would only make asyncio warn
        self.closing = True
        return False  # close our side

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        now = self._time()
        self.last = now
        if (
            not self.buf
            and self.pending is None
            and not (self._scheduled or self._write_paused)
            and data.endswith(b"\r\n\r\n")
            and data.find(b"\n\r\n") == len(data) - 3
            and data[0] not in _CR_LF
            and data.find(b"\n\n") < 0
        ):
            # the usual packet: one whole request head (its first end is the last bytes), nothing
            # buffered before it. _turn would copy it into the buffer, find the end again and copy
            # it out; here it goes to the same checks and routes straight from the packet.
            self._one(data[:-4])
            return
        if self.head_started is None:
            self.head_started = now
        self.buf += data
        if not self._scheduled:
            self._turn(queued=False)

    def _one(self, head: bytes) -> None:
        """data_received's usual case: ``head`` is the whole packet bar its blank line."""
        out: list[bytes] = []
        self.head_started = None
        try:
            req = self._admit(head, out)
            if req is not None:
                if req.need:  # its body comes in later packets: the buffered path takes over
                    self.pending = req
                    self.head_started = self._time()
                else:
                    self._respond(req, b"", out)
        except Exception:  # noqa: BLE001 - any handler bug: drop this connection, keep serving
            self._crashed()
        self._flush(out)

    def _turn(self, queued: bool = True) -> None:
        """Answer at most ``PER_TURN`` buffered requests; queue another turn if more are left."""
        if queued:
            self._scheduled = False
        if self.closing or self._write_paused:
            self._update_reading()
            return
        buf = self.buf
        out: list[bytes] = []
        answered = 0
        try:
            while not self.closing:
                if answered >= PER_TURN:
                    self._scheduled = True
                    self.service.loop.call_soon(self._turn)
                    break
                req = self.pending
                if req is None:
                    if not buf:
                        break
                    req = self._next_head(out)
                    if req is None:
                        break
                    if req.need:
                        self.pending = req
                if req.need:
                    if len(buf) < req.need:
                        break
                    body = bytes(buf[: req.need])
                    del buf[: req.need]
                    req.need = 0
                    self.pending = None
                else:
                    body = b""
                self._respond(req, body, out)
                answered += 1
        except Exception:  # noqa: BLE001 - any handler bug: drop this connection, keep serving
            self._crashed()
        if self.pending is None and not buf:
            self.head_started = None  # idle: the idle timeout applies, not the header deadline
        elif self.pending is None and self.head_started is None:
            self.head_started = self._time()
        self._flush(out)

    def _respond(self, req: _Request, body: bytes, out: list[bytes]) -> None:
        out.append(self._answer(req, body))
        if req.close:
            self.closing = True

    def _crashed(self) -> None:
        """A bug in handling a request: this connection goes (no traceback), the others stay."""
        try:
            self.listener.handle_error(None, self.peer)
        finally:
            self.closing = True

    def _flush(self, out: list[bytes]) -> None:
        """Send the turn's answers in one write; close if asked to; pause or resume reading."""
        assert self.transport is not None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            self.transport.close()
        if self._reading is (self._write_paused or self._scheduled or self.closing):
            self._update_reading()  # only when reading must pause or resume

    def _next_head(self, out: list[bytes]) -> _Request | None:
        buf = self.buf
        if buf and buf[0] in _CR_LF:
            while buf[:2] == b"\r\n" or buf[:1] == b"\n":  # empty lines before a request are ignored
                del buf[: 2 if buf[:1] == b"\r" else 1]
                self.scanned = 0
        # scan only what came since the last look: a client trickling a byte at a time must not
        # make every packet rescan up to 128 KiB
        start = self.scanned - 2 if self.scanned > 2 else 0
        end = buf.find(b"\n\r\n", start)
        # a bare-LF end counts only before the first CRLF one: searching the whole buffer for it
        # would rescan every pipelined request behind this one (quadratic under a flood)
        b = buf.find(b"\n\n", start, end + 2 if end >= 0 else len(buf))
        skip = 3
        if b >= 0:  # never at or after a CRLF end (that one has "\r" where this has "\n")
            end, skip = b, 2
        if end < 0:
            self.scanned = len(buf)
            if len(buf) > MAX_HEADER_BYTES:
                nl = buf.find(b"\n", 0, MAX_REQUEST_LINE + 2)
                if nl < 0 and len(buf) > MAX_REQUEST_LINE + 1:
                    out.append(error_page(414, version=""))
                    self.closing = True
                elif nl >= 0 and len(buf) - nl > MAX_HEADER_BYTES:
                    out.append(error_page(431, "Line too long", _TOO_LONG))
                    self.closing = True
            return None
        self.scanned = 0
        head = bytes(buf[:end])
        del buf[: end + skip]
        self.head_started = self._time() if buf else None
        return self._admit(head, out)

    def _admit(self, head: bytes, out: list[bytes]) -> _Request | None:
        """A request head's checks before routing: parse, 100 Continue, method, body framing."""
        try:
            req = parse_head(head)
        except _BadRequest as e:
            out.append(e.answer)
            self.closing = True
            return None
        headers = req.headers
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and req.version >= "HTTP/1.1":
            assert self.transport is not None  # http.server sent this first, before any check
            if out:
                self.transport.write(b"".join(out))
                out.clear()
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if req.method not in METHODS:
            out.append(error_page(501, f"Unsupported method ({req.method!r})", head=req.method == "HEAD"))
            self.closing = True
            return None
        # the body: read when small and sized, else left unread and the connection closed after
        length = headers.get("content-length")  # digits only, at most MAX_DIGITS (parse_head)
        if length and int(length) <= MAX_BODY:
            req.need = int(length)
        elif length or headers.get("transfer-encoding"):
            req.close = True
        return req

    def _run(self, req: _Request, body: bytes) -> None:
        self.pending = None
        assert self.transport is not None
        try:
            self.transport.write(self._answer(req, body))
        except Exception:  # noqa: BLE001 - as above
            self._crashed()
        self.closing = True
        self.transport.close()

    def _answer(self, req: _Request, body: bytes) -> bytes:
        try:
            status, answer = self._route(req.method, req.path, req.headers, self.peer_ok)
        except _BadRequest as e:  # a value no client sends (a 5,000-digit TTL): answer and close
            req.close = True
            status, answer = 400, e.answer
        if req.version == "HTTP/0.9":
            answer = answer.split(b"\r\n\r\n", 1)[1]
        if log.isEnabledFor(logging.DEBUG):
            # the request line carries no token (tokens travel in headers, which are never logged)
            log.debug('%s "%s" %s', self.peer[0], req.requestline, status)
        return answer


class HttpService:
    """Every listener served by one asyncio loop in one daemon thread."""

    def __init__(
        self,
        app: CredentialServer,
        listeners: list[Listener],
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.app = app
        self.routes = Routes(app)
        self.listeners = listeners
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        #: open connections in the order they came (a dict: ordered, O(1) removal)
        self.connections: dict[_Connection, None] = {}
        self.max_connections = max_connections
        self._fd_soft = _nofile_soft()
        self.header_timeout = header_timeout
        self._readers: list[int] = []
        #: connections accepted and not yet made, and dropped ones not yet closed: both hold a descriptor
        self.opening = 0
        self.closing_fds = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._warned_at = -1e9
        self.shed = 0  # connections dropped to stay under the cap or the descriptor limit

    @property
    def cap(self) -> int:
        """The connection cap: ``max_connections``, lowered to what the open-files limit allows."""
        return max(1, min(self.max_connections, self._fd_soft - FD_RESERVE))

    def admit(self, conn: _Connection) -> None:
        self.connections[conn] = None

    def _evict_one(self) -> bool:
        """Drop the oldest idle connection, else the one that has been sending its headers longest."""
        conns = self.connections
        if not conns:
            return False
        victim = next((c for c in conns if c.idle), None)
        if victim is None:
            victim = min(conns, key=lambda c: c.head_started if c.head_started is not None else c.last)
        self.shed += 1
        victim.drop()
        return True

    def _accept(self, listener: Listener) -> None:
        """Accept what is waiting, never past the cap: descriptors of dropped connections are
        counted until asyncio has closed them, so ``accept`` does not run out of them."""
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) + self.closing_fds + self.opening >= self.cap:
                if _waiting(listener.socket):  # only for a connection that is really there
                    self._evict_one()  # room on the next turn of the loop, when its socket is closed
                return
            try:
                sock, _ = listener.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno in _RESOURCE_ERRNOS:
                    self._out_of_descriptors(e, listener)
                else:
                    log.debug("accept failed: %s", e.strerror or type(e).__name__)
                return
            sock.setblocking(False)
            self.opening += 1
            conn = _Connection(self, listener)
            task = self.loop.create_task(self.loop.connect_accepted_socket(functools.partial(_same, conn), sock))
            task.add_done_callback(functools.partial(self._opened, conn, sock))

    def _opened(self, conn: _Connection, sock: socket.socket, task: asyncio.Task[Any]) -> None:
        failed = task.cancelled() or task.exception() is not None
        if failed and conn.transport is None:  # failed before connection_made
            self.opening -= 1
            sock.close()

    def _out_of_descriptors(self, exc: OSError, listener: Listener) -> None:
        """EMFILE/ENFILE with descriptors used elsewhere: shed idle connections, warn once a
        minute, and stop accepting for a moment (the listener would be ready on every turn)."""
        idle = [c for c in self.connections if c.idle] or list(self.connections)
        for conn in idle[: max(4, len(idle) // 4)]:
            self.shed += 1
            conn.drop()
        now = time.monotonic()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            log.warning(
                "out of file descriptors (%s) with %d connections: dropping idle ones; "
                "raise the open-files limit (LimitNOFILE) or lower --max-connections",
                exc.strerror or type(exc).__name__,
                len(self.connections),
            )
        fd = listener.socket.fileno()
        self.loop.remove_reader(fd)
        self.loop.call_later(ACCEPT_RETRY, self.loop.add_reader, fd, self._accept, listener)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors: one debug line each, never a traceback on stderr."""
        if log.isEnabledFor(logging.DEBUG):
            exc = context.get("exception")
            log.debug("serve: %s (%s)", context.get("message", "error"), type(exc).__name__ if exc else "-")

    def start(self) -> None:
        for listener in self.listeners:
            listener.socket.listen(BACKLOG)  # connections queue from here on, even before the loop runs
        self._thread = threading.Thread(target=self._run, name="serve-http", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._listen())
        except BaseException as e:  # noqa: BLE001 - re-raised by start() in the caller's thread
            self._failure = e
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _listen(self) -> None:
        for listener in self.listeners:
            listener.socket.setblocking(False)
            self.loop.add_reader(listener.socket.fileno(), self._accept, listener)
            self._readers.append(listener.socket.fileno())
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        """Drop connections idle for ``IDLE_TIMEOUT`` and those slower than the header deadline."""
        now = self.loop.time()
        idle_limit = now - IDLE_TIMEOUT
        head_limit = now - self.header_timeout
        for conn in [
            c
            for c in self.connections
            if c.last < idle_limit or (c.head_started is not None and c.head_started < head_limit)
        ]:
            conn.drop()
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for fd in self._readers:
            self.loop.remove_reader(fd)
        for conn in list(self.connections):
            conn.drop()
        self.connections.clear()
        self.loop.call_soon(self.loop.stop)

    def close(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:  # the loop closed meanwhile
                pass
            thread.join(timeout=5)
        elif not self.loop.is_closed() and thread is None:
            self.loop.close()
        self._thread = None
        for listener in self.listeners:
            listener.socket.close()


def _waiting(sock: socket.socket) -> bool:
    """Whether a connection waits to be accepted (poll, not select: descriptors may pass 1024)."""
    import select

    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    return bool(p.poll(0))


def _same(conn: _Connection) -> _Connection:
    return conn


_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _nofile_soft() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (systemd's default soft limit is 1024)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            pass
    return _nofile_soft()


def _json(status: int, message: str) -> tuple[int, bytes]:
    body = json.dumps({"Code": "Error", "Message": message}).encode()
    return status, response(status, body, "application/json")


def _token_bytes(token: str | bytearray) -> bytes | bytearray:
    """serve's bytearray as it is (not copied: it is overwritten on close); a library str encoded."""
    return token.encode() if isinstance(token, str) else token


class Routes:
    """What each request gets: the routes, checks and documents of the old ``http.server`` handler."""

    def __init__(self, app: CredentialServer) -> None:
        self.app = app
        self.config = app.config
        self._allow_remote = app.config.allow_remote
        self._tokens = app.tokens
        #: IMDS serves the default identity (an instance has one role); None: IMDS answers 404
        self._default = next((i for i in app.identities if i.default), None)
        #: container path -> (identity, its Authorization token): /credentials/<name>, and
        #: /credentials for the default identity
        self._containers: dict[str, tuple[ServedIdentity, bytes | bytearray]] = {}
        for ident in app.identities:
            if ident.container_token is not None:
                self._containers[f"{CONTAINER_PATH}/{ident.name}"] = (ident, _token_bytes(ident.container_token))
                if ident.default:
                    self._containers[CONTAINER_PATH] = (ident, _token_bytes(ident.container_token))
        self._hosts: dict[str, bool] = {}  # Host header -> allowed (bounded below)
        #: identity name -> (credentials object, container answer body, IMDS answer body):
        #: rendered once per refresh
        self._rendered: dict[str, tuple[object, bytes, bytes]] = {}
        #: (identity name, container?) -> (the body, the Date line, the whole answer): the answer
        #: is built again only when the body or the second changes
        self._answers: dict[tuple[str, bool], tuple[bytes, bytes, bytes]] = {}

    def _host_ok(self, header: str) -> bool:
        """Whether a Host header names this server (remembered for 256 distinct headers)."""
        ok = self._hosts.get(header)
        if ok is None:
            ok = self.config.host_allowed(host_of(header))
            if len(self._hosts) >= 256:
                self._hosts.clear()
            self._hosts[header] = ok
        return ok

    def answer(self, method: str, path: str, headers: dict[str, str], peer_ok: bool) -> tuple[int, bytes]:
        # refusals common to every route, in the old handler's order
        if not peer_ok and not self._allow_remote:
            return _json(403, "requests from other hosts are refused")
        if "x-forwarded-for" in headers:
            return _json(400, "X-Forwarded-For is not accepted")
        host = headers.get("host")
        if host is None or not self._host_ok(host):
            return _json(403, "Host header is not an address this server listens on")
        if method == "GET":
            return self._get(path, headers)
        if method == "PUT":
            if path != TOKEN_PATH:
                return _json(404, "not found")
            ttl_text = headers.get(_TTL_KEY, "").strip()
            if len(ttl_text) > MAX_DIGITS:
                raise _BadRequest(error_page(400, f"{TTL_HEADER} is too long"))
            if not (ttl_text.isascii() and ttl_text.isdigit()) or not 1 <= (ttl := int(ttl_text)) <= MAX_TTL:
                return _json(400, f"{TTL_HEADER} must be 1..{MAX_TTL}")
            return 200, response(200, self._tokens.issue(ttl).encode(), "text/plain")
        return _json(405, "method not allowed")

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if "?" in path:
            path = path.split("?", 1)[0]
        container = self._containers.get(path)
        if container is not None:
            given = headers.get("authorization") or ""
            if not hmac.compare_digest(given.encode(), container[1]):
                return _json(401, "missing or wrong Authorization token")
            return self._credentials(container[0], container=True)
        ident = self._default
        if ident is not None and (path.startswith(CREDS_PATH) or path.rstrip("/") + "/" == CREDS_PATH):
            if not self._tokens.valid(headers.get(_TOKEN_KEY)):
                return _json(401, "missing, unknown or expired IMDSv2 token")
            role = path[len(CREDS_PATH) :]
            if not role:
                return 200, response(200, ident.role_name.encode(), "text/plain")
            if role == ident.role_name or role.rstrip("/") == ident.role_name:
                return self._credentials(ident, container=False)
            return _json(404, "not found")
        return _json(404, "not found")

    def _credentials(self, ident: ServedIdentity, *, container: bool) -> tuple[int, bytes]:
        refresher = ident.refresher
        creds = refresher.current()  # a cache read: never signs, never waits on a refresh
        if creds is None:
            if refresher.generation == 0:  # started before the network, or the key is not open yet
                err = refresher.last_error
                reason = err.diagnostics() if err is not None else "the first CreateSession is under way"
                return _json(503, f"no credentials yet: {reason}")
            return _json(500, f"no valid credentials: {describe_error(refresher.last_error)}")
        rendered = self._rendered.get(ident.name)
        if rendered is None or rendered[0] is not creds:
            obtained = refresher.obtained_at
            doc: dict[str, str] = {
                "AccessKeyId": creds.access_key_id,
                "SecretAccessKey": creds.secret_access_key,
                "Token": creds.session_token,
                "Expiration": creds.expiration_text(),
            }
            imds_doc = {"Code": "Success", "LastUpdated": "", "Type": "AWS-HMAC", **doc}
            imds_doc["LastUpdated"] = (obtained or refresher.now()).strftime(EXPIRATION_FORMAT)
            rendered = (creds, json.dumps(doc).encode(), json.dumps(imds_doc).encode())
            if obtained is not None:  # without it LastUpdated is "now": render per request
                self._rendered[ident.name] = rendered
        body = rendered[1] if container else rendered[2]
        date = _date.line()
        key = (ident.name, container)
        cached = self._answers.get(key)
        if cached is None or cached[0] is not body or cached[1] is not date:
            cached = (body, date, response(200, body, "application/json"))
            self._answers[key] = cached
        return 200, cached[2]


def bind_listener(app: CredentialServer, address: str, port: int) -> Listener:
    """A bound, not yet listening socket with the hop limit set; raises ``OSError``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        app.set_hop_limit(sock, family)
    except OSError:
        sock.close()
        raise
    return Listener(sock, family)
