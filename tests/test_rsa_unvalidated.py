"""RSA keys are loaded without cryptography's private-key validation; every signature is verified instead.

Validation is most of an RSA cold run (62/173/366 ms for RSA-2048/3072/4096). Skipping it is safe only
because a damaged private part can never get a signature out of the process: a wrong RSA-CRT signature
can give away the key's factors, and a wrong signature of any kind would only be refused by the service.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, CliArg, assert_one_line_error, run_cli


def damaged_copy(key: rsa.RSAPrivateKey) -> bytes:
    """The same public key with a wrong CRT exponent and a wrong d: OpenSSL's CRT self-check falls
    back to d, which is wrong too, so the signature comes out wrong (an iqmp-only fault is repaired)."""
    n = key.private_numbers()
    bad = rsa.RSAPrivateNumbers(
        p=n.p, q=n.q, d=n.d ^ 2, dmp1=n.dmp1 ^ 2, dmq1=n.dmq1, iqmp=n.iqmp, public_numbers=n.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    return bad.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def test_a_damaged_rsa_key_never_sends_a_signature(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    leaf = pki.leaf("rsa2048")
    assert isinstance(leaf.key, rsa.RSAPrivateKey)
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(damaged_copy(leaf.key))
    key.chmod(0o600)
    before = endpoint.state.requests_seen
    args: list[CliArg] = ["--certificate", cert, "--private-key", key]
    proc = run_cli(["credential-process", *args, "--endpoint", endpoint.url, *ARN_ARGS])
    assert_one_line_error(proc, "is damaged: its signature does not verify with the certificate")
    assert endpoint.state.requests_seen == before  # nothing left the process
    proc = run_cli(["sign-string", *args], input=b"data")  # signs whatever its default message is
    assert proc.returncode != 0
    assert "is damaged" in proc.stderr


def test_a_sound_rsa_key_signs_and_is_accepted(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    leaf = pki.leaf("rsa3072")
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    key.chmod(0o600)
    proc = run_cli(
        ["credential-process", "--certificate", cert, "--private-key", key, "--endpoint", endpoint.url, *ARN_ARGS]
    )
    assert proc.returncode == 0, proc.stderr
    assert '"AccessKeyId"' in proc.stdout
    assert endpoint.state.sessions_created >= 1
