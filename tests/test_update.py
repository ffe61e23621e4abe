"""``rolesanywhere-signer update``: --once, the long-running loop, boto3 reading the file, bad input."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, clean_env, run_cli

SAMPLE = b"# hand-written\r\n[keep]\r\naws_access_key_id = KEEP\r\nregion = eu-west-1\r\n\r\n[default]\r\noutput = json"


@pytest.fixture
def files(pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return cert, key


def update_args(files: tuple[Path, Path], url: str, *extra: str) -> list[str]:
    return [
        "update",
        "--certificate",
        str(files[0]),
        "--private-key",
        str(files[1]),
        *ARN_ARGS,
        "--endpoint",
        url,
        *extra,
    ]


def boto3_credentials(path: Path, profile: str = "default") -> tuple[str, str, str, str]:
    import boto3

    saved = dict(os.environ)
    try:
        for k in list(os.environ):
            if k.startswith("AWS_"):
                del os.environ[k]
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(path)
        os.environ["AWS_CONFIG_FILE"] = str(path.parent / "no-config")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        c = boto3.Session(profile_name=profile).get_credentials()
        assert c is not None
        f = c.get_frozen_credentials()
        return f.access_key, f.secret_key, f.token, c.method
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_once_writes_and_boto3_reads_it(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    path = tmp_path / "aws" / "credentials"
    path.parent.mkdir(mode=0o755)
    path.write_bytes(SAMPLE)
    path.chmod(0o644)
    proc = run_cli(update_args(files, endpoint.url, "--once"), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "readable by others (mode 644); it is now 0600" in proc.stderr  # SAMPLE was written 0644
    data = path.read_bytes()
    assert data.startswith(SAMPLE + b"\r\naws_access_key_id = ")  # every byte before ours survives
    assert not data.endswith(b"\n")  # no final newline, as before
    key, secret, token, method = boto3_credentials(path)
    assert method == "shared-credentials-file"
    assert key.startswith("ASIA") and secret and token
    assert secret.encode() in data and token.encode() in data
    import configparser

    cp = configparser.RawConfigParser()
    cp.read_string(data.decode())
    assert cp.get("keep", "aws_access_key_id") == "KEEP" and cp.get("default", "output") == "json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert endpoint.state.sessions_created == 1


def test_once_named_profile_in_new_home(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = run_cli(update_args(files, endpoint.url, "--once", "--profile", "ra"), env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    path = home / ".aws" / "credentials"
    assert (home / ".aws").stat().st_mode & 0o777 == 0o700
    assert path.read_bytes().startswith(b"[ra]\naws_access_key_id = ASIA")
    assert boto3_credentials(path, "ra")[3] == "shared-credentials-file"


def test_full_disk_leaves_old_file(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    """A real failing write: the file-size limit makes write(2) fail (EFBIG) part-way through the new file."""
    path = tmp_path / "credentials"
    old = b"[default]\naws_access_key_id = OLD\n" + b"# padding\n" * 60
    path.write_bytes(old)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) + 64, len(old) + 64))

    proc = subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", *update_args(files, endpoint.url, "--once")],
        env=clean_env({"AWS_SHARED_CREDENTIALS_FILE": str(path)}),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert_one_line_error(proc, "the disk is full")
    assert "left intact" in proc.stderr
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".credentials.")) == [".credentials.lock"]


def _wait(cond, timeout: float = 15) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_long_running_survives_failures_and_reloads(files: tuple[Path, Path], pki: PKI, tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    ep = LocalEndpoint([pki.root.cert]).start()
    port = ep.port
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *update_args(files, ep.url, "--debug")],
        env=clean_env({"AWS_SHARED_CREDENTIALS_FILE": str(path)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert _wait(lambda: path.exists() and b"aws_session_token" in path.read_bytes())
        first = boto3_credentials(path)
        ep.stop()  # the endpoint goes away; SIGHUP forces an attempt that fails
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert proc.poll() is None  # one failed CreateSession never ends update
        assert boto3_credentials(path) == first  # the file still holds the last good credentials
        ep = LocalEndpoint([pki.root.cert], port=port).start()
        time.sleep(0.2)  # SIGHUP clears the backoff: no need to wait it out
        proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: boto3_credentials(path)[0] != first[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        _, err = proc.communicate()
        assert "refreshing credentials failed" in err
        for secret in first[1:3]:
            assert secret not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        ep.stop()


def test_a_storm_of_sighups_never_wedges_the_loop(files: tuple[Path, Path], pki: PKI, tmp_path: Path) -> None:
    """Signal handlers take no lock: hundreds of SIGHUPs at any moment, then it still refreshes and stops."""
    path = tmp_path / "credentials"
    with LocalEndpoint([pki.root.cert]) as ep:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rolesanywhere_signer", *update_args(files, ep.url)],
            env=clean_env({"AWS_SHARED_CREDENTIALS_FILE": str(path)}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert _wait(lambda: path.exists() and b"aws_session_token" in path.read_bytes())
            for _ in range(2000):  # while it reloads, signs and writes: handlers land anywhere
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.0005)
            before = ep.state.sessions_created
            time.sleep(0.3)
            proc.send_signal(signal.SIGHUP)  # the loop is alive: this one is acted on
            assert _wait(lambda: ep.state.sessions_created > before)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_first_failure_exits(files: tuple[Path, Path], tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_bytes(SAMPLE)
    proc = run_cli(update_args(files, "http://127.0.0.1:9"), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert_one_line_error(proc, "cannot connect")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # said once: no extra warning line
    assert path.read_bytes() == SAMPLE


@pytest.mark.parametrize(
    ("profile", "phrase"),
    [
        ("", "--profile '' is not a usable profile name"),
        ("a]b", "not a usable profile name"),
        (" x", "not a usable profile name"),
    ],
)
def test_bad_profile(files: tuple[Path, Path], tmp_path: Path, profile: str, phrase: str) -> None:
    proc = run_cli(
        update_args(files, "http://127.0.0.1:9", "--once", "--profile", profile),
        env={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "c")},
    )
    assert_one_line_error(proc, phrase, 2)


def test_unwritable_credentials_dir(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proc = run_cli(
        update_args(files, endpoint.url, "--once"),
        env={"AWS_SHARED_CREDENTIALS_FILE": str(blocker / "credentials")},
    )
    assert_one_line_error(proc, "not a directory")
    assert endpoint.state.sessions_created == 0  # refused before any CreateSession


def test_read_only_credentials_dir(files: tuple[Path, Path], endpoint: LocalEndpoint) -> None:
    # root ignores permission bits, so use a file system that is really read-only
    if not os.path.isdir("/proc/sys"):
        pytest.skip("no /proc")
    proc = run_cli(update_args(files, endpoint.url, "--once"), env={"AWS_SHARED_CREDENTIALS_FILE": "/proc/sys/creds"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert endpoint.state.sessions_created == 0


def test_credentials_path_is_a_directory(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    (tmp_path / "credentials").mkdir()
    proc = run_cli(
        update_args(files, endpoint.url, "--once"), env={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}
    )
    assert_one_line_error(proc, "is a directory")


def test_help_lists_the_flags() -> None:
    proc = run_cli(["update", "--help"])
    assert proc.returncode == 0
    for flag in ("--profile", "--once", "--certificate", "--session-duration"):
        assert flag in proc.stdout
