"""``serve --metrics-listen``: Prometheus metrics per identity, read at scrape time.

prometheus_client (the ``metrics`` extra) formats and serves them; only ``serve`` imports this
module, so ``credential-process`` never pays for it. The collector reads each refresher's state
when scraped: nothing is updated on the request path and nothing can drift out of date. No
metric carries a secret: names, times and counts only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError, NotSupportedError

if TYPE_CHECKING:
    from .imds import ServedIdentity

PREFIX = "rolesanywhere_signer"


def parse_listen(value: str, allow_remote: bool) -> tuple[str, int]:
    """``PORT``, ``ADDRESS:PORT`` or ``[IPv6]:PORT``; loopback unless ``--allow-remote``."""
    import ipaddress

    from .imds import is_loopback

    text = value.strip()
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(
            f"--metrics-listen {value!r}: {host!r} is not an IP address", hint="use e.g. 127.0.0.1:9912"
        ) from None
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise InputError(f"--metrics-listen {value!r}: the port must be 1..65535", hint="use e.g. 127.0.0.1:9912")
    if not is_loopback(host) and not allow_remote:
        raise InputError(
            f"--metrics-listen {value}: {host} is not a loopback address",
            hint="add --allow-remote to let other hosts scrape it",
        )
    return host, int(port_text)


class _Collector:
    """Yields the metric families from the identities' current state (a prometheus_client Collector)."""

    def __init__(self, identities: Sequence[ServedIdentity]) -> None:
        self.identities = identities

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are built at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["identity"]
        cert = GaugeMetricFamily(
            f"{PREFIX}_certificate_not_after_seconds",
            "notAfter of the identity's certificate, as a Unix time",
            labels=labels,
        )
        expiry = GaugeMetricFamily(
            f"{PREFIX}_credentials_expiry_seconds",
            "Expiration of the credentials being served, as a Unix time (absent: none)",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            f"{PREFIX}_credentials_ready", "1 while valid credentials are being served, else 0", labels=labels
        )
        attempts = CounterMetricFamily(
            f"{PREFIX}_refresh_attempts", "CreateSession attempts by result", labels=["identity", "result"]
        )
        last = GaugeMetricFamily(
            f"{PREFIX}_last_success_seconds",
            "Time of the last successful CreateSession, as a Unix time (absent: none yet)",
            labels=labels,
        )
        renewal = GaugeMetricFamily(
            f"{PREFIX}_renewal_state",
            "Certificate renewal state of the identity (1 on the current state; 'off' without renewal)",
            labels=["identity", "state"],
        )
        for ident in self.identities:
            r = ident.refresher
            name = [ident.name]
            not_after = r.certificate_not_after
            if not_after is not None:
                cert.add_metric(name, not_after.timestamp())
            creds = r.current()
            if creds is not None:
                expiry.add_metric(name, creds.expiration.timestamp())
            ready.add_metric(name, 1.0 if creds is not None else 0.0)
            attempts.add_metric([ident.name, "success"], float(r.succeeded))
            attempts.add_metric([ident.name, "failure"], float(r.failed))
            obtained = r.obtained_at
            if obtained is not None:
                last.add_metric(name, obtained.timestamp())
            state = "off"
            if ident.renewal_state is not None:  # filled in by certificate renewal
                try:
                    state = ident.renewal_state()
                except Exception:  # noqa: BLE001 - a scrape must never fail on one identity's hook
                    state = "unknown"
            renewal.add_metric([ident.name, state], 1.0)
        yield from (cert, expiry, ready, attempts, last, renewal)


class MetricsServer:
    """The metrics endpoint: prometheus_client's WSGI server on its own daemon thread."""

    def __init__(self, identities: Sequence[ServedIdentity], host: str, port: int) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise NotSupportedError(
                "--metrics-listen needs prometheus_client", hint="pip install 'rolesanywhere-signer[metrics]'"
            ) from None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(identities))  # type: ignore[arg-type]
        try:
            self._httpd, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as e:
            raise InputError(
                f"cannot listen for metrics on {host} port {port}: {e.strerror or type(e).__name__}",
                hint="pick another --metrics-listen port",
            ) from None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
