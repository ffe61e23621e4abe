"""``renew`` against ACM Private CA played by moto's server, with self-renewal through local-endpoint.

The machine's first certificate comes from the moto CA; ``local-endpoint`` trusts that CA. ``renew``
gets credentials from local-endpoint with the current certificate, calls IssueCertificate and
GetCertificate on moto, checks the answer, installs it, and the new certificate is then accepted
by local-endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rolesanywhere_signer.csrgen import CsrSpec, build_csr
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.moto_pca import Pca
from support.pki import PKI, name
from support.util import ARN_ARGS, assert_one_line_error, run_cli


class _Key:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key

    def public_key(self) -> object:
        return self.key.public_key()

    def sign(self, data: bytes, digest: str = "sha256") -> bytes:
        from cryptography.hazmat.primitives import hashes

        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def close(self) -> None:
        pass


def enrol(pki: PKI, tmp_path: Path, stem: str = "host") -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    """The first certificate, from the test PKI (moto would give the renewed one the same notAfter
    to the second): a key file and a certificate file, 30 days."""
    key = ec.generate_private_key(ec.SECP256R1())
    spec = CsrSpec(name(f"{stem}.example.com"), (x509.DNSName(f"{stem}.example.com"),))
    csr = build_csr(spec, _Key(key))  # type: ignore[arg-type]
    pem = _issue_from_csr(pki, csr)
    cert_path, key_path = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path, key


def _issue_from_csr(pki: PKI, csr: x509.CertificateSigningRequest) -> bytes:
    from support.pki import issue

    issued = issue("x", issuer=pki.root, public_key=csr.public_key(), days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(pki.root.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued.cert.not_valid_before_utc)
        .not_valid_after(issued.cert.not_valid_after_utc)
    )
    for ext in issued.cert.extensions:
        cert = cert.add_extension(ext.value, ext.critical)
    cert = cert.add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
    from cryptography.hazmat.primitives import hashes

    return cert.sign(pki.root.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pca_endpoint(pca: Pca, pki: PKI) -> Iterator[LocalEndpoint]:
    """local-endpoint trusting the test root (the first certificate) and the moto CA (the renewed one)."""
    ep = LocalEndpoint([pki.root.cert, pca.cert]).start()
    try:
        yield ep
    finally:
        ep.stop()


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


def test_self_renewal_installs_a_certificate_local_endpoint_accepts(
    pca: Pca, pki: PKI, pca_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    old_serial, old_bytes = _serial(cert), cert.read_bytes()
    env = {**pca.env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}  # no ambient credentials
    env = {k: v for k, v in env.items() if v}
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            pca_endpoint.url,
            "--ca-arn",
            pca.arn,
            "--force",
        ],
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "renewed: serial" in proc.stderr
    assert pca_endpoint.state.sessions_created == 1  # the credentials came from Roles Anywhere
    new_serial = _serial(cert)
    assert new_serial != old_serial
    assert (tmp_path / "host.crt.prev").read_bytes() == old_bytes
    new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert new.subject == x509.load_pem_x509_certificate(old_bytes).subject
    san = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host.example.com"]
    proc = run_cli(
        ["credential-process", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", pca_endpoint.url]
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Credential={new_serial}/" in pca_endpoint.state.authorizations[-1]


def test_not_due_leaves_everything_alone(pca: Pca, pki: PKI, pca_endpoint: LocalEndpoint, tmp_path: Path) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    before = cert.read_bytes()
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            pca_endpoint.url,
            "--ca-arn",
            pca.arn,
            "--before",
            "10d",
        ],
        env=pca.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not due" in proc.stderr
    assert cert.read_bytes() == before
    assert not (tmp_path / "host.crt.prev").exists()
    assert pca_endpoint.state.requests_seen == 0


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_ACM_PCA", "AWS_ENDPOINT_URL"])
def test_ambient_credentials_need_no_roles_anywhere_arns(pca: Pca, pki: PKI, tmp_path: Path, variable: str) -> None:
    """The ACM Private CA endpoint is whatever boto3 resolves: either variable works."""
    cert, key, _ = enrol(pki, tmp_path)
    url = pca.env["AWS_ENDPOINT_URL_ACM_PCA"]
    {k: v for k, v in pca.env.items() if k != "AWS_ENDPOINT_URL_ACM_PCA"} | {variable: url}
    old = _serial(cert)
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--renew-credentials",
            "ambient",
            "--before",
            "50%",
        ],
        env=pca.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert _serial(cert) != old


def test_moto_end_entity_client_auth_template_is_refused_for_its_missing_key_usage(
    pca: Pca, pki: PKI, tmp_path: Path
) -> None:
    """Gap: moto's EndEntityClientAuthCertificate/V1 has no keyUsage. Refused; old pair intact."""
    cert, key, _ = enrol(pki, tmp_path)
    before = cert.read_bytes()
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--renew-credentials",
            "ambient",
            "--template-arn",
            "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1",
        ],
        env=pca.env,
    )
    assert_one_line_error(proc, "no keyUsage")
    assert cert.read_bytes() == before
    assert not (tmp_path / "host.crt.prev").exists()


