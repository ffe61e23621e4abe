"""Property tests for the IMDS request handler of ``serve``, over real sockets.

A real ``CredentialServer`` with a real ``Refresher`` (holding credentials from the verifying local
endpoint) gets random methods, paths and headers written raw on a socket. It must always answer
(no handler crash), never with a 500 while it holds credentials, and never hand out credentials
without a valid token. Requests that carry a real token get credentials only on the exact route,
with an allowed Host and no X-Forwarded-For.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

imds = pytest.importorskip("rolesanywhere_signer.imds")
refresher_mod = pytest.importorskip("rolesanywhere_signer.refresher")

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROLE = ROLE_ARN.rsplit("/", 1)[-1]
CONTAINER_TOKEN = "container-token-for-fuzzing-0123456789"


@dataclass
class Live:
    port: int
    secret: str
    access_key: str
    errors: list[str]
    server: object

    def raw(self, data: bytes) -> tuple[int, bytes]:
        """Send raw bytes; return (status, whole response). Status 0: no HTTP answer at all."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(data)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            chunks = []
            while True:
                try:
                    b = s.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not b:
                    break
                chunks.append(b)
        resp = b"".join(chunks)
        if not resp.startswith(b"HTTP/1."):
            return 0, resp
        return int(resp.split(b" ", 2)[1]), resp

    def token(self) -> str:
        status, resp = self.raw(
            b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-aws-ec2-metadata-token-ttl-seconds: 300\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        assert status == 200, resp
        return resp.split(b"\r\n\r\n", 1)[1].decode()


@pytest.fixture(scope="module")
def live(pki: PKI) -> Iterator[Live]:
    leaf = pki.leaf()
    cert, key = pki.leaf_files("fuzz-imds", leaf)
    with LocalEndpoint([pki.root.cert]) as ep:
        refresher = refresher_mod.Refresher(
            IdentityOptions(certificate=str(cert), private_key=str(key)),
            RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, endpoint=ep.url),
        )
        creds = refresher.refresh()
        config = imds.ServeConfig(role_name=ROLE, binds=["127.0.0.1"], port=0, container_token=CONTAINER_TOKEN)
        server = imds.CredentialServer(refresher, config)
        server.bind()
        errors: list[str] = []
        lock = threading.Lock()
        for s in server._servers:  # observe, not replace: record any exception a handler raised

            def record(request: object, client_address: object, _orig: object = s.handle_error) -> None:
                import traceback

                with lock:
                    errors.append(traceback.format_exc())

            s.handle_error = record  # type: ignore[method-assign]
        server.start()
        try:
            yield Live(server.port, creds.secret_access_key, creds.access_key_id, errors, server)
        finally:
            server.close()
            refresher.close()


_TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"]) | _TOKEN
_PATH_PARTS = [
    "/latest/api/token",
    "/latest/meta-data/iam/security-credentials/",
    f"/latest/meta-data/iam/security-credentials/{ROLE}",
    f"/latest/meta-data/iam/security-credentials/{ROLE}/",
    "/credentials",
    "/",
    "/latest/meta-data/",
    "/latest/meta-data/iam/security-credentials/../",
    "//latest/api/token",
    "?",
    "%00",
    "%2F",
    "#",
    "/x" * 50,
]
paths = st.lists(
    st.sampled_from(_PATH_PARTS) | st.text(alphabet="abcXYZ019/.%?&=_-~:@", max_size=12), min_size=1, max_size=3
).map("".join)
_header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(["\t", "é", "\x00"]),
    max_size=40,
)
_header_names = st.sampled_from(
    [
        "Host",
        "X-aws-ec2-metadata-token",
        "X-aws-ec2-metadata-token-ttl-seconds",
        "X-Forwarded-For",
        "Authorization",
        "Content-Length",
        "Transfer-Encoding",
        "Expect",
        "Connection",
        "Origin",
    ]
) | st.text(alphabet="abcXYZ-_019", min_size=1, max_size=12)
headers = st.lists(st.tuples(_header_names, _header_value), max_size=8)


def _request(method: str, path: str, hdrs: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path if path.startswith('/') else '/' + path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in hdrs]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@_FUZZ
@given(method=methods, path=paths, hdrs=headers)
def test_random_requests_never_crash_or_leak(live: Live, method: str, path: str, hdrs: list[tuple[str, str]]) -> None:
    # never the real tokens here: whatever the handler does, no credentials may come out
    assert all(v != CONTAINER_TOKEN for _, v in hdrs)
    status, resp = live.raw(_request(method, path, hdrs))
    assert status != 0, resp
    assert status != 500, resp
    assert live.secret.encode() not in resp
    assert live.access_key.encode() not in resp
    assert not live.errors, live.errors[-1]


@_FUZZ
@given(
    path=st.sampled_from(_PATH_PARTS[1:5]),
    host=st.sampled_from(["127.0.0.1", "127.0.0.1:80", "localhost", "169.254.169.254", "evil.example", "10.0.0.1", ""]),
    xff=st.booleans(),
    extra=headers,
)
def test_credentials_only_with_token_allowed_host_and_exact_route(
    live: Live, path: str, host: str, xff: bool, extra: list[tuple[str, str]]
) -> None:
    token = live.token()
    # random extras, minus the headers this property controls itself
    controlled = {"host", "x-forwarded-for", "x-aws-ec2-metadata-token", "authorization", "content-length"}
    controlled |= {"transfer-encoding", "expect"}
    hdrs = [(k, v) for k, v in extra if k.lower() not in controlled and "\x00" not in v]
    hdrs += [("Host", host), ("X-aws-ec2-metadata-token", token)]
    if xff:
        hdrs.append(("X-Forwarded-For", "203.0.113.9"))
    status, resp = live.raw(_request("GET", path, hdrs))
    gave_creds = live.secret.encode() in resp
    allowed_host = host in ("127.0.0.1", "127.0.0.1:80", "localhost", "169.254.169.254")
    creds_route = path.rstrip("/") == f"/latest/meta-data/iam/security-credentials/{ROLE}"
    assert gave_creds == (status == 200 and creds_route)
    if gave_creds:
        assert allowed_host and not xff
    if allowed_host and not xff and creds_route:
        assert gave_creds, resp
    assert not live.errors, live.errors[-1]


def test_container_route_needs_the_exact_token(live: Live) -> None:
    for given_token, ok in ((CONTAINER_TOKEN, True), (CONTAINER_TOKEN + "x", False), (CONTAINER_TOKEN[:-1], False)):
        status, resp = live.raw(
            f"GET /credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {given_token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert (live.secret.encode() in resp) == ok, (status, resp[:200])
    status, resp = live.raw(b"GET /credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 401 and live.secret.encode() not in resp


def test_server_still_serves_after_fuzzing(live: Live, tmp_path: Path) -> None:
    token = live.token()
    status, resp = live.raw(
        f"GET /latest/meta-data/iam/security-credentials/{ROLE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 200 and live.secret.encode() in resp
    assert not live.errors


def test_browser_preflight_is_never_granted(live: Live) -> None:
    """A web page (even one rebound to 127.0.0.1) needs a CORS preflight to PUT or to send the
    token header; the server must not grant it, so the browser never sends the real request."""
    status, resp = live.raw(
        b"OPTIONS /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
        b"Access-Control-Request-Method: PUT\r\n"
        b"Access-Control-Request-Headers: x-aws-ec2-metadata-token-ttl-seconds\r\nConnection: close\r\n\r\n"
    )
    assert status >= 400
    assert b"access-control-allow" not in resp.lower()
