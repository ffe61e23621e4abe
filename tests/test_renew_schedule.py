"""The renewal schedule of serve/update on a hand-moved clock: jitter, backoff, the hourly warning."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from pathlib import Path

import pytest
from cryptography import x509

from rolesanywhere_signer.enroll.renew import Renewer, RenewOptions
from rolesanywhere_signer.enroll.schedule import RenewalSchedule, read_state
from rolesanywhere_signer.errors import InputError
from rolesanywhere_signer.options import IdentityOptions
from support.clock import FakeClock
from support.fake_issuer import FakeIssuer
from support.pki import PKI, now


def _setup(pki: PKI, tmp_path: Path, issuer: FakeIssuer, days: int = 30) -> tuple[IdentityOptions, Renewer]:
    start = now() - dt.timedelta(minutes=10)
    leaf = pki.leaf(not_before=start, not_after=start + dt.timedelta(days=days))
    cert, key, anchor = tmp_path / "host.crt", tmp_path / "host.key", tmp_path / "anchor.pem"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    anchor.write_bytes(pki.root.pem)
    identity = IdentityOptions(certificate=str(cert), private_key=str(key))
    options = RenewOptions(command="unused", trust_anchor_certificate=str(anchor), credentials="ambient")
    return identity, Renewer(identity, None, options, issuer=issuer)


def _cert(identity: IdentityOptions) -> x509.Certificate:
    assert identity.certificate
    return x509.load_pem_x509_certificates(Path(identity.certificate).read_bytes())[0]


def test_jitter_stays_within_ten_percent_and_spreads(pki: PKI, tmp_path: Path, clock: FakeClock) -> None:
    identity, renewer = _setup(pki, tmp_path, FakeIssuer(pki.root, days=60))
    cert = _cert(identity)
    due = cert.not_valid_after_utc - dt.timedelta(days=10)  # a third of 30 days
    wait = (due - cert.not_valid_before_utc).total_seconds()
    planned = set()
    for seed in range(30):
        s = RenewalSchedule(renewer, clock=clock, rng=random.Random(seed), write_state=False)
        s.tick()
        nxt = s.next_attempt()
        assert nxt is not None
        assert abs((nxt - due).total_seconds()) <= 0.1 * wait + 1
        planned.add(nxt)
    assert len(planned) > 20


def test_renews_when_due_and_calls_back(pki: PKI, tmp_path: Path, clock: FakeClock) -> None:
    issuer = FakeIssuer(pki.root, days=60)
    identity, renewer = _setup(pki, tmp_path, issuer)
    renewed: list[int] = []
    s = RenewalSchedule(renewer, clock=clock, rng=random.Random(1), on_renewed=lambda: renewed.append(1))
    s.tick()
    assert s.renewals == 0 and not issuer.csrs
    nxt = s.next_attempt()
    assert nxt is not None
    clock.now = nxt + dt.timedelta(seconds=1)
    s.tick()
    assert s.renewals == 1 and renewed == [1]
    assert _cert(identity).not_valid_after_utc > now() + dt.timedelta(days=55)  # the issuer keeps real time
    assert identity.certificate
    state = read_state(identity.certificate)
    assert state is not None and str(state["last_result"]).startswith("renewed")
    # the new certificate is planned afresh: nothing more happens now
    s.tick()
    assert s.renewals == 1


def test_failures_back_off_and_are_never_silent(
    pki: PKI, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = FakeIssuer(pki.root, days=60, error=InputError("the CA is unreachable"))
    identity, renewer = _setup(pki, tmp_path, issuer)
    s = RenewalSchedule(renewer, clock=clock, rng=random.Random(2))
    clock.now = _cert(identity).not_valid_after_utc - dt.timedelta(days=5)  # past the window and its jitter
    gaps = []
    with caplog.at_level(logging.WARNING, "rolesanywhere_signer"):
        for _ in range(6):
            s.tick()
            nxt = s.next_attempt()
            assert nxt is not None
            gaps.append((nxt - clock.now).total_seconds())
            clock.now = nxt
    assert len(issuer.csrs) == 6
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0] * 4  # doubling (jittered)
    assert max(gaps) <= 3600
    failures = [r for r in caplog.records if "certificate renewal failed" in r.getMessage()]
    assert len(failures) == 6 and "the CA is unreachable" in failures[-1].getMessage()
    assert identity.certificate
    state = read_state(identity.certificate)
    assert state is not None and state["failures"] == 6
    assert json.loads(json.dumps(state))["next_attempt"]


def test_hourly_loud_warning_under_a_tenth_of_the_lifetime(
    pki: PKI, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = FakeIssuer(pki.root, days=60, error=InputError("refused"))
    identity, renewer = _setup(pki, tmp_path, issuer)
    s = RenewalSchedule(renewer, clock=clock, rng=random.Random(3), write_state=False)
    clock.now = _cert(identity).not_valid_after_utc - dt.timedelta(days=2)  # under 3 days = a tenth
    with caplog.at_level(logging.WARNING, "rolesanywhere_signer"):
        for _ in range(12 * 3):  # three hours in 5-minute steps
            s.tick()
            clock.advance(300)
    loud = [r for r in caplog.records if "RENEWAL OVERDUE" in r.getMessage()]
    assert len(loud) == 3


def test_a_certificate_replaced_by_hand_is_planned_afresh(pki: PKI, tmp_path: Path, clock: FakeClock) -> None:
    identity, renewer = _setup(pki, tmp_path, FakeIssuer(pki.root, days=60))
    s = RenewalSchedule(renewer, clock=clock, rng=random.Random(4), write_state=False)
    s.tick()
    first = s.next_attempt()
    leaf = pki.leaf(not_before=now(), days=90, key=None)
    assert identity.certificate
    # same key, longer certificate, put in place by hand
    from cryptography.hazmat.primitives import serialization

    assert identity.private_key
    key = serialization.load_pem_private_key(Path(identity.private_key).read_bytes(), None)
    from support.pki import issue

    leaf = issue("by hand", issuer=pki.root, key=key, days=90)
    Path(identity.certificate).write_bytes(leaf.pem)
    s.tick()
    second = s.next_attempt()
    assert first is not None and second is not None and second > first + dt.timedelta(days=30)


def test_doctor_shows_renewal_state(pki: PKI, tmp_path: Path) -> None:
    from support.util import run_cli

    def renewal_line(cert: Path, key: Path) -> dict[str, str]:
        proc = run_cli(["doctor", "--certificate", cert, "--private-key", key, "--json"])
        checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
        line: dict[str, str] = checks["renewal"]
        return line

    start = now() - dt.timedelta(days=25)
    leaf = pki.leaf(not_before=start, not_after=start + dt.timedelta(days=30))
    cert, key = tmp_path / "h.crt", tmp_path / "h.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    line = renewal_line(cert, key)
    assert line["status"] == "warn" and "not configured" in line["detail"]  # inside the last third
    identity = IdentityOptions(certificate=str(cert), private_key=str(key))
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki.root.pem)
    options = RenewOptions(command="step ca sign", trust_anchor_certificate=str(anchor), credentials="ambient")
    issuer = FakeIssuer(pki.root, error=InputError("the CA said no"))
    s = RenewalSchedule(Renewer(identity, None, options, issuer=issuer), rng=random.Random(5))
    s.tick()
    line = renewal_line(cert, key)
    assert line["status"] == "warn"
    assert "configured: command step ca sign" in line["detail"] and "the CA said no" in line["detail"]
    assert "next attempt 20" in line["detail"]


def test_a_renew_before_longer_than_the_lifetime_does_not_renew_in_a_loop(
    pki: PKI, tmp_path: Path, clock: FakeClock
) -> None:
    from rolesanywhere_signer.enroll.renew import parse_before

    issuer = FakeIssuer(pki.root, days=60)
    identity, renewer = _setup(pki, tmp_path, issuer)
    import dataclasses

    options = dataclasses.replace(renewer.options, before=parse_before("90d"))
    renewer = Renewer(identity, None, options, issuer=issuer)
    s = RenewalSchedule(renewer, clock=clock, rng=random.Random(6), write_state=False)
    s.tick()
    assert s.renewals == 0  # planned at half-life, not now
    nxt = s.next_attempt()
    assert nxt is not None and nxt > clock.now + dt.timedelta(days=10)
