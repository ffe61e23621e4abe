"""Renewal with the key on a SoftHSM2 token: the CSR is signed on the token, ACM Private CA (moto)
issues, the new certificate is installed, and local-endpoint (trusting the moto CA) accepts it."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.moto_pca import Pca
from support.pki import PKI, issue
from support.util import ARN_ARGS, run_cli

from .softhsm import MODULE, PIN, SPY, SoftHSM, login_results


def test_renew_with_a_token_key_through_acm_private_ca(hsm: SoftHSM, pca: Pca, pki: PKI, tmp_path: Path) -> None:
    hsm.init_token("renew")
    uri = hsm.uri("renew", "ra-key", extra=";id=%b1")
    gen = run_cli(["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--key-type", "ec-p256"], env=hsm.env)
    assert gen.returncode == 0, gen.stderr
    csr = run_cli(
        [
            "csr",
            "--pkcs11-uri",
            uri,
            "--pkcs11-lib",
            MODULE,
            "--subject",
            "CN=token host,O=Example",
            "--san",
            "DNS:token.example.com",
        ],
        env=hsm.env,
    )
    assert csr.returncode == 0, csr.stderr
    cert = tmp_path / "token.crt"
    # the first certificate from the test PKI: moto would give the renewed one the same notAfter to the second
    cert.write_bytes(
        issue("first", issuer=pki.root, public_key=x509.load_pem_x509_csr(csr.stdout.encode()).public_key()).pem
    )
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    ident = ["--certificate", str(cert), "--private-key", uri, "--pkcs11-lib", MODULE]
    spy = os.path.exists(SPY)
    log = tmp_path / "spy.log"
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        renew_ident = ["--certificate", str(cert), "--private-key", uri, "--pkcs11-lib", SPY if spy else MODULE]
        proc = run_cli(
            ["renew", *renew_ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", pca.arn, "--force"],
            env={**hsm.spy_env(log), "AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        assert PIN not in proc.stderr
        if spy:  # one login for the self-renewal CreateSession and the CSR together
            assert login_results(log) == ["CKR_OK"]
        new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        assert new.serial_number != old.serial_number
        assert new.public_key() == old.public_key() and new.subject == old.subject
        assert ep.state.sessions_created == 1  # self-renewal: credentials from Roles Anywhere
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url], env=hsm.env)
        assert proc.returncode == 0, proc.stderr
        assert f"Credential={new.serial_number}/" in ep.state.authorizations[-1]


def _objects(label_prefix: str = "") -> list[tuple[str, str, bytes]]:
    import pkcs11
    from pkcs11 import Attribute

    token = pkcs11.lib(MODULE).get_token(token_label="renew")
    with token.open(user_pin=PIN) as session:
        out = []
        for obj in session.get_objects({}):
            cls = obj[Attribute.CLASS]
            if cls in (pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.ObjectClass.PUBLIC_KEY):
                out.append((cls.name, obj[Attribute.LABEL], bytes(obj[Attribute.ID])))
    return sorted(out)


def test_new_key_pair_on_the_token_takes_over_the_old_id_and_label(
    hsm: SoftHSM, pca: Pca, pki: PKI, tmp_path: Path
) -> None:
    hsm.init_token("renew")
    uri = hsm.uri("renew", "ra-key", extra=";id=%b1")
    gen = run_cli(["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--key-type", "ec-p256"], env=hsm.env)
    assert gen.returncode == 0, gen.stderr
    csr = run_cli(["csr", "--pkcs11-uri", uri, "--pkcs11-lib", MODULE, "--subject", "CN=token host"], env=hsm.env)
    cert = tmp_path / "token.crt"
    cert.write_bytes(
        issue("first", issuer=pki.root, public_key=x509.load_pem_x509_csr(csr.stdout.encode()).public_key()).pem
    )
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    ident = ["--certificate", str(cert), "--private-key", uri, "--pkcs11-lib", MODULE]
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        proc = run_cli(
            ["renew", *ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", pca.arn, "--force", "--new-key"],
            env={**hsm.env, "AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        assert "old key pair was removed" in proc.stderr
        new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        assert new.public_key() != old.public_key()
        # one pair left, the new one, under the old id and label: the configured URI still works
        assert _objects() == [("PRIVATE_KEY", "ra-key", b"\xb1"), ("PUBLIC_KEY", "ra-key", b"\xb1")]
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url], env=hsm.env)
        assert proc.returncode == 0, proc.stderr
        assert f"Credential={new.serial_number}/" in ep.state.authorizations[-1]
