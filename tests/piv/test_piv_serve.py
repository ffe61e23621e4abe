"""Long-running use of the virtual PIV card in-process: serve's refresher, the library API,
the card pulled out and put back, and touch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from rolesanywhere_signer.refresher import Refresher, RefreshPolicy
from rolesanywhere_signer.retry import NO_RETRY
from support.clock import FakeClock
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

from .virtual import PIN, VirtualPiv, provision


def _refresher(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> Refresher:
    request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=900, endpoint=ep.url)
    policy = RefreshPolicy(min_interval=1, backoff_base=2, backoff_max=10, attempt_retry=NO_RETRY)
    return Refresher(identity, request, clock=clock, wait=lambda s: None, policy=policy)


def test_serve_keeps_one_login_and_recovers_after_the_card_is_reinserted(
    piv: VirtualPiv, module: str, pki: PKI, pin_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    provision(piv, 0x9A, pki.leaf("ec-p256", cn="piv serve"))
    piv.insert()
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    identity = IdentityOptions(pkcs11_uri=f"pkcs11:id=%01?pin-source=file:{pin_file}", pkcs11_lib=module)
    with LocalEndpoint([pki.root.cert], clock=clock) as ep:
        r = _refresher(identity, ep, clock)
        try:
            r.refresh()
            for _ in range(5):
                clock.advance(650)  # past the refresh point of a 900 s session
                r.tick()
                assert r.last_error is None
            c = piv.counters()
            assert (c["verify"], c["sign"]) == (1, 6), c  # one login for six signatures
            piv.remove()  # pulled out ...
            clock.advance(650)
            r.tick()
            assert r.last_error is not None
            assert PIN not in str(r.last_error)
            piv.insert()  # ... and put back
            clock.advance(r.seconds_until_next())
            r.tick()
            assert r.last_error is None, r.last_error
            c = piv.counters()
            assert (c["verify"], c["sign"]) == (2, 7), c  # exactly one new login
            assert ep.state.sessions_created == 7
        finally:
            r.close()


def test_library_api_slot_9c_reuse_pin(piv: VirtualPiv, module: str, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """get_credentials on an always-authenticate key: the PIN from the environment serves both logins."""
    from rolesanywhere_signer import api

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_PKCS11_PIN", PIN)
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", "/nonexistent/tty")  # no prompt may be needed
    provision(piv, 0x9C, pki.leaf("ec-p256", cn="piv api"))
    piv.insert()
    with LocalEndpoint([pki.root.cert]) as ep:
        identity = IdentityOptions(pkcs11_uri="pkcs11:id=%02", pkcs11_lib=module, reuse_pin=True)
        request = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=900, endpoint=ep.url)
        creds = api.fetch_credentials(identity, request)
        assert creds.access_key_id
    c = piv.counters()
    assert c["sign"] == 1 and c["verify"] == 2, c  # login + the signature's own VERIFY


def test_touch_notice_on_the_terminal(
    piv: VirtualPiv, module: str, pki: PKI, pin_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolesanywhere_signer.backends import load_signer

    leaf = pki.leaf("ec-p256", cn="piv touch")
    provision(piv, 0x9A, leaf, touch_policy="always")
    piv.update(touch_delay=1.2)  # the card waits this long for the "touch"
    piv.insert()
    tty = tmp_path / "tty"
    tty.write_text("")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", str(tty))
    signer = load_signer(IdentityOptions(pkcs11_uri=f"pkcs11:id=%01?pin-source=file:{pin_file}", pkcs11_lib=module))
    try:
        sig = signer.sign(b"touch me")
    finally:
        signer.close()
    from rolesanywhere_signer.signer import verify_signature

    assert verify_signature(leaf.cert.public_key(), sig, b"touch me", "sha256")
    assert "touch your security key" in tty.read_text()


def test_wrong_signing_pin_on_9c_costs_one_try(
    piv: VirtualPiv, module: str, pki: PKI, pin_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user PIN is right, the always-authenticate PIN typed for the signature is wrong."""
    from rolesanywhere_signer.backends import load_signer
    from rolesanywhere_signer.errors import AuthenticationError

    from .tty import PromptAnswerer

    provision(piv, 0x9C, pki.leaf("ec-p256", cn="piv 9c wrong"))
    piv.insert()
    tty = PromptAnswerer("000000")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", tty.path)
    try:
        signer = load_signer(IdentityOptions(pkcs11_uri=f"pkcs11:id=%02?pin-source=file:{pin_file}", pkcs11_lib=module))
        try:
            with pytest.raises(AuthenticationError, match="wrong PIN") as e:
                signer.sign(b"x")
        finally:
            signer.close()
    finally:
        tty.close()
    assert "2 tries left" in str(e.value) and "000000" not in str(e.value)
    assert tty.prompts == 1
    state = piv.state()
    assert state["pin_retries"] == 2 and state["counters"]["sign"] == 0
