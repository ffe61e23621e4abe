"""Every refusal of an issued certificate leaves the old pair intact, and the paths moto cannot play.

moto's gaps and the test that covers each one instead:

- always 365-day certificates, whatever Validity says: ``test_too_short_a_lifetime_is_refused``
  (fake issuer) and ``test_validity_and_signing_algorithm_are_sent`` (Stubber: what we ask for);
- EndEntityClientAuthCertificate/V1 without keyUsage: refused against moto itself in
  test_renew.py (``test_moto_end_entity_client_auth_template_is_refused_for_its_missing_key_usage``)
  and here with ``test_missing_or_wrong_key_usage_is_refused`` (fake issuer);
- subordinate CA certificates without CA extensions: ``test_an_intermediate_without_ca_extensions_is_refused``
  (fake issuer under a subordinate made without extensions, as moto makes them);
- chains that lack the root: ``test_chain_through_a_subordinate_without_the_root_is_accepted``
  (fake issuer, a real subordinate with extensions; the root comes from the trust anchor) and,
  against moto itself, ``test_renewal_from_a_subordinate_ca_installs_its_certificate_as_the_chain``
  in test_renew.py;
- RequestInProgressException never raised: ``test_request_in_progress_is_waited_for`` and
  ``test_request_in_progress_forever_gives_up`` (Stubber);
- malformed CSRs give HTTP 500: ``test_service_errors_are_one_line`` (Stubber, 400 and 500);
- no signature or policy checks: ``test_a_forged_signature_is_refused`` (fake issuer signing with
  a key that is not the CA's) and ``test_access_denied_names_the_policy`` (Stubber).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer.enroll.acmpca import AcmPcaIssuer
from rolesanywhere_signer.enroll.renew import Before, Renewer, RenewOptions, parse_before
from rolesanywhere_signer.errors import EndpointError, InputError, SignerError
from rolesanywhere_signer.options import IdentityOptions
from support.fake_issuer import FakeIssuer, forged_key
from support.pki import PKI, issue, new_key

CA_ARN = "arn:aws:acm-pca:us-east-2:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"


def _pair(pki: PKI, tmp_path: Path, days: int = 30) -> tuple[IdentityOptions, Path, bytes]:
    leaf = pki.leaf(days=days)
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki.root.pem)
    return IdentityOptions(certificate=str(cert), private_key=str(key)), anchor, leaf.pem


def _renewer(identity: IdentityOptions, anchor: Path, issuer: Any, **kw: Any) -> Renewer:
    options = RenewOptions(
        command="unused", trust_anchor_certificate=str(anchor), force=True, credentials="ambient", **kw
    )
    return Renewer(identity, None, options, issuer=issuer)


def _refused(renewer: Renewer, tmp_path: Path, old: bytes, phrase: str) -> None:
    with pytest.raises(SignerError) as e:
        renewer.renew()
    assert phrase in e.value.diagnostics()
    assert "\n" not in e.value.diagnostics()
    assert (tmp_path / "host.crt").read_bytes() == old
    assert not (tmp_path / "host.crt.prev").exists()


def test_a_good_answer_is_installed_with_prev(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.root, days=60)
    result = _renewer(identity, anchor, issuer).renew()
    assert result.renewed
    assert (tmp_path / "host.crt.prev").read_bytes() == old
    new = x509.load_pem_x509_certificate((tmp_path / "host.crt").read_bytes())
    assert new.serial_number == result.serial
    assert issuer.csrs[0].subject == x509.load_pem_x509_certificate(old).subject


def test_someone_elses_key_is_refused(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.root, days=60, other_public_key=new_key().public_key())
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, "public key is not ours")


def test_a_ca_certificate_is_refused(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    _refused(_renewer(identity, anchor, FakeIssuer(pki.root, days=60, is_ca=True)), tmp_path, old, "CA=true")


@pytest.mark.parametrize(
    ("key_usage", "digital_signature", "phrase"),
    [(False, True, "no keyUsage"), (True, False, "lacks digitalSignature")],
)
def test_missing_or_wrong_key_usage_is_refused(
    pki: PKI, tmp_path: Path, key_usage: bool, digital_signature: bool, phrase: str
) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.root, days=60, key_usage=key_usage, digital_signature=digital_signature)
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, phrase)


def test_an_expiry_no_later_than_the_old_one_is_refused(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    old_after = x509.load_pem_x509_certificate(old).not_valid_after_utc
    issuer = FakeIssuer(pki.root, not_after=old_after - dt.timedelta(hours=1))
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, "no later than the current one")


def test_too_short_a_lifetime_is_refused(pki: PKI, tmp_path: Path) -> None:
    """A CA that ignores Validity (as moto does) and gives less than half of what was asked."""
    identity, anchor, old = _pair(pki, tmp_path, days=1)
    issuer = FakeIssuer(pki.root, days=40)
    _refused(_renewer(identity, anchor, issuer, validity_days=90), tmp_path, old, "less than half of the 90.0")


def test_a_forged_signature_is_refused(pki: PKI, tmp_path: Path) -> None:
    """moto checks no signatures; we do: the right issuer name signed by the wrong key."""
    identity, anchor, old = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.root, days=60, signing_key=forged_key())
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, "does not chain")


def test_chain_through_a_subordinate_without_the_root_is_accepted(pki: PKI, tmp_path: Path) -> None:
    """Issued by the intermediate, chain = [intermediate] (no root), anchored at the root."""
    identity, anchor, _ = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.intermediate, chain=(pki.intermediate.cert,), days=60)
    assert _renewer(identity, anchor, issuer).renew().renewed
    stored = x509.load_pem_x509_certificates((tmp_path / "host.crt").read_bytes())
    assert [c.subject for c in stored[1:]] == [pki.intermediate.cert.subject]  # the chain went in with the leaf


def test_intermediates_file_is_replaced_too_and_kept_as_prev(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, _ = _pair(pki, tmp_path)
    inter = tmp_path / "chain.pem"
    old_ca = issue("Old Intermediate", issuer=pki.root, ca=True)
    old_inter = old_ca.pem
    inter.write_bytes(old_inter)
    assert identity.certificate and identity.private_key
    key = serialization.load_pem_private_key(Path(identity.private_key).read_bytes(), None)
    Path(identity.certificate).write_bytes(issue("host", issuer=old_ca, key=key).pem)  # from the old intermediate
    identity = IdentityOptions(
        certificate=identity.certificate, private_key=identity.private_key, intermediates=str(inter)
    )
    issuer = FakeIssuer(pki.intermediate, chain=(pki.intermediate.cert, pki.root.cert), days=60)
    assert _renewer(identity, anchor, issuer).renew().renewed
    assert inter.read_bytes() == pki.intermediate.pem
    assert (tmp_path / "chain.pem.prev").read_bytes() == old_inter
    from rolesanywhere_signer.backends import load_signer

    signer = load_signer(identity)
    assert [c.subject for c in signer.chain] == [pki.intermediate.cert.subject]
    signer.close()


def test_an_issuer_error_keeps_the_old_pair(pki: PKI, tmp_path: Path) -> None:
    identity, anchor, old = _pair(pki, tmp_path)
    issuer = FakeIssuer(pki.root, error=InputError("the CA is down"))
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, "the CA is down")


def test_before_parsing_and_default() -> None:
    cert = issue("x", days=30).cert
    assert Before().margin(cert) == dt.timedelta(days=10)
    assert parse_before("25%").margin(cert) == dt.timedelta(days=7.5)
    assert parse_before("36h").margin(cert) == dt.timedelta(hours=36)
    assert parse_before("2w").seconds == 14 * 86400


# ---- ACM Private CA through botocore's Stubber ----------------------------------------------------


def _stubbed(pki: PKI, **kw: Any) -> tuple[AcmPcaIssuer, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-2").client(
        "acm-pca"
    )
    issuer = AcmPcaIssuer(CA_ARN, validity_days=7, sleep=lambda s: None, **kw)
    issuer._clients.append(client)
    return issuer, Stubber(client)


def _csr(pki: PKI) -> tuple[bytes, Any]:
    from cryptography.hazmat.primitives import hashes, serialization

    key = new_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(pki.root.cert.subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


def test_validity_and_signing_algorithm_are_sent(pki: PKI) -> None:
    issuer, stub = _stubbed(pki, signing_algorithm="SHA384WITHECDSA")
    csr, key = _csr(pki)
    cert = issue("leaf", issuer=pki.root, public_key=key.public_key())
    arn = CA_ARN + "/certificate/abc"
    stub.add_response(
        "issue_certificate",
        {"CertificateArn": arn},
        {
            "CertificateAuthorityArn": CA_ARN,
            "Csr": csr,
            "SigningAlgorithm": "SHA384WITHECDSA",
            "TemplateArn": "arn:aws:acm-pca:::template/EndEntityCertificate/V1",
            "Validity": {"Value": 7, "Type": "DAYS"},
            "IdempotencyToken": stub_any(),
        },
    )
    stub.add_response("get_certificate", {"Certificate": cert.pem.decode(), "CertificateChain": pki.root.pem.decode()})
    with stub:
        out = issuer.issue(csr)
    assert out.certificate.serial_number == cert.cert.serial_number
    assert out.chain == ()  # the self-signed root is dropped: intermediates only


def stub_any() -> Any:
    from botocore.stub import ANY

    return ANY


def test_request_in_progress_is_waited_for(pki: PKI) -> None:
    issuer, stub = _stubbed(pki, signing_algorithm="SHA256WITHECDSA")
    csr, key = _csr(pki)
    cert = issue("leaf", issuer=pki.root, public_key=key.public_key())
    stub.add_response("issue_certificate", {"CertificateArn": CA_ARN + "/certificate/abc"})
    for _ in range(3):
        stub.add_client_error("get_certificate", "RequestInProgressException", "in progress", 400)
    stub.add_response("get_certificate", {"Certificate": cert.pem.decode()})
    with stub:
        out = issuer.issue(csr)
    stub.assert_no_pending_responses()
    assert out.certificate == cert.cert


def test_request_in_progress_forever_gives_up(pki: PKI) -> None:
    issuer, stub = _stubbed(pki, signing_algorithm="SHA256WITHECDSA", ready_wait=0.0)
    csr, _ = _csr(pki)
    stub.add_response("issue_certificate", {"CertificateArn": CA_ARN + "/certificate/abc"})
    stub.add_client_error("get_certificate", "RequestInProgressException", "still signing", 400)
    with stub, pytest.raises(EndpointError) as e:
        issuer.issue(csr)
    assert "RequestInProgressException" in e.value.diagnostics()


@pytest.mark.parametrize(
    ("code", "status", "phrase"),
    [("MalformedCSRException", 400, "MalformedCSRException"), ("InternalFailure", 500, "InternalFailure")],
)
def test_service_errors_are_one_line(pki: PKI, code: str, status: int, phrase: str) -> None:
    issuer, stub = _stubbed(pki, signing_algorithm="SHA256WITHECDSA")
    csr, _ = _csr(pki)
    stub.add_client_error("issue_certificate", code, "bad\nthing", status)
    with stub, pytest.raises(EndpointError) as e:
        issuer.issue(csr)
    assert phrase in e.value.diagnostics() and "\n" not in e.value.diagnostics()


def test_access_denied_names_the_policy(pki: PKI) -> None:
    issuer, stub = _stubbed(pki, signing_algorithm="SHA256WITHECDSA")
    csr, _ = _csr(pki)
    stub.add_client_error("issue_certificate", "AccessDeniedException", "not authorized", 400)
    with stub, pytest.raises(EndpointError) as e:
        issuer.issue(csr)
    assert "acm-pca:IssueCertificate" in e.value.diagnostics()


def test_an_intermediate_without_ca_extensions_is_refused(pki: PKI, tmp_path: Path) -> None:
    """What moto hands back for a subordinate signed with the subordinate templates: no CA flag."""
    identity, anchor, old = _pair(pki, tmp_path)
    bare = issue("Bare Subordinate", issuer=pki.root, extensions=False)
    issuer = FakeIssuer(bare, chain=(bare.cert,), days=60)
    _refused(_renewer(identity, anchor, issuer), tmp_path, old, "is not marked as a CA")
