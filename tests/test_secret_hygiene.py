"""Secret hygiene: with --debug on, no command or mode lets a secret reach stderr or a log.

Secrets checked: the PKCS#8/PKCS#12 password, the private key PEM, the secret access key, the
session token, the IMDS token, the container token, and the access key id except its last 4
characters. Objects that hold secrets print themselves redacted, and a secret given on the command
line draws a warning that names a safer source.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rolesanywhere_signer.credentials import Credentials, mask_access_key
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions, RequestOptions, redact_pkcs11_uri
from rolesanywhere_signer.secret import Secret
from support.pki import PKI, Issued
from support.util import ARN_ARGS, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN, CliArg, clean_env, free_port, run_cli

PASSWORD = "Hyg1ene-pass-Do-Not-Print"
PW_ENV = "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD"
ACCESS_KEY_PATTERN = re.compile(r"(ASIA|AKIA)[A-Z0-9]{8,}")


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM block: any one of them in a log is key material leaking."""
    return [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----") and ":" not in ln]


def assert_clean(text: str, secrets: Iterable[str], where: str = "stderr") -> None:
    for s in secrets:
        assert s, "an empty secret would match anything"
        assert s not in text, f"a secret ({len(s)} chars, starting {s[:3]!r}) appeared in {where}"
    m = ACCESS_KEY_PATTERN.search(text)
    assert m is None, f"an access key id appeared unmasked in {where}: {m.group(0)[:4]}…"


@pytest.fixture(scope="module")
def leaf(pki: PKI) -> Issued:
    return pki.leaf("ec-p256")


@pytest.fixture(scope="module")
def enc_files(pki: PKI, leaf: Issued) -> tuple[Path, Path]:
    cert = pki.write("hyg.crt", leaf.pem)
    key = pki.write("hyg-enc.key", leaf.key_pem(password=PASSWORD.encode()))
    return cert, key


@pytest.fixture(scope="module")
def key_secrets(leaf: Issued, enc_files: tuple[Path, Path]) -> list[str]:
    """The password, the private scalar in every usual spelling, and the key PEMs.

    Not every line of the plain PEM: an EC PKCS#8 key embeds the public point, which legitimately
    travels in X-Amz-X509 and can line up with a base64 line of the key.
    """
    import base64

    d = leaf.key.private_numbers().private_value
    raw = d.to_bytes((d.bit_length() + 7) // 8, "big")
    plain = pem_body_lines(leaf.key_pem())
    return [
        PASSWORD,
        f"{d:x}",
        str(d),
        base64.b64encode(raw).decode(),
        plain[0],  # version, algorithm and the start of the private scalar
        "".join(plain),
        *pem_body_lines(enc_files[1].read_bytes()),
    ]


def creds_secrets(doc: dict[str, str]) -> list[str]:
    return [
        doc.get("SecretAccessKey") or doc["secret"],
        doc.get("SessionToken") or doc.get("Token") or doc["token"],
        doc.get("AccessKeyId") or doc["access"],
    ]


# ---------------------------------------------------------------------------------------------
# one-shot commands


def test_credential_process_debug(
    enc_files: tuple[Path, Path], key_secrets: list[str], endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key = enc_files
    args: list[CliArg] = [
        "credential-process",
        "--certificate",
        cert,
        "--private-key",
        key,
        *ARN_ARGS,
        "--endpoint",
        endpoint.url,
    ]
    proc = run_cli([*args, "--debug"], env={PW_ENV: PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert "CreateSession attempt 1" in proc.stderr  # debug logging really was on
    doc = json.loads(proc.stdout)
    assert_clean(proc.stderr, [*key_secrets, *creds_secrets(doc)])
    # the cache path logs too; its file is private
    cache_home = tmp_path / "cache-home"
    env = {PW_ENV: PASSWORD, "XDG_CACHE_HOME": str(cache_home), "HOME": str(tmp_path)}
    for _ in range(2):  # a miss, then a hit
        proc = run_cli([*args, "--debug", "--cache"], env=env)
        assert proc.returncode == 0, proc.stderr
        assert_clean(proc.stderr, [*key_secrets, *creds_secrets(json.loads(proc.stdout))])
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"


def test_credential_process_password_on_argv_warns_and_is_not_echoed(
    enc_files: tuple[Path, Path], key_secrets: list[str], endpoint: LocalEndpoint
) -> None:
    cert, key = enc_files
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            endpoint.url,
            "--pkcs8-password",
            PASSWORD,
            "--debug",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ": warning: " in ln]
    assert any("--pkcs8-password" in w and PW_ENV in w for w in warnings), proc.stderr
    assert_clean(proc.stderr, [*key_secrets, *creds_secrets(json.loads(proc.stdout))])


def test_tpm_password_on_argv_warns_with_a_safer_source(pki: PKI) -> None:
    cert, key = pki.leaf_files("hyg-tpm-argv", pki.leaf())
    proc = run_cli(
        ["sign-string", "--certificate", cert, "--private-key", key, "--tpm-key-password", PASSWORD], input=b"x"
    )
    warnings = [ln for ln in proc.stderr.splitlines() if ": warning: " in ln]
    assert any("--tpm-key-password" in w and "--tpm-key-password-file" in w for w in warnings), proc.stderr
    assert PASSWORD not in proc.stderr


def test_failures_with_debug_tracebacks_leak_nothing(
    enc_files: tuple[Path, Path], key_secrets: list[str], pki: PKI
) -> None:
    """--debug turns errors into tracebacks; those must not carry the password or key either."""
    cert, key = enc_files
    base: list[CliArg] = ["credential-process", "--certificate", cert, "--private-key", key, *ARN_ARGS]
    wrong = "Wr0ng-but-still-secret"
    proc = run_cli([*base, "--endpoint", f"http://127.0.0.1:{free_port()}", "--debug"], env={PW_ENV: wrong})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert_clean(proc.stderr, [*key_secrets, wrong])
    # the right password, but the endpoint refuses: the refusal is shown, the key is not
    other = PKI(pki.base / "hyg-other")
    with LocalEndpoint([other.root.cert]) as untrusting:
        proc = run_cli([*base, "--endpoint", untrusting.url, "--debug"], env={PW_ENV: PASSWORD})
    assert proc.returncode != 0 and "Untrusted signing certificate" in proc.stderr
    assert_clean(proc.stderr, key_secrets)


def test_sign_string_and_read_certificate_data_debug(enc_files: tuple[Path, Path], key_secrets: list[str]) -> None:
    cert, key = enc_files
    proc = run_cli(
        ["sign-string", "--certificate", cert, "--private-key", key, "--debug"], env={PW_ENV: PASSWORD}, input=b"x"
    )
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr, key_secrets)
    proc = run_cli(["read-certificate-data", "--certificate", key, "--debug"])
    assert proc.returncode != 0
    assert_clean(proc.stderr + proc.stdout, key_secrets)


def test_local_endpoint_debug_does_not_log_the_credentials_it_issues(
    pki: PKI, enc_files: tuple[Path, Path], key_secrets: list[str]
) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolesanywhere_signer",
            "local-endpoint",
            "--trust-anchor",
            str(pki.root_path),
            "--debug",
        ],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        cert, key = enc_files
        proc = run_cli(
            ["credential-process", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", url],
            env={PW_ENV: PASSWORD},
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
    assert "POST /sessions" in err  # it did log the request
    assert_clean(err, [*key_secrets, *creds_secrets(doc)], "local-endpoint stderr")


# ---------------------------------------------------------------------------------------------
# long-running modes


def _wait_port(proc: subprocess.Popen[str], port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("not listening")


def _http(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_serve_debug_leaks_no_token_or_credentials(
    enc_files: tuple[Path, Path],
    key_secrets: list[str],
    endpoint: LocalEndpoint,
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    cert, key = enc_files
    port = free_port()
    token_file = tmp_path / "container-token"
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
            endpoint.url,
            "--port",
            str(port),
            "--container-token-file",
            str(token_file),
            "--debug",
        ],
        env=clean_env({PW_ENV: PASSWORD}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    _wait_port(proc, port)
    status, token = _http(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    # serve listens before its first CreateSession: wait for it (the endpoint counts sessions)
    deadline = time.monotonic() + 20
    while endpoint.state.sessions_created < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, role = _http(
        port, "GET", "/latest/meta-data/iam/security-credentials/", {"X-aws-ec2-metadata-token": token}
    )
    assert status == 200, role
    status, body = _http(
        port, "GET", f"/latest/meta-data/iam/security-credentials/{role.strip()}", {"X-aws-ec2-metadata-token": token}
    )
    assert status == 200, body
    imds_doc = json.loads(body)
    container_token = token_file.read_text().strip()
    status, body = _http(port, "GET", "/credentials", {"Authorization": container_token})
    assert status == 200, body
    container_doc = json.loads(body)
    # refusals are logged too: a near-miss token and a rebinding Host must not be echoed
    near_miss = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (
        _http(port, "GET", "/latest/meta-data/iam/security-credentials/", {"X-aws-ec2-metadata-token": near_miss})[0]
        == 401
    )
    assert _http(port, "GET", "/credentials", {"Authorization": container_token + "x"})[0] in (401, 403)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "debug" in err  # debug logging was on
    assert_clean(
        err + out,
        [
            *key_secrets,
            *creds_secrets(imds_doc),
            *creds_secrets(container_doc),
            token,
            near_miss,
            container_token,
        ],
        "serve output",
    )


def test_update_once_debug(
    enc_files: tuple[Path, Path], key_secrets: list[str], endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key = enc_files
    cred_file = tmp_path / "aws" / "credentials"
    proc = run_cli(
        [
            "update",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            endpoint.url,
            "--once",
            "--profile",
            "hyg",
            "--debug",
        ],
        env={PW_ENV: PASSWORD, "AWS_SHARED_CREDENTIALS_FILE": str(cred_file)},
    )
    assert proc.returncode == 0, proc.stderr
    text = cred_file.read_text()
    values = dict(re.findall(r"^(aws_\w+)\s*=\s*(\S+)$", text, re.M))
    assert cred_file.stat().st_mode & 0o777 == 0o600
    secrets = [values["aws_secret_access_key"], values["aws_session_token"], values["aws_access_key_id"]]
    assert_clean(proc.stderr + proc.stdout, [*key_secrets, *secrets])


# ---------------------------------------------------------------------------------------------
# objects print themselves redacted


def _printed(obj: object) -> str:
    return "\n".join([repr(obj), str(obj), f"{obj}", f"{obj!r}", "%s %r" % (obj, obj)])  # noqa: UP031


def test_secret_never_prints_or_pickles() -> None:
    s = Secret(PASSWORD)
    assert PASSWORD not in _printed(s)
    assert PASSWORD not in _printed([s, {"k": s}])
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s.reveal() == PASSWORD


def test_credentials_repr_masks_everything_but_four_characters() -> None:
    c = Credentials("ASIAEXAMPLEKEY123456", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdz" * 20, _later())
    text = _printed(c)
    assert "wJalrXUtnFEMI" not in text and "FwoGZXIvYXdz" not in text
    assert "ASIAEXAMPLEKEY123456" not in text and "3456" in text
    assert mask_access_key("ASIAEXAMPLEKEY123456") == "****3456"
    assert mask_access_key("abc") == "****"


def test_option_records_are_redacted() -> None:
    ident = IdentityOptions(
        certificate="pkcs11:token=t;object=o?pin-value=123456",
        pkcs8_password=Secret(PASSWORD),
        tpm_key_password=Secret("tpm-" + PASSWORD),
    )
    text = _printed(ident)
    assert PASSWORD not in text and "123456" not in text
    assert "123456" not in ident.key_source()
    assert redact_pkcs11_uri("pkcs11:object=k?pin-value=99887766&module-path=/x") == (
        "pkcs11:object=k?pin-value=********&module-path=/x"
    )
    req = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN)
    assert "Secret(" not in _printed(req)  # nothing secret in it at all


def test_signer_and_key_reprs(enc_files: tuple[Path, Path], key_secrets: list[str]) -> None:
    from rolesanywhere_signer.backends import load_signer
    from rolesanywhere_signer.backends.pem import open_key

    opts = IdentityOptions(
        certificate=str(enc_files[0]), private_key=str(enc_files[1]), pkcs8_password=Secret(PASSWORD)
    )
    signer = load_signer(opts)
    try:
        text = _printed(signer)
        assert_clean(text, key_secrets, "signer repr")
        assert "key=" not in text
    finally:
        signer.close()
    handle = open_key(opts)
    assert_clean(_printed(handle), key_secrets, "key handle repr")


def test_serve_objects_are_redacted() -> None:
    imds = pytest.importorskip("rolesanywhere_signer.imds")
    store = imds.TokenStore()
    token = store.issue(60)
    assert token not in _printed(store)
    config = imds.ServeConfig(role_name="r", container_token="container-" + PASSWORD)
    assert PASSWORD not in _printed(config)


def test_refresher_is_redacted(enc_files: tuple[Path, Path], endpoint: LocalEndpoint) -> None:
    refresher_mod = pytest.importorskip("rolesanywhere_signer.refresher")
    ident = IdentityOptions(
        certificate=str(enc_files[0]), private_key=str(enc_files[1]), pkcs8_password=Secret(PASSWORD)
    )
    req = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, endpoint=endpoint.url)
    r = refresher_mod.Refresher(ident, req)
    try:
        creds = r.refresh()
        text = _printed(r)
        assert_clean(text, [PASSWORD, creds.secret_access_key, creds.session_token, creds.access_key_id])
    finally:
        r.close()


def _later() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


# ---------------------------------------------------------------------------------------------
# PINs (SoftHSM2) and TPM key passwords (swtpm): the same search with real key stores

HYG_PIN = "73915-Pin-Hyg"
TPM_PASSWORD = "Tpm-Hyg-Pass-48213"


@pytest.fixture(scope="module")
def token(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SoftHSM2 token with our own distinctive PIN, holding a key and its certificate."""
    import shutil

    from cryptography.hazmat.primitives import serialization

    module = next(
        (
            p
            for p in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
            if Path(p).exists()
        ),
        None,
    )
    if module is None or not shutil.which("softhsm2-util") or not shutil.which("pkcs11-tool"):
        pytest.skip("softhsm2 and opensc are needed (scripts/install-system.sh)")
    pytest.importorskip("pkcs11")
    base = tmp_path_factory.mktemp("hyg-hsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}

    def run(*args: str) -> None:
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=60)

    leaf = pki.leaf("ec-p256", cn="hygiene token")
    key_pem = base / "k.pem"
    key_pem.write_bytes(leaf.key_pem())
    cert_der = base / "c.der"
    cert_der.write_bytes(leaf.cert.public_bytes(serialization.Encoding.DER))
    run("softhsm2-util", "--init-token", "--free", "--label", "hyg", "--so-pin", "5678-so", "--pin", HYG_PIN)
    run("softhsm2-util", "--import", str(key_pem), "--token", "hyg", "--label", "k", "--id", "01", "--pin", HYG_PIN)
    key_pem.unlink()
    run(
        "pkcs11-tool",
        "--module",
        module,
        "--token-label",
        "hyg",
        "--login",
        "--pin",
        HYG_PIN,
        "--write-object",
        str(cert_der),
        "--type",
        "cert",
        "--label",
        "k",
        "--id",
        "01",
    )
    pin_file = base / "pin"
    pin_file.write_text(HYG_PIN + "\n")
    pin_file.chmod(0o600)
    return {"module": module, "env": {"SOFTHSM2_CONF": str(conf)}, "pin_file": pin_file, "base": base}


def test_pkcs11_pin_never_logged(token: dict[str, Any], endpoint: LocalEndpoint) -> None:
    uri = f"pkcs11:token=hyg;object=k?pin-source=file:{token['pin_file']}"
    base = ["credential-process", "--pkcs11-uri", uri, "--pkcs11-lib", token["module"], *ARN_ARGS]
    proc = run_cli([*base, "--endpoint", endpoint.url, "--debug"], env=token["env"])
    assert proc.returncode == 0, proc.stderr
    assert "debug" in proc.stderr
    assert_clean(proc.stderr, [HYG_PIN, *creds_secrets(json.loads(proc.stdout))])
    # a PIN in the URI on the command line: accepted, warned about, never echoed
    uri_value = f"pkcs11:token=hyg;object=k?pin-value={HYG_PIN}"
    proc = run_cli(
        [
            "credential-process",
            "--pkcs11-uri",
            uri_value,
            "--pkcs11-lib",
            token["module"],
            *ARN_ARGS,
            "--endpoint",
            endpoint.url,
            "--debug",
        ],
        env=token["env"],
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ": warning: " in ln]
    assert any("pin-value" in w and "pin-source" in w for w in warnings), proc.stderr
    assert_clean(proc.stderr, [HYG_PIN])
    # a wrong PIN, with --debug tracebacks on: neither PIN appears
    wrong = token["base"] / "wrong-pin"
    wrong.write_text("91827-Wrong-Pin\n")
    proc = run_cli(
        [
            "credential-process",
            "--pkcs11-uri",
            f"pkcs11:token=hyg;object=k?pin-source=file:{wrong}",
            "--pkcs11-lib",
            token["module"],
            *ARN_ARGS,
            "--endpoint",
            endpoint.url,
            "--debug",
        ],
        env=token["env"],
    )
    assert proc.returncode != 0
    assert_clean(proc.stderr, [HYG_PIN, "91827-Wrong-Pin"])
    # the PIN from the environment, through serve-like reuse: sign-string too
    proc = run_cli(
        [
            "sign-string",
            "--pkcs11-uri",
            f"pkcs11:token=hyg;object=k?pin-source=file:{token['pin_file']}",
            "--pkcs11-lib",
            token["module"],
            "--debug",
        ],
        env=token["env"],
        input=b"x",
    )
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr, [HYG_PIN])


def test_pkcs11_signer_repr_is_redacted(token: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from rolesanywhere_signer.backends import load_signer

    monkeypatch.setenv("SOFTHSM2_CONF", token["env"]["SOFTHSM2_CONF"])
    import pkcs11

    pkcs11.unload(token["module"])  # SoftHSM reads its configuration at C_Initialize
    opts = IdentityOptions(pkcs11_uri=f"pkcs11:token=hyg;object=k?pin-value={HYG_PIN}", pkcs11_lib=token["module"])
    assert HYG_PIN not in _printed(opts) and HYG_PIN not in opts.key_source()
    signer = load_signer(opts)
    try:
        assert HYG_PIN not in _printed(signer)
    finally:
        signer.close()
        pkcs11.unload(token["module"])


@pytest.fixture(scope="module")
def tpm_key(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import shutil

    if not (shutil.which("swtpm") and shutil.which("tpm2_createprimary") and shutil.which("openssl")):
        pytest.skip("swtpm and tpm2-tools are needed (scripts/install-system.sh)")
    pytest.importorskip("tpm2_pytss")
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from support.pki import issue
    from tpm.swtpm import Swtpm

    base = tmp_path_factory.mktemp("hyg-tpm")
    tpm = Swtpm(base)
    try:
        key = tpm.openssl_key(base / "k.tss2", "ec:P-256", password=TPM_PASSWORD)
        leaf = issue("hygiene tpm", issuer=pki.root, public_key=load_pem_public_key(tpm.public_pem(key, TPM_PASSWORD)))
        cert = base / "k.crt"
        cert.write_bytes(leaf.pem)
        yield {"key": key, "cert": cert, "tcti": tpm.tcti, "base": base}
    finally:
        tpm.stop()


def test_tpm_key_password_never_logged(tpm_key: dict[str, Any], endpoint: LocalEndpoint) -> None:
    base = [
        "credential-process",
        "--certificate",
        tpm_key["cert"],
        "--private-key",
        tpm_key["key"],
        "--tcti",
        tpm_key["tcti"],
        *ARN_ARGS,
        "--endpoint",
        endpoint.url,
        "--debug",
    ]
    proc = run_cli(base, env={"ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD": TPM_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr, [TPM_PASSWORD, *creds_secrets(json.loads(proc.stdout))])
    pw_file = tpm_key["base"] / "pw"
    pw_file.write_text(TPM_PASSWORD + "\n")
    proc = run_cli([*base, "--tpm-key-password-file", pw_file])
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr, [TPM_PASSWORD])
    proc = run_cli([*base, "--tpm-key-password", TPM_PASSWORD])
    assert proc.returncode == 0, proc.stderr
    assert any("--tpm-key-password-file" in ln for ln in proc.stderr.splitlines() if ": warning: " in ln)
    assert_clean(proc.stderr, [TPM_PASSWORD])
    wrong = "Wrong-Tpm-Pass-5521"
    proc = run_cli(base, env={"ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD": wrong})
    assert proc.returncode != 0
    assert_clean(proc.stderr, [TPM_PASSWORD, wrong])


def test_generate_key_csr_doctor_version_debug(
    enc_files: tuple[Path, Path], key_secrets: list[str], tmp_path: Path, endpoint: LocalEndpoint
) -> None:
    """The remaining commands, with --debug, a password from the environment and an encrypted key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    out = tmp_path / "new.key"
    proc = run_cli(["generate-key", "--output", out, "--encrypt", "--debug"], env={PW_ENV: PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert "BEGIN PUBLIC KEY" in proc.stdout and "PRIVATE" not in proc.stdout
    new_key = load_pem_private_key(out.read_bytes(), PASSWORD.encode())
    d = new_key.private_numbers().private_value  # type: ignore[union-attr]
    assert_clean(proc.stderr + proc.stdout, [PASSWORD, f"{d:x}", str(d), *pem_body_lines(out.read_bytes())])
    assert out.stat().st_mode & 0o077 == 0
    cert, key = enc_files
    proc = run_cli(["csr", "--private-key", key, "--subject", "CN=hygiene", "--debug"], env={PW_ENV: PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert "BEGIN CERTIFICATE REQUEST" in proc.stdout
    assert_clean(proc.stderr + proc.stdout, key_secrets)
    proc = run_cli(
        ["doctor", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", endpoint.url, "--debug"],
        env={PW_ENV: PASSWORD},
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert_clean(proc.stderr + proc.stdout, key_secrets)
    proc = run_cli(["version", "--debug"], env={PW_ENV: PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr + proc.stdout, [PASSWORD])
