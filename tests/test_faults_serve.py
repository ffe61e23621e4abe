"""Faults in ``serve``: a flapping endpoint, a long outage, and 15,000 token PUTs.

The promises: the process never exits on endpoint trouble; a 200 always carries complete
credentials that are still valid; after an outage longer than the credentials' life it answers
500 (never 200 with expired credentials) and recovers by itself; token churn keeps memory bounded.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from support.pki import PKI
from support.servers import FlappingEndpoint, spawn_cli
from support.util import ARN_ARGS, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN, free_port

imds = pytest.importorskip("rolesanywhere_signer.imds")
refresher_mod = pytest.importorskip("rolesanywhere_signer.refresher")

pytestmark = pytest.mark.slow
ROLE = ROLE_ARN.rsplit("/", 1)[-1]
CREDS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def above(count: Callable[[], int], floor: int) -> Callable[[], bool]:
    """A condition for wait_until that binds ``floor`` now (loops reuse the name)."""
    return lambda: count() > floor


def imds_get(port: int, now: Callable[[], datetime] | None = None) -> tuple[int, dict[str, Any] | None]:
    """One IMDSv2 round as botocore makes it: PUT a token, GET the credentials."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        r = conn.getresponse()
        token = r.read().decode()
        assert r.status == 200, (r.status, token)
        conn.request("GET", CREDS_PATH, headers={"X-aws-ec2-metadata-token": token})
        r = conn.getresponse()
        body = r.read()
        return r.status, (json.loads(body) if r.status == 200 else None)
    finally:
        conn.close()


def check_valid(doc: dict[str, Any], now: datetime) -> None:
    """What botocore would accept: every field present and the expiration still ahead."""
    assert doc["Code"] == "Success"
    for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration"):
        assert isinstance(doc.get(k), str) and doc[k], k
    exp = datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert exp > now, f"served credentials that expired at {doc['Expiration']}"


# ---------------------------------------------------------------------------------------------
# the serve process while the endpoint flaps


