"""Hostile clients of ``serve``: each attack runs against the real process while botocore's own
IMDSv2 fetcher (1 s timeout, one attempt, as the SDKs use it) must still get credentials, and
serve's stderr must stay a few lines.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.hostile import Drippers, start_flood
from support.pki import PKI
from support.util import ARN_ARGS, clean_env, free_port

pytestmark = pytest.mark.slow
STDERR_LIMIT = 2000  # bytes: a few one-line warnings at most, never tracebacks


class Serve:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, stderr: Path) -> None:
        self.proc = proc
        self.port = port
        self.stderr = stderr

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture
def start_serve(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []
    cert, key = pki.leaf_files("serve", pki.leaf())

    def start(*extra: str, nofile: tuple[int, int] | None = None) -> Serve:
        port = free_port()
        err = tmp_path / f"serve-{port}.stderr"

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        with open(err, "wb") as e:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "rolesanywhere_signer", "serve", "--certificate", str(cert)),
                    *("--private-key", str(key), *ARN_ARGS, "--endpoint", endpoint.url),
                    *("--port", str(port), "--bind", "127.0.0.1", *extra),
                ],
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=e,
                preexec_fn=limits,
            )
        s = Serve(proc, port, err)
        started.append(s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, s.stderr_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("serve did not start listening")
        # serve listens before its first CreateSession and answers 503 until it has credentials:
        # the hostile cases start once a client could be served
        while time.monotonic() < deadline:
            assert proc.poll() is None, s.stderr_text()
            if endpoint.state.sessions_created and botocore_fetch(port)[0]:  # {} on a 503
                return s
            time.sleep(0.05)
        raise AssertionError("serve got no credentials")

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.terminate()
            try:
                s.proc.wait(5)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)


def botocore_fetch(port: int) -> tuple[dict[str, Any], float]:
    """Credentials as botocore's IMDS provider fetches them (PUT token, GET role, GET credentials)."""
    from botocore.utils import InstanceMetadataFetcher

    fetcher = InstanceMetadataFetcher(
        timeout=1, num_attempts=1, base_url=f"http://127.0.0.1:{port}", env={"NO_PROXY": "127.0.0.1"}
    )
    started = time.monotonic()
    creds = fetcher.retrieve_iam_role_credentials()
    return creds, time.monotonic() - started


def assert_legitimate_client_served(port: int, rounds: int = 5) -> float:
    worst = 0.0
    for _ in range(rounds):
        creds, took = botocore_fetch(port)
        assert creds.get("access_key", "").startswith("ASIA"), creds
        assert creds.get("token")
        worst = max(worst, took)
    return worst


def test_pipelining_flood_does_not_starve_a_legitimate_client(start_serve: Callable[..., Serve]) -> None:
    serve = start_serve()
    flood = start_flood(serve.port, 4, 4.0)
    try:
        time.sleep(0.5)  # the flood is under way
        worst = assert_legitimate_client_served(serve.port, rounds=10)
    finally:
        out, _ = flood.communicate(timeout=30)
    answered = int(out.strip() or 0)
    assert answered > 10_000, f"the flood got only {answered} answers: it was no flood"
    assert worst < 1.0  # botocore's IMDS timeout
    assert len(serve.stderr_text()) < STDERR_LIMIT, serve.stderr_text()


def test_a_put_flood_never_evicts_a_token_in_use(start_serve: Callable[..., Serve]) -> None:
    import http.client

    serve = start_serve()
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=5)
    conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"})
    token = conn.getresponse().read().decode()
    role_path = "/latest/meta-data/iam/security-credentials/"
    conn.request("GET", role_path, headers={"X-aws-ec2-metadata-token": token})
    resp = conn.getresponse()
    assert resp.status == 200
    role = resp.read().decode()
    conn.close()
    flood = start_flood(serve.port, 2, 2.0)
    out, _ = flood.communicate(timeout=30)
    assert int(out.strip() or 0) > 3 * 4096  # the store (4,096 unused tokens) was refilled several times
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=5)
    conn.request("GET", role_path + role, headers={"X-aws-ec2-metadata-token": token})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    assert b'"Token"' in resp.read()
    conn.close()


