"""Drop-in compatibility with aws_signing_helper 1.8: one test per row of docs/compatibility.md
that has a checkable output, plus the ``env:``/``-`` inputs and their bad-input cases."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from rolesanywhere_signer.cli import main
from rolesanywhere_signer.cliargs import OUR_EXCLUSIVE, REFERENCE_EXCLUSIVE, STORE_FLAGS
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI, Issued
from support.util import ARN_ARGS, assert_one_line_error, clean_env, run_cli

DOCS = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"


def reference_fixed_message(public_key: Any) -> bytes:
    """Written from the reference's description, independently of our code."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        raw = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return b"AWS Roles Anywhere Credential Helper Signing Test" + b"1" + hashlib.sha256(b"IAM RA" + raw).digest()


def _files(pki: PKI, stem: str, key_type: str = "ec-p256") -> tuple[Issued, str, str]:
    leaf = pki.leaf(key_type)
    cert, key = pki.leaf_files(stem, leaf)
    return leaf, str(cert), str(key)


# ---- sign-string ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa2048"])
@pytest.mark.parametrize("digest", ["SHA256", "SHA384", "SHA512"])
def test_sign_string_default_is_json_hex_over_the_fixed_message(pki: PKI, key_type: str, digest: str) -> None:
    leaf, cert, key = _files(pki, f"ss-{key_type}-{digest}", key_type)
    args = ["sign-string", "--certificate", cert, "--private-key", key]
    if digest != "SHA256":
        args += ["--digest", digest]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('"') and proc.stdout.endswith('"')  # a JSON string, no newline
    sig = bytes.fromhex(json.loads(proc.stdout))
    message = reference_fixed_message(leaf.cert.public_key())
    assert verify_signature(leaf.cert.public_key(), sig, message, digest.lower())  # type: ignore[arg-type]
    assert not verify_signature(leaf.cert.public_key(), sig, message + b"x", digest.lower())  # type: ignore[arg-type]


def test_sign_string_text_and_bin(pki: PKI) -> None:
    leaf, cert, key = _files(pki, "ss-formats")
    message = reference_fixed_message(leaf.cert.public_key())
    text = run_cli(["sign-string", "--certificate", cert, "--private-key", key, "--format", "text"])
    assert text.returncode == 0 and "\n" not in text.stdout
    assert verify_signature(leaf.cert.public_key(), bytes.fromhex(text.stdout), message)
    proc = subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", "sign-string", "--private-key", str(key), "--format", "bin"],
        env=clean_env(),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:1] == b"\x30"  # raw DER ECDSA, nothing around it
    assert verify_signature(leaf.cert.public_key(), proc.stdout, message)


def test_sign_string_with_the_key_alone(pki: PKI) -> None:
    """The reference signs with --private-key only; so do we."""
    leaf, _, key = _files(pki, "ss-keyonly", "rsa2048")
    proc = run_cli(["sign-string", "--private-key", key])
    assert proc.returncode == 0, proc.stderr
    sig = bytes.fromhex(json.loads(proc.stdout))
    assert verify_signature(leaf.cert.public_key(), sig, reference_fixed_message(leaf.cert.public_key()))


def test_sign_string_never_reads_stdin_without_the_flag(pki: PKI) -> None:
    leaf, cert, key = _files(pki, "ss-nostdin")
    proc = run_cli(["sign-string", "--certificate", cert, "--private-key", key], input=b"other bytes")
    sig = bytes.fromhex(json.loads(proc.stdout))
    assert verify_signature(leaf.cert.public_key(), sig, reference_fixed_message(leaf.cert.public_key()))
    proc = run_cli(["sign-string", "--stdin", "--certificate", cert, "--private-key", key], input=b"other bytes")
    assert verify_signature(leaf.cert.public_key(), bytes.fromhex(json.loads(proc.stdout)), b"other bytes")


def test_sign_string_bad_format(pki: PKI) -> None:
    _, cert, key = _files(pki, "ss-badfmt")
    proc = run_cli(["sign-string", "--certificate", cert, "--private-key", key, "--format", "base64"])
    assert_one_line_error(proc, "invalid choice", 2)


