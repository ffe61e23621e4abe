"""What the transports share: the answer record, the 1 MiB cap, and the error tree.

Errors are mapped by exception type, never by message text. The tree (``SignerError`` is the
base of every user-facing error, see errors.py)::

    EndpointError                       the endpoint could not be used
     ├── ServiceError                   an AWS error answer (errors.py; 5xx/429 retried)
     ├── Cancelled                      the attempt was cancelled (shutdown): never retried
     ├── TlsError                       TLS verification or handshake failed: not retried
     ├── AnswerTooLarge                 the answer passed 1 MiB: not retried
     └── TransientError                 worth another attempt
          ├── ConnectError              refused, unreachable, no such host, the proxy failed
          ├── DeadlineError             the attempt's deadline passed (connect … last byte)
          └── ProtocolError             closed without an answer, or not HTTP/1.x

and the exceptions they come from::

    socket.gaierror                     ConnectError "host name not found"
    ConnectionRefusedError              ConnectError "connection refused"
    other OSError while connecting      ConnectError (its strerror)
    TimeoutError (socket.timeout)       DeadlineError
    ssl.SSLCertVerificationError        TlsError (its verify_message)
    ssl.SSLError while connecting       TlsError (its reason)
    ConnectionError, ssl.SSLError,      ProtocolError "closed the connection without an answer"
      OSError after connecting
    http.client.HTTPException           ProtocolError "malformed HTTP answer" (RemoteDisconnected,
                                        IncompleteRead: "closed the connection without an answer")
    requests.exceptions.ProxyError      ConnectError "the proxy refused or failed the connection"
    requests.exceptions.SSLError        TlsError
    requests.exceptions.Timeout         DeadlineError
    requests.exceptions.ConnectionError its cause, mapped as above (urllib3 wraps the OSError)
    requests.exceptions.RequestException ProtocolError
"""

from __future__ import annotations

import socket

from .errors import EndpointError
from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: the largest answer read from the endpoint (a CreateSession answer is about 2 KiB)
MAX_ANSWER = 1024 * 1024
_CHUNK = 65536


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


class ConnectError(TransientError):
    """No connection: refused, unreachable, unknown host, or the proxy failed."""


class DeadlineError(TransientError):
    """The attempt's deadline passed before the whole answer came."""


class ProtocolError(TransientError):
    """The connection closed without an answer, or the answer is not HTTP/1.x."""


class TlsError(EndpointError):
    """TLS verification or handshake failed (not retried: it will not fix itself)."""


class AnswerTooLarge(EndpointError):
    """The answer is larger than ``MAX_ANSWER``."""


class Cancelled(EndpointError):
    """The attempt was cancelled (the process is shutting down)."""


def read_capped(length: int | None, read: Callable[[int], bytes], limit: int, host: str) -> bytes:
    """The body, refusing more than ``limit`` bytes: by its Content-Length, else by counting."""
    if length is not None and length > limit:
        raise AnswerTooLarge(
            f"{host} announced an answer of {length} bytes; at most {limit} are accepted",
            hint="check --endpoint",
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise AnswerTooLarge(f"{host} sent an answer larger than {limit} bytes", hint="check --endpoint")
        chunks.append(chunk)


def map_error(e: BaseException, host: str, timeout: float, *, connected: bool) -> BaseException:
    """The ``EndpointError`` for a socket, ssl or http.client exception (see the module docstring)."""
    import http.client
    import ssl

    if isinstance(e, EndpointError):
        return e
    if isinstance(e, TimeoutError):
        if connected:
            return DeadlineError(f"{host} did not answer within {timeout:g}s")
        return DeadlineError(f"connecting to {host} timed out after {timeout:g}s")
    if isinstance(e, ssl.SSLCertVerificationError):
        reason = e.verify_message or "certificate verify failed"
        return TlsError(
            f"TLS verification of {host} failed: {reason}",
            hint="trust its CA with AWS_CA_BUNDLE, or use --no-verify-ssl for local tests",
        )
    if isinstance(e, ssl.SSLError) and not connected:
        return TlsError(
            f"TLS with {host} failed: {e.reason or type(e).__name__}",
            hint="is it an https endpoint? trust its CA with AWS_CA_BUNDLE",
        )
    if isinstance(e, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return ProtocolError(f"{host} closed the connection without an answer")
    if isinstance(e, http.client.HTTPException):
        return ProtocolError(f"{host} sent a malformed HTTP answer ({type(e).__name__})", hint="check --endpoint")
    if isinstance(e, socket.gaierror):
        return ConnectError(f"cannot connect to {host}: host name not found")
    if isinstance(e, ConnectionRefusedError) and not connected:
        return ConnectError(f"cannot connect to {host}: connection refused")
    if isinstance(e, (ConnectionError, ssl.SSLError)) or (isinstance(e, OSError) and connected):
        return ProtocolError(f"{host} closed the connection without an answer")
    if isinstance(e, OSError):
        return ConnectError(f"cannot connect to {host}: {e.strerror or type(e).__name__}")
    raise e  # not a transport failure: a bug, shown with --debug
