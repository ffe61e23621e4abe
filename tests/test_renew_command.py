"""``renew --renew-command``: a script that signs with a local CA (as step-ca or Vault would)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from support.pki import PKI
from support.util import assert_one_line_error, run_cli

SIGNER = """
import datetime as dt, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
ca = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
assert csr.is_signature_valid
now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
b = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject).public_key(csr.public_key())
     .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=60)))
for ext in csr.extensions:
    b = b.add_extension(ext.value, ext.critical)
b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
cert = b.sign(key, hashes.SHA256())
sys.stdout.buffer.write(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
"""


@pytest.fixture
def setup(pki: PKI, tmp_path: Path) -> tuple[list[str], Path, bytes]:
    leaf = pki.leaf(days=30, via_intermediate=True)
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    cert.write_bytes(leaf.pem + pki.intermediate.pem)
    key.write_bytes(leaf.key_pem())
    ca_pem, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    ca_pem.write_bytes(pki.intermediate.pem)
    ca_key.write_bytes(pki.intermediate.key_pem())
    (tmp_path / "sign.py").write_text(SIGNER)
    base = ["renew", "--certificate", str(cert), "--private-key", str(key), "--force"]
    return base, tmp_path, cert.read_bytes()


def _cmd(tmp_path: Path, body: str | None = None) -> str:
    if body is None:
        return f"{sys.executable} {tmp_path / 'sign.py'} {tmp_path / 'ca.pem'} {tmp_path / 'ca.key'}"
    script = tmp_path / "ca.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_success_installs_leaf_and_chain(setup: tuple[list[str], Path, bytes]) -> None:
    base, tmp_path, old = setup
    proc = run_cli([*base, "--renew-command", _cmd(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    certs = x509.load_pem_x509_certificates((tmp_path / "host.crt").read_bytes())
    assert len(certs) == 2 and certs[0].not_valid_after_utc > x509.load_pem_x509_certificate(old).not_valid_after_utc
    assert (tmp_path / "host.crt.prev").read_bytes() == old


def test_timeout_kills_the_command_and_keeps_the_old_pair(setup: tuple[list[str], Path, bytes]) -> None:
    base, tmp_path, old = setup
    started = time.monotonic()
    proc = run_cli([*base, "--renew-command", _cmd(tmp_path, "sleep 30\n"), "--renew-command-timeout", "1"])
    assert time.monotonic() - started < 15
    assert_one_line_error(proc, "did not finish within 1 seconds")
    assert (tmp_path / "host.crt").read_bytes() == old


def test_non_zero_exit_is_an_error_with_its_last_line(setup: tuple[list[str], Path, bytes]) -> None:
    base, tmp_path, old = setup
    proc = run_cli([*base, "--renew-command", _cmd(tmp_path, "cat >/dev/null; echo 'token expired' >&2; exit 3\n")])
    assert_one_line_error(proc, "exited with status 3: token expired")
    assert (tmp_path / "host.crt").read_bytes() == old


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("cat >/dev/null; echo hello\n", "printed no PEM certificate"),
        ("cat >/dev/null; printf -- '-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n'\n", "damaged"),
        ("cat >/dev/null; head -c 400000 /dev/zero\n", "more than"),
        ("cat\n", "printed no PEM certificate"),  # echoes the CSR back
    ],
)
def test_garbage_output_is_refused(setup: tuple[list[str], Path, bytes], body: str, phrase: str) -> None:
    base, tmp_path, old = setup
    proc = run_cli([*base, "--renew-command", _cmd(tmp_path, body)])
    assert_one_line_error(proc, phrase)
    assert (tmp_path / "host.crt").read_bytes() == old


def test_a_missing_command_is_one_line(setup: tuple[list[str], Path, bytes]) -> None:
    base, tmp_path, _ = setup
    proc = run_cli([*base, "--renew-command", str(tmp_path / "nope")])
    assert_one_line_error(proc, "was not found")


def test_the_command_needs_a_ca_to_check_against(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.leaf(days=30)  # issued by the root itself: no chain to anchor the check on
    cert, key = tmp_path / "h.crt", tmp_path / "h.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    proc = run_cli(["renew", "--certificate", cert, "--private-key", key, "--force", "--renew-command", "true"])
    assert_one_line_error(proc, "--trust-anchor-certificate", code=2)


def test_our_secret_variables_are_not_passed_to_the_command(setup: tuple[list[str], Path, bytes]) -> None:
    base, tmp_path, _old = setup
    body = "cat >/dev/null; echo \"leaked=$(env | grep -c '^ROLESANYWHERE_SIGNER_')\" >&2; exit 3\n"
    proc = run_cli(
        [*base, "--renew-command", _cmd(tmp_path, body)],
        env={"ROLESANYWHERE_SIGNER_PKCS11_PIN": "123456", "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "pw"},
    )
    assert_one_line_error(proc, "exited with status 3: leaked=0")


def test_an_expired_certificate_can_still_be_renewed_through_a_command(pki: PKI, tmp_path: Path) -> None:
    """A machine that was off past expiry: no self-renewal possible, but the key still signs a CSR."""
    import datetime as dt

    from support.pki import now

    leaf = pki.leaf(via_intermediate=True, not_before=now() - dt.timedelta(days=40), days=30)
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    cert.write_bytes(leaf.pem + pki.intermediate.pem)
    key.write_bytes(leaf.key_pem())
    (tmp_path / "ca.pem").write_bytes(pki.intermediate.pem)
    (tmp_path / "ca.key").write_bytes(pki.intermediate.key_pem())
    (tmp_path / "sign.py").write_text(SIGNER)
    proc = run_cli(["renew", "--certificate", cert, "--private-key", key, "--renew-command", _cmd(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert new.not_valid_after_utc > now() + dt.timedelta(days=50)
