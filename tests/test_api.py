"""The library API: get_credentials and boto3_session through the shared refresher."""

from __future__ import annotations

from pathlib import Path

import pytest

import rolesanywhere_signer
from rolesanywhere_signer import api
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from support.clock import FakeClock
from support.util import PROFILE_ARN, REGION, ROLE_ARN, TRUST_ANCHOR_ARN


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMTHEENVIRONMENT")  # must not win over ours
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")


def req(ep: LocalEndpoint, duration: int = 900) -> RequestOptions:
    return RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=duration, endpoint=ep.url)


def test_public_surface() -> None:
    for name in ("boto3_session", "get_credentials", "fetch_credentials"):
        assert name in rolesanywhere_signer.__all__
        assert callable(getattr(rolesanywhere_signer, name))


def test_get_credentials_reuses_the_session(identity: IdentityOptions, endpoint: LocalEndpoint) -> None:
    request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, endpoint=endpoint.url)
    try:
        a = rolesanywhere_signer.get_credentials(identity, request)
        b = rolesanywhere_signer.get_credentials(identity, request)
        assert a is b
        assert endpoint.state.sessions_created == 1
        assert "secret" not in repr(a).lower().replace("secret_access_key='********'", "")
    finally:
        api.refresher_for(identity, request).close()


def test_boto3_session_refreshes_across_expiry(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    session = rolesanywhere_signer.boto3_session(identity, req(ep), clock=clock)
    assert session.region_name == "us-east-2"  # from the trust anchor ARN
    creds = session.get_credentials()
    assert creds.method == "rolesanywhere-signer"
    first = creds.get_frozen_credentials()
    assert first.access_key.startswith("ASIA")
    # botocore's windows are tuned: a 900 s session is not refreshed on every call
    assert (creds._advisory_refresh_timeout, creds._mandatory_refresh_timeout) == (300, 150)
    for _ in range(5):
        clock.advance(60)
        assert creds.get_frozen_credentials() == first
    assert ep.state.sessions_created == 1
    clock.advance(700)  # 960 s later: past the 900 s expiry
    second = creds.get_frozen_credentials()
    assert second.access_key != first.access_key
    assert ep.state.sessions_created == 2
    assert not creds.refresh_needed()
    # a real client built from the session signs with the new credentials
    client = session.client("sts", endpoint_url="http://127.0.0.1:9")
    signer_creds = client._request_signer._credentials.get_frozen_credentials()
    assert signer_creds.access_key == second.access_key


def test_boto3_session_advisory_refresh_before_expiry(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock
) -> None:
    session = rolesanywhere_signer.boto3_session(identity, req(ep, 3600), clock=clock, region_name="eu-west-1")
    assert session.region_name == "eu-west-1"
    creds = session.get_credentials()
    first = creds.get_frozen_credentials()
    assert (creds._advisory_refresh_timeout, creds._mandatory_refresh_timeout) == (900, 600)
    clock.advance(3600 - 899)  # inside the advisory window: refreshed once, not on every call
    second = creds.get_frozen_credentials()
    assert second.access_key != first.access_key
    for _ in range(3):
        assert creds.get_frozen_credentials() == second
    assert ep.state.sessions_created == 2


def test_boto3_session_keeps_credentials_when_a_refresh_fails(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock
) -> None:
    session = rolesanywhere_signer.boto3_session(identity, req(ep, 3600), clock=clock)
    creds = session.get_credentials()
    first = creds.get_frozen_credentials()
    ep.state.inject.extend([503] * 10)
    clock.advance(3600 - 800)  # advisory window, not yet mandatory
    assert creds.get_frozen_credentials() == first


def test_the_request_is_validated_once(
    identity: IdentityOptions, endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch_credentials checks the options once and hands the result down; the client does not re-check."""
    from rolesanywhere_signer import arn

    calls: list[str] = []
    real = arn.parse_arn

    def counting(value: str, flag: str, service: str, kind: str) -> arn.Arn:
        calls.append(flag)
        return real(value, flag, service, kind)

    monkeypatch.setattr(arn, "parse_arn", counting)
    request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, endpoint=endpoint.url)
    creds = api.fetch_credentials(identity, request)
    assert creds.access_key_id.startswith("ASIA")
    assert calls == ["--trust-anchor-arn", "--profile-arn", "--role-arn"]
    valid = arn.validate_request(request)
    assert arn.validate_request(valid) is valid
    assert (valid.session.trust_anchor_arn, valid.region, valid.anchor.region) == (TRUST_ANCHOR_ARN, REGION, REGION)
