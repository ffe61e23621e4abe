"""The CreateSession client with an injected transport and clock: no sockets, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import pytest

from rolesanywhere_signer.backends.pem import PemSigner
from rolesanywhere_signer.client import create_session
from rolesanywhere_signer.endpoint_server import EndpointState, ReceivedRequest, Refusal, verify_request
from rolesanywhere_signer.endpoints import partition_for, resolve_endpoint
from rolesanywhere_signer.errors import EndpointError, ServiceError
from rolesanywhere_signer.options import RequestOptions
from rolesanywhere_signer.retry import RetryPolicy
from rolesanywhere_signer.signer import algorithm_for_key
from rolesanywhere_signer.transport import HttpResponse, TransientError
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

OPTS = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, endpoint="https://ra.test")


class Clock:
    def __init__(self) -> None:
        self.t = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.t


class ScriptedTransport:
    """Answers from a script; each request is verified by the real endpoint logic first."""

    def __init__(self, pki: PKI, clock: Clock, script: list[object]) -> None:
        self.state = EndpointState(anchors=[pki.root.cert], clock=clock)
        self.script = script
        self.dates: list[str] = []
        self.clock = clock

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        self.dates.append(headers["X-Amz-Date"])
        raw = url.split("://", 1)[1]
        path = "/" + raw.split("/", 1)[1]
        try:
            doc = verify_request(ReceivedRequest(method, path, list(headers.items()), body), self.state)
        except Refusal as r:
            return HttpResponse(
                r.status, {"x-amzn-errortype": r.error_type}, json.dumps({"message": r.message}).encode()
            )
        self.clock.t += timedelta(seconds=7)  # time passes between attempts
        step = self.script.pop(0) if self.script else 201
        if isinstance(step, Exception):
            raise step
        if step != 201:
            return HttpResponse(int(step), {"x-amzn-errortype": "InternalServerException"}, b'{"message":"boom"}')  # type: ignore[call-overload]
        return HttpResponse(201, {}, json.dumps(doc).encode())

    def close(self) -> None:
        pass


def make_signer(pki: PKI) -> PemSigner:
    leaf = pki.leaf()
    return PemSigner(leaf.key, leaf.cert, (), algorithm_for_key(leaf.cert.public_key()), "k")


def test_retries_are_signed_again_with_a_fresh_date(pki: PKI) -> None:
    clock = Clock()
    sleeps: list[float] = []
    t = ScriptedTransport(pki, clock, [503, TransientError("reset"), 201])
    policy = RetryPolicy(sleep=sleeps.append)
    creds = create_session(make_signer(pki), OPTS, transport=t, clock=clock, retry=policy)
    assert creds.access_key_id.startswith("ASIA")
    assert len(t.dates) == 3
    assert len(set(t.dates)) == 3  # each attempt carries its own X-Amz-Date, so each was signed again
    assert len(sleeps) == 2
    assert all(0 <= s <= 1.0 for s in sleeps)  # full jitter under the growing ceiling (0.5, 1.0)


def test_attempts_are_bounded(pki: PKI) -> None:
    clock = Clock()
    t = ScriptedTransport(pki, clock, [500] * 10)
    with pytest.raises(ServiceError, match="InternalServerException: boom"):
        create_session(make_signer(pki), OPTS, transport=t, clock=clock, retry=RetryPolicy(attempts=3, backoff=False))
    assert len(t.dates) == 3


def test_total_time_is_bounded(pki: PKI) -> None:
    clock = Clock()
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    t = ScriptedTransport(pki, clock, [TransientError("down")] * 50)
    policy = RetryPolicy(
        attempts=50, total_seconds=20, base_delay=4, max_delay=16, sleep=sleep, monotonic=lambda: now[0]
    )
    with pytest.raises(EndpointError, match="down"):
        create_session(make_signer(pki), OPTS, transport=t, clock=clock, retry=policy)
    assert now[0] <= 20
    assert len(t.dates) < 50


def test_client_errors_are_not_retried(pki: PKI) -> None:
    clock = Clock()
    t = ScriptedTransport(pki, clock, [])
    other = pki.leaf()
    bad = PemSigner(other.key, pki.leaf().cert, (), "AWS4-X509-ECDSA-SHA256", "k")  # wrong key
    with pytest.raises(ServiceError, match="AccessDeniedException: Invalid signature"):
        create_session(bad, OPTS, transport=t, clock=clock, retry=RetryPolicy(backoff=False))
    assert len(t.dates) == 1


def test_expired_credentials_in_answer_are_refused(pki: PKI) -> None:
    clock = Clock()

    class Stale(ScriptedTransport):
        def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
            r = super().send(method, url, headers, body)
            doc = json.loads(r.body)
            doc["credentialSet"][0]["credentials"]["expiration"] = "2001-01-01T00:00:00Z"
            return HttpResponse(201, {}, json.dumps(doc).encode())

    with pytest.raises(EndpointError, match="expired at 2001-01-01T00:00:00Z"):
        create_session(make_signer(pki), OPTS, transport=Stale(pki, clock, []), clock=clock)


@pytest.mark.parametrize(
    ("partition", "region", "env", "expected"),
    [
        ("aws", "eu-west-1", {}, "https://rolesanywhere.eu-west-1.amazonaws.com"),
        ("aws-cn", "cn-north-1", {}, "https://rolesanywhere.cn-north-1.amazonaws.com.cn"),
        (
            "aws-us-gov",
            "us-gov-west-1",
            {"AWS_USE_FIPS_ENDPOINT": "true"},
            "https://rolesanywhere-fips.us-gov-west-1.amazonaws.com",
        ),
        ("aws", "us-east-1", {"AWS_ENDPOINT_URL": "http://127.0.0.1:1/"}, "http://127.0.0.1:1"),
        (
            "aws",
            "us-east-1",
            {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_ROLESANYWHERE": "http://b"},
            "http://b",
        ),
    ],
)
def test_endpoint_resolution(partition: str, region: str, env: dict[str, str], expected: str) -> None:
    assert partition_for(region).name == partition
    assert resolve_endpoint(region, env={**env, "AWS_CONFIG_FILE": "/nonexistent"}) == expected