def test_500_dripping_connections(start_serve: Callable[..., Serve]) -> None:
    serve = start_serve("--header-timeout", "2")
    with Drippers(serve.port, 500, every=0.5) as drip:
        time.sleep(1.0)
        assert_legitimate_client_served(serve.port, rounds=5)
        time.sleep(3.0)  # past the header deadline (2 s, checked twice a second)
        open_now = drip.open_count()
        assert_legitimate_client_served(serve.port, rounds=2)
    assert open_now == 0, f"{open_now} dripping connections are still open past the header deadline"
    assert len(serve.stderr_text()) < STDERR_LIMIT, serve.stderr_text()


def test_open_files_exhausted_under_a_low_limit(start_serve: Callable[..., Serve]) -> None:
    # soft 48, hard 64: serve raises the soft limit to 64 and keeps connections within it
    serve = start_serve(nofile=(48, 64))
    limits = Path(f"/proc/{serve.proc.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    assert line.split()[3:5] == ["64", "64"], line
    held: list[socket.socket] = []
    try:
        for _ in range(300):  # far more than 64 descriptors' worth, all idle
            held.append(socket.create_connection(("127.0.0.1", serve.port), timeout=2))
        time.sleep(0.3)
        assert_legitimate_client_served(serve.port, rounds=5)
        for s in held[:100]:  # and more keep coming while it serves
            s.close()
        for _ in range(100):
            held.append(socket.create_connection(("127.0.0.1", serve.port), timeout=2))
        assert_legitimate_client_served(serve.port, rounds=3)
    finally:
        for s in held:
            s.close()
    assert serve.proc.poll() is None
    assert len(serve.stderr_text()) < STDERR_LIMIT, serve.stderr_text()


PUT_HEAD = "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
SMUGGLING = {
    "content-length with transfer-encoding": PUT_HEAD
    + "Host: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two content-lengths": PUT_HEAD + "Host: 127.0.0.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nGET /",
    "two equal content-lengths": PUT_HEAD + "Host: 127.0.0.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    "two hosts": PUT_HEAD + "Host: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
    "5000-digit content-length": PUT_HEAD + "Host: 127.0.0.1\r\nContent-Length: " + "9" * 5000 + "\r\n\r\n",
    "5000-digit ttl": "PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    + "X-aws-ec2-metadata-token-ttl-seconds: "
    + "1" * 5000
    + "\r\n\r\n",
    "signed content-length": PUT_HEAD + "Host: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
}


def test_smuggling_attempts_get_400_and_a_close(start_serve: Callable[..., Serve]) -> None:
    serve = start_serve()
    for name, raw in SMUGGLING.items():
        with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as s:
            s.sendall(raw.encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break  # closed by serve after the one answer
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 "), (name, data[:200])
        assert data.count(b"HTTP/1.1") == 1, (name, data)  # nothing smuggled behind it was answered
    assert_legitimate_client_served(serve.port, rounds=2)
    assert len(serve.stderr_text()) < STDERR_LIMIT, serve.stderr_text()


def test_serve_raises_its_open_files_soft_limit(start_serve: Callable[..., Serve]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip("needs a finite hard limit of at least 1024")
    serve = start_serve(nofile=(256, hard))
    limits = Path(f"/proc/{serve.proc.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    assert line.split()[3] == str(hard), line
    assert os.getpid() != serve.proc.pid


def test_out_of_descriptors_warns_once_sheds_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    """The EMFILE path itself (the cap normally keeps serve clear of it): called as accept() would."""
    import errno
    import http.client
    import logging

    from rolesanywhere_signer.imds import CredentialServer, ServeConfig

    class NoCredentials:
        def current(self) -> None:
            return None

    server = CredentialServer(NoCredentials(), ServeConfig("role", binds=("127.0.0.1",), port=0))  # type: ignore[arg-type]
    with server:
        service = server._service
        assert service is not None
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
        deadline = time.monotonic() + 5
        while len(service.connections) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        caplog.set_level(logging.WARNING, "rolesanywhere_signer.serve")
        err = OSError(errno.EMFILE, "Too many open files")
        for _ in range(3):
            service.loop.call_soon_threadsafe(service._out_of_descriptors, err, service.listeners[0])
        time.sleep(0.3)
        warnings = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
        assert len(warnings) == 1  # rate-limited: one line, however often it happens
        assert service.shed >= 4
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)  # accepting again
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        assert conn.getresponse().status == 200
        conn.close()
        for s in idle:
            s.close()
