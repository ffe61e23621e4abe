"""PKCS#11 end to end on real SoftHSM2 tokens: CLI, local endpoint, boto3 credential_process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from rolesanywhere_signer.backends import pkcs11 as p11
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI, issue
from support.util import ARN_ARGS, assert_one_line_error, clean_env, run_cli

from .softhsm import MODULE, SoftHSM


def _ok(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    assert doc["Version"] == 1 and doc["AccessKeyId"]
    return doc


@pytest.mark.parametrize("method", ["softhsm2-util", "pkcs11-tool"])
@pytest.mark.parametrize("key_type", ["rsa2048", "rsa3072", "ec-p256", "ec-p384"])
def test_credential_process_every_key_type(
    hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint, key_type: str, method: str
) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf(key_type, cn=f"p11 {key_type}")
    hsm.add_identity("tok", leaf, "mykey", "0a", method=method)
    proc = run_cli(
        [
            "credential-process",
            "--pkcs11-uri",
            hsm.uri("tok", "mykey"),
            "--pkcs11-lib",
            MODULE,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    _ok(proc)
    assert endpoint.state.sessions_created == 1


def test_reference_flags_and_module_in_uri(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf("ec-p256")
    hsm.add_identity("tok", leaf, "k", "01")
    cert_uri = f"pkcs11:token=tok;id=%01?module-path={MODULE}&pin-source=file:{hsm.pin_file}"
    _ok(run_cli(["credential-process", "--certificate", cert_uri, "--endpoint", endpoint.url, *ARN_ARGS], env=hsm.env))
    key_uri = f"pkcs11:token=tok;object=k;type=private?module-name=softhsm2&pin-source=file:{hsm.pin_file}"
    _ok(
        run_cli(
            [
                "credential-process",
                "--certificate",
                cert_uri,
                "--private-key",
                key_uri,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )
    cert_file = pki.write("p11leaf.pem", leaf.pem)
    _ok(
        run_cli(
            [
                "credential-process",
                "--certificate",
                cert_file,
                "--private-key",
                key_uri,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )
    assert endpoint.state.sessions_created == 3


def test_pin_from_environment_and_pin_value_warns(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    base = ["credential-process", "--pkcs11-lib", MODULE, "--endpoint", endpoint.url, *ARN_ARGS]
    _ok(
        run_cli(
            [*base, "--pkcs11-uri", hsm.uri("tok", "k", pin=False)],
            env={**hsm.env, "ROLESANYWHERE_SIGNER_PKCS11_PIN": "1234"},
        )
    )
    proc = run_cli([*base, "--pkcs11-uri", "pkcs11:token=tok;object=k?pin-value=1234"], env=hsm.env)
    _ok(proc)
    assert "visible to other local users" in proc.stderr and "1234" not in proc.stderr


def test_rsa_falls_back_to_raw_pkcs_with_host_digest_info(
    tmp_path: Path, pki: PKI, endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    hsm = SoftHSM(tmp_path / "nohash", mechanisms="CKM_RSA_PKCS,CKM_ECDSA,CKM_SHA256")
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("rsa2048"), "k", "01")
    _ok(
        run_cli(
            [
                "credential-process",
                "--pkcs11-uri",
                hsm.uri("tok", "k"),
                "--pkcs11-lib",
                MODULE,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )
    import pkcs11

    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    pkcs11.unload(MODULE)
    try:
        signer = p11.load(IdentityOptions(pkcs11_uri=hsm.uri("tok", "k"), pkcs11_lib=MODULE))
        key = signer._key
        assert isinstance(key, p11.TokenKey)
        assert not key._hashing  # really on the CKM_RSA_PKCS path (no mechanism hashes on the token)
        for d in ("sha256", "sha384", "sha512"):
            assert verify_signature(signer.certificate.public_key(), signer.sign(b"msg", d), b"msg", d)  # type: ignore[arg-type]
        signer.close()
    finally:
        pkcs11.unload(MODULE)


def test_chain_from_token_holds_only_real_issuers(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf("ec-p256", via_intermediate=True, cn="chained")
    hsm.add_identity("tok", leaf, "k", "01")
    hsm.write_cert("tok", pki.intermediate.cert, "intermediate", "f1")
    hsm.write_cert("tok", pki.root.cert, "root", "f2")
    other_ca = issue("Unrelated CA", ca=True)
    hsm.write_cert("tok", other_ca.cert, "unrelated", "f3")
    signer = p11.load(IdentityOptions(pkcs11_uri=hsm.uri("tok", "k"), pkcs11_lib=MODULE))
    try:
        assert signer.certificate == leaf.cert
        assert list(signer.chain) == [pki.intermediate.cert]
    finally:
        signer.close()
    _ok(
        run_cli(
            [
                "credential-process",
                "--pkcs11-uri",
                hsm.uri("tok", "k"),
                "--pkcs11-lib",
                MODULE,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )
    _ok(
        run_cli(
            [
                "credential-process",
                "--pkcs11-uri",
                hsm.uri("tok", "k"),
                "--pkcs11-lib",
                MODULE,
                "--intermediates",
                pki.intermediates_path,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )


def test_yubikey_attestation_certificate_under_same_id(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf("ec-p256", cn="piv auth")
    hsm.add_identity("tok", leaf, "X.509 Certificate for PIV Authentication", "01")
    att_ca = issue("Yubico PIV Attestation", ca=True)
    att = issue("YubiKey PIV Attestation 9a", issuer=att_ca, public_key=leaf.key.public_key(), extensions=True)
    # the attestation certificate certifies the same key, under the same id, with Yubico extensions
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ObjectIdentifier

    builder = (
        x509.CertificateBuilder()
        .subject_name(att.cert.subject)
        .issuer_name(att_ca.cert.subject)
        .public_key(leaf.key.public_key())
        .serial_number(7)
        .not_valid_before(att.cert.not_valid_before_utc)
        .not_valid_after(att.cert.not_valid_after_utc)
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.41482.3.3"), b"\x05\x04\x03"), critical=False
        )
    )
    att_cert = builder.sign(att_ca.key, hashes.SHA256())
    hsm.write_cert("tok", att_cert, "X.509 Certificate for PIV Attestation 9a", "01")
    _ok(
        run_cli(
            [
                "credential-process",
                "--pkcs11-uri",
                hsm.uri("tok", extra=";id=%01"),
                "--pkcs11-lib",
                MODULE,
                "--endpoint",
                endpoint.url,
                *ARN_ARGS,
            ],
            env=hsm.env,
        )
    )
    listed = run_cli(
        ["read-certificate-data", "--json", "--pkcs11-uri", "pkcs11:token=tok;id=%01", "--pkcs11-lib", MODULE],
        env=hsm.env,
    )
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(entries) == 2
    flags = {e["label"]: e.get("attestation", False) for e in entries}
    assert flags == {
        "X.509 Certificate for PIV Authentication": False,
        "X.509 Certificate for PIV Attestation 9a": True,
    }


def test_read_certificate_data_lists_copyable_uris(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    a, b = pki.leaf("ec-p256", cn="first"), pki.leaf("rsa2048", cn="second")
    hsm.add_identity("tok", a, "a", "01")
    hsm.add_identity("tok", b, "b", "02")
    args = ["read-certificate-data", "--json", "--certificate", "pkcs11:token=tok", "--pkcs11-lib", MODULE]
    proc = run_cli(args, env=hsm.env)
    assert proc.returncode == 0, proc.stderr
    entries = {e["label"]: e for e in map(json.loads, proc.stdout.splitlines())}
    assert set(entries) == {"a", "b"}
    assert entries["a"]["id"] == "01" and entries["a"]["keyType"] == "EC" and entries["b"]["keyType"] == "RSA"
    for key in ("uri", "subject", "notAfter", "serialNumber", "certificateData"):
        assert entries["b"][key]
    # the listed URI finds exactly that certificate (and its key) again
    uri = f"{entries['b']['uri']}?pin-source=file:{hsm.pin_file}"
    _ok(
        run_cli(
            ["credential-process", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--endpoint", endpoint.url, *ARN_ARGS],
            env=hsm.env,
        )
    )


def test_always_authenticate_key(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "sig", "02", always_auth=True)
    base = [
        "credential-process",
        "--pkcs11-uri",
        hsm.uri("tok", "sig"),
        "--pkcs11-lib",
        MODULE,
        "--endpoint",
        endpoint.url,
        *ARN_ARGS,
    ]
    _ok(run_cli([*base, "--reuse-pin"], env=hsm.env))
    proc = run_cli(base, env=hsm.env)
    assert_one_line_error(proc, "no terminal")
    assert "--reuse-pin" in proc.stderr


def test_boto3_credential_process_with_pkcs11_uri(
    hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    import boto3

    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    uri = hsm.uri("tok", "k")
    command = (
        f"{sys.executable} -m rolesanywhere_signer credential-process --pkcs11-uri '{uri}' "
        f"--pkcs11-lib {MODULE} --endpoint {endpoint.url} " + " ".join(ARN_ARGS)
    )
    config = tmp_path / "aws_config"
    config.write_text(f"[profile p11]\ncredential_process = {command}\nregion = us-east-2\n")
    env = clean_env({**hsm.env, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    import os

    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        creds = boto3.Session(profile_name="p11").get_credentials().get_frozen_credentials()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert creds.access_key and creds.secret_key and creds.token
    assert endpoint.state.sessions_created == 1
