"""Renewal on schedule inside ``serve`` and ``update``.

Each step reads the certificate file afresh (a certificate replaced by hand moves the schedule),
renews once the renewal window is reached (shifted by a jitter of ±10 % of the time from issuance
to that window, so a fleet issued together does not renew together), backs off after a failure,
and once less than a tenth of the lifetime is left warns loudly every hour until a renewal
succeeds. It is never silent.

The state (issuer, next attempt, last result) is written beside the certificate as
``<certificate>.renewal.json`` so that ``doctor`` can show it.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import SignerError
from ..logs import get_logger
from .renew import Renewer, RenewOptions, current_certificate, due_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography import x509

    from ..checks import Check, Status
    from ..options import IdentityOptions, RequestOptions
    from ..refresher import Refresher

log = get_logger("rolesanywhere_signer.renew")

JITTER = 0.10
WARN_FRACTION = 0.10
WARN_EVERY = timedelta(hours=1)
BACKOFF_MIN = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
#: never sleep longer than this, so a resumed machine or a replaced file is noticed
MAX_SLEEP = 60.0
STATE_SUFFIX = ".renewal.json"


def state_path(certificate: str) -> str:
    return certificate + STATE_SUFFIX


@dataclass(frozen=True)
class RenewalState:
    issuer: str
    next_attempt: datetime | None
    last_attempt: datetime | None
    last_result: str | None
    failures: int

    def to_json(self) -> str:
        def iso(d: datetime | None) -> str | None:
            return d.strftime("%Y-%m-%dT%H:%M:%SZ") if d else None

        return json.dumps(
            {
                "issuer": self.issuer,
                "next_attempt": iso(self.next_attempt),
                "last_attempt": iso(self.last_attempt),
                "last_result": self.last_result,
                "failures": self.failures,
            }
        )


def read_state(certificate: str) -> dict[str, object] | None:
    """The state a running serve/update wrote (None: no renewal has been scheduled there)."""
    try:
        with open(state_path(certificate), "rb") as f:
            doc = json.loads(f.read(64 * 1024))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class RenewalSchedule:
    """Decides when to call ``Renewer.renew`` and says so; ``tick`` returns seconds to the next step."""

    def __init__(
        self,
        renewer: Renewer,
        *,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        on_renewed: Callable[[], None] | None = None,
        write_state: bool = True,
    ) -> None:
        from ..certs import now_utc

        self.renewer = renewer
        self._clock = clock or now_utc
        self._rng = rng or random.Random()
        self._on_renewed = on_renewed
        self._write_state = write_state
        self._serial: int | None = None
        self._planned: datetime | None = None
        self._retry_at: datetime | None = None
        self.failures = 0
        self.last_attempt: datetime | None = None
        self.last_result: str | None = None
        self._warned_at: datetime | None = None
        self.renewals = 0

    def next_attempt(self) -> datetime | None:
        return self._retry_at or self._planned

    def _plan(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(planned attempt, expiry) for the certificate on disk now; re-planned when it changes."""
        try:
            cert = current_certificate(self.renewer.identity)[0]
        except SignerError as e:
            self._say_failure(now, f"cannot read the certificate: {e.diagnostics()}")
            return None
        if cert.serial_number != self._serial:
            self._serial = cert.serial_number
            due = due_at(cert, self.renewer.options.before)
            life = cert.not_valid_after_utc - cert.not_valid_before_utc
            if due < cert.not_valid_before_utc + life / 2:
                # a --renew-before longer than half the lifetime would renew again and again
                log.warning(
                    "--renew-before %s is more than half of this certificate's lifetime; renewing at half-life",
                    self.renewer.options.before.describe(),
                )
                due = cert.not_valid_before_utc + life / 2
            # ±10 % of the wait from issuance to the renewal window, never before issuance
            wait = max(0.0, (due - cert.not_valid_before_utc).total_seconds())
            self._planned = due + timedelta(seconds=self._rng.uniform(-JITTER, JITTER) * wait)
            self._retry_at = None
            self.failures = 0
            self._warned_at = None
            log.info(
                "certificate serial %x: renewal planned for %s UTC",
                cert.serial_number,
                f"{self._planned:%Y-%m-%d %H:%M}",
            )
        assert self._planned is not None
        self._warn_if_late(cert, now)
        return self._planned, cert.not_valid_after_utc

    def _warn_if_late(self, cert: object, now: datetime) -> None:
        from cryptography import x509

        assert isinstance(cert, x509.Certificate)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        left = cert.not_valid_after_utc - now
        if left > life * WARN_FRACTION:
            return
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        log.warning(
            "RENEWAL OVERDUE: the certificate expires %s UTC (%.1f hours left, under a tenth of its lifetime) "
            "and has not been renewed%s",
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}",
            max(0.0, left.total_seconds() / 3600),
            f"; last attempt: {self.last_result}" if self.last_result else "",
        )

    def _say_failure(self, now: datetime, text: str) -> None:
        self.failures += 1
        self.last_attempt = now
        self.last_result = f"failed: {text}"
        backoff = min(BACKOFF_MAX, BACKOFF_MIN * (2 ** min(self.failures - 1, 10)))
        backoff = backoff * self._rng.uniform(0.5, 1.0)
        self._retry_at = now + max(BACKOFF_MIN / 2, backoff)
        log.warning("certificate renewal failed (attempt %d, next in %s): %s", self.failures, _span(backoff), text)

    def tick(self) -> float:
        now = self._clock()
        plan = self._plan(now)
        if plan is not None:
            planned, _ = plan
            attempt_at = self._retry_at or planned
            if now >= attempt_at:
                self.attempt(now)
        self.save()
        nxt = self.next_attempt()
        if nxt is None:
            return MAX_SLEEP
        return max(0.05, min(MAX_SLEEP, (nxt - self._clock()).total_seconds()))

    def attempt(self, now: datetime) -> None:
        self.last_attempt = now
        try:
            result = self.renewer.renew(force=True)
        except SignerError as e:
            self._say_failure(now, e.diagnostics())
            return
        except Exception as e:  # a bug in an issuer must not end serve or update
            log.debug("renewal failed unexpectedly", exc_info=True)
            self._say_failure(now, f"unexpected {type(e).__name__} (run with --debug and report it)")
            return
        self.last_result = result.message
        log.warning("certificate %s", result.message)  # loud on purpose: files changed under the service
        self.failures = 0
        self._retry_at = None
        self.renewals += 1
        if self._on_renewed is not None:
            self._on_renewed()
        self._plan(self._clock())

    def state(self) -> RenewalState:
        return RenewalState(
            self.renewer.options.describe(), self.next_attempt(), self.last_attempt, self.last_result, self.failures
        )

    def save(self) -> None:
        if not self._write_state or not self.renewer.identity.certificate:
            return
        from .install import write_temp

        path = state_path(self.renewer.identity.certificate)
        try:
            tmp = write_temp(path, self.state().to_json().encode(), 0o644)
            os.replace(tmp, path)
        except (SignerError, OSError) as e:
            log.debug("cannot write %s: %s", path, e)