def test_a_certificate_from_another_ca_is_refused(pca: Pca, pki: PKI, moto_pca: object, tmp_path: Path) -> None:
    """--trust-anchor-certificate names another CA: the issued certificate does not chain to it."""
    from support.pki import issue

    other = issue("Some Other CA", ca=True)
    other_path = tmp_path / "other.pem"
    other_path.write_bytes(other.pem)
    cert, key, _ = enrol(pki, tmp_path)
    before = cert.read_bytes()
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--renew-credentials",
            "ambient",
            "--trust-anchor-certificate",
            other_path,
        ],
        env=pca.env,
    )
    assert_one_line_error(proc, "does not chain")
    assert cert.read_bytes() == before


def test_without_boto3_the_error_names_the_extra(pca: Pca, pki: PKI, tmp_path: Path) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    blocker = tmp_path / "noboto"
    blocker.mkdir()
    (blocker / "boto3.py").write_text("raise ImportError('boto3 is not installed')\n")
    from support.util import SRC

    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--renew-credentials",
            "ambient",
        ],
        env={**pca.env, "PYTHONPATH": f"{blocker}:{SRC}"},
    )
    assert_one_line_error(proc, "rolesanywhere-signer[boto3]")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--ca-arn", "arn:aws:acm-pca:us-east-2:123:certificate-authority/x"], "not an ACM Private CA ARN"),
        (["--ca-arn", "{ca}", "--renew-command", "true"], "exclude each other"),
        ([], "--ca-arn or --renew-command"),
        (["--ca-arn", "{ca}", "--before", "soon"], "not a duration"),
        (["--ca-arn", "{ca}", "--before", "150%"], "between 0% and 100%"),
        (["--ca-arn", "{ca}", "--validity-days", "0"], "out of range"),
        (["--ca-arn", "{ca}", "--validity-days", "x"], "whole number"),
        (["--ca-arn", "{ca}", "--signing-algorithm", "MD5WITHRSA"], "is not one of"),
        (["--ca-arn", "{ca}", "--template-arn", "EndEntity"], "template ARN"),
        (["--ca-arn", "{ca}", "--renew-credentials", "magic"], "invalid choice"),
        (["--ca-arn", "{ca}", "--renew-role-arn", "arn:aws:iam::123456789012:user/u"], "role"),
        (["--renew-command", "'unbalanced"], "quotes"),
        (["--renew-command", "true", "--renew-command-timeout", "0"], "between 0 and 3600"),
        (["--renew-command", "true", "--validity-days", "3"], "apply to --ca-arn only"),
        (["--ca-arn", "{ca}", "--role-arn", "arn:aws:iam::123456789012:role/R"], "--trust-anchor-arn is required"),
        (["--renew-command", "true", "--renew-command-timeout", "soon"], "number of seconds"),
        (["--renew-command", "true", "--renew-credentials"], "expected one argument"),
    ],
)
def test_bad_renewal_flags_are_one_line_errors(args: list[str], phrase: str, tmp_path: Path) -> None:
    ca = "arn:aws:acm-pca:us-east-2:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    proc = run_cli(["renew", "--certificate", cert, "--private-key", cert, *[a.replace("{ca}", ca) for a in args]])
    assert_one_line_error(proc, phrase, code=proc.returncode or 1)
    assert proc.returncode in (1, 2)