def test_serve_process_survives_a_flapping_endpoint(
    pki: PKI, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    cert, key = pki.leaf_files("faults-serve", pki.leaf())
    log = tmp_path / "serve.log"
    port = free_port()
    problems: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # a client polling the whole time, as an SDK on the host would
        while not stop.is_set():
            try:
                status, doc = imds_get(port)
            except (OSError, http.client.HTTPException, AssertionError) as e:
                problems.append(f"no answer: {type(e).__name__}: {e}")
                continue
            if status == 200:
                assert doc is not None
                try:
                    check_valid(doc, datetime.now(timezone.utc))
                except AssertionError as e:
                    problems.append(str(e))
                if not served or served[-1] != doc["AccessKeyId"]:
                    served.append(doc["AccessKeyId"])
            else:
                problems.append(f"status {status} while valid credentials existed")
            time.sleep(0.005)

    with FlappingEndpoint([pki.root.cert]) as ep:
        p = spawn_cli(
            ["serve", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", ep.url, "--port", port],
            log,
        )
        procs.append(p)
        assert wait_until(lambda: _listening(port) or p.poll() is not None), log.read_text()
        assert p.poll() is None, log.read_text()
        # serve listens before its first CreateSession (503 until then): start once it has credentials
        assert wait_until(lambda: imds_get(port)[0] == 200), log.read_text()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            for cycle in range(10):
                ep.down()
                failures = log.read_text().count("refreshing credentials failed")
                p.send_signal(signal.SIGHUP)  # refresh now, while the endpoint is unreachable
                assert wait_until(above(lambda: log.read_text().count("refreshing credentials failed"), failures))
                assert p.poll() is None, f"serve exited in outage {cycle}"
                ep.up()
                before = ep.sessions_created
                p.send_signal(signal.SIGHUP)
                assert wait_until(above(lambda: ep.sessions_created, before)), log.read_text()[-2000:]
                assert wait_until(above(lambda: len(served), cycle + 1), 5), served
        finally:
            stop.set()
            t.join(timeout=10)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, log.read_text()[-2000:]
    assert not problems, problems[:5]
    assert len(served) == 11  # the first credentials, then one new set after each recovery


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# a long outage, on a clock the test controls


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


def test_outage_longer_than_the_session_serves_500_then_recovers(pki: PKI) -> None:
    """Both the refresher and the verifying endpoint run on one fake clock, so hours pass at once.

    Ten times: the endpoint goes down before the refresh is due; while the old credentials are
    valid they are served; once they expire the answer is 500, never a 200; when the endpoint
    comes back, the next due attempt gets fresh credentials and 200 resumes.
    """
    cert, key = pki.leaf_files("faults-clock", pki.leaf())
    clock = FakeClock()
    with FlappingEndpoint([pki.root.cert], clock=clock) as ep:
        refresher = refresher_mod.Refresher(
            IdentityOptions(certificate=str(cert), private_key=str(key)),
            RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=900, endpoint=ep.url),
            clock=clock,
            wait=lambda seconds: None,
            timeout=2,
        )
        config = imds.ServeConfig(role_name=ROLE, binds=["127.0.0.1"], port=0)
        try:
            refresher.refresh()
            with imds.CredentialServer(refresher, config) as server:
                for _ in range(10):
                    ep.down()
                    clock.advance(700)  # past the refresh point (1/3 of 900 s left), not expired
                    refresher.tick()
                    assert refresher.last_error is not None
                    status, doc = imds_get(server.port)
                    assert status == 200 and doc is not None
                    check_valid(doc, clock())
                    clock.advance(250)  # now the credentials have expired
                    refresher.tick()
                    status, doc = imds_get(server.port)
                    assert status == 500 and doc is None
                    ep.up()
                    clock.advance(refresher.seconds_until_next() + 1)  # the backoff runs out
                    refresher.tick()
                    assert refresher.last_error is None
                    status, doc = imds_get(server.port)
                    assert status == 200 and doc is not None
                    check_valid(doc, clock())
        finally:
            refresher.close()
        assert ep.sessions_created == 11


# ---------------------------------------------------------------------------------------------
# token churn


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_15000_token_puts_keep_memory_bounded(pki: PKI, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    cert, key = pki.leaf_files("faults-tokens", pki.leaf())
    log = tmp_path / "serve.log"
    port = free_port()
    with FlappingEndpoint([pki.root.cert]) as ep:
        p = spawn_cli(
            ["serve", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", ep.url, "--port", port],
            log,
        )
        procs.append(p)
        assert wait_until(lambda: _listening(port) or p.poll() is not None), log.read_text()
        assert wait_until(lambda: imds_get(port)[0] == 200), log.read_text()

        def put_tokens(n: int) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # keep-alive, as a busy host
            token = ""
            try:
                for _ in range(n):
                    conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
                    r = conn.getresponse()
                    token = r.read().decode()
                    assert r.status == 200
            finally:
                conn.close()
            return token

        start = _rss_kib(p.pid)
        put_tokens(5000)  # the store (4,096 live tokens at most) is full after this
        full = _rss_kib(p.pid)
        put_tokens(5000)  # new tokens replace the oldest from here on
        steady = _rss_kib(p.pid)
        last = put_tokens(5000)
        grown = _rss_kib(p.pid) - steady
        # Filling the store costs ~1 MiB (~240 bytes a token). Once full, new tokens replace the
        # oldest; the expiry buckets (one set per second of issue) reach their working size in
        # the first 5,000 replacements (~170 KiB, tracemalloc), so the growth is measured over the
        # 5,000 after those: allocator noise only, where an unbounded store would add ~1.2 MiB.
        assert full - start < 4 * 1024, f"RSS grew by {full - start} KiB over the first 5,000 PUTs"
        assert steady - full < 2 * 1024, f"RSS grew by {steady - full} KiB over the next 5,000 PUTs"
        assert grown < 768, f"RSS grew by {grown} KiB over 5,000 more token PUTs"
        status, doc = _get_with(port, last)
        assert status == 200 and doc is not None
        check_valid(doc, datetime.now(timezone.utc))
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def _get_with(port: int, token: str) -> tuple[int, dict[str, Any] | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", CREDS_PATH, headers={"X-aws-ec2-metadata-token": token})
        r = conn.getresponse()
        body = r.read()
        return r.status, (json.loads(body) if r.status == 200 else None)
    finally:
        conn.close()


def test_token_store_is_bounded_in_process() -> None:
    """The store keeps at most its limit of live tokens: the oldest go first."""
    store = imds.TokenStore(limit=100)
    tokens = [store.issue(21600) for _ in range(10_000)]
    assert len(store) <= 100
    assert store.valid(tokens[-1])
    assert not store.valid(tokens[0])