# ---- read-certificate-data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "name"), [("ec-p256", "EC"), ("ec-p384", "EC"), ("rsa2048", "RSA"), ("rsa3072", "RSA")]
)
def test_read_certificate_data_is_the_reference_json(pki: PKI, key_type: str, name: str) -> None:
    leaf = pki.leaf(key_type, serial=0x1234ABCD)
    cert, _ = pki.leaf_files(f"rcd-{key_type}", leaf)
    proc = run_cli(["read-certificate-data", "--certificate", cert])
    assert proc.returncode == 0, proc.stderr
    expected = {
        "keyType": name,
        "certificateData": base64.b64encode(leaf.der).decode(),
        "serialNumber": str(0x1234ABCD),
        "supportedAlgorithms": [f"{name}SHA256", f"{name}SHA384", f"{name}SHA512"],
    }
    assert proc.stdout == json.dumps(expected, separators=(",", ":"))  # key order, compact, no newline


@pytest.mark.parametrize("flag", ["--cert-selector", "--system-store-name"])
def test_read_certificate_data_refuses_store_flags_clearly(flag: str) -> None:
    proc = run_cli(["read-certificate-data", flag, "Key=x509Subject,Value=CN=x"])
    assert_one_line_error(proc, "Windows/macOS certificate stores")


@pytest.mark.parametrize("command", ["credential-process", "sign-string", "serve", "update"])
@pytest.mark.parametrize("flag", STORE_FLAGS)
def test_store_flags_refused_on_every_command(command: str, flag: str) -> None:
    extra = [] if command == "sign-string" else ARN_ARGS
    value = [] if flag == "--use-latest-expiring-certificate" else ["x"]
    proc = run_cli([command, flag, *value, *extra])
    assert_one_line_error(proc, f"{flag} selects from the Windows/macOS certificate stores")


# ---- mutually exclusive flags ----------------------------------------------------------------------

_BOOL = {"reuse-pin", "no-tpm-key-password", "use-latest-expiring-certificate"}


def _pair_cases() -> list[tuple[str, str, str]]:
    out = [(cmd, a, b) for cmd, pairs in REFERENCE_EXCLUSIVE.items() for a, b in pairs]
    out += [("credential-process", a, b) for a, b in OUR_EXCLUSIVE]
    return out


