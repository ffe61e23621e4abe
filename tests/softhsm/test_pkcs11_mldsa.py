"""ML-DSA and PKCS#11: SoftHSM 2.6 has no CKM_ML_DSA, so every ML-DSA use of a token is refused in one clear line."""

from __future__ import annotations

from pathlib import Path

from support.pki import PKI, new_key
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .softhsm import MODULE, SoftHSM


def test_generate_key_refuses_mldsa_on_a_token_without_the_mechanism(hsm: SoftHSM) -> None:
    hsm.init_token("pq")
    uri = hsm.uri("pq", "pqkey")
    proc = run_cli(
        ["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--key-type", "ml-dsa-65"], env=hsm.env
    )
    assert_one_line_error(proc, "this token does not offer CKM_ML_DSA")
    assert "keep ML-DSA keys in a file" in proc.stderr
    assert "pqkey" not in hsm.tool("pq", "--list-objects")  # nothing was created


def test_credential_process_refuses_an_mldsa_certificate_for_a_token_key(
    hsm: SoftHSM, pki: PKI, tmp_path: Path
) -> None:
    hsm.init_token("pq")
    hsm.add_identity("pq", pki.leaf("ec-p256"), "k", "01")  # a usable EC key is there: it must not be picked
    cert = tmp_path / "mldsa.crt"
    cert.write_bytes(pki.leaf(key=new_key("ml-dsa-44"), cn="pq leaf").pem)
    args = ["credential-process", "--certificate", str(cert), "--private-key", hsm.uri("pq", "k")]
    proc = run_cli([*args, "--pkcs11-lib", MODULE, "--endpoint", "http://127.0.0.1:9", *ARN_ARGS], env=hsm.env)
    assert_one_line_error(proc, "this token does not offer CKM_ML_DSA")
    assert "ML-DSA-44 key of certificate" in proc.stderr
