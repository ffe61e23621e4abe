"""credential-process end to end: the CLI as botocore runs it, against the verifying local endpoint."""

from __future__ import annotations

import base64
import json
import re
import shlex
import sys
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI, Issued, issue
from support.util import ARN_ARGS, SRC, assert_one_line_error, run_cli

EXPIRATION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def cp_args(cert: Path, key: Path | None, ep: LocalEndpoint, *extra: object) -> list[str]:
    args = ["credential-process", "--certificate", str(cert)]
    if key is not None:
        args += ["--private-key", str(key)]
    return [*args, "--endpoint", ep.url, *ARN_ARGS, *map(str, extra)]


def assert_credentials(stdout: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(stdout)
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert doc["Version"] == 1
    assert str(doc["AccessKeyId"]).startswith("ASIA")
    assert EXPIRATION.match(str(doc["Expiration"]))
    # exactly one compact JSON document and nothing else, no newline: byte for byte as aws_signing_helper
    assert stdout == json.dumps(doc, separators=(",", ":"))
    return doc


@pytest.mark.parametrize(
    ("key_type", "via_intermediate"),
    [("ec-p256", False), ("ec-p256", True), ("rsa2048", False), ("rsa2048", True)],
)
def test_boto3_gets_credentials_through_credential_process(
    pki: PKI,
    endpoint: LocalEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key_type: str,
    via_intermediate: bool,
) -> None:
    leaf = pki.leaf(key_type, via_intermediate=via_intermediate)
    cert, key = pki.leaf_files(f"boto-{key_type}-{via_intermediate}", leaf)
    args = cp_args(cert, key, endpoint)
    if via_intermediate:
        args += ["--intermediates", str(pki.intermediates_path)]
    command = shlex.join([sys.executable, "-m", "rolesanywhere_signer", *args])
    config = tmp_path / "config"
    config.write_text(f"[profile ra]\ncredential_process = {command}\nregion = us-east-2\n")
    for k in list(__import__("os").environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("PYTHONPATH", SRC)
    creds = boto3.Session(profile_name="ra").get_credentials()
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and len(frozen.secret_key) == 40 and frozen.token
    assert creds.method == "custom-process"
    assert endpoint.state.sessions_created == 1


def test_output_contract(pki: PKI, endpoint: LocalEndpoint) -> None:
    cert, key = pki.leaf_files("contract", pki.leaf())
    proc = run_cli(cp_args(cert, key, endpoint, "--session-duration", 900, "--role-session-name", "ci-runner"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_credentials(proc.stdout)


@pytest.mark.parametrize("key_type", ["ec-p384", "ec-p521", "rsa3072", "rsa4096"])
def test_every_supported_key_type(pki: PKI, endpoint: LocalEndpoint, key_type: str) -> None:
    cert, key = pki.leaf_files(f"kt-{key_type}", pki.leaf(key_type))
    proc = run_cli(cp_args(cert, key, endpoint))
    assert proc.returncode == 0, proc.stderr
    assert_credentials(proc.stdout)


def test_key_formats_pkcs1_sec1_der_and_der_certificate(pki: PKI, endpoint: LocalEndpoint) -> None:
    for kt in ("rsa2048", "ec-p256"):
        leaf = pki.leaf(kt)
        trad = pki.write(f"trad-{kt}.key", leaf.key_pem("traditional"))  # PKCS#1 / SEC1
        assert b"BEGIN RSA PRIVATE KEY" in trad.read_bytes() or b"BEGIN EC PRIVATE KEY" in trad.read_bytes()
        der_key = pki.write(
            f"der-{kt}.key",
            leaf.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        der_cert = pki.write(f"der-{kt}.cer", leaf.der)
        for cert, key in ((der_cert, trad), (der_cert, der_key)):
            proc = run_cli(cp_args(cert, key, endpoint))
            assert proc.returncode == 0, proc.stderr
            assert_credentials(proc.stdout)


def test_encrypted_pkcs8_with_password_from_env_and_flag(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    cert = pki.write("enc.crt", leaf.pem)
    key = pki.write("enc.key", leaf.key_pem(password=b"s3cret-pass"))
    proc = run_cli(cp_args(cert, key, endpoint), env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "s3cret-pass"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    proc = run_cli(cp_args(cert, key, endpoint, "--pkcs8-password", "s3cret-pass"))
    assert proc.returncode == 0, proc.stderr
    assert "visible to other local users" in proc.stderr and "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD" in proc.stderr
    assert "s3cret-pass" not in proc.stderr
    # no password and no terminal: fails at once, naming the non-interactive sources
    proc = run_cli(cp_args(cert, key, endpoint), timeout=20)
    assert_one_line_error(proc, "no terminal")
    assert "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD" in proc.stderr
    proc = run_cli(cp_args(cert, key, endpoint, "--pkcs8-password", "wrong"))
    assert_one_line_error(proc, "wrong password")
    assert endpoint.state.requests_seen == 2


def test_password_prompt_on_the_terminal(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    """The prompt opens the terminal itself (botocore gives no stdin); here a pty stands in for it."""
    import os
    import pty
    import subprocess

    from support.util import clean_env

    leaf = pki.leaf()
    cert = pki.write("tty.crt", leaf.pem)
    key = pki.write("tty.key", leaf.key_pem(password=b"tty-pass"))
    controller, tty = pty.openpty()
    tty_name = os.ttyname(tty)
    child = subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *cp_args(cert, key, endpoint)],
        env=clean_env({"ROLESANYWHERE_SIGNER_TTY": tty_name}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    shown = b""
    import select

    while b"Password for private key" not in shown:  # answer only once asked, as a person would
        ready, _, _ = select.select([controller], [], [], 20)
        assert ready, f"no prompt on the terminal: {shown!r}"
        shown += os.read(controller, 4096)
    os.write(controller, b"tty-pass\n")
    out, err = child.communicate(timeout=30)
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    while select.select([controller], [], [], 0.2)[0]:  # what the terminal showed after typing
        try:
            shown += os.read(controller, 4096)
        except OSError:
            break
    os.close(tty)
    os.close(controller)
    assert proc.returncode == 0, proc.stderr
    assert_credentials(proc.stdout)
    assert b"Password for private key" in shown
    assert b"tty-pass" not in shown  # echo was off: the password never appeared on the terminal


def test_pkcs12_bundle_and_combo_file(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf("ec-p256", via_intermediate=True)
    p12 = pkcs12.serialize_key_and_certificates(
        b"p12",
        leaf.key,
        leaf.cert,
        [pki.intermediate.cert],
        serialization.BestAvailableEncryption(b"bundle-pw"),
    )
    bundle = pki.write("bundle.p12", p12)
    proc = run_cli(cp_args(bundle, None, endpoint), env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "bundle-pw"})
    assert proc.returncode == 0, proc.stderr
    assert_credentials(proc.stdout)
    # the intermediate inside the bundle was sent: the endpoint could only verify via it
    assert endpoint.state.sessions_created == 1
    nopw = pki.write(
        "nopw.p12",
        pkcs12.serialize_key_and_certificates(
            b"p12", leaf.key, leaf.cert, [pki.intermediate.cert], serialization.NoEncryption()
        ),
    )
    assert run_cli(cp_args(nopw, None, endpoint)).returncode == 0
    combo = pki.write("combo.pem", leaf.key_pem() + leaf.pem + pki.intermediate.pem)
    proc = run_cli(cp_args(combo, None, endpoint))
    assert proc.returncode == 0, proc.stderr
    assert_credentials(proc.stdout)
    proc = run_cli(cp_args(bundle, None, endpoint), env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "nope"})
    assert_one_line_error(proc, "wrong password for PKCS#12 bundle")


@pytest.mark.parametrize(
    ("make_leaf", "phrase"),
    [
        (
            lambda p: p.leaf(
                not_after=__import__("support.pki").pki.now() - __import__("datetime").timedelta(days=1),
                not_before=__import__("support.pki").pki.now() - __import__("datetime").timedelta(days=9),
            ),
            "expired on",
        ),
        (
            lambda p: p.leaf(not_before=__import__("support.pki").pki.now() + __import__("datetime").timedelta(days=2)),
            "not valid yet: notBefore is",
        ),
        (lambda p: issue("sub CA", issuer=p.root, ca=True), "is a CA certificate"),
        (lambda p: p.leaf(digital_signature=False), "lacks the digitalSignature key usage"),
    ],
    ids=["expired", "not-yet-valid", "ca-as-leaf", "no-digital-signature"],
)
def test_refused_before_any_network_call(pki: PKI, endpoint: LocalEndpoint, make_leaf: object, phrase: str) -> None:
    leaf: Issued = make_leaf(pki)  # type: ignore[operator]
    cert, key = pki.leaf_files("pre", leaf)
    assert_one_line_error(run_cli(cp_args(cert, key, endpoint)), phrase)
    assert endpoint.state.requests_seen == 0


def test_mismatched_key_refused_before_network(pki: PKI, endpoint: LocalEndpoint) -> None:
    cert, _ = pki.leaf_files("mm-a", pki.leaf())
    _, other_key = pki.leaf_files("mm-b", pki.leaf())
    assert_one_line_error(run_cli(cp_args(cert, other_key, endpoint)), "does not match certificate")
    assert endpoint.state.requests_seen == 0


def test_service_errors_are_shown_with_type_and_message(pki: PKI, tmp_path: Path) -> None:
    rogue = issue("Other CA", ca=True)
    leaf = pki.leaf()
    cert, key = pki.leaf_files("untrusted", leaf)
    with LocalEndpoint([rogue.cert]) as ep:
        proc = run_cli(cp_args(cert, key, ep))
    assert_one_line_error(proc, "AccessDeniedException: Untrusted signing certificate")


def test_retries_5xx_and_429_signing_each_attempt_again(pki: PKI) -> None:
    cert, key = pki.leaf_files("retry", pki.leaf())
    with LocalEndpoint([pki.root.cert], inject=[503, 429]) as ep:
        proc = run_cli(cp_args(cert, key, ep))
        assert proc.returncode == 0, proc.stderr
        assert ep.state.requests_seen == 3 and ep.state.sessions_created == 1
    with LocalEndpoint([pki.root.cert], inject=[500] * 10) as ep:
        proc = run_cli(cp_args(cert, key, ep))
        assert_one_line_error(proc, "InternalServerException")
        assert ep.state.requests_seen == 4  # bounded attempts


def test_4xx_is_not_retried(pki: PKI) -> None:
    cert, key = pki.leaf_files("no-retry", pki.leaf())
    with LocalEndpoint([pki.root.cert], inject=[403]) as ep:
        proc = run_cli(cp_args(cert, key, ep))
        assert proc.returncode == 1
        assert ep.state.requests_seen == 1


def test_sign_string_stdin_formats_verify(pki: PKI) -> None:
    """``--stdin`` (ours) signs standard input; the formats are the reference's."""
    for kt in ("ec-p256", "rsa2048"):
        leaf = pki.leaf(kt)
        cert, key = pki.leaf_files(f"ss-{kt}", leaf)
        for digest in ("SHA256", "SHA384", "SHA512"):
            proc = run_cli(
                ["sign-string", "--stdin", "--certificate", cert, "--private-key", key, "--digest", digest],
                input=b"hello world",
            )
            assert proc.returncode == 0, proc.stderr
            sig = bytes.fromhex(json.loads(proc.stdout))
            assert verify_signature(leaf.cert.public_key(), sig, b"hello world", digest.lower())  # type: ignore[arg-type]
        proc = run_cli(
            ["sign-string", "--stdin", "--certificate", cert, "--private-key", key, "--format", "text"], input=b"x"
        )
        assert verify_signature(leaf.cert.public_key(), bytes.fromhex(proc.stdout), b"x")


def test_read_certificate_data_and_version(pki: PKI) -> None:
    leaf = pki.leaf("rsa2048", serial=987654321)
    cert, _ = pki.leaf_files("rcd", leaf)
    proc = run_cli(["read-certificate-data", "--certificate", cert])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["keyType"] == "RSA" and doc["serialNumber"] == "987654321"
    assert base64.b64decode(doc["certificateData"]) == leaf.der
    proc = run_cli(["version"])
    assert proc.returncode == 0 and re.match(r"^\d+\.\d+\.\d+", proc.stdout)
