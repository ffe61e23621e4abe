"""``rolesanywhere-signer serve`` as a process: start-up, signals, secrets kept out of logs, bad flags."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, clean_env, free_port, run_cli


@pytest.fixture
def files(pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return cert, key


def serve_args(files: tuple[Path, Path], url: str, port: int | None, *extra: str) -> list[str]:
    port_args = [] if port is None else ["--port", str(port)]
    return [
        "serve",
        "--certificate",
        str(files[0]),
        "--private-key",
        str(files[1]),
        *ARN_ARGS,
        "--endpoint",
        url,
        *port_args,
        *extra,
    ]


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *args],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_listening(proc: subprocess.Popen[str], port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        if listening(port):
            return
        time.sleep(0.05)
    raise AssertionError("serve did not start listening")


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def imds_credentials(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    import botocore.session

    env_before = dict(os.environ)
    try:
        for k in list(os.environ):
            if k.startswith("AWS_"):
                del os.environ[k]
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{host}:{port}"
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/credentials"
        os.environ["AWS_CONFIG_FILE"] = "/nonexistent/config"
        os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
        creds = botocore.session.Session().get_credentials()
        assert creds is not None and creds.method == "iam-role"
        f = creds.get_frozen_credentials()
        return {"AccessKeyId": f.access_key, "SecretAccessKey": f.secret_key, "Token": f.token}
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def test_serve_end_to_end_sighup_and_sigterm(
    files: tuple[Path, Path], endpoint: LocalEndpoint, pki: PKI, tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    token_file = tmp_path / "run" / "token"
    proc = start(serve_args(files, endpoint.url, port, "--debug", "--container-token-file", str(token_file)))
    stopper.append(proc)
    wait_listening(proc, port)  # listening comes first now; the first CreateSession follows at once
    deadline = time.monotonic() + 10
    while endpoint.state.sessions_created < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.state.sessions_created == 1
    first = imds_credentials(port)
    assert token_file.stat().st_mode & 0o777 == 0o600
    container_token = token_file.read_text()
    # rotation by SIGHUP: new certificate and key on disk, then the signal
    renewed = pki.leaf(cn="renewed by SIGHUP")
    files[0].write_bytes(renewed.pem)
    files[1].write_bytes(renewed.key_pem())
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while endpoint.state.sessions_created < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.state.sessions_created == 2
    assert f"Credential={renewed.cert.serial_number}/" in endpoint.state.authorizations[-1]
    second = imds_credentials(port)
    assert second["AccessKeyId"] != first["AccessKeyId"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not listening(port)
    out, err = proc.communicate()
    assert out == ""
    # --debug on, and still no secret in the log: no secret key, session token, or token of any kind
    for secret in (
        first["SecretAccessKey"],
        first["Token"],
        second["SecretAccessKey"],
        second["Token"],
        container_token,
        first["AccessKeyId"],
    ):
        assert secret not in err
    assert "SIGHUP" in err


def test_serve_ipv6_loopback(
    files: tuple[Path, Path], endpoint: LocalEndpoint, stopper: list[subprocess.Popen[str]]
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    proc = start(serve_args(files, endpoint.url, port, "--debug"))
    stopper.append(proc)
    wait_listening(proc, port)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    if "IPv6 loopback is unavailable" in err:
        pytest.skip("IPv6 loopback unavailable")
    assert "127.0.0.1 and ::1" in err


def test_exit_on_failure_makes_the_first_create_session_before_listening(
    files: tuple[Path, Path], pki: PKI, stopper: list[subprocess.Popen[str]]
) -> None:
    with LocalEndpoint([pki.root.cert], delay=2) as slow:
        port = free_port()
        proc = start(serve_args(files, slow.url, port, "--exit-on-failure"))
        stopper.append(proc)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            assert not listening(port)
            time.sleep(0.1)
        wait_listening(proc, port)
        assert slow.state.sessions_created == 1
        proc.terminate()
        assert proc.wait(10) == 0


def test_exit_on_failure_startup_failure_exits_with_the_error(files: tuple[Path, Path]) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(serve_args(files, dead, port, "--exit-on-failure"))
    assert_one_line_error(proc, "cannot connect")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # said once: no extra warning line
    assert not listening(port)


def test_exit_on_failure_startup_refusal_exits_with_the_error(files: tuple[Path, Path], pki: PKI) -> None:
    other = PKI(files[0].parent / "other")
    with LocalEndpoint([other.root.cert]) as untrusting:
        proc = run_cli(serve_args(files, untrusting.url, free_port(), "--exit-on-failure"))
    assert_one_line_error(proc, "Untrusted signing certificate")


def test_busy_port(files: tuple[Path, Path], endpoint: LocalEndpoint) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = run_cli(serve_args(files, endpoint.url, s.getsockname()[1]))
    assert_one_line_error(proc, "cannot listen")
    assert endpoint.state.sessions_created == 0  # found before any CreateSession


@pytest.mark.parametrize(
    ("extra", "phrase", "code"),
    [
        (["--port", "0"], "--port 0 is out of range", 2),
        (["--port", "65536"], "out of range", 2),
        (["--port", "-1"], "out of range", 2),
        (["--port", "http"], "invalid int value", 2),
        (["--hop-limit", "0"], "--hop-limit 0 is out of range", 2),
        (["--hop-limit", "256"], "--hop-limit 256 is out of range", 2),
        (["--hop-limit", "x"], "invalid int value", 2),
        (["--bind", "192.0.2.7"], "not a loopback address", 2),
        (["--bind", "0.0.0.0"], "not a loopback address", 2),
        (["--bind", "my-host.example"], "is not an IP address", 2),
        (["--bind", ""], "is not an IP address", 2),
        (["--max-connections", "0"], "--max-connections 0 is out of range", 2),
        (["--max-connections", "70000"], "--max-connections 70000 is out of range", 2),
        (["--max-connections", "many"], "invalid int value", 2),
        (["--header-timeout", "0"], "--header-timeout 0 is out of range", 2),
        (["--header-timeout", "nan"], "--header-timeout nan is out of range", 2),
        (["--header-timeout", "61"], "--header-timeout 61 is out of range", 2),
        (["--header-timeout", "soon"], "invalid float value", 2),
    ],
)
def test_bad_flags(files: tuple[Path, Path], extra: list[str], phrase: str, code: int) -> None:
    # the flag check comes first: the endpoint need not exist
    port = None if extra[0] == "--port" else free_port()
    proc = run_cli(serve_args(files, "http://127.0.0.1:9", port, *extra))
    assert_one_line_error(proc, phrase, code)


def test_remote_bind_with_allow_remote_warns(files: tuple[Path, Path], endpoint: LocalEndpoint) -> None:
    # 192.0.2.7 is not ours: binding fails, but only after the warning and the explicit consent
    proc = run_cli(serve_args(files, endpoint.url, free_port(), "--bind", "192.0.2.7", "--allow-remote"))
    assert "every host that can reach it can take them" in proc.stderr
    assert_one_line_error(proc, "cannot listen on 192.0.2.7")


def test_container_token_file_in_unusable_dir(
    files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_cli(serve_args(files, endpoint.url, free_port(), "--container-token-file", str(blocker / "token")))
    assert_one_line_error(proc, "not a directory")
    assert endpoint.state.sessions_created == 0


def test_bad_arn_before_anything(files: tuple[Path, Path]) -> None:
    args = serve_args(files, "http://127.0.0.1:9", free_port())
    args[args.index("--role-arn") + 1] = "arn:aws:iam::123:role/x"
    assert_one_line_error(run_cli(args), "--role-arn")


def test_help_lists_the_flags() -> None:
    proc = run_cli(["serve", "--help"])
    assert proc.returncode == 0
    for flag in (
        "--port",
        "--hop-limit",
        "--bind",
        "--allow-remote",
        "--container-token-file",
        "--certificate",
        "--config",
        "--exit-on-failure",
        "--metrics-listen",
        "--log-format",
    ):
        assert flag in proc.stdout
    json.dumps(proc.stdout)
