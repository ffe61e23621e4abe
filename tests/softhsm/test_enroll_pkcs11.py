"""Enrollment on a SoftHSM2 token: generate-key -> csr -> certificate from the test CA -> credentials, and doctor."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, issue
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .softhsm import MODULE, PIN, SoftHSM


def _generate(hsm: SoftHSM, uri: str, key_type: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--key-type", key_type], env=hsm.env)


def _private_key_attributes(label: str) -> dict[str, object]:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(MODULE).get_token(token_label="enroll")
    with token.open(user_pin=PIN) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        attrs = {
            name: key[getattr(Attribute, name)]
            for name in ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "TOKEN", "SIGN", "ID")
        }
        try:
            key[Attribute.VALUE if key.key_type == pkcs11.KeyType.EC else Attribute.PRIVATE_EXPONENT]
            attrs["secret readable"] = True
        except pkcs11.exceptions.PKCS11Error:
            attrs["secret readable"] = False
    return attrs


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa2048"])
def test_generate_csr_issue_and_get_credentials(
    hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint, tmp_path: Path, key_type: str
) -> None:
    hsm.init_token("enroll")
    uri = hsm.uri("enroll", "ra-key", extra=";id=%a1")
    gen = _generate(hsm, uri, key_type)
    assert gen.returncode == 0, gen.stderr
    assert PIN not in gen.stderr + gen.stdout
    public = serialization.load_pem_public_key(gen.stdout.encode())

    # 1. the key really is sensitive and non-extractable: read the attributes back from the token
    attrs = _private_key_attributes("ra-key")
    assert attrs["SENSITIVE"] is True and attrs["EXTRACTABLE"] is False
    assert attrs["ALWAYS_SENSITIVE"] is True and attrs["NEVER_EXTRACTABLE"] is True
    assert attrs["TOKEN"] is True and attrs["SIGN"] is True and attrs["ID"] == b"\xa1"
    assert attrs["secret readable"] is False

    # 2. a CSR signed on the token
    csr_proc = run_cli(
        ["csr", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--subject", f"CN=token {key_type},O=Example"],
        env=hsm.env,
    )
    assert csr_proc.returncode == 0, csr_proc.stderr
    verify = subprocess.run(
        ["openssl", "req", "-verify", "-noout"], input=csr_proc.stdout.encode(), capture_output=True, check=False
    )
    assert verify.returncode == 0 and b"verify OK" in verify.stderr + verify.stdout, verify.stderr
    csr = x509.load_pem_x509_csr(csr_proc.stdout.encode())
    assert csr.is_signature_valid and csr.public_key() == public

    # 3. a certificate from the test CA
    cert = issue(f"token {key_type}", issuer=pki.root, public_key=csr.public_key())
    cert_path = tmp_path / "token.crt"
    cert_path.write_bytes(cert.pem)

    # 4. credentials from the local endpoint, the key still on the token
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            cert_path,
            "--private-key",
            uri,
            "--pkcs11-lib",
            MODULE,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
    assert endpoint.state.sessions_created == 1

    # and doctor agrees, including the backend's own checks
    doc = run_cli(
        [
            "doctor",
            "--json",
            "--certificate",
            cert_path,
            "--private-key",
            uri,
            "--pkcs11-lib",
            MODULE,
            "--trust-anchor-certificate",
            pki.root_path,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    assert doc.returncode == 0, doc.stdout + doc.stderr
    checks = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}
    assert checks["key-match"]["status"] == "pass"
    assert {checks[n]["status"] for n in ("PKCS#11 module", "PKCS#11 token", "PKCS#11 mechanisms")} == {"pass"}


def test_refuses_an_existing_id_or_label(hsm: SoftHSM) -> None:
    hsm.init_token("enroll")
    assert _generate(hsm, hsm.uri("enroll", "first", extra=";id=%01"), "ec-p256").returncode == 0
    assert_one_line_error(
        _generate(hsm, hsm.uri("enroll", "second", extra=";id=%01"), "ec-p256"), "already has an object with id 01"
    )
    assert_one_line_error(
        _generate(hsm, hsm.uri("enroll", "first", extra=";id=%02"), "ec-p256"),
        "already has an object with object 'first'",
    )
    assert_one_line_error(_generate(hsm, hsm.uri("enroll"), "ec-p256"), "must name the new key", code=2)


def test_wrong_pin_is_refused_once(hsm: SoftHSM, tmp_path: Path) -> None:
    hsm.init_token("enroll")
    bad = tmp_path / "bad-pin"
    bad.write_text("0000\n")
    proc = run_cli(
        ["generate-key", "--pkcs11-uri", f"pkcs11:token=enroll;object=k?pin-source=file:{bad}", "--pkcs11-lib", MODULE],
        env=hsm.env,
    )
    assert proc.returncode == 1 and "0000" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_names_a_missing_token_and_module(hsm: SoftHSM) -> None:
    hsm.init_token("enroll")
    proc = run_cli(
        ["doctor", "--json", "--pkcs11-uri", hsm.uri("no-such-token", "k"), "--pkcs11-lib", MODULE], env=hsm.env
    )
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["PKCS#11 module"]["status"] == "pass"
    assert checks["PKCS#11 token"]["status"] == "fail" and "no-such-token" in checks["PKCS#11 token"]["detail"]
    proc = run_cli(
        ["doctor", "--json", "--pkcs11-uri", hsm.uri("enroll", "k"), "--pkcs11-lib", "/nonexistent/x.so"], env=hsm.env
    )
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["PKCS#11 module"]["status"] == "fail" and "/nonexistent/x.so" in checks["PKCS#11 module"]["detail"]


def test_fifo_pin_source_is_a_one_line_error(hsm: SoftHSM, tmp_path: Path) -> None:
    """A FIFO as pin-source (planted, or a mistake) is refused at once, never waited on."""
    hsm.init_token("enroll")
    fifo = tmp_path / "pin-fifo"
    os.mkfifo(fifo, 0o600)
    proc = run_cli(
        [
            "generate-key",
            "--pkcs11-uri",
            f"pkcs11:token=enroll;object=k?pin-source=file:{fifo}",
            "--pkcs11-lib",
            MODULE,
        ],
        env=hsm.env,
        timeout=20,  # a bound against a hang, not a timing
    )
    assert_one_line_error(proc, f"{fifo} is a named pipe (FIFO), not a regular file")
