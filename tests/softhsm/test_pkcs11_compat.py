"""The reference's token layout on SoftHSM2: key-only URIs, private objects without public twins
(its ``*-always-auth`` objects), one key stored twice, read-certificate-data's listing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .softhsm import MODULE, SoftHSM


def fixed_message(public_key: Any) -> bytes:
    """The reference's sign-string message, written from its description."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        raw = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return b"AWS Roles Anywhere Credential Helper Signing Test1" + hashlib.sha256(b"IAM RA" + raw).digest()


def private_only(hsm: SoftHSM, tmp_path: Path, token: str, key: Any, label: str, id_hex: str) -> None:
    """Private key objects and nothing else (no public object): ``label``, and ``label-aa`` with
    CKA_ALWAYS_AUTHENTICATE, as the reference's Makefile writes them."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / f"{label}.p8"
    path.write_bytes(der)
    hsm.tool(token, "--write-object", str(path), "--type", "privkey", "--label", label, "--id", id_hex, "--usage-sign")
    hsm.tool(
        token,
        "--write-object",
        str(path),
        "--type",
        "privkey",
        "--label",
        label + "-aa",
        "--id",
        "77" + id_hex,
        "--usage-sign",
        "--always-auth",
    )
    del der


def _sign(hsm: SoftHSM, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["sign-string", "--pkcs11-lib", MODULE, "--reuse-pin", *args], env=hsm.env)


def test_key_only_uri_finds_the_certificate_beside_it(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    """Was exit 70 (AssertionError) in load()."""
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    key_uri = hsm.uri("tok", "k", extra=";type=private")
    proc = run_cli(
        ["credential-process", "--private-key", key_uri, "--pkcs11-lib", MODULE, "--endpoint", endpoint.url, *ARN_ARGS],
        env=hsm.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert endpoint.state.sessions_created == 1


def test_key_only_uri_without_certificate(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf("rsa2048")
    hsm.import_key("tok", leaf.key, "lonely", "05")
    key_uri = hsm.uri("tok", "lonely")
    proc = run_cli(
        ["credential-process", "--private-key", key_uri, "--pkcs11-lib", MODULE, "--endpoint", endpoint.url, *ARN_ARGS],
        env=hsm.env,
    )
    assert_one_line_error(proc, "no certificate for it")
    assert endpoint.state.requests_seen == 0
    # sign-string needs no certificate: the reference signs with the key alone
    signed = _sign(hsm, "--private-key", key_uri)
    assert signed.returncode == 0, signed.stderr
    sig = bytes.fromhex(json.loads(signed.stdout))
    assert verify_signature(leaf.cert.public_key(), sig, fixed_message(leaf.cert.public_key()))


def test_ec_private_object_without_public_is_compared_with_an_rsa_certificate(
    hsm: SoftHSM, pki: PKI, tmp_path: Path
) -> None:
    """Was: exit 0 with an ECDSA signature for an RSA certificate."""
    hsm.init_token("tok")
    ec_leaf, rsa_leaf = pki.leaf("ec-p256"), pki.leaf("rsa2048")
    private_only(hsm, tmp_path, "tok", ec_leaf.key, "ec-prime256v1", "04")
    rsa_cert = pki.write("p11-rsa.crt", rsa_leaf.pem)
    proc = _sign(hsm, "--certificate", str(rsa_cert), "--private-key", hsm.uri("tok", "ec-prime256v1"))
    assert_one_line_error(proc, "does not match certificate")
    assert "another key type" in proc.stderr
    # a P-384 certificate: same type, another curve
    p384 = pki.write("p11-p384.crt", pki.leaf("ec-p384").pem)
    proc = _sign(hsm, "--certificate", str(p384), "--private-key", hsm.uri("tok", "ec-prime256v1"))
    assert_one_line_error(proc, "does not match certificate")


def test_ec_private_object_without_public_signs_for_its_certificate(
    hsm: SoftHSM, pki: PKI, tmp_path: Path, endpoint: LocalEndpoint
) -> None:
    hsm.init_token("tok")
    leaf = pki.leaf("ec-p256")
    private_only(hsm, tmp_path, "tok", leaf.key, "ec-prime256v1", "04")
    cert = pki.write("p11-ec-priv.crt", leaf.pem)
    proc = _sign(hsm, "--certificate", str(cert), "--private-key", hsm.uri("tok", "ec-prime256v1"))
    assert proc.returncode == 0, proc.stderr
    sig = bytes.fromhex(json.loads(proc.stdout))
    assert verify_signature(leaf.cert.public_key(), sig, fixed_message(leaf.cert.public_key()))
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            str(cert),
            "--private-key",
            hsm.uri("tok", "ec-prime256v1-aa"),
            "--reuse-pin",
            "--pkcs11-lib",
            MODULE,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    assert proc.returncode == 0, proc.stderr


def test_same_curve_other_key_is_caught_by_the_first_signature(
    hsm: SoftHSM, pki: PKI, tmp_path: Path, endpoint: LocalEndpoint
) -> None:
    """Type and curve agree, the key is another: the first signature is verified locally, nothing is sent."""
    hsm.init_token("tok")
    private_only(hsm, tmp_path, "tok", pki.leaf("ec-p256").key, "ec-prime256v1", "04")
    other = pki.write("p11-other-p256.crt", pki.leaf("ec-p256").pem)
    key_uri = hsm.uri("tok", "ec-prime256v1")
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            str(other),
            "--private-key",
            key_uri,
            "--pkcs11-lib",
            MODULE,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    assert_one_line_error(proc, "not the certificate's key")
    assert endpoint.state.requests_seen == 0
    assert_one_line_error(
        _sign(hsm, "--certificate", str(other), "--private-key", key_uri), "not the certificate's key"
    )


def test_one_key_stored_twice_is_not_ambiguous(hsm: SoftHSM, pki: PKI, tmp_path: Path, endpoint: LocalEndpoint) -> None:
    """The reference's rsa-2048 and rsa-2048-always-auth: one key, two objects."""
    hsm.init_token("tok")
    leaf = pki.leaf("rsa2048")
    hsm.import_key("tok", leaf.key, "rsa-2048", "01")
    private_only(hsm, tmp_path, "tok", leaf.key, "rsa-2048-always-auth", "03")
    cert = pki.write("p11-twice.crt", leaf.pem)
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            str(cert),
            "--private-key",
            hsm.uri("tok"),
            "--pkcs11-lib",
            MODULE,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ],
        env=hsm.env,
    )
    assert proc.returncode == 0, proc.stderr
    # two different keys matching the URI stay ambiguous
    hsm.import_key("tok", pki.leaf("rsa2048").key, "rsa-other", "09")
    proc = _sign(hsm, "--private-key", hsm.uri("tok"))
    assert_one_line_error(proc, "private keys match")


