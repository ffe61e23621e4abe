"""One owner of the current credentials, for ``serve``, ``update`` and the library API.

The refresher keeps the signer open between refreshes (one PIN per process for a token), calls
CreateSession well before expiry, and never lets two callers sign at once. Readers (the IMDS
request path) only call ``current()``, which never signs and never blocks on a refresh.

Timing uses the injected wall clock, not only sleeps: after a suspend/resume the next ``tick()``
sees the real expiry at once. Everything that waits goes through ``wait`` so tests never sleep.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .cancel import CancelToken
from .certs import now_utc
from .credentials import Credentials, mask_access_key
from .errors import AuthenticationError, BackendError, InputError, SecretError, SignerError
from .files import open_input, read_fd
from .options import IdentityOptions, RequestOptions
from .retry import RetryPolicy, backoff_delay
from .transport import DEFAULT_TIMEOUT, Cancelled

if TYPE_CHECKING:
    from .signer import Signer

log = logging.getLogger("rolesanywhere_signer.refresher")

Clock = Callable[[], datetime]
#: a fetch that turns an open signer into credentials (tests may count or slow it)
Fetch = Callable[["Signer"], Credentials]

#: refresh when this fraction of the session is left (a fixed 15 minutes would mean constant
#: refreshing with 900-second sessions and needlessly late ones with 12-hour sessions)
REFRESH_FRACTION = 1 / 3
#: a background loop never sleeps longer than this, so a resumed laptop notices expiry promptly
MAX_SLEEP = 60.0
#: certificate warnings: at this fraction of life left, then daily in the last days
CERT_WARN_FRACTION = 0.2
CERT_DAILY_DAYS = 7


#: the default clock (serve reads it on every answer: imported once, not per call)
_now = now_utc


#: botocore's IMDS fetcher, handed credentials with less than 10 min + 2..10 min of jitter left,
#: moves its own idea of their expiry out and asks again only up to 10 minutes later
#: (``ec2_credential_refresh_window`` 600 s); so whatever serve hands out must outlive that wait,
#: plus a minute of clock skew between this host, AWS and the client (docs/serve-update.md)
BOTOCORE_LONGEST_WAIT = 600.0
CLOCK_SKEW = 60.0
#: every credential served over IMDS or the container endpoint has at least this many seconds left
SERVED_MIN_LEFT = BOTOCORE_LONGEST_WAIT + CLOCK_SKEW
#: serve refreshes this long before ``SERVED_MIN_LEFT`` is reached, so that a slow or once-failed
#: CreateSession still lands before anything shorter would be handed out
SERVE_REFRESH_HEADROOM = 30.0


def refresh_margin(lifetime_seconds: float, floor: float = 30.0) -> float:
    """Seconds before expiry at which credentials of this lifetime should be replaced."""
    return max(floor, lifetime_seconds * REFRESH_FRACTION)


def botocore_windows(lifetime_seconds: float) -> tuple[float, float]:
    """(advisory, mandatory) refresh windows for botocore, scaled down for short sessions.

    botocore's defaults (15 / 10 minutes) refresh on every call with 900-second sessions.
    """
    advisory = min(15 * 60.0, refresh_margin(lifetime_seconds))
    mandatory = min(10 * 60.0, refresh_margin(lifetime_seconds) / 2)
    return advisory, mandatory


ATTEMPT_RETRY = RetryPolicy(attempts=2, total_seconds=10.0, base_delay=0.2, max_delay=1.0)


@dataclass(frozen=True)
class RefreshPolicy:
    #: never start two CreateSession attempts closer together than this (seconds)
    min_interval: float = 5.0
    #: failed attempts back off from ``backoff_base`` doubling up to ``backoff_max``, jittered
    backoff_base: float = 5.0
    backoff_max: float = 120.0
    #: retries inside one attempt (connection blips); the refresher's backoff handles the rest
    attempt_retry: RetryPolicy = ATTEMPT_RETRY
    #: never refresh with less than this many seconds left (serve: ``SERVE_MARGIN``)
    min_margin: float = 30.0


#: serve's margin: a 900 s session is refreshed with 690 s left, every 210 s
SERVE_MARGIN = SERVED_MIN_LEFT + SERVE_REFRESH_HEADROOM
SERVE_POLICY = RefreshPolicy(min_margin=SERVE_MARGIN)


def file_fingerprint(identity: IdentityOptions) -> tuple[object, ...]:
    """What identifies the certificate and key files on disk now (for rotation).

    Stat data (inode, size, mtime) plus a hash of the bytes: a copy over the file in the same
    second with the same size is still seen. URIs and TPM handles are not files: they stay as text.
    """
    parts: list[object] = []
    for value in (identity.certificate, identity.private_key, identity.intermediates):
        if not value or value.startswith("pkcs11:") or value.lower().startswith("handle:"):
            parts.append(value)
            continue
        try:
            fd, st = open_input(value, "file")  # non-blocking, regular files only
        except InputError as e:
            parts.append((value, e.message))
            continue
        try:
            digest = hashlib.sha256(read_fd(fd, 4 * 1024 * 1024)).hexdigest()
            parts.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, digest))
        except OSError as e:
            parts.append((value, e.errno))
        finally:
            os.close(fd)
    return tuple(parts)


class Refresher:
    """Current credentials for one identity and request, refreshed ahead of expiry."""

    def __init__(
        self,
        identity: IdentityOptions,
        request: RequestOptions,
        *,
        clock: Clock = _now,
        wait: Callable[[float], object] | None = None,
        policy: RefreshPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        load_signer: Callable[[IdentityOptions], Signer] | None = None,
        fetch: Fetch | None = None,
        rng: random.Random | None = None,
        label: str | None = None,
    ) -> None:
        self.identity = identity
        #: the identity's name in serve's config file: prefixes its log lines, "identity" in JSON logs
        self.label = label
        self._who = f"identity {label}: " if label else ""
        self._extra = {"identity": label} if label else None
        self.request = request
        self._clock = clock
        self._stop = threading.Event()
        # Wake-ups go through a pipe, not a threading.Event: a signal handler runs on the main
        # thread between any two bytecodes, possibly while that thread holds one of our locks (or
        # an Event's), so a handler may only set plain flags and write a byte (see post_signal).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._signalled_reload = False
        self._signalled_stop = False
        #: shuts the socket of an attempt in flight on stop (signal-safe: see cancel.py)
        self._cancel = CancelToken()
        #: set by serve/update around the first refresh on the main thread (see handle_signals)
        self.starting = False
        # the default wait returns early on stop(), reload() and signals; tests pass a no-op instead
        self._wait: Callable[[float], object] = wait or self._default_wait
        self.policy = policy or RefreshPolicy()
        self._timeout = timeout
        self._load_signer = load_signer
        self._fetch = fetch
        self._rng = rng or random.Random()
        self._state_lock = threading.Lock()  # guards the fields below; held only briefly
        self._flight = threading.Lock()  # held for a whole attempt: single-flight
        self._creds: Credentials | None = None
        self._deadline: tuple[Credentials, float] | None = None  # current()'s cache
        self._obtained: datetime | None = None
        self._last_error: SignerError | None = None
        self._fatal = False
        self._failures = 0
        self._last_attempt: datetime | None = None
        self._next_attempt: datetime | None = None
        self._signer: Signer | None = None
        self._fingerprint: tuple[object, ...] | None = None
        self._reload = False
        self._cert_warned_fraction = False
        self._cert_warned_day: str | None = None
        self._thread: threading.Thread | None = None
        #: incremented on every successful refresh (writers such as ``update`` compare it)
        self.generation = 0
        #: CreateSession attempts made (tests assert single-flight with it)
        self.attempts = 0
        #: attempts by outcome, for metrics
        self.succeeded = 0
        self.failed = 0

    # ---- reading -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    def current(self) -> Credentials | None:
        """The credentials if they are still valid right now; never signs, never waits on a refresh."""
        creds = self._creds  # one attribute read: atomic, no lock needed (serve calls this per answer)
        if creds is None:
            return None
        if self._clock is _now:
            # the real clock: compare epoch seconds instead of building a datetime per answer;
            # (credentials, deadline) is one attribute, so a refresh in another thread cannot
            # pair new credentials with the old deadline
            deadline = self._deadline
            if deadline is None or deadline[0] is not creds:
                deadline = self._deadline = (creds, creds.expiration.timestamp())
            return creds if time.time() < deadline[1] else None
        return None if creds.expiration <= self._clock() else creds

    @property
    def obtained_at(self) -> datetime | None:
        with self._state_lock:
            return self._obtained

    @property
    def last_error(self) -> SignerError | None:
        with self._state_lock:
            return self._last_error

    @property
    def certificate_not_after(self) -> datetime | None:
        """The open certificate's notAfter (None before the key was opened)."""
        signer = self._signer
        return signer.certificate.not_valid_after_utc if signer is not None else None

    def open(self) -> None:
        """Open the certificate and key now (serve checks its configuration before listening).

        A failure is kept as the last error, so that what is served (503) says why from the start.
        """
        with self._flight:
            try:
                self._open_signer()
            except SignerError as e:
                with self._state_lock:
                    self._last_error = e
                raise

    def lifetime(self) -> float:
        """Length of the current session in seconds (the requested duration before the first one)."""
        with self._state_lock:
            creds, obtained = self._creds, self._obtained
        if creds is None or obtained is None:
            return float(self.request.session_duration)
        return max(1.0, (creds.expiration - obtained).total_seconds())

    def refresh_due_at(self) -> datetime | None:
        """When the current credentials should be replaced (None: there are none)."""
        with self._state_lock:
            creds = self._creds
        if creds is None:
            return None
        return creds.expiration - timedelta(seconds=refresh_margin(self.lifetime(), self.policy.min_margin))

    def needs_refresh(self, min_remaining: float | None = None) -> bool:
        with self._state_lock:
            creds = self._creds
            reload = self._reload
        if creds is None or reload:
            return True
        margin = refresh_margin(self.lifetime(), self.policy.min_margin) if min_remaining is None else min_remaining
        return creds.seconds_left(self._clock()) <= margin

    # ---- refreshing ----------------------------------------------------------------------------

    def get(self, min_remaining: float | None = None) -> Credentials:
        """Valid credentials with more than ``min_remaining`` seconds left when possible.

        Refreshes synchronously when needed (single-flight). When that fails, credentials that are
        still valid are returned; with none, the error is raised.
        """
        if not self.needs_refresh(min_remaining):
            creds = self.current()
            if creds is not None:
                return creds
        try:
            return self.refresh(min_remaining=min_remaining)
        except SignerError:
            creds = self.current()
            if creds is not None:
                return creds
            raise

    def refresh(
        self, *, force: bool = False, min_remaining: float | None = None, log_failure: bool = True
    ) -> Credentials:
        """Call CreateSession now unless another caller just did (single-flight).

        A caller that waited for someone else's attempt takes its outcome instead of signing again.
        Raises the attempt's error (the last good credentials stay in place). ``log_failure=False``
        is for callers that report the raised error themselves (start-up), so it is said once.
        """
        if self._cancel.cancelled:
            raise Cancelled("cancelled: shutting down")
        seen = self.attempts
        with self._flight:
            if self.attempts != seen:  # someone else attempted while we waited for the lock
                creds = self.current()
                if creds is not None and not self.needs_refresh(min_remaining):
                    return creds
                err = self.last_error
                if err is not None:
                    raise err
            if not force and not self.needs_refresh(min_remaining):
                creds = self.current()
                if creds is not None:
                    return creds
            now = self._clock()
            with self._state_lock:
                last, fatal, err, reload = self._last_attempt, self._fatal, self._last_error, self._reload
            if fatal and err is not None and not reload:
                raise err  # a refused PIN or password is never retried on its own
            if last is not None and (now - last).total_seconds() < self.policy.min_interval:
                # too soon after the previous attempt: do not hammer the endpoint or the token
                creds = self.current()
                if creds is not None:
                    return creds
                if err is not None:
                    raise err
            return self._attempt(now, log_failure)

    def _attempt(self, now: datetime, log_failure: bool = True) -> Credentials:
        self.attempts += 1
        with self._state_lock:
            self._last_attempt = now
        try:
            try:
                creds = self._fetch_once()
            except Cancelled:
                raise
            except SignerError:
                raise
            except Exception:  # a broken signer object (a backend bug): open the key afresh, once
                log.debug("unexpected error during refresh; opening the key again", exc_info=True)
                self._reload = True
                try:
                    creds = self._fetch_once()
                except SignerError:
                    raise
                except Exception as bug:  # a backend bug must not end serve or update
                    if self._cancel.cancelled:
                        raise Cancelled("cancelled: shutting down") from None
                    log.debug("unexpected error during refresh", exc_info=True)
                    self._reload = True
                    raise BackendError(
                        f"refreshing failed unexpectedly ({type(bug).__name__})",
                        hint="run with --debug and report it",
                    ) from None
        except Cancelled:
            raise  # a shutdown, not a failure: nothing to count, back off from or log
        except SignerError as e:
            if self._cancel.cancelled:
                raise Cancelled("cancelled: shutting down") from None
            fatal = isinstance(e, (AuthenticationError, SecretError))
            with self._state_lock:
                self._failures += 1
                self.failed += 1
                self._last_error = e
                self._fatal = fatal
                if fatal:
                    self._reload = False  # a reload that met a refused PIN must not try it again
                self._next_attempt = self._clock() + timedelta(seconds=self._backoff())
            # one line per failed attempt; the error text never carries a secret
            (log.warning if log_failure else log.debug)(
                "%srefreshing credentials failed (attempt %d): %s%s",
                self._who,
                self._failures,
                e.diagnostics(),
                "; not retrying until reloaded (SIGHUP)" if fatal else "",
                extra=self._extra,
            )
            raise
        obtained = self._clock()
        with self._state_lock:
            self._creds = creds
            self._obtained = obtained
            self._failures = 0
            self._last_error = None
            self._fatal = False
            self._next_attempt = None
            self.generation += 1
            self.succeeded += 1
        log.info(
            "%snew credentials %s valid until %s",
            self._who,
            mask_access_key(creds.access_key_id),
            creds.expiration_text(),
            extra=self._extra,
        )
        return creds

    def _fetch_once(self) -> Credentials:
        signer = self._open_signer()
        return self._fetch(signer) if self._fetch else self._create_session(signer)

    def _create_session(self, signer: Signer) -> Credentials:
        from .client import create_session

        return create_session(
            signer,
            self.request,
            clock=self._clock,
            retry=self.policy.attempt_retry,
            timeout=self._timeout,
            cancel=self._cancel,
        )

    def _backoff(self) -> float:
        # jitter between half and all of the ceiling, never below the minimum interval
        delay = backoff_delay(
            self._failures, self.policy.backoff_base, self.policy.backoff_max, self._rng, min_fraction=0.5
        )
        return max(self.policy.min_interval, delay)

    def _open_signer(self) -> Signer:
        """The open signer, re-opened when a reload was asked for or the files changed (rotation)."""
        fingerprint = file_fingerprint(self.identity)
        if self._signer is not None and not self._reload and fingerprint == self._fingerprint:
            return self._signer
        if self._signer is not None:
            log.info(
                "%scertificate or key changed (or reload asked): opening %s again",
                self._who,
                self.identity.key_source(),
                extra=self._extra,
            )
        load: Callable[[IdentityOptions], Signer]
        if self._load_signer is not None:
            load = self._load_signer
        else:
            from .backends import load_signer as load
        try:
            new = load(self.identity)
        except SignerError as e:
            old = self._signer
            if old is None or isinstance(e, (AuthenticationError, SecretError)):
                raise
            if old.certificate.not_valid_after_utc <= self._clock():
                raise
            # a rotation caught half-written: keep signing with the previous files; the changed
            # fingerprint makes the next due refresh try again (an explicit reload is not repeated)
            log.warning(
                "%scannot open the changed certificate or key yet (%s); using the previous one",
                self._who,
                e.diagnostics(),
                extra=self._extra,
            )
            self._reload = False
            return old
        old, self._signer, self._fingerprint, self._reload = self._signer, new, fingerprint, False
        self._cert_warned_fraction = False
        self._cert_warned_day = None
        if old is not None:
            try:
                old.close()
            except Exception as e:  # noqa: BLE001 - a failed close must not lose the new signer
                log.debug("closing the previous signer failed: %s", type(e).__name__)
        return new

    def reload(self) -> None:
        """Re-open the certificate and key on the next refresh and refresh soon (SIGHUP)."""
        with self._state_lock:
            self._reload = True
            self._fatal = False
            self._last_attempt = None
            self._next_attempt = None
        self._poke()

    def post_signal(self, what: str) -> None:
        """From a signal handler: ask for a ``reload`` or a ``stop``. Takes no lock, logs nothing."""
        if what == "reload":
            self._signalled_reload = True
        else:
            self._signalled_stop = True
            self._cancel.cancel()  # an attempt in flight (maybe on this very thread) ends now
        self._poke()

    def take_signals(self) -> None:
        """Act on what signal handlers asked for, outside signal context (locks and logging are safe)."""
        if self._signalled_stop:
            self._signalled_stop = False
            self.request_stop()
        if self._signalled_reload:
            self._signalled_reload = False
            log.warning("SIGHUP: reloading the certificate and key")
            self.reload()

    def _poke(self) -> None:
        w = self._wake_w
        if w < 0:
            return  # closed
        try:
            os.write(w, b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or already closed

    # ---- certificate expiry warnings -----------------------------------------------------------

    def check_certificate(self) -> None:
        """Warn at 20% of the certificate's life left, then once a day in its last 7 days."""
        signer = self._signer
        if signer is None:
            return
        cert = signer.certificate
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        now = self._clock()
        left = (not_after - now).total_seconds()
        life = max(1.0, (not_after - not_before).total_seconds())
        when = f"{not_after:%Y-%m-%d %H:%M} UTC"
        if left <= CERT_DAILY_DAYS * 86400:
            day = now.strftime("%Y-%m-%d")
            if self._cert_warned_day != day:
                self._cert_warned_day = day
                self._cert_warned_fraction = True
                log.warning(
                    "%sthe certificate expires in %.1f days (%s): renew it; serve/update pick up the new file",
                    self._who,
                    max(0.0, left / 86400),
                    when,
                    extra=self._extra,
                )
        elif left <= CERT_WARN_FRACTION * life and not self._cert_warned_fraction:
            self._cert_warned_fraction = True
            log.warning(
                "%sthe certificate has %d%% of its life left (expires %s): plan its renewal",
                self._who,
                left * 100 // life,
                when,
                extra=self._extra,
            )

    # ---- background loop -----------------------------------------------------------------------

    def tick(self) -> float:
        """One step of the background loop: refresh if due; return seconds until the next step."""
        self.take_signals()
        now = self._clock()
        with self._state_lock:
            next_attempt = self._next_attempt
            fatal = self._fatal and not self._reload
        if not fatal and self.needs_refresh() and (next_attempt is None or now >= next_attempt):
            try:
                self.refresh()
            except SignerError:
                pass  # logged in _attempt; the last good credentials stay until they expire
        self.check_certificate()
        return self.seconds_until_next(now=self._clock())

    def seconds_until_next(self, now: datetime | None = None) -> float:
        now = now or self._clock()
        with self._state_lock:
            next_attempt = self._next_attempt
            fatal = self._fatal and not self._reload
        if fatal:
            return MAX_SLEEP
        if next_attempt is not None:
            delay = (next_attempt - now).total_seconds()
        else:
            due = self.refresh_due_at()
            delay = 0.0 if due is None else (due - now).total_seconds()
        return min(MAX_SLEEP, max(0.0, delay))

    def run(self) -> None:
        """Loop until ``stop()``: tick, then wait (bounded, so wall-clock jumps are noticed)."""
        while not self._stop.is_set():
            delay = self.tick()
            if self._stop.is_set():
                break
            self._wait(max(0.05, delay))

    def start(self) -> Refresher:
        self._thread = threading.Thread(target=self.run, name="credential-refresher", daemon=True)
        self._thread.start()
        return self

    def _default_wait(self, seconds: float) -> None:
        import select

        # a poke that lands after the drain stays in the pipe and ends the next wait at once,
        # so no reload() or signal is ever swallowed
        readable, _, _ = select.select([self._wake_r], [], [], seconds)
        if readable:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except OSError:
                pass  # drained (EAGAIN)
        self.take_signals()

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``; ``reload()`` and ``stop()`` end the wait early."""
        self._wait(seconds)

    def request_stop(self) -> None:
        """Ask the loop to end without waiting for it (signal handlers use ``post_signal``)."""
        self._stop.set()
        self._cancel.cancel()
        self._poke()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            # the cancelled attempt ends at once; a key backend stuck in a call cannot be
            # interrupted, and the daemon thread must not hold up the process's exit
            self._thread.join(timeout=1.5)

    def close(self) -> None:
        """Stop the loop and release the signer (token sessions, TPM handles)."""
        self.stop()
        if not self._flight.acquire(timeout=0.3):
            log.debug("an attempt is still in a key backend call; leaving the signer to process exit")
        else:
            try:
                signer, self._signer = self._signer, None
            finally:
                self._flight.release()
            if signer is not None:
                signer.close()
        # -1 first: a late signal then pokes nothing, never a reused descriptor number
        w, self._wake_w = self._wake_w, -1
        if w >= 0:
            os.close(w)
            os.close(self._wake_r)


def describe_error(err: SignerError | None) -> str:
    return err.diagnostics() if err is not None else "no credentials have been obtained yet"


def handle_signals(*refreshers: Refresher) -> None:
    """SIGTERM/SIGINT: clean shutdown; SIGHUP: re-open the certificate and key (of every refresher).

    The handlers only post to the refreshers (no locks, no logging): the loops act on it. A stop
    also cancels the attempt in flight (cancel.py). While a refresher's ``starting`` is set (its
    key opening or first CreateSession, on the main thread) a stop also raises ``Cancelled`` where
    the main thread is, as Python's own SIGINT handler would: a PIN prompt must not outlive Ctrl-C.
    """
    import signal

    def stop(signum: int, frame: object) -> None:
        starting = False
        for refresher in refreshers:
            refresher.post_signal("stop")
            if refresher.starting:
                refresher.starting = False  # once: the unwinding code must not be interrupted again
                starting = True
        if starting:
            raise Cancelled("cancelled: shutting down")

    def reload(signum: int, frame: object) -> None:
        for refresher in refreshers:
            refresher.post_signal("reload")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
