"""serve and update renew on schedule through ACM Private CA (moto), and sign with the new certificate.

The first certificate comes from the test PKI with a day of life, 23 hours of it gone: renewal is
due at start. local-endpoint trusts both the test root and the moto CA.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.moto_pca import Pca
from support.pki import PKI, now
from support.util import ARN_ARGS, clean_env, free_port, run_cli


@pytest.fixture
def both(pki: PKI, pca: Pca) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint([pki.root.cert, pca.cert]).start()
    try:
        yield ep
    finally:
        ep.stop()


def _old_pair(pki: PKI, tmp_path: Path) -> tuple[Path, Path, int]:
    start = now() - dt.timedelta(hours=23)
    leaf = pki.leaf(not_before=start, not_after=start + dt.timedelta(days=1))
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return cert, key, leaf.cert.serial_number


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


def _self_renewal_env(pca: Pca) -> dict[str, str]:
    """The moto endpoint, and no ambient AWS credentials: they must come from Roles Anywhere."""
    return {"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]}


def _wait(cond: object, timeout: float, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_serve_renews_and_its_next_create_session_carries_the_new_serial(
    pki: PKI, pca: Pca, both: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key, old_serial = _old_pair(pki, tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolesanywhere_signer",
            "serve",
            "--certificate",
            str(cert),
            "--private-key",
            str(key),
            *ARN_ARGS,
            "--endpoint",
            both.url,
            "--port",
            str(port),
            "--renew-ca-arn",
            pca.arn,
        ],
        env=clean_env(_self_renewal_env(pca)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(lambda: _serial(cert) != old_serial, 60, proc)
        new_serial = _serial(cert)
        _wait(lambda: any(f"Credential={new_serial}/" in a for a in both.state.authorizations), 30, proc)
        assert f"Credential={old_serial}/" in both.state.authorizations[0]
        state = (tmp_path / "host.crt.renewal.json").read_text()
        assert "renewed" in state
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "certificate renewed: serial" in err
    assert (tmp_path / "host.crt.prev").exists()


def test_update_once_renews_with_the_profile(pki: PKI, pca: Pca, both: LocalEndpoint, tmp_path: Path) -> None:
    cert, key, old_serial = _old_pair(pki, tmp_path)
    creds = tmp_path / "credentials"
    proc = run_cli(
        [
            "update",
            "--once",
            "--profile",
            "p",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            both.url,
            "--renew-ca-arn",
            pca.arn,
            "--renew-before",
            "50%",
        ],
        env={**_self_renewal_env(pca), "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
    )
    assert proc.returncode == 0, proc.stderr
    assert _serial(cert) != old_serial
    assert "[p]" in creds.read_text()


def test_serve_refuses_renewal_flags_without_an_issuer(tmp_path: Path) -> None:
    from support.util import assert_one_line_error

    proc = run_cli(["serve", "--certificate", "c", "--private-key", "k", *ARN_ARGS, "--renew-before", "10d"])
    assert_one_line_error(proc, "--renew-before needs --renew-ca-arn or --renew-command", code=2)
    proc = run_cli(["update", "--certificate", "c", "--private-key", "k", *ARN_ARGS, "--renew-before", "x"])
    assert_one_line_error(proc, "needs --renew-ca-arn", code=2)
    proc = run_cli(
        ["serve", "--certificate", "c", "--private-key", "k", *ARN_ARGS, "--renew-command", "x", "--renew-before", "0%"]
    )
    assert_one_line_error(proc, "between 0% and 100%", code=2)


def test_serve_refuses_a_renew_command_it_could_never_check(pki: PKI, tmp_path: Path) -> None:
    """A leaf straight from the root has no chain to check the command's answer against."""
    from support.util import assert_one_line_error

    leaf = pki.leaf()
    cert, key = tmp_path / "h.crt", tmp_path / "h.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    with LocalEndpoint([pki.root.cert]) as ep:
        proc = run_cli(
            [
                "serve",
                "--certificate",
                cert,
                "--private-key",
                key,
                *ARN_ARGS,
                "--endpoint",
                ep.url,
                "--port",
                str(free_port()),
                "--renew-command",
                "true",
            ]
        )
    assert_one_line_error(proc, "--trust-anchor-certificate", code=2)
