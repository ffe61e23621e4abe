"""TPM keys as the reference takes them, on swtpm: sign-string without a certificate, a TSS2 key and
its certificate in one --certificate file, the key in a variable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import verify_signature
from support.util import ARN_ARGS, run_cli

from .conftest import PASSWORD, Key
from .swtpm import Swtpm


def fixed_message(public_key: Any) -> bytes:
    """The reference's sign-string message, written from its description."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        raw = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return b"AWS Roles Anywhere Credential Helper Signing Test1" + hashlib.sha256(b"IAM RA" + raw).digest()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("openssl-ec", []),
        ("openssl-rsa-pw", ["--tpm-key-password", PASSWORD]),
        ("tools-ec-handle", ["--no-tpm-key-password"]),
    ],
)
def test_sign_string_with_a_tpm_key_and_no_certificate(
    swtpm: Swtpm, keys: dict[str, Key], name: str, extra: list[str]
) -> None:
    key = keys[name]
    proc = run_cli(["sign-string", "--private-key", key.arg, "--tcti", swtpm.tcti, *extra])
    assert proc.returncode == 0, proc.stderr
    public = key.issued.cert.public_key()
    assert verify_signature(public, bytes.fromhex(json.loads(proc.stdout)), fixed_message(public))


def test_tss2_key_and_certificate_in_one_file(
    swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    key = keys["openssl-ec"]
    combo = tmp_path / "combo.pem"
    combo.write_bytes(Path(key.arg).read_bytes() + key.cert.read_bytes())
    proc = run_cli(
        ["credential-process", "--certificate", combo, "--tcti", swtpm.tcti, "--endpoint", endpoint.url, *ARN_ARGS]
    )
    assert proc.returncode == 0, proc.stderr
    assert endpoint.state.sessions_created == 1
    signed = run_cli(["sign-string", "--certificate", combo, "--tcti", swtpm.tcti, "--format", "text"])
    public = key.issued.cert.public_key()
    assert verify_signature(public, bytes.fromhex(signed.stdout), fixed_message(public))


def test_tss2_key_from_a_variable_and_stdin(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    key = keys["openssl-ec"]
    tss = Path(key.arg).read_text()
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            key.cert,
            "--private-key",
            "env:TPM_KEY",
            "--tcti",
            swtpm.tcti,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env={"TPM_KEY": tss},
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        ["credential-process", "--certificate", "-", "--tcti", swtpm.tcti, "--endpoint", endpoint.url, *ARN_ARGS],
        input=tss.encode() + key.cert.read_bytes(),
    )
    assert proc.returncode == 0, proc.stderr
    assert endpoint.state.sessions_created == 2
