"""HTTP transport behind CreateSession. Injectable, so unit tests need no sockets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import EndpointError, InputError

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


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


class RequestsTransport:
    """``requests`` with timeouts always on; proxies from the environment are honoured."""

    def __init__(self, verify: bool | str = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        import requests

        self._session = requests.Session()
        self._verify = resolve_verify(verify)
        self._timeout = timeout
        if self._verify is False:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        import requests

        host = urlsplit(url).netloc
        kwargs: dict[str, Any] = {"verify": self._verify, "timeout": (min(5.0, self._timeout), self._timeout)}
        try:
            r = self._session.request(method, url, headers=dict(headers), data=body, **kwargs)
        except requests.exceptions.SSLError as e:
            raise EndpointError(
                f"TLS verification of {host} failed: {_reason(e)}",
                hint="trust its CA with AWS_CA_BUNDLE, or use --no-verify-ssl for local tests",
            ) from None
        except requests.exceptions.ProxyError:
            raise TransientError(f"the proxy refused or failed the connection to {host}") from None
        except requests.exceptions.ConnectTimeout:
            raise TransientError(f"connecting to {host} timed out after {min(5.0, self._timeout):g}s") from None
        except requests.exceptions.ReadTimeout:
            raise TransientError(f"{host} did not answer within {self._timeout:g}s") from None
        except requests.exceptions.ConnectionError as e:
            raise TransientError(f"cannot connect to {host}: {_reason(e)}") from None
        except requests.exceptions.InvalidURL:
            raise EndpointError(f"endpoint URL {url.split('?')[0]} is invalid") from None
        except requests.exceptions.RequestException as e:
            raise EndpointError(f"request to {host} failed: {type(e).__name__}") from None
        return HttpResponse(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)

    def close(self) -> None:
        self._session.close()


def _reason(e: BaseException) -> str:
    """The innermost, human part of a requests/urllib3 error chain."""
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
    if "Connection reset" in text or "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the connection was closed without an answer"
    return type(e).__name__