def test_renewal_of_a_certificate_on_a_token_is_refused_clearly(tmp_path: Path) -> None:
    ca = "arn:aws:acm-pca:us-east-2:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
    proc = run_cli(["renew", "--pkcs11-uri", "pkcs11:token=t;object=k", "--ca-arn", ca])
    assert_one_line_error(proc, "--certificate is required", code=2)


def test_new_key_file_switches_after_create_session_and_keeps_prev(
    pca: Pca, pki: PKI, pca_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key, old_key = enrol(pki, tmp_path)
    old_key_pem = key.read_bytes()
    ident = ["--certificate", str(cert), "--private-key", str(key)]
    proc = run_cli(
        ["renew", *ident, *ARN_ARGS, "--endpoint", pca_endpoint.url, "--ca-arn", pca.arn, "--force", "--new-key"],
        env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
    )
    assert proc.returncode == 0, proc.stderr
    assert "CreateSession with the new key succeeded" in proc.stderr
    # self-renewal with the old pair, then the proof with the new pair before the switch
    assert pca_endpoint.state.sessions_created == 2
    assert (tmp_path / "host.key.prev").read_bytes() == old_key_pem
    assert key.read_bytes() != old_key_pem and (key.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "host.key.next").exists()
    new = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert new.public_key() != old_key.public_key()
    proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", pca_endpoint.url])
    assert proc.returncode == 0, proc.stderr


def test_new_key_is_dropped_when_the_certificate_is_refused(
    pca: Pca, pki: PKI, pca_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    before_cert, before_key = cert.read_bytes(), key.read_bytes()
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            *ARN_ARGS,
            "--endpoint",
            pca_endpoint.url,
            "--ca-arn",
            pca.arn,
            "--force",
            "--new-key",
            "--template-arn",
            "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1",
        ],
        env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
    )
    assert_one_line_error(proc, "no keyUsage")
    assert cert.read_bytes() == before_cert and key.read_bytes() == before_key
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("host")) == ["host.crt", "host.key"]


def test_new_key_is_dropped_when_create_session_with_it_fails(pca: Pca, pki: PKI, tmp_path: Path) -> None:
    """local-endpoint trusts only the test root: the moto-issued certificate is refused at CreateSession."""
    cert, key, _ = enrol(pki, tmp_path)
    before_cert, before_key = cert.read_bytes(), key.read_bytes()
    with LocalEndpoint([pki.root.cert]) as ep:
        proc = run_cli(
            [
                "renew",
                "--certificate",
                cert,
                "--private-key",
                key,
                *ARN_ARGS,
                "--endpoint",
                ep.url,
                "--ca-arn",
                pca.arn,
                "--force",
                "--new-key",
            ],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
    assert_one_line_error(proc, "CreateSession with the new key and certificate failed")
    assert cert.read_bytes() == before_cert and key.read_bytes() == before_key
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("host")) == ["host.crt", "host.key"]


def test_new_key_needs_the_arns(pca: Pca, pki: PKI, tmp_path: Path) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--new-key",
            "--renew-credentials",
            "ambient",
        ],
        env=pca.env,
    )
    assert_one_line_error(proc, "--new-key needs the Roles Anywhere ARNs", code=2)


