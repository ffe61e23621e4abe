"""SIGTERM and SIGINT end ``serve`` and ``update`` within 2 s with status 0, even while a
CreateSession hangs: the first one (on the main thread, before serve listens) and a later
refresh (in serve's refresher thread, or update's loop). The attempt is cancelled, not awaited.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.servers import FORWARD, HangServer, Reply, ScriptedServer, spawn_cli
from support.util import ARN_ARGS, free_port

pytestmark = pytest.mark.slow


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def mode_args(mode: str, pki: PKI, tmp_path: Path, endpoint: str) -> tuple[list[str], dict[str, str]]:
    cert, key = pki.leaf_files("signals", pki.leaf())
    common = ["--certificate", str(cert), "--private-key", str(key), *ARN_ARGS, "--endpoint", endpoint]
    common += ["--timeout", "60"]  # without cancelling, the hung attempt would outlast the test
    if mode == "serve":
        return ["serve", *common, "--port", str(free_port()), "--bind", "127.0.0.1"], {}
    return ["update", *common, "--profile", "ra"], {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}


def assert_ends_quickly(p: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    started = time.monotonic()
    p.send_signal(sig)
    try:
        status = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 10 s after {sig.name}: {log.read_text()[-1000:]}")
    took = time.monotonic() - started
    assert status == 0, log.read_text()[-2000:]
    assert took < 2.0, f"{sig.name} took {took:.2f}s"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("mode", ["serve", "update"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_the_first_create_session(
    pki: PKI, tmp_path: Path, procs: list[subprocess.Popen[bytes]], mode: str, sig: signal.Signals
) -> None:
    with HangServer() as hang:
        args, env = mode_args(mode, pki, tmp_path, hang.url)
        log = tmp_path / "log"
        p = spawn_cli(args, log, env)
        procs.append(p)
        wait_until(lambda: hang.accepted >= 1 or p.poll() is not None)
        time.sleep(0.2)  # inside the attempt: the request is sent, the answer never comes
        assert p.poll() is None, log.read_text()
        assert_ends_quickly(p, sig, log)


@pytest.mark.parametrize("mode", ["serve", "update"])
def test_sigterm_during_a_hung_refresh(
    pki: PKI, endpoint: LocalEndpoint, tmp_path: Path, procs: list[subprocess.Popen[bytes]], mode: str
) -> None:
    # the first CreateSession is answered by the real endpoint; every later one hangs for a minute
    with ScriptedServer([FORWARD], after=Reply(201, delay=60), upstream=endpoint) as srv:
        args, env = mode_args(mode, pki, tmp_path, srv.url)
        log = tmp_path / "log"
        p = spawn_cli(args, log, env)
        procs.append(p)
        if mode == "serve":
            port = int(args[args.index("--port") + 1])

            def listening() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return True
                except OSError:
                    return p.poll() is not None

            wait_until(listening)
        else:
            wait_until(lambda: (tmp_path / "credentials").exists() or p.poll() is not None)
        assert p.poll() is None, log.read_text()
        time.sleep(0.3)  # the signal handlers are in
        p.send_signal(signal.SIGHUP)  # refresh now: this one hangs
        wait_until(lambda: len(srv.seen) >= 2)
        time.sleep(0.2)
        assert_ends_quickly(p, signal.SIGTERM, log)


def test_sigterm_while_a_proxy_hangs_the_first_attempt(
    pki: PKI, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The proxied path (requests) is cancelled the same way: its sockets are registered too."""
    with HangServer() as proxy:
        args, env = mode_args("update", pki, tmp_path, "https://127.0.0.1:9")
        env.update({"HTTPS_PROXY": proxy.url, "NO_PROXY": ""})
        log = tmp_path / "log"
        p = spawn_cli(args, log, env)
        procs.append(p)
        wait_until(lambda: proxy.accepted >= 1 or p.poll() is not None)
        time.sleep(0.2)
        assert p.poll() is None, log.read_text()
        assert_ends_quickly(p, signal.SIGTERM, log)