def _span(d: timedelta) -> str:
    s = d.total_seconds()
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"


class RenewalThread:
    """Runs a schedule in the background until ``stop``."""

    def __init__(self, schedule: RenewalSchedule) -> None:
        self.schedule = schedule
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="certificate-renewal", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.schedule.tick()
            self._stop.wait(delay)

    def start(self) -> RenewalThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def start_for(
    options: RenewOptions | None,
    identity: IdentityOptions,
    request: RequestOptions,
    refresher: Refresher,
    *,
    timeout: float,
) -> RenewalThread | None:
    """Renewal for ``serve``/``update``: self-renewal uses the refresher's credentials, and a new
    certificate is put to use at once (the refresher re-opens the files and signs with it)."""
    if options is None:
        return None
    renewer = Renewer(identity, request, options, timeout=timeout, credentials=lambda: refresher.get())
    renewer.check_ready()
    schedule = RenewalSchedule(renewer, on_renewed=refresher.reload)
    log.info("certificate renewal through %s, %s before expiry", options.describe(), options.before.describe())
    return RenewalThread(schedule).start()


def renewal_check(certificate: str | None, now: datetime) -> Check:
    """``doctor``'s line on renewal: configured or not, the next attempt, the last result."""
    from ..checks import Check

    if not certificate or certificate.startswith("pkcs11:"):
        return Check("renewal", "pass", "not configured (renewal needs the certificate in a file)")
    try:
        cert = current_certificate_quiet(certificate)
    except SignerError:
        return Check("renewal", "warn", "the certificate cannot be read, so renewal cannot be planned")
    from .renew import DEFAULT_BEFORE

    when = due_at(cert, DEFAULT_BEFORE)
    state = read_state(certificate)
    if state is None:
        status: Status = "warn" if now >= when else "pass"
        return Check(
            "renewal",
            status,
            f"not configured in a running serve/update; a third of the lifetime is left from {when:%Y-%m-%d %H:%M} UTC "
            "(renew with `rolesanywhere-signer renew`, or serve/update --renew-ca-arn/--renew-command)",
        )
    try:
        written = datetime.fromtimestamp(os.stat(state_path(certificate)).st_mtime, tz=timezone.utc)
    except OSError:
        written = now
    failures = state.get("failures")
    detail = (
        f"configured: {state.get('issuer')}; next attempt {state.get('next_attempt') or 'not planned'}; "
        f"last result: {state.get('last_result') or 'none yet'} (as of {written:%Y-%m-%d %H:%M} UTC)"
    )
    return Check("renewal", "warn" if isinstance(failures, int) and failures > 0 else "pass", detail)


def current_certificate_quiet(certificate: str) -> x509.Certificate:
    from ..certs import load_certificate_file

    return load_certificate_file(certificate)[0]