def test_read_certificate_data_lists_matching_identities(hsm: SoftHSM, pki: PKI) -> None:
    hsm.init_token("tok")
    a, b = pki.leaf("ec-p256", cn="first", serial=0xABC), pki.leaf("rsa2048", cn="second", serial=0x1F)
    hsm.add_identity("tok", a, "a", "01")
    hsm.add_identity("tok", b, "b", "02")
    proc = run_cli(["read-certificate-data", "--certificate", "pkcs11:token=tok", "--pkcs11-lib", MODULE], env=hsm.env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "Matching identities"
    entries = proc.stdout[len("Matching identities\n") :].split("\n\n")
    assert entries[-1] == ""
    by_serial = {}
    for n, entry in enumerate(entries[:-1], 1):
        fields = entry.split("\n")
        assert fields[0].startswith(f"{n}) Hex Fingerprint: ")
        assert [f.split(":", 1)[0] for f in fields[1:]] == ["Subject", "Issuer", "Serial Number", "URI"]
        by_serial[fields[3].split(": ", 1)[1]] = fields
    assert set(by_serial) == {"ABC", "1F"}
    first = by_serial["ABC"]
    assert first[0].endswith(a.cert.fingerprint(hashes.SHA1()).hex())
    assert first[1] == f"Subject: {a.cert.subject.rfc4514_string()}"
    assert first[4].startswith("URI: pkcs11:") and "type=cert" in first[4]
    none = run_cli(
        ["read-certificate-data", "--certificate", "pkcs11:token=tok;object=nothing", "--pkcs11-lib", MODULE],
        env={**hsm.env, "ROLESANYWHERE_SIGNER_PKCS11_PIN": "1234"},  # nothing without login: it logs in to look
    )
    assert none.returncode == 0 and none.stdout == "No matching identities\n"
