"""serve's refresher over a real SoftHSM2 token that is pulled out and put back."""

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
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

from .softhsm import MODULE, SoftHSM, remove

ROLE = ROLE_ARN.rsplit("/", 1)[-1]


def _get(server: CredentialServer, token: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(
            "GET", f"/latest/meta-data/iam/security-credentials/{ROLE}", headers={"X-aws-ec2-metadata-token": token}
        )
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body).get("AccessKeyId")
    finally:
        conn.close()


def _token(server: CredentialServer) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_token_removed_and_restored_while_serving(
    hsm: SoftHSM, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    with LocalEndpoint([pki.root.cert], clock=clock) as ep:
        identity = IdentityOptions(pkcs11_uri=hsm.uri("tok", "k"), pkcs11_lib=MODULE)
        request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=900, endpoint=ep.url)
        policy = RefreshPolicy(min_interval=1, backoff_base=2, backoff_max=10, attempt_retry=NO_RETRY)
        r = Refresher(identity, request, clock=clock, wait=lambda s: None, policy=policy)
        r.refresh()
        with CredentialServer(r, ServeConfig(ROLE, binds=("127.0.0.1",), port=0)) as server:
            tok = _token(server)
            status, first = _get(server, tok)
            assert status == 200 and first
            tokdir = hsm.token_dir("tok")
            remove(tokdir, tmp_path / "pulled-out")  # the token is pulled out
            clock.advance(650)
            r.tick()
            assert r.last_error is not None
            assert _get(server, tok) == (200, first)  # the last good credentials are still served
            remove(tmp_path / "pulled-out", tokdir)  # and put back
            clock.advance(r.seconds_until_next())
            r.tick()
            assert r.last_error is None
            status, again = _get(server, tok)
            assert status == 200 and again not in (None, first)
        assert ep.state.sessions_created == 2
        r.close()
