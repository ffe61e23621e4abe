"""The one refresher under serve, update and the library API: real endpoint, injected clock, no sleeps."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.errors import EndpointError, SecretError
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from rolesanywhere_signer.refresher import (
    Refresher,
    RefreshPolicy,
    botocore_windows,
    file_fingerprint,
    refresh_margin,
)
from rolesanywhere_signer.retry import NO_RETRY
from rolesanywhere_signer.secret import Secret
from support.clock import FakeClock
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")


POLICY = RefreshPolicy(min_interval=5.0, backoff_base=10.0, backoff_max=60.0, attempt_retry=NO_RETRY)


def request(ep: LocalEndpoint, duration: int = 900) -> RequestOptions:
    return RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=duration, endpoint=ep.url)


def make(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock, duration: int = 900) -> Refresher:
    return Refresher(identity, request(ep, duration), clock=clock, wait=lambda s: None, policy=POLICY)


def test_margin_is_proportional_to_the_session_length() -> None:
    assert refresh_margin(900) == 300
    assert refresh_margin(3600) == 1200
    assert refresh_margin(43200) == 14400
    # botocore's fixed 15/10 minute windows would refresh 900-second sessions on every call
    assert botocore_windows(900) == (300, 150)
    assert botocore_windows(3600) == (900, 600)
    assert botocore_windows(43200) == (900, 600)


def test_refreshes_ahead_of_expiry_not_before(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    r = make(identity, ep, clock)
    first = r.get()
    assert ep.state.sessions_created == 1
    assert r.get() is first and r.current() is first
    assert r.refresh_due_at() == first.expiration - dt.timedelta(seconds=300)  # 900 s session: 300 s left
    assert r.tick() == 60  # sleeps are bounded so that a suspend/resume is noticed
    clock.advance(590)
    r.tick()
    assert ep.state.sessions_created == 1
    clock.advance(15)
    r.tick()
    assert ep.state.sessions_created == 2
    assert r.current() is not None and r.current() != first
    assert r.generation == 2
    r.close()


def test_long_sessions_are_not_refreshed_constantly(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock
) -> None:
    r = make(identity, ep, clock, duration=3600)
    r.get()
    for _ in range(39):  # 39 minutes of ticks, one a minute; due with 20 of 60 minutes left
        clock.advance(60)
        r.tick()
    assert ep.state.sessions_created == 1
    clock.advance(60)
    r.tick()
    assert ep.state.sessions_created == 2
    r.close()


def test_single_flight(identity: IdentityOptions, pki: PKI, clock: FakeClock) -> None:
    with LocalEndpoint([pki.root.cert], clock=clock, delay=0.5) as slow:
        r = make(identity, slow, clock)
        results: list[object] = []
        barrier = threading.Barrier(16)

        def worker() -> None:
            barrier.wait()
            results.append(r.get())

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert slow.state.sessions_created == 1
        assert len(results) == 16 and all(c is results[0] for c in results)
        r.close()


def test_failure_keeps_last_good_backs_off_then_recovers(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    r = make(identity, ep, clock)
    good = r.get()
    clock.advance(650)  # refresh due
    ep.state.inject.extend([503, 503, 503])
    with caplog.at_level(logging.WARNING, "rolesanywhere_signer"):
        r.tick()
    assert r.current() is good  # last good credentials kept
    assert isinstance(r.last_error, EndpointError)
    failures = [rec for rec in caplog.records if "refreshing credentials failed" in rec.getMessage()]
    assert len(failures) == 1  # one log line per attempt
    seen = ep.state.requests_seen
    wait = r.seconds_until_next()
    assert 5 <= wait <= 10  # first backoff: jittered in [base/2, base]
    r.tick()
    r.tick()
    assert ep.state.requests_seen == seen  # no attempt before the backoff ends
    clock.advance(wait)
    r.tick()  # second failure
    wait2 = r.seconds_until_next()
    assert 10 <= wait2 <= 20
    clock.advance(wait2)
    r.tick()  # third failure
    clock.advance(r.seconds_until_next())
    r.tick()  # injections used up: success
    assert r.current() is not None and r.current() is not good
    assert r.last_error is None
    r.close()


def test_backoff_is_bounded_and_jittered(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    r = make(identity, ep, clock)
    r.get()
    ep.stop()
    clock.advance(650)
    waits = []
    for _ in range(12):
        r.tick()
        w = r.seconds_until_next()
        waits.append(w)
        clock.advance(w)
        if r.current() is None:
            break
    assert max(waits) <= POLICY.backoff_max
    assert min(waits) >= POLICY.min_interval
    assert len(set(waits)) > 3  # jittered, not a fixed schedule


def test_expired_credentials_are_never_handed_out(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock
) -> None:
    r = make(identity, ep, clock)
    r.get()
    ep.stop()
    clock.advance(901)  # a laptop resumed after the session ended: wall-clock expiry, not sleeps
    assert r.current() is None
    with pytest.raises(EndpointError):
        r.get()


def test_min_interval_between_attempts(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    r = make(identity, ep, clock)
    first = r.refresh(force=True)
    assert r.refresh(force=True) is first  # too soon: the cached credentials, no CreateSession
    assert ep.state.sessions_created == 1
    clock.advance(6)
    assert r.refresh(force=True) is not first
    assert ep.state.sessions_created == 2


def test_rotation_picks_up_new_files(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock, pki: PKI) -> None:
    r = make(identity, ep, clock)
    r.get()
    old_serial = ep.state.authorizations[-1].split("Credential=")[1].split("/")[0]
    before = file_fingerprint(identity)
    renewed = pki.leaf(cn="renewed")
    assert identity.certificate and identity.private_key
    Path(identity.certificate).write_bytes(renewed.pem)
    Path(identity.private_key).write_bytes(renewed.key_pem())
    assert file_fingerprint(identity) != before
    clock.advance(650)
    r.tick()
    new_serial = ep.state.authorizations[-1].split("Credential=")[1].split("/")[0]
    assert new_serial == str(renewed.cert.serial_number) != old_serial
    r.close()


def test_half_written_rotation_keeps_the_previous_key(
    identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock, pki: PKI
) -> None:
    r = make(identity, ep, clock)
    r.get()
    renewed = pki.leaf(cn="renewed")
    assert identity.certificate
    Path(identity.certificate).write_bytes(renewed.pem)  # the key file not yet replaced: mismatch
    clock.advance(650)
    r.tick()
    assert ep.state.sessions_created == 2  # signed with the previous, still valid, pair
    assert r.last_error is None
    r.close()


def test_reload_reopens_and_refreshes_now(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    opened: list[int] = []
    from rolesanywhere_signer.backends import load_signer

    def counting_load(opts: IdentityOptions):  # type: ignore[no-untyped-def]
        opened.append(1)
        return load_signer(opts)

    r = Refresher(identity, request(ep), clock=clock, wait=lambda s: None, policy=POLICY, load_signer=counting_load)
    r.get()
    r.tick()
    assert len(opened) == 1 and ep.state.sessions_created == 1  # the key stays open
    r.reload()
    r.tick()
    assert len(opened) == 2 and ep.state.sessions_created == 2
    r.close()


def test_wrong_password_is_never_retried(pki: PKI, tmp_path: Path, ep: LocalEndpoint, clock: FakeClock) -> None:
    leaf = pki.leaf()
    cert, key = tmp_path / "l.crt", tmp_path / "l.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem(password=b"right"))
    ident = IdentityOptions(certificate=str(cert), private_key=str(key), pkcs8_password=Secret("n0t-the-Pa55"))
    r = make(ident, ep, clock)
    with pytest.raises(SecretError):
        r.get()
    for _ in range(5):
        clock.advance(600)
        r.tick()
    assert r.attempts == 1
    assert "n0t-the-Pa55" not in repr(r.last_error)


def test_certificate_expiry_warnings(
    pki: PKI, tmp_path: Path, ep: LocalEndpoint, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # start at the next noon UTC: the warning is daily by UTC date, and no step below may cross a midnight
    noon = clock.now.replace(hour=12, minute=0, second=0, microsecond=0)
    clock.advance((noon - clock.now).total_seconds() % 86400)
    start = clock.now - dt.timedelta(days=40)
    leaf = pki.leaf(not_before=start, not_after=start + dt.timedelta(days=50))  # 10 of 50 days left: 20%
    cert, key = tmp_path / "w.crt", tmp_path / "w.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    r = make(IdentityOptions(certificate=str(cert), private_key=str(key)), ep, clock, duration=43200)

    def warnings() -> list[str]:
        return [x.getMessage() for x in caplog.records if "certificate" in x.getMessage() and x.levelname == "WARNING"]

    with caplog.at_level(logging.WARNING, "rolesanywhere_signer"):
        r.get()
        r.tick()
        r.tick()
        assert len(warnings()) == 1 and "life left" in warnings()[0]
        clock.advance(3 * 86400 + 60)  # 7 days left: daily from now on
        r.tick()
        r.tick()
        assert len(warnings()) == 2 and "expires in" in warnings()[-1]
        # an hour later, but never past midnight UTC (the warning is daily by UTC date)
        end_of_day = clock.now.replace(hour=23, minute=59, second=59, microsecond=0)
        clock.advance(min(3600.0, (end_of_day - clock.now).total_seconds()))
        r.tick()
        assert len(warnings()) == 2  # the same day: no repeat
        clock.advance(86400)
        r.tick()
        assert len(warnings()) == 3
    r.close()


def test_background_thread_stops_cleanly(identity: IdentityOptions, ep: LocalEndpoint) -> None:
    r = Refresher(identity, request(ep), policy=POLICY)
    r.refresh()
    r.start()
    r.close()
    assert not any(t.name == "credential-refresher" and t.is_alive() for t in threading.enumerate())


def test_a_broken_signer_is_replaced_not_fatal(identity: IdentityOptions, ep: LocalEndpoint, clock: FakeClock) -> None:
    """A backend bug (an exception that is not a SignerError) reopens the key instead of ending serve."""
    from rolesanywhere_signer.backends import load_signer

    opened: list[object] = []

    class Broken:
        def __init__(self, real: object) -> None:
            self.real = real
            self.certificate = real.certificate  # type: ignore[attr-defined]
            self.chain = real.chain  # type: ignore[attr-defined]
            self.algorithm = real.algorithm  # type: ignore[attr-defined]

        def sign(self, data: bytes, digest: str = "sha256") -> bytes:
            raise AttributeError("'NoneType' object has no attribute 'sign'")

        def close(self) -> None:
            pass

    def load(opts: IdentityOptions):  # type: ignore[no-untyped-def]
        real = load_signer(opts)
        opened.append(real)
        return Broken(real) if len(opened) == 1 else real

    r = Refresher(identity, request(ep), clock=clock, wait=lambda s: None, policy=POLICY, load_signer=load)
    creds = r.get()  # the first signer breaks; the same attempt opens the key again and succeeds
    assert creds is not None and len(opened) == 2 and r.attempts == 1
    r.close()


def test_reload_after_a_refused_password_tries_once_more_only(
    pki: PKI, tmp_path: Path, ep: LocalEndpoint, clock: FakeClock
) -> None:
    leaf = pki.leaf()
    cert, key = tmp_path / "l.crt", tmp_path / "l.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem(password=b"right"))
    ident = IdentityOptions(certificate=str(cert), private_key=str(key), pkcs8_password=Secret("n0t-the-Pa55"))
    r = make(ident, ep, clock)
    with pytest.raises(SecretError):
        r.get()
    r.reload()  # SIGHUP: one new attempt (the password source may have been fixed)...
    r.tick()
    assert r.attempts == 2
    for _ in range(5):  # ...but a refused one is not tried again on its own
        clock.advance(600)
        r.tick()
    assert r.attempts == 2


def test_current_on_the_real_clock_follows_each_credentials_deadline(
    identity: IdentityOptions, ep: LocalEndpoint
) -> None:
    """With the default clock, current() compares epoch seconds (serve asks on every answer):
    still right at the deadline, and never pairs new credentials with an old deadline."""
    from rolesanywhere_signer.credentials import Credentials

    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.5)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    issued = [Credentials("ASIASOON", "s1", "t1", soon), Credentials("ASIALATER", "s2", "t2", later)]
    r = Refresher(identity, request(ep), wait=lambda s: None, policy=POLICY, fetch=lambda signer: issued.pop(0))
    r.refresh()
    first = r.current()
    assert first is not None and first.access_key_id == "ASIASOON"
    while dt.datetime.now(dt.timezone.utc) < soon:
        threading.Event().wait(0.05)
    assert r.current() is None  # expired on the wall clock
    r.refresh(force=True)
    second = r.current()
    assert second is not None and second.access_key_id == "ASIALATER"
