"""TPM keys through the CLI: end to end against the verifying endpoint, boto3, and every refusal."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from rolesanywhere_signer.der import der_tlv
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.tss2 import encode_der, parse_pem
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, clean_env, free_port, run_cli

from .conftest import PASSWORD, Key
from .swtpm import Swtpm


def _cp(key: Key, endpoint, *extra: str, tcti: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    args = [
        "credential-process",
        "--certificate",
        str(key.cert),
        "--private-key",
        key.arg,
        "--endpoint",
        endpoint.url,
        *ARN_ARGS,
        *extra,
    ]
    return [*args, "--tcti", tcti] if tcti else args


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    import json

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["Version"] == 1 and doc["AccessKeyId"] and doc["SessionToken"]


def test_credential_process_file_and_handle_keys(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    _ok(run_cli(_cp(keys["openssl-ec"], endpoint, tcti=swtpm.tcti)))
    # TCTI from the environment, password from the environment, RSA at a persistent handle
    _ok(
        run_cli(
            _cp(keys["tools-rsa-handle"], endpoint),
            env={"TPM2TOOLS_TCTI": swtpm.tcti, "ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD": PASSWORD},
        )
    )
    _ok(run_cli(_cp(keys["tools-ec-handle"], endpoint, "--no-tpm-key-password"), env={"TCTI": swtpm.tcti}))
    proc = run_cli(_cp(keys["openssl-ec-pw"], endpoint, "--tpm-key-password", PASSWORD, tcti=swtpm.tcti))
    _ok(proc)
    assert "visible" in proc.stderr and PASSWORD not in proc.stderr
    assert endpoint.state.sessions_created == 4


def test_boto3_credential_process_with_a_tpm_key(
    swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    import boto3

    key = keys["openssl-rsa-pw"]
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    command = (
        f"{sys.executable} -m rolesanywhere_signer credential-process --certificate {key.cert} "
        f"--private-key {key.arg} --tpm-key-password-file {pw} --tcti {swtpm.tcti} "
        f"--endpoint {endpoint.url} " + " ".join(ARN_ARGS)
    )
    config = tmp_path / "aws_config"
    config.write_text(f"[profile tpm]\ncredential_process = {command}\nregion = us-east-2\n")
    env = clean_env({"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        creds = boto3.Session(profile_name="tpm").get_credentials().get_frozen_credentials()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert creds.access_key and creds.secret_key and creds.token
    assert endpoint.state.sessions_created == 1


def test_password_prompt_on_the_terminal(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    import pty

    controller, tty = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *_cp(keys["openssl-ec-pw"], endpoint, tcti=swtpm.tcti)],
        env=clean_env({"ROLESANYWHERE_SIGNER_TTY": os.ttyname(tty)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    shown = b""
    while b"Password for TPM key" not in shown:
        ready, _, _ = select.select([controller], [], [], 20)
        assert ready, f"no prompt on the terminal: {shown!r}"
        shown += os.read(controller, 4096)
    os.write(controller, PASSWORD.encode() + b"\n")
    out, err = child.communicate(timeout=30)
    os.close(tty)
    os.close(controller)
    _ok(subprocess.CompletedProcess(child.args, child.returncode, out, err))


# ---------------------------------------------------------------- refusals


def test_wrong_password_is_reported_once_then_lockout(
    fresh_tpm: Swtpm, pki: PKI, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from support.pki import issue

    path = fresh_tpm.openssl_key(tmp_path / "k.tss", "ec:P-256", PASSWORD)
    leaf = issue("tpm lockout", issuer=pki.root, public_key=load_pem_public_key(fresh_tpm.public_pem(path, PASSWORD)))
    key = Key(str(path), PASSWORD, leaf, pki.write("lockout.crt", leaf.pem))
    for n in (1, 2, 3):
        proc = run_cli(_cp(key, endpoint, "--tpm-key-password", "wrong", tcti=fresh_tpm.tcti))
        assert_one_line_error(proc, "wrong password for TPM key")
        assert "dictionary-attack lockout" in proc.stderr and f"({n} of 3 failures)" in proc.stderr
    proc = run_cli(_cp(key, endpoint, "--tpm-key-password", PASSWORD, tcti=fresh_tpm.tcti))
    assert_one_line_error(proc, "dictionary-attack lockout and refuses passwords")
    assert endpoint.state.requests_seen == 0  # nothing was sent with a failed signature
    fresh_tpm.clear_lockout()
    _ok(run_cli(_cp(key, endpoint, "--tpm-key-password", PASSWORD, tcti=fresh_tpm.tcti)))


def test_wrong_password_is_not_retried_in_process(fresh_tpm: Swtpm, tmp_path: Path) -> None:
    from rolesanywhere_signer.backends import tpm
    from rolesanywhere_signer.errors import AuthenticationError
    from rolesanywhere_signer.options import IdentityOptions
    from rolesanywhere_signer.secret import Secret

    path = fresh_tpm.openssl_key(tmp_path / "k.tss", "ec:P-256", PASSWORD)
    key = tpm.open_key(IdentityOptions(private_key=str(path), tcti=fresh_tpm.tcti, tpm_key_password=Secret("bad")))
    try:
        for _ in range(3):  # a long-running caller asking again must not cost more DA failures
            with pytest.raises(AuthenticationError, match="wrong password"):
                key.sign(b"x")
    finally:
        key.close()
    out = fresh_tpm.run("tpm2_getcap", "properties-variable").stdout
    assert "TPM2_PT_LOCKOUT_COUNTER: 0x1" in out


def test_missing_password_without_a_terminal_fails_fast(
    swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint
) -> None:
    proc = run_cli(_cp(keys["openssl-rsa-pw"], endpoint, tcti=swtpm.tcti), timeout=20)
    assert_one_line_error(proc, "no terminal")
    assert "ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD" in proc.stderr
    proc = run_cli(_cp(keys["tools-ec-handle"], endpoint, tcti=swtpm.tcti), timeout=20)
    assert_one_line_error(proc, "no terminal")
    assert "--no-tpm-key-password" in proc.stderr


def test_key_from_another_tpm(swtpm: Swtpm, keys: dict[str, Key], fresh_tpm: Swtpm, endpoint: LocalEndpoint) -> None:
    proc = run_cli(_cp(keys["openssl-ec"], endpoint, tcti=fresh_tpm.tcti))
    assert_one_line_error(proc, "made by another TPM")
    proc = run_cli(_cp(keys["tools-ec"], endpoint, "--tpm-key-password", PASSWORD, tcti=fresh_tpm.tcti))
    assert_one_line_error(proc, "parent key 0x81000001")


def test_decrypt_only_key(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    pub, priv = swtpm.tools_key(
        "decrypt-only", alg="rsa2048", attributes="fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt"
    )
    path = swtpm.encode(pub, priv, tmp_path / "dec.tss")
    proc = run_cli(
        _cp(Key(str(path), None, keys["openssl-rsa"].issued, keys["openssl-rsa"].cert), endpoint, tcti=swtpm.tcti)
    )
    assert_one_line_error(proc, "decrypt-only key")


def test_restricted_key(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    pub, priv = swtpm.tools_key(
        "restricted",
        alg="ecc256:ecdsa-sha256:null",
        attributes="fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
    )
    path = swtpm.encode(pub, priv, tmp_path / "r.tss")
    proc = run_cli(
        _cp(Key(str(path), None, keys["openssl-ec"].issued, keys["openssl-ec"].cert), endpoint, tcti=swtpm.tcti)
    )
    assert_one_line_error(proc, "restricted key")


def test_missing_handle(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    key = Key("handle:0x81000099", None, keys["openssl-ec"].issued, keys["openssl-ec"].cert)
    proc = run_cli(_cp(key, endpoint, "--no-tpm-key-password", tcti=swtpm.tcti))
    assert_one_line_error(proc, "no key at persistent handle 0x81000099")


def test_tpm_not_running(keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    port = free_port()
    proc = run_cli(_cp(keys["openssl-ec"], endpoint, tcti=f"swtpm:host=127.0.0.1,port={port}"))
    assert_one_line_error(proc, "cannot connect to the TPM simulator")
    assert f"port={port}" in proc.stderr and "is swtpm" in proc.stderr
    proc = run_cli(_cp(keys["openssl-ec"], endpoint, tcti="device:/dev/tpm-none"))
    assert_one_line_error(proc, "TPM device /dev/tpm-none does not exist")


def test_tss2_file_with_a_policy(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    import base64

    der = encode_der(parse_pem(Path(keys["openssl-ec"].arg).read_bytes(), "k"))
    body = der[3:]  # after the SEQUENCE header (3 bytes at this size)
    oid, empty_auth, rest = body[:8], body[8:13], body[13:]
    # policy [1] { SEQUENCE { commandCode [0] INTEGER TPM2_CC_PolicyAuthValue, commandPolicy [1] OCTET STRING } }
    policy = der_tlv(
        0xA1,
        der_tlv(0x30, der_tlv(0x30, der_tlv(0xA0, der_tlv(0x02, b"\x01\x6b")) + der_tlv(0xA1, der_tlv(0x04, b"")))),
    )
    new = der_tlv(0x30, oid + empty_auth + policy + rest)
    path = tmp_path / "policy.tss"
    path.write_bytes(
        b"-----BEGIN TSS2 PRIVATE KEY-----\n" + base64.encodebytes(new) + b"-----END TSS2 PRIVATE KEY-----\n"
    )
    proc = run_cli(
        _cp(Key(str(path), None, keys["openssl-ec"].issued, keys["openssl-ec"].cert), endpoint, tcti=swtpm.tcti)
    )
    assert_one_line_error(proc, "bound to a TPM policy")


def test_certificate_of_another_key(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint) -> None:
    key = Key(keys["openssl-ec"].arg, None, keys["pytss-ec"].issued, keys["pytss-ec"].cert)
    proc = run_cli(_cp(key, endpoint, tcti=swtpm.tcti))
    assert_one_line_error(proc, "does not match certificate")
    assert endpoint.state.requests_seen == 0


@pytest.mark.parametrize(
    ("key_arg", "extra", "phrase"),
    [
        ("handle:zz", [], "not a hexadecimal number"),
        ("handle:0x80000001", [], "not a persistent handle"),
        ("{key}", ["--tcti", ""], "--tcti is empty"),
        ("{key}", ["--tcti", "no such!"], "is not a TCTI"),
        ("{key}", ["--tcti", "nosuchtcti:x"], "unknown TCTI"),
        (
            "{key}",
            ["--tpm-key-password-file", "/nonexistent/pw"],
            "TPM key password file /nonexistent/pw does not exist",
        ),
    ],
)
def test_bad_tpm_inputs(
    swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, key_arg: str, extra: list[str], phrase: str
) -> None:
    key = keys["openssl-rsa-pw"]
    args = [
        "credential-process",
        "--certificate",
        str(key.cert),
        "--private-key",
        key_arg.format(key=key.arg),
        "--endpoint",
        endpoint.url,
        *ARN_ARGS,
    ]
    if "--tcti" not in extra:
        args += ["--tcti", swtpm.tcti]
    proc = run_cli([*args, *extra])
    assert_one_line_error(proc, phrase)


def test_damaged_tss2_file(swtpm: Swtpm, keys: dict[str, Key], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    path = tmp_path / "bad.tss"
    path.write_bytes(b"-----BEGIN TSS2 PRIVATE KEY-----\nMAUGAw==\n-----END TSS2 PRIVATE KEY-----\n")
    proc = run_cli(
        _cp(Key(str(path), None, keys["openssl-ec"].issued, keys["openssl-ec"].cert), endpoint, tcti=swtpm.tcti)
    )
    assert_one_line_error(proc, "is damaged")


def test_generate_key_csr_and_credentials_through_the_cli(
    swtpm: Swtpm, pki: PKI, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    """Enrollment on a TPM: generate-key --tpm, csr signed by the TPM, certificate, credential-process."""
    from cryptography import x509

    from support.pki import issue

    key = tmp_path / "host.tss"
    proc = run_cli(["generate-key", "--tpm", "--key-type", "ec-p384", "--output", key, "--tcti", swtpm.tcti])
    assert proc.returncode == 0, proc.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    proc = run_cli(["csr", "--private-key", key, "--subject", "CN=tpm-host.example", "--tcti", swtpm.tcti])
    assert proc.returncode == 0, proc.stderr
    csr = x509.load_pem_x509_csr(proc.stdout.encode())
    assert csr.is_signature_valid
    leaf = issue("tpm-host.example", issuer=pki.root, public_key=csr.public_key())
    cert = pki.write("cli-tpm.crt", leaf.pem)
    _ok(
        run_cli(
            [
                "credential-process",
                "--certificate",
                cert,
                "--private-key",
                key,
                "--tcti",
                swtpm.tcti,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ]
        )
    )
