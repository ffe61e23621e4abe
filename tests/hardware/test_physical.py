"""Physical hardware: a YubiKey (PIV via PKCS#11) and a real TPM 2.0.

These run only where the hardware is present and skip cleanly (reported as skipped, never as passed)
everywhere else, CI included. Everything they exercise also runs on SoftHSM2 and swtpm in the suite.

- YubiKey: plug it in, install ykcs11 (Debian: ykcs11) or OpenSC, put a certificate in slot 9a and set
  ROLESANYWHERE_TEST_YUBIKEY_PIN. Run: `pytest -m yubikey tests/hardware`.
- TPM: a readable and writable /dev/tpmrm0. Run: `pytest -m hwtpm tests/hardware`.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI, issue
from support.util import ARN_ARGS, run_cli

YKCS11_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so.2",
    "/usr/lib/aarch64-linux-gnu/libykcs11.so",
    "/usr/local/lib/libykcs11.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
]


def _yubikey_module() -> str | None:
    """A PKCS#11 module that currently sees a Yubico token, or None."""
    try:
        import pkcs11
    except ImportError:
        return None
    for path in YKCS11_CANDIDATES:
        if not os.path.exists(path):
            continue
        try:
            lib = pkcs11.lib(path)
            if any("yubico" in t.manufacturer_id.lower() for t in lib.get_tokens()):
                return path
        except Exception:
            continue
    return None


@pytest.mark.yubikey
def test_yubikey_slot_9a_signs_and_lists() -> None:
    module = _yubikey_module()
    if module is None:
        pytest.skip("no YubiKey present (no PKCS#11 module sees a Yubico token)")
    pin = os.environ.get("ROLESANYWHERE_TEST_YUBIKEY_PIN")
    if not pin:
        pytest.skip("set ROLESANYWHERE_TEST_YUBIKEY_PIN to run the YubiKey test")
    listed = run_cli(
        ["read-certificate-data", "--pkcs11-uri", "pkcs11:manufacturer=Yubico%2C%20Inc.", "--pkcs11-lib", module]
    )
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entries, "the YubiKey holds no certificate"
    first = entries[0]
    cert = x509.load_der_x509_certificate(base64.b64decode(str(first["certificate"])))
    proc = run_cli(
        ["sign-string", "--pkcs11-uri", str(first["uri"]), "--pkcs11-lib", module],
        input=b"yubikey",
        env={"ROLESANYWHERE_SIGNER_PKCS11_PIN": pin},
    )
    assert proc.returncode == 0, proc.stderr
    assert verify_signature(cert.public_key(), bytes.fromhex(proc.stdout.strip()), b"yubikey")
    assert pin not in proc.stderr


def _hw_tpm_usable() -> bool:
    return os.path.exists("/dev/tpmrm0") and os.access("/dev/tpmrm0", os.R_OK | os.W_OK)


@pytest.mark.hwtpm
def test_real_tpm_generate_csr_certify_and_fetch(pki: PKI, tmp_path: Path) -> None:
    if not _hw_tpm_usable():
        pytest.skip("no usable physical TPM at /dev/tpmrm0")
    tcti = "device:/dev/tpmrm0"
    key = tmp_path / "host.tss"
    gen = run_cli(
        ["generate-key", "--tpm", "--tcti", tcti, "--key-type", "ec-p256", "--output", key, "--no-tpm-key-password"]
    )
    assert gen.returncode == 0, gen.stderr
    public = serialization.load_pem_public_key(gen.stdout.encode())
    cert = issue("hw-tpm-host", issuer=pki.root, public_key=public)
    cert_path = tmp_path / "host.crt"
    cert_path.write_bytes(cert.pem)
    with LocalEndpoint([pki.root.cert]) as ep:
        proc = run_cli(
            [
                "credential-process",
                "--certificate",
                cert_path,
                "--private-key",
                key,
                "--tcti",
                tcti,
                "--no-tpm-key-password",
                "--endpoint",
                ep.url,
                *ARN_ARGS,
            ]
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
        assert ep.state.sessions_created == 1
