"""serve's refresher over a real swtpm that is stopped and started again (same state, same port)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.imds import CredentialServer, ServeConfig
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from rolesanywhere_signer.refresher import Refresher, RefreshPolicy
from rolesanywhere_signer.retry import NO_RETRY
from support.clock import FakeClock
from support.pki import PKI, issue
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

from .swtpm import Swtpm

ROLE = ROLE_ARN.rsplit("/", 1)[-1]


def _get(server: CredentialServer, token: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        path = f"/latest/meta-data/iam/security-credentials/{ROLE}"
        conn.request("GET", path, headers={"X-aws-ec2-metadata-token": token})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()).get("AccessKeyId")
    finally:
        conn.close()


def _token(server: CredentialServer) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_swtpm_restarted_while_serving(swtpm: Swtpm, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rolesanywhere_signer.backends import tpm

    if not hasattr(tpm, "generate_key"):
        pytest.skip("the TPM backend has no generate_key yet")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    key_file = tmp_path / "host.tss2"
    public = tpm.generate_key(
        IdentityOptions(tcti=swtpm.tcti, no_tpm_key_password=True), "ec-p256", output=str(key_file)
    )
    cert = tmp_path / "host.crt"
    cert.write_bytes(issue("tpm host", issuer=pki.root, public_key=public).pem)
    identity = IdentityOptions(
        certificate=str(cert), private_key=str(key_file), tcti=swtpm.tcti, no_tpm_key_password=True
    )
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    with LocalEndpoint([pki.root.cert], clock=clock) as ep:
        request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=900, endpoint=ep.url)
        policy = RefreshPolicy(min_interval=1, backoff_base=2, backoff_max=10, attempt_retry=NO_RETRY)
        r = Refresher(identity, request, clock=clock, wait=lambda s: None, policy=policy)
        r.refresh()
        try:
            with CredentialServer(r, ServeConfig(ROLE, binds=("127.0.0.1",), port=0)) as server:
                tok = _token(server)
                status, first = _get(server, tok)
                assert status == 200 and first
                swtpm.stop()  # the TPM goes away
                clock.advance(650)
                r.tick()
                assert r.last_error is not None
                assert _get(server, tok) == (200, first)  # the last good credentials are still served
                swtpm.start(swtpm.port)  # and comes back on the same port, every loaded object gone
                clock.advance(r.seconds_until_next())
                r.tick()
                assert r.last_error is None, r.last_error
                status, again = _get(server, tok)
                assert status == 200 and again not in (None, first)
            assert ep.state.sessions_created == 2
        finally:
            r.close()
