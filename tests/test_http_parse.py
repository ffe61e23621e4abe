"""serve's request parser and its two caches (request lines, header lines).

The caches exist for speed only: a head parsed with warm caches must give exactly what it gives
with cold ones, lines that carry a secret are never kept, and a client that never repeats a line
cannot grow them past their bounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolesanywhere_signer import imds_server
from rolesanywhere_signer.imds_server import _BadRequest, parse_head


def _clear() -> None:
    imds_server._LINE_CACHE.clear()
    imds_server._HEADER_CACHE.clear()
    imds_server._HEAD_CACHE.clear()


@pytest.fixture(autouse=True)
def _cold_caches() -> Iterator[None]:
    _clear()
    yield
    _clear()


def _outcome(head: bytes) -> tuple[object, ...]:
    try:
        r = parse_head(head)
    except _BadRequest as e:
        # the Date line is the only part of an error page that may differ between two calls
        return ("error", re.sub(rb"Date: [^\r]*\r\n", b"", e.answer))
    return (r.method, r.path, r.version, dict(r.headers), r.close, r.requestline)


_LINES = [
    b"Host: 127.0.0.1:8080",
    b"host: localhost",
    b"X-aws-ec2-metadata-token-ttl-seconds: 21600",
    b"X-aws-ec2-metadata-token: AQAEAtokenvalue==",
    b"Authorization: container-secret",
    b"User-Agent: Botocore/1.35 \t",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Content-Length: 0",
    b"Content-Length: 12345678901",
    b"Transfer-Encoding: chunked",
    b"Bad Header: x",
    b": empty name",
    b" folded continuation",
    b"X-Forwarded-For: 10.0.0.1",
    b"Expect: 100-continue",
    b"no colon at all",
    b"X-Empty:",
    b"X-Trailing-CR: v\r",
]
_FIRST = [
    b"GET /latest/meta-data/iam/security-credentials/role HTTP/1.1",
    b"PUT /latest/api/token HTTP/1.1",
    b"GET /credentials HTTP/1.0",
    b"GET //evil.example/x HTTP/1.1",
    b"GET /",
    b"PUT /",
    b"GET / HTTP/2.0",
    b"GET / HTTP/1.x",
    b"GET / HTTP/1.1 extra",
    b"BREW /pot HTTP/1.1",
]


@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from(_FIRST),
    lines=st.lists(st.sampled_from(_LINES), max_size=6),
    crlf=st.booleans(),
    warm=st.lists(st.lists(st.sampled_from(_LINES), max_size=4), max_size=3),
)
def test_warm_caches_change_nothing(first: bytes, lines: list[bytes], crlf: bool, warm: list[list[bytes]]) -> None:
    sep = b"\r\n" if crlf else b"\n"
    head = sep.join([first, *lines])
    _clear()
    cold = _outcome(head)
    for other in warm:  # other requests fill the caches with some of the same lines
        _outcome(b"\r\n".join([first, *other]))
    assert _outcome(head) == cold
    assert _outcome(head) == cold  # and once more, now that this head's own lines are cached


def test_lines_with_secrets_are_never_cached() -> None:
    token, secret = "AQAEAsecret-imds-token==", "container-secret-never-cached"
    for _ in range(3):
        parse_head(f"GET /credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {secret}".encode())
        parse_head(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: {token}".encode())
        parse_head(f"GET / HTTP/1.1\r\nproxy-authorization: {secret}\r\ncookie: {secret}".encode())
        parse_head(f"GET / HTTP/1.1\r\nX-AWS-EC2-METADATA-TOKEN:{token}".encode())
    kept = b"".join([*imds_server._HEADER_CACHE, *imds_server._HEAD_CACHE])
    kept += repr([*imds_server._HEADER_CACHE.values(), *imds_server._HEAD_CACHE.values()]).encode()
    assert b"Host: 127.0.0.1" in kept  # the cache is in use
    assert token.encode() not in kept and secret.encode() not in kept
    assert not any(
        name in ("authorization", "x-aws-ec2-metadata-token") for name, _ in imds_server._HEADER_CACHE.values()
    )


def test_caches_stay_bounded_when_no_line_repeats() -> None:
    for i in range(5000):
        parse_head(f"GET /path/{i} HTTP/1.1\r\nUser-Agent: client-{i}\r\nX-Request-Id: {i}".encode())
        assert len(imds_server._LINE_CACHE) <= imds_server._LINE_CACHE_SIZE
        assert len(imds_server._HEADER_CACHE) <= imds_server._HEADER_CACHE_SIZE
        assert len(imds_server._HEAD_CACHE) <= imds_server._HEAD_CACHE_SIZE
    long_value = "v" * 4000  # long lines are parsed every time, never kept
    parse_head(f"GET /{long_value} HTTP/1.1\r\nX-Long: {long_value}".encode())
    assert all(len(k) <= imds_server._LINE_CACHE_MAX_LEN for k in imds_server._LINE_CACHE)
    assert all(len(k) <= imds_server._LINE_CACHE_MAX_LEN for k in imds_server._HEADER_CACHE)
    assert all(len(k) <= imds_server._HEAD_CACHE_MAX_LEN for k in imds_server._HEAD_CACHE)


def test_a_cached_head_gives_each_request_its_own_request_object() -> None:
    head = b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60"
    first, second = parse_head(head), parse_head(head)
    assert head in imds_server._HEAD_CACHE  # no secret in it: kept whole
    assert first is not second and first.headers == second.headers
    first.need, first.close = 5, True  # per-request state never leaks into the next request
    assert parse_head(head).need == 0 and not parse_head(head).close


def test_a_cached_good_line_does_not_hide_a_bad_one_after_it() -> None:
    good = b"GET / HTTP/1.1\r\nHost: 127.0.0.1"
    parse_head(good)
    with pytest.raises(_BadRequest):
        parse_head(good + b"\r\nBad Header: x")
    with pytest.raises(_BadRequest):
        parse_head(good + b"\r\nHost: 127.0.0.2")  # a second Host is smuggling, cached or not