@pytest.mark.parametrize(("command", "a", "b"), _pair_cases())
def test_reference_exclusive_pairs(command: str, a: str, b: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [command]
    for flag in (a, b):
        args += [f"--{flag}"] if flag in _BOOL else [f"--{flag}", "x"]
    if command in ("credential-process", "serve", "update"):
        args += ARN_ARGS
    store = next((f for f in (a, b) if f"--{f}" in STORE_FLAGS), None)
    if store is not None:
        # the store flag is refused with its reason first (it cannot work on Linux, as in the reference)
        assert main(args) == 1
        assert f"--{store} selects from the Windows/macOS certificate stores" in capsys.readouterr().err
        return
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--{a} and --{b} cannot be used together" in err, err


def test_the_pairs_are_the_reference_count() -> None:
    assert len(REFERENCE_EXCLUSIVE["credential-process"]) == 15
    assert len(REFERENCE_EXCLUSIVE["sign-string"]) == 14


# ---- credential-process, exit codes, version -------------------------------------------------------


def test_credential_process_json_is_byte_for_byte(pki: PKI, endpoint: LocalEndpoint) -> None:
    _, cert, key = _files(pki, "cp-bytes")
    proc = run_cli(
        ["credential-process", "--certificate", cert, "--private-key", key, "--endpoint", endpoint.url, *ARN_ARGS]
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(doc) == ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
    assert proc.stdout == json.dumps(doc, separators=(",", ":"))


def test_exit_codes(pki: PKI, tmp_path: Path) -> None:
    _, cert, key = _files(pki, "exit")
    assert run_cli(["sign-string", "--certificate", cert, "--private-key", key]).returncode == 0
    assert run_cli(["sign-string", "--certificate", tmp_path / "missing.pem"]).returncode == 1
    assert run_cli(["sign-string", "--no-such-flag"]).returncode == 2  # ours: usage errors are 2


def test_version_prints_one_line() -> None:
    from rolesanywhere_signer._version import __version__

    proc = run_cli(["version"])
    assert proc.returncode == 0 and proc.stdout == __version__ + "\n"


def test_reference_flags_are_accepted(pki: PKI, endpoint: LocalEndpoint) -> None:
    """--with-proxy and --pkcs8-password are the reference's flags too."""
    leaf = pki.leaf()
    cert = pki.write("ref-flags.crt", leaf.pem)
    key = pki.write("ref-flags.key", leaf.key_pem(password=b"pw-ref-flags"))
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--pkcs8-password",
            "pw-ref-flags",
            "--with-proxy",
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "pw-ref-flags" not in proc.stderr


def test_compatibility_doc_lists_every_reference_flag() -> None:
    text = DOCS.read_text()
    for flag in {f for pairs in REFERENCE_EXCLUSIVE.values() for pair in pairs for f in pair} | {
        "trust-anchor-arn",
        "profile-arn",
        "role-arn",
        "session-duration",
        "region",
        "endpoint",
        "no-verify-ssl",
        "with-proxy",
        "debug",
        "pkcs11-lib",
        "role-session-name",
        "format",
        "digest",
        "port",
        "hop-limit",
        "profile",
        "once",
    }:
        assert f"`--{flag}`" in text, flag
    for command in ("credential-process", "sign-string", "read-certificate-data", "serve", "update", "version"):
        assert f"`{command}`" in text, command


# ---- keys without files: env:NAME and - -----------------------------------------------------------


def _cp(endpoint: LocalEndpoint, *identity: object) -> list[str]:
    return ["credential-process", *map(str, identity), "--endpoint", endpoint.url, *ARN_ARGS]


def test_env_inputs(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(via_intermediate=True)
    env = {"RA_CERT": leaf.pem.decode(), "RA_KEY": leaf.key_pem().decode(), "RA_CHAIN": pki.intermediate.pem.decode()}
    proc = run_cli(
        _cp(endpoint, "--certificate", "env:RA_CERT", "--private-key", "env:RA_KEY", "--intermediates", "env:RA_CHAIN"),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
    # a CI secret store that flattened the line breaks to a literal \n
    flat = {"RA_COMBO": (leaf.pem + leaf.key_pem()).decode().replace("\n", "\\n"), "RA_CHAIN": env["RA_CHAIN"]}
    proc = run_cli(_cp(endpoint, "--certificate", "env:RA_COMBO", "--intermediates", "env:RA_CHAIN"), env=flat)
    assert proc.returncode == 0, proc.stderr


def test_env_sign_string_verifies(pki: PKI) -> None:
    leaf = pki.leaf("rsa2048")
    proc = run_cli(
        ["sign-string", "--certificate", "env:C", "--private-key", "env:K"],
        env={"C": leaf.pem.decode(), "K": leaf.key_pem().decode()},
    )
    sig = bytes.fromhex(json.loads(proc.stdout))
    assert verify_signature(leaf.cert.public_key(), sig, reference_fixed_message(leaf.cert.public_key()))


@pytest.mark.parametrize("flag", ["--certificate", "--private-key"])
def test_stdin_combo_bundle(pki: PKI, endpoint: LocalEndpoint, flag: str) -> None:
    leaf = pki.leaf()
    proc = run_cli(_cp(endpoint, flag, "-"), input=leaf.pem + leaf.key_pem())
    assert proc.returncode == 0, proc.stderr
    both = run_cli(_cp(endpoint, "--certificate", "-", "--private-key", "-"), input=leaf.key_pem() + leaf.pem)
    assert both.returncode == 0, both.stderr


def run_binary_stdin(args: list[str], data: bytes, env: dict[str, str] | None = None) -> Any:
    """``run_cli`` with binary standard input (a PKCS#12 bundle is not text)."""
    proc = subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", *args],
        env=clean_env(env),
        input=data,
        capture_output=True,
        timeout=60,
        start_new_session=True,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _p12(leaf: Issued, password: bytes) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"ra", leaf.key, leaf.cert, None, serialization.BestAvailableEncryption(password)
    )


def test_stdin_pkcs12_with_password_flag_and_variable(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf("rsa2048")
    bundle = _p12(leaf, b"p12-secret-pw")
    proc = run_binary_stdin(_cp(endpoint, "--certificate", "-", "--pkcs12-password", "p12-secret-pw"), bundle)
    assert proc.returncode == 0, proc.stderr
    variable = {"ROLESANYWHERE_SIGNER_PKCS12_PASSWORD": "p12-secret-pw"}
    proc = run_binary_stdin(_cp(endpoint, "--private-key", "-"), bundle, variable)
    assert proc.returncode == 0, proc.stderr
    wrong = run_binary_stdin(
        _cp(endpoint, "--certificate", "-"), bundle, {"ROLESANYWHERE_SIGNER_PKCS12_PASSWORD": "no"}
    )
    assert_one_line_error(wrong, "wrong password for PKCS#12 bundle standard input")
    assert "p12-secret-pw" not in wrong.stderr


def test_stdin_is_not_cached(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    """--cache with the identity on stdin: what stdin holds cannot be keyed, so no cache is used."""
    a, b = pki.leaf(cn="stdin-a"), pki.leaf(cn="stdin-b")
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    args = [*_cp(endpoint, "--certificate", "-"), "--cache"]
    first = run_cli(args, input=a.pem + a.key_pem(), env=env)
    second = run_cli(args, input=b.pem + b.key_pem(), env=env)
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert json.loads(first.stdout)["AccessKeyId"] != json.loads(second.stdout)["AccessKeyId"]
    assert endpoint.state.sessions_created == 2


def test_env_input_counts_in_the_cache_key(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    a, b = pki.leaf(cn="env-a"), pki.leaf(cn="env-b")
    base = {"XDG_RUNTIME_DIR": str(tmp_path)}
    args = [*_cp(endpoint, "--certificate", "env:RA_COMBO"), "--cache"]
    one = run_cli(args, env={**base, "RA_COMBO": (a.pem + a.key_pem()).decode()})
    again = run_cli(args, env={**base, "RA_COMBO": (a.pem + a.key_pem()).decode()})
    other = run_cli(args, env={**base, "RA_COMBO": (b.pem + b.key_pem()).decode()})
    assert one.stdout == again.stdout  # a cache hit
    assert json.loads(other.stdout)["AccessKeyId"] != json.loads(one.stdout)["AccessKeyId"]
    assert endpoint.state.sessions_created == 2


@pytest.mark.parametrize(
    ("args", "env", "stdin", "phrase"),
    [
        (["--certificate", "env:RA_UNSET"], {}, None, "environment variable RA_UNSET is not set"),
        (["--certificate", "env:RA_EMPTY"], {"RA_EMPTY": ""}, None, "environment variable RA_EMPTY is empty"),
        (["--certificate", "env:RA_BLANK"], {"RA_BLANK": " \n "}, None, "RA_BLANK is empty"),
        (["--certificate", "env:1BAD"], {}, None, "is not an environment variable name"),
        (["--certificate", "env:"], {}, None, "is not an environment variable name"),
        (["--certificate", "-"], {}, b"", "standard input is empty"),
        (["--certificate", "-"], {}, b"not a pem", "neither a PEM nor a DER certificate"),
        (["--certificate", "env:RA_GARBAGE"], {"RA_GARBAGE": "garbage"}, None, "env:RA_GARBAGE"),
    ],
)
def test_inline_inputs_bad(args: list[str], env: dict[str, str], stdin: bytes | None, phrase: str) -> None:
    proc = run_cli(["credential-process", *args, *ARN_ARGS], env=env, input=stdin)
    assert_one_line_error(proc, phrase)


def test_intermediates_unset_variable(pki: PKI) -> None:
    leaf = pki.leaf()
    env = {"C": (leaf.pem + leaf.key_pem()).decode()}
    proc = run_cli(["credential-process", "--certificate", "env:C", "--intermediates", "env:NOPE", *ARN_ARGS], env=env)
    assert_one_line_error(proc, "environment variable NOPE is not set (from --intermediates env:NOPE)")


def test_intermediates_from_stdin_is_refused(pki: PKI) -> None:
    leaf = pki.leaf()
    env = {"C": (leaf.pem + leaf.key_pem()).decode()}
    args = ["credential-process", "--certificate", "env:C", "--intermediates", "-", *ARN_ARGS]
    assert_one_line_error(run_cli(args, env=env, input=pki.intermediate.pem), "--intermediates cannot be read", 2)


def test_stdin_that_is_a_terminal_is_refused(pki: PKI) -> None:
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rolesanywhere_signer", "credential-process", "--certificate", "-", *ARN_ARGS],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=30,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert_one_line_error(proc, "standard input is a terminal")


def test_inline_secrets_never_in_errors(pki: PKI) -> None:
    """Key material from a variable or stdin is never echoed, at any verbosity."""
    leaf = pki.leaf()
    key_pem = leaf.key_pem().decode()
    body = "".join(key_pem.splitlines()[1:-1])
    for args, env, stdin in (
        (["--certificate", "env:K", "--private-key", "env:K"], {"K": key_pem}, None),  # key given as certificate
        (["--certificate", "-", "--debug"], {}, key_pem.encode()),
        (["--certificate", "env:K", "--debug"], {"K": key_pem[:-40]}, None),  # damaged
    ):
        proc = run_cli(["credential-process", *args, *ARN_ARGS], env=env, input=stdin)
        assert proc.returncode != 0
        for chunk in (body[i : i + 16] for i in range(0, len(body) - 16, 16)):
            assert chunk not in proc.stderr and chunk not in proc.stdout


def test_certificate_parsed_from_env_is_the_leaf(pki: PKI) -> None:
    leaf = pki.leaf(serial=4242)
    proc = run_cli(["read-certificate-data", "--certificate", "env:C"], env={"C": leaf.pem.decode()})
    assert json.loads(proc.stdout)["serialNumber"] == "4242"
    assert x509.load_der_x509_certificate(base64.b64decode(json.loads(proc.stdout)["certificateData"])) == leaf.cert


def test_no_verify_ssl(pki: PKI, tmp_path: Path) -> None:
    from support.servers import untrusted_tls_endpoint

    _, cert, key = _files(pki, "noverify")
    with untrusted_tls_endpoint([pki.root.cert], tmp_path / "tls") as ep:
        args = ["credential-process", "--certificate", cert, "--private-key", key, "--endpoint", ep.url, *ARN_ARGS]
        assert_one_line_error(run_cli(args), "certificate")
        proc = run_cli([*args, "--no-verify-ssl"])
        assert proc.returncode == 0, proc.stderr


def test_region_flag_signs_for_that_region(pki: PKI, endpoint: LocalEndpoint) -> None:
    """The endpoint checks the credential scope against the anchor's region (us-east-2)."""
    _, cert, key = _files(pki, "region")
    args = ["credential-process", "--certificate", cert, "--private-key", key, "--endpoint", endpoint.url, *ARN_ARGS]
    assert run_cli([*args, "--region", "us-east-2"]).returncode == 0
    assert_one_line_error(run_cli([*args, "--region", "eu-west-1"]), "scope 2")
    assert "/eu-west-1/rolesanywhere/aws4_request does not match" in run_cli([*args, "--region", "eu-west-1"]).stderr


def test_read_certificate_data_names_keys_outside_the_table(pki: PKI) -> None:
    """An RSA-1024 or P-224 certificate is still described (the reference prints its family)."""
    from support.pki import issue

    for key, name in ((rsa.generate_private_key(65537, 1024), "RSA"), (ec.generate_private_key(ec.SECP224R1()), "EC")):
        cert = pki.write(f"outside-{name}.crt", issue("outside", issuer=pki.root, key=key).pem)
        doc = json.loads(run_cli(["read-certificate-data", "--certificate", cert]).stdout)
        assert (doc["keyType"], doc["supportedAlgorithms"][0]) == (name, f"{name}SHA256")
