"""Enrollment in a TPM (swtpm): generate-key -> csr -> certificate from the test CA -> credentials, and doctor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, issue
from support.util import ARN_ARGS, assert_one_line_error, run_cli

if not shutil.which("swtpm") or not os.path.exists("/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so"):
    pytest.skip("swtpm and tpm2-openssl are needed (scripts/install-system.sh)", allow_module_level=True)


def _free_pair() -> int:
    """A port P with P+1 also free: the swtpm TCTI finds the control channel at port + 1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no pair of free ports")


@pytest.fixture
def tcti(tmp_path: Path) -> Iterator[str]:
    """A fresh swtpm on free loopback ports; yields the TCTI string and stops it afterwards."""
    state = tmp_path / "tpmstate"
    state.mkdir()
    port = _free_pair()
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--tpmstate", f"dir={state}",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"swtpm did not start: {stderr}") from None
                time.sleep(0.05)
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _openssl_public(key: Path, tcti: str) -> bytes:
    env = {**os.environ, "TPM2OPENSSL_TCTI": tcti}
    proc = subprocess.run(
        ["openssl", "pkey", "-provider", "tpm2", "-provider", "default", "-in", str(key), "-pubout"],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa2048"])
def test_generate_file_csr_issue_and_get_credentials(
    tcti: str, pki: PKI, endpoint: LocalEndpoint, tmp_path: Path, key_type: str
) -> None:
    key = tmp_path / "host.tss2"
    gen = run_cli(["generate-key", "--tpm", "--key-type", key_type, "--output", key, "--tcti", tcti,
                   "--no-tpm-key-password"])  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    public = serialization.load_pem_public_key(gen.stdout.encode())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN TSS2 PRIVATE KEY-----")

    # openssl's tpm2 provider loads the same file and finds the same public key
    assert serialization.load_pem_public_key(_openssl_public(key, tcti)) == public

    csr_proc = run_cli(["csr", "--private-key", key, "--tcti", tcti, "--no-tpm-key-password",
                        "--subject", f"CN=tpm {key_type},O=Example"])  # fmt: skip
    assert csr_proc.returncode == 0, csr_proc.stderr
    verify = subprocess.run(["openssl", "req", "-verify", "-noout"], input=csr_proc.stdout.encode(),
                            capture_output=True, check=False)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    csr = x509.load_pem_x509_csr(csr_proc.stdout.encode())
    assert csr.is_signature_valid and csr.public_key() == public

    cert = issue(f"tpm {key_type}", issuer=pki.root, public_key=csr.public_key())
    cert_path = tmp_path / "host.crt"
    cert_path.write_bytes(cert.pem)
    proc = run_cli(["credential-process", "--certificate", cert_path, "--private-key", key, "--tcti", tcti,
                    "--no-tpm-key-password", "--endpoint", endpoint.url, *ARN_ARGS])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
    assert endpoint.state.sessions_created == 1

    doc = run_cli(["doctor", "--json", "--certificate", cert_path, "--private-key", key, "--tcti", tcti,
                   "--no-tpm-key-password", "--trust-anchor-certificate", pki.root_path, *ARN_ARGS])  # fmt: skip
    assert doc.returncode == 0, doc.stdout + doc.stderr
    checks = json.loads(doc.stdout)["checks"]
    assert all(c["status"] != "fail" for c in checks)
    assert next(c for c in checks if c["name"] == "key-match")["status"] == "pass"


def test_persistent_handle_and_refusal_when_in_use(tcti: str, tmp_path: Path) -> None:
    gen = run_cli(["generate-key", "--tpm", "--persistent-handle", "0x81000010", "--tcti", tcti,
                   "--no-tpm-key-password"])  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    public = serialization.load_pem_public_key(gen.stdout.encode())
    again = run_cli(["generate-key", "--tpm", "--persistent-handle", "0x81000010", "--tcti", tcti,
                     "--no-tpm-key-password"])  # fmt: skip
    assert_one_line_error(again, "0x81000010")
    assert "in use" in again.stderr or "already" in again.stderr
    csr_proc = run_cli(["csr", "--private-key", "handle:0x81000010", "--tcti", tcti, "--no-tpm-key-password",
                        "--subject", "CN=persistent"])  # fmt: skip
    assert csr_proc.returncode == 0, csr_proc.stderr
    assert x509.load_pem_x509_csr(csr_proc.stdout.encode()).public_key() == public


def test_key_password_from_file(tcti: str, tmp_path: Path) -> None:
    pw = tmp_path / "tpm-pw"
    pw.write_text("tpm secret\n")
    key = tmp_path / "pw.tss2"
    gen = run_cli(["generate-key", "--tpm", "--output", key, "--tcti", tcti, "--tpm-key-password-file", pw])
    assert gen.returncode == 0, gen.stderr
    ok = run_cli(["csr", "--private-key", key, "--tcti", tcti, "--tpm-key-password-file", pw, "--subject", "CN=pw"])
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad-pw"
    bad.write_text("wrong\n")
    proc = run_cli(["csr", "--private-key", key, "--tcti", tcti, "--tpm-key-password-file", bad, "--subject", "CN=x"])
    assert (
        proc.returncode == 1
        and "Traceback" not in proc.stderr
        and "wrong" not in proc.stderr.lower().replace("wrong password", "")
    )


def test_doctor_names_an_unreachable_tpm(tcti: str, tmp_path: Path) -> None:
    key = tmp_path / "host.tss2"
    gen = run_cli(["generate-key", "--tpm", "--output", key, "--tcti", tcti, "--no-tpm-key-password"])
    assert gen.returncode == 0, gen.stderr
    dead = f"swtpm:host=127.0.0.1,port={_free_pair()}"
    proc = run_cli(["doctor", "--json", "--private-key", key, "--tcti", dead, "--no-tpm-key-password"])
    assert proc.returncode == 1, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["TPM"]["status"] == "fail", checks
    assert str(dead.rsplit("=", 1)[1]) in checks["TPM"]["detail"], checks["TPM"]
    ok = run_cli(["doctor", "--json", "--private-key", key, "--tcti", tcti, "--no-tpm-key-password"])
    assert ok.returncode == 0, ok.stdout
    checks = {c["name"]: c for c in json.loads(ok.stdout)["checks"]}
    assert checks["key"]["status"] == "pass" and checks["TPM"]["status"] == "pass"


def test_fifo_key_password_file_is_a_one_line_error(tcti: str, tmp_path: Path) -> None:
    """A FIFO as --tpm-key-password-file is refused at once, never waited on."""
    pw = tmp_path / "tpm-pw"
    pw.write_text("tpm secret\n")
    key = tmp_path / "pw.tss2"
    gen = run_cli(["generate-key", "--tpm", "--output", key, "--tcti", tcti, "--tpm-key-password-file", pw])
    assert gen.returncode == 0, gen.stderr
    fifo = tmp_path / "pw-fifo"
    os.mkfifo(fifo, 0o600)
    proc = run_cli(
        ["csr", "--private-key", key, "--tcti", tcti, "--tpm-key-password-file", fifo, "--subject", "CN=x"],
        timeout=20,  # a bound against a hang, not a timing
    )
    assert_one_line_error(proc, f"{fifo} is a named pipe (FIFO), not a regular file")
