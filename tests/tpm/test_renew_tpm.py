"""Renewal with the key in a TPM (swtpm): the CSR is signed in the TPM, ACM Private CA (moto) issues,
the new certificate is installed and accepted by local-endpoint trusting the moto CA; --new-key
makes a new TSS2 key under the same parent and keeps the old file as .prev."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.moto_pca import Pca
from support.pki import PKI, issue
from support.util import ARN_ARGS, run_cli

from .swtpm import Swtpm


def _enrol(swtpm: Swtpm, pca: Pca, pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "host.tss2"
    gen = run_cli(["generate-key", "--tpm", "--key-type", "ec-p256", "--output", key, "--tcti", swtpm.tcti])
    assert gen.returncode == 0, gen.stderr
    csr = run_cli(["csr", "--private-key", key, "--tcti", swtpm.tcti, "--subject", "CN=tpm host,O=Example"])
    assert csr.returncode == 0, csr.stderr
    cert = tmp_path / "host.crt"
    # the first certificate from the test PKI: moto would give the renewed one the same notAfter to the second
    cert.write_bytes(
        issue("first", issuer=pki.root, public_key=x509.load_pem_x509_csr(csr.stdout.encode()).public_key()).pem
    )
    return cert, key


def test_renew_with_a_tpm_key_through_acm_private_ca(swtpm: Swtpm, pca: Pca, pki: PKI, tmp_path: Path) -> None:
    cert, key = _enrol(swtpm, pca, pki, tmp_path)
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    ident = ["--certificate", str(cert), "--private-key", str(key), "--tcti", swtpm.tcti]
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        proc = run_cli(
            ["renew", *ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", pca.arn, "--force"],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        assert new.serial_number != old.serial_number and new.public_key() == old.public_key()
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url])
        assert proc.returncode == 0, proc.stderr
        assert f"Credential={new.serial_number}/" in ep.state.authorizations[-1]


def test_new_key_in_the_tpm(swtpm: Swtpm, pca: Pca, pki: PKI, tmp_path: Path) -> None:
    cert, key = _enrol(swtpm, pca, pki, tmp_path)
    old_key = key.read_bytes()
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    ident = ["--certificate", str(cert), "--private-key", str(key), "--tcti", swtpm.tcti]
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        proc = run_cli(
            ["renew", *ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", pca.arn, "--force", "--new-key"],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        assert "CreateSession with the new key succeeded" in proc.stderr
        new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        assert new.public_key() != old.public_key()
        assert key.read_bytes() != old_key and b"TSS2 PRIVATE KEY" in key.read_bytes()
        assert (tmp_path / "host.tss2.prev").read_bytes() == old_key
        assert (key.stat().st_mode & 0o777) == 0o600
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url])
        assert proc.returncode == 0, proc.stderr


def test_new_key_at_a_persistent_handle_takes_over_the_handle(
    fresh_tpm: Swtpm, pca: Pca, pki: PKI, tmp_path: Path
) -> None:
    handle = "handle:0x81000020"
    gen = run_cli(["generate-key", "--tpm", "--persistent-handle", handle, "--tcti", fresh_tpm.tcti])
    assert gen.returncode == 0, gen.stderr
    no_pw = ["--no-tpm-key-password"]  # a handle carries no hint that its key has no password
    csr = run_cli(["csr", "--private-key", handle, "--tcti", fresh_tpm.tcti, *no_pw, "--subject", "CN=tpm handle"])
    assert csr.returncode == 0, csr.stderr
    cert = tmp_path / "host.crt"
    public = x509.load_pem_x509_csr(csr.stdout.encode()).public_key()
    cert.write_bytes(issue("first", issuer=pki.root, public_key=public).pem)
    ident = ["--certificate", str(cert), "--private-key", handle, "--tcti", fresh_tpm.tcti, *no_pw]
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        proc = run_cli(
            ["renew", *ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", pca.arn, "--force", "--new-key"],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        assert "persisted at 0x81000020" in proc.stderr
        new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        assert new.public_key() != public
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("host")) == ["host.crt", "host.crt.prev"]
        # the same handle now holds the new key: the configuration did not change
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url])
        assert proc.returncode == 0, proc.stderr
        assert f"Credential={new.serial_number}/" in ep.state.authorizations[-1]
