"""ACM Private CA played by moto's server on a free loopback port (a pytest plugin: fixtures here).

``moto_pca`` starts ``moto_server`` once per session and stops it at the end; ``pca`` gives each
test a fresh root CA made the way a user makes one (CreateCertificateAuthority, then its CSR
signed with the RootCACertificate/V1 template and imported), and the environment a renewing
process needs to reach it (``AWS_ENDPOINT_URL_ACM_PCA`` and dummy ambient credentials).

What moto 5.2 gets wrong, and where each gap is covered instead (see test_renew_validation.py):
365-day certificates whatever Validity says; EndEntityClientAuthCertificate/V1 without keyUsage;
subordinate CA certificates without CA extensions; chains without the root; no
RequestInProgressException; HTTP 500 on malformed CSRs; no signature or policy checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from .util import REGION, free_port

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"


@dataclass
class MotoServer:
    url: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_ACM_PCA": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }


@dataclass
class Pca:
    """One root CA in moto, with its certificate."""

    arn: str
    cert: x509.Certificate
    cert_path: Path
    env: dict[str, str]
    client: Any


@pytest.fixture(scope="session")
def moto_pca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield MotoServer(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def acm_client(server: MotoServer) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("acm-pca", endpoint_url=server.url)


def make_root_ca(server: MotoServer, tmp_path: Path, cn: str = "Moto Root CA") -> Pca:
    client = acm_client(server)
    arn = client.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": cn, "Organization": "rolesanywhere-signer tests"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = client.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    cert_arn = client.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Value": 3650, "Type": "DAYS"},
    )["CertificateArn"]
    pem = client.get_certificate(CertificateAuthorityArn=arn, CertificateArn=cert_arn)["Certificate"]
    client.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
    cert = x509.load_pem_x509_certificate(pem.encode())
    path = tmp_path / f"ca-{arn.rsplit('/', 1)[1][:8]}.pem"
    path.write_text(pem)
    return Pca(arn, cert, path, server.env(), client)


def issue_from(pca: Pca, csr_pem: bytes, template: str = "arn:aws:acm-pca:::template/EndEntityCertificate/V1") -> bytes:
    """A certificate from the moto CA for ``csr_pem`` (the first, hand-made enrolment)."""
    arn = pca.client.issue_certificate(
        CertificateAuthorityArn=pca.arn,
        Csr=csr_pem,
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=template,
        Validity={"Value": 30, "Type": "DAYS"},
    )["CertificateArn"]
    return str(pca.client.get_certificate(CertificateAuthorityArn=pca.arn, CertificateArn=arn)["Certificate"]).encode()


@pytest.fixture
def pca(moto_pca: MotoServer, tmp_path: Path) -> Pca:
    return make_root_ca(moto_pca, tmp_path)


def no_proxy_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}


def make_subordinate_ca(root: Pca, tmp_path: Path, cn: str = "Moto Issuing CA") -> Pca:
    """A subordinate CA under ``root``. moto gives a subordinate signed with the
    SubordinateCACertificate templates no CA extensions, so the root signs it with
    RootCACertificate/V1 (which has them); GetCertificate under it then returns a chain without
    the root, as moto does."""
    client = root.client
    arn = client.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": cn, "Organization": "rolesanywhere-signer tests"},
        },
        CertificateAuthorityType="SUBORDINATE",
    )["CertificateAuthorityArn"]
    csr = client.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    cert_arn = client.issue_certificate(
        CertificateAuthorityArn=root.arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Value": 1825, "Type": "DAYS"},
    )["CertificateArn"]
    pem = client.get_certificate(CertificateAuthorityArn=root.arn, CertificateArn=cert_arn)["Certificate"]
    root_pem = root.cert_path.read_text()
    client.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=pem.encode(), CertificateChain=root_pem.encode()
    )
    cert = x509.load_pem_x509_certificate(pem.encode())
    path = tmp_path / f"ca-{arn.rsplit('/', 1)[1][:8]}.pem"
    path.write_text(pem)
    return Pca(arn, cert, path, root.env, client)