def test_self_renewal_credentials_never_reach_the_output(pca: Pca, pki: PKI, tmp_path: Path) -> None:
    """--debug included: the credentials that call ACM Private CA are never printed."""
    from support.servers import ScriptedServer, session_body

    cert, key, _ = enrol(pki, tmp_path)
    with ScriptedServer([], after=session_body()) as ra:
        proc = run_cli(
            [
                "renew",
                "--debug",
                "--certificate",
                cert,
                "--private-key",
                key,
                *ARN_ARGS,
                "--endpoint",
                ra.url,
                "--ca-arn",
                pca.arn,
                "--force",
            ],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert len(ra.seen) == 1
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "renewed: serial" in out
    for secret in ("fake/secret/key/that/should/never/print", "FAKE-SESSION-TOKEN"):
        assert secret not in out


@pytest.mark.parametrize(("content", "phrase"), [(None, "does not exist"), (b"not a certificate", "neither a PEM")])
def test_bad_trust_anchor_certificate_is_one_line(
    pca: Pca, pki: PKI, tmp_path: Path, content: bytes | None, phrase: str
) -> None:
    cert, key, _ = enrol(pki, tmp_path)
    before = cert.read_bytes()
    anchor = tmp_path / "anchor.pem"
    if content is not None:
        anchor.write_bytes(content)
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            pca.arn,
            "--force",
            "--renew-credentials",
            "ambient",
            "--trust-anchor-certificate",
            anchor,
        ],
        env=pca.env,
    )
    assert_one_line_error(proc, phrase)
    assert cert.read_bytes() == before


def test_an_unreachable_acm_pca_endpoint_is_one_line(pki: PKI, tmp_path: Path) -> None:
    from support.servers import closed_port_url

    cert, key, _ = enrol(pki, tmp_path)
    ca = "arn:aws:acm-pca:us-east-2:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
    proc = run_cli(
        [
            "renew",
            "--certificate",
            cert,
            "--private-key",
            key,
            "--ca-arn",
            ca,
            "--force",
            "--renew-credentials",
            "ambient",
            "--timeout",
            "2",
        ],
        env={"AWS_ENDPOINT_URL_ACM_PCA": closed_port_url(), "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
        timeout=120,
    )
    assert_one_line_error(proc, "cannot reach the endpoint")


def test_renewal_from_a_subordinate_ca_installs_its_certificate_as_the_chain(
    pca: Pca, pki: PKI, tmp_path: Path
) -> None:
    """moto's chain under a subordinate lacks the root: the installed chain is the subordinate,
    and local-endpoint (trusting the moto root) accepts leaf + subordinate."""
    from support.moto_pca import make_subordinate_ca

    sub = make_subordinate_ca(pca, tmp_path)
    cert, key, _ = enrol(pki, tmp_path)
    with LocalEndpoint([pki.root.cert, pca.cert]) as ep:
        ident = ["--certificate", str(cert), "--private-key", str(key)]
        proc = run_cli(
            ["renew", *ident, *ARN_ARGS, "--endpoint", ep.url, "--ca-arn", sub.arn, "--force"],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        stored = x509.load_pem_x509_certificates(cert.read_bytes())
        assert [c.subject for c in stored[1:]] == [sub.cert.subject]
        proc = run_cli(["credential-process", *ident, *ARN_ARGS, "--endpoint", ep.url])
        assert proc.returncode == 0, proc.stderr


def test_renew_role_arn_is_the_role_asked_for(pca: Pca, pki: PKI, tmp_path: Path) -> None:
    import json

    from support.servers import ScriptedServer, session_body
    from support.util import ACCOUNT

    cert, key, _ = enrol(pki, tmp_path)
    renew_role = f"arn:aws:iam::{ACCOUNT}:role/certificate-renewal"
    with ScriptedServer([], after=session_body()) as ra:
        proc = run_cli(
            [
                "renew",
                "--certificate",
                cert,
                "--private-key",
                key,
                *ARN_ARGS,
                "--endpoint",
                ra.url,
                "--ca-arn",
                pca.arn,
                "--force",
                "--renew-role-arn",
                renew_role,
            ],
            env={"AWS_ENDPOINT_URL_ACM_PCA": pca.env["AWS_ENDPOINT_URL_ACM_PCA"]},
        )
        assert proc.returncode == 0, proc.stderr
        from urllib.parse import parse_qs, urlsplit

        roles = [
            json.loads(r.body or b"{}").get("roleArn") or parse_qs(urlsplit(r.path).query)["roleArn"][0]
            for r in ra.seen
        ]
        assert roles == [renew_role]
