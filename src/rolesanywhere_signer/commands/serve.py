"""``serve``: an IMDSv2 (and container credentials) endpoint fed by a background refresher."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..cliargs import debug_parent, identity_parent, log_parent, request_parent
from ..enroll.cliargs import renewal_parent

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ..imds import ServedIdentity
    from ..serve_config import IdentitySpec

DEFAULT_PORT = 9911


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[
            identity_parent(),
            request_parent(required=False),
            renewal_parent(long_running=True),
            log_parent(),
            debug_parent(),
        ],
        help="serve credentials like the EC2 instance metadata service (IMDSv2)",
        description="Obtain credentials, keep them fresh in the background, and serve them over IMDSv2 "
        "(AWS_EC2_METADATA_SERVICE_ENDPOINT) and a container credentials endpoint.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    p.add_argument(
        "--hop-limit",
        type=int,
        default=1,
        metavar="N",
        help="IP TTL / IPv6 hop limit of answers, 1..255 (default 1, as EC2)",
    )
    p.add_argument(
        "--bind",
        action="append",
        metavar="ADDRESS",
        help="address to listen on, repeatable (default 127.0.0.1 and ::1) [ours]",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --bind and peers that are not loopback [ours]",
    )
    p.add_argument(
        "--container-token-file",
        metavar="PATH",
        help="enable GET /credentials and write its random Authorization token here (0600), "
        "for AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE [ours]",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="serve several named identities from a TOML file ([identities.NAME] tables, keys spelled as "
        "these flags); instead of the identity and request flags [ours]",
    )
    p.add_argument(
        "--exit-on-failure",
        action="store_true",
        help="make the first CreateSession before listening and exit if it fails, instead of answering 503 "
        "and retrying [ours]",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="[ADDRESS:]PORT",
        help="serve Prometheus metrics here (address default 127.0.0.1; needs the metrics extra) [ours]",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        metavar="N",
        help="open connections at most, 1..65536; past it the oldest idle one is dropped (default %(default)s) [ours]",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time a client has to send its request headers, 0.1..60 (default %(default)s) [ours]",
    )
    p.set_defaults(func=run)


#: flags that describe the one identity of the command line: not allowed together with --config
IDENTITY_FLAGS = (
    "certificate",
    "private_key",
    "intermediates",
    "pkcs11_uri",
    "pkcs11_lib",
    "tpm_key_password_file",
    "tcti",
    "trust_anchor_arn",
    "profile_arn",
    "role_arn",
    "role_session_name",
    "region",
    "endpoint",
    "container_token_file",
)


def check_binds(binds: list[str] | None, allow_remote: bool) -> list[str]:
    import ipaddress
    import logging

    from ..errors import UsageError
    from ..imds import DEFAULT_BIND, is_loopback

    if not binds:
        return list(DEFAULT_BIND)
    out: list[str] = []
    for b in binds:
        value = b.strip().strip("[]")
        if value.lower() == "localhost":
            value = "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise UsageError(f"--bind {b!r} is not an IP address", hint="use e.g. 127.0.0.1 or ::1") from None
        if not is_loopback(value):
            if not allow_remote:
                raise UsageError(
                    f"--bind {b} is not a loopback address",
                    hint="add --allow-remote to serve credentials to other hosts, knowing that anyone "
                    "who can reach it gets them",
                )
            logging.getLogger("rolesanywhere_signer.serve").warning(
                "serving credentials on non-loopback address %s: every host that can reach it can take them",
                value,
            )
        if value not in out:
            out.append(value)
    return out


def identity_specs(args: argparse.Namespace) -> list[IdentitySpec]:
    """The identities to serve: from ``--config``, or the one the flags describe."""
    from ..arn import validate_request
    from ..cliargs import identity_from_args, request_from_args
    from ..errors import UsageError
    from ..serve_config import IdentitySpec, load_config

    if args.config:
        given = [f"--{f.replace('_', '-')}" for f in IDENTITY_FLAGS if getattr(args, f, None)]
        if given:
            raise UsageError(f"{given[0]} cannot be used with --config", hint="set it in the config file")
        return list(load_config(args.config))
    missing = [
        f"--{f}" for f in ("trust-anchor-arn", "profile-arn", "role-arn") if not getattr(args, f.replace("-", "_"))
    ]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)}", hint="or give --config FILE")
    request = request_from_args(args)
    validate_request(request)
    return [IdentitySpec("default", identity_from_args(args), request, args.container_token_file, True)]


def status_text(identities: Sequence[ServedIdentity], now: datetime) -> str:
    """The ``STATUS=`` line: per identity, what is served and until when (never a secret)."""
    parts = []
    for ident in identities:
        r = ident.refresher
        creds = r.current()
        err = r.last_error
        if creds is not None:
            text = f"credentials valid until {creds.expiration_text()}"
        elif r.generation == 0:
            text = "no credentials yet"
        else:
            text = "credentials expired"
        not_after = r.certificate_not_after
        if not_after is not None:
            text += f", certificate expires in {max(0.0, (not_after - now).total_seconds()) / 86400:.1f} d"
        if err is not None:
            text += f", last error: {err.diagnostics()}"
        parts.append(f"{ident.name}: {text}" if len(identities) > 1 else text)
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import time

    from ..cli import use_log_format
    from ..enroll.cliargs import renew_options_from_args
    from ..enroll.install import repair_interrupted_switch
    from ..enroll.schedule import RenewalThread
    from ..enroll.schedule import start_for as start_renewal
    from ..errors import InputError, SignerError, UsageError
    from ..files import write_private_file
    from ..hardening import harden_process, wipe
    from ..imds import CredentialServer, ServeConfig, ServedIdentity, new_container_token, role_name_of
    from ..refresher import SERVE_POLICY, Refresher, handle_signals
    from ..systemd import Notifier, listen_sockets
    from ..transport import Cancelled

    use_log_format(args.log_format, args.debug)
    log = logging.getLogger("rolesanywhere_signer.serve")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range", hint="use 1..65535")
    if not 1 <= args.hop_limit <= 255:
        raise UsageError(f"--hop-limit {args.hop_limit} is out of range", hint="use 1..255")
    if not 1 <= args.max_connections <= 65536:
        raise UsageError(f"--max-connections {args.max_connections} is out of range", hint="use 1..65536")
    if not 0.1 <= args.header_timeout <= 60:  # also refuses nan
        raise UsageError(f"--header-timeout {args.header_timeout:g} is out of range", hint="use 0.1..60 seconds")
    binds = check_binds(args.bind, args.allow_remote)
    metrics_at = None
    if args.metrics_listen is not None:
        from ..metrics import parse_listen

        metrics_at = parse_listen(args.metrics_listen, args.allow_remote)
    renewal = renew_options_from_args(args)
    if renewal is not None and args.config:
        raise UsageError(
            "certificate renewal flags cannot be used with --config", hint="renew with the command-line identity"
        )
    specs = identity_specs(args)
    several = bool(args.config)
    if renewal is not None:
        repair_interrupted_switch(specs[0].identity)
    harden_process()  # before any secret (PIN, key, token, credentials) is in memory
    renewing: list[RenewalThread] = []  # the renewal thread, once started (read by the metrics hook)

    def renewal_state() -> str:
        if renewal is None:
            return "off"
        if not renewing:
            return "starting"
        schedule = renewing[0].schedule
        return "failing" if schedule.failures else "scheduled"

    sockets = listen_sockets()  # socket activation: systemd already listens for us
    if sockets:
        from ..imds import is_loopback

        binds = [str(s.getsockname()[0]) for s in sockets]
        for address in binds:
            if not is_loopback(address) and not args.allow_remote:
                raise UsageError(
                    f"the socket from systemd listens on {address}, not a loopback address",
                    hint="add --allow-remote to serve credentials to other hosts",
                )
    refreshers: list[Refresher] = []
    identities: list[ServedIdentity] = []
    for spec in specs:
        r = Refresher(
            spec.identity, spec.request, timeout=args.timeout, policy=SERVE_POLICY, label=spec.name if several else None
        )
        refreshers.append(r)
        # a bytearray, overwritten on the way out: the one copy of the token this code controls
        token = bytearray(new_container_token().encode()) if spec.container_token_file else None
        identities.append(
            ServedIdentity(
                spec.name,
                r,
                role_name_of(spec.request.role_arn),
                token,
                spec.default,
                renewal_state=renewal_state if renewal is not None else None,
            )
        )
    default = next((i for i in identities if i.default), None)
    config = ServeConfig(
        role_name=default.role_name if default is not None else "",
        binds=binds,
        port=int(sockets[0].getsockname()[1]) if sockets else args.port,
        hop_limit=args.hop_limit,
        allow_remote=args.allow_remote,
        container_token=default.container_token if default is not None else None,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
    )
    from ..imds_server import raise_nofile_limit

    raise_nofile_limit()  # systemd and shells default to a soft limit of 1024

    # a SIGHUP (a renewal hook) during start-up must not kill the process, as its default action
    # would: until the full handlers are in, it just asks for a reload
    def reload_soon(signum: int, frame: object) -> None:
        for r in refreshers:
            r.post_signal("reload")

    signal.signal(signal.SIGHUP, reload_soon)
    server = CredentialServer(refreshers[0], config, identities=identities)
    notifier = Notifier()
    metrics = None
    try:
        if sockets:
            server.adopt(sockets)
        else:
            server.bind()  # a busy port fails now, before any PIN prompt or CreateSession
        for spec, ident in zip(specs, identities, strict=True):
            if isinstance(ident.container_token, bytearray) and spec.container_token_file:
                write_private_file(spec.container_token_file, ident.container_token, what="container token file")
        # SIGTERM/SIGINT end serve (exit 0, within 2 s) from here on, even during a PIN prompt or the
        # first CreateSession (--exit-on-failure): those run with ``starting`` set, and a stop cancels them
        handle_signals(*refreshers)
        for r in refreshers:
            r.starting = True
        try:
            # the key and certificate are configuration: open them now, so a bad one ends serve at once
            # (with several identities, a broken one is reported and retried; the others serve)
            opened = 0
            for ident in identities:
                try:
                    ident.refresher.open()
                    opened += 1
                except SignerError as e:
                    if not several or args.exit_on_failure:
                        raise
                    log.warning(
                        "identity %s cannot be loaded (retrying): %s",
                        ident.name,
                        e.diagnostics(),
                        extra={"identity": ident.name},
                    )
            if opened == 0:
                raise InputError("no identity in the config file could be loaded", hint="see the lines above")
            if args.exit_on_failure:
                # the old start-up: nothing listens before every first CreateSession has worked
                for r in refreshers:
                    r.refresh(log_failure=False)
        except Cancelled:
            log.info("shutting down")
            return 0
        finally:
            for r in refreshers:
                r.starting = False
        if metrics_at is not None:
            from ..metrics import MetricsServer

            metrics = MetricsServer(identities, *metrics_at)
            log.info("metrics on %s port %d", metrics_at[0], metrics.port)
        server.start()
        # from here on requests are answered: 503 "no credentials yet" until a first CreateSession works
        for r in refreshers:
            r.start()
        if renewal is not None:
            started = start_renewal(renewal, specs[0].identity, specs[0].request, refreshers[0], timeout=args.timeout)
            if started is not None:
                renewing.append(started)
        log.info("serving credentials on %s port %d", " and ".join(server.addresses), server.port)
        notifier.send("READY=1")
        import gc

        # everything made so far (modules, the key, the listeners) lives as long as the process:
        # out of the collector's full passes, which would otherwise walk it all again under load
        gc.freeze()
        watchdog = notifier.watchdog_interval
        next_ping = 0.0
        next_status = 0.0
        while not any(r.stopping for r in refreshers):  # the refreshers' loops act on signals
            time.sleep(0.2 if watchdog is None else min(0.2, watchdog))
            for r in refreshers:
                r.take_signals()  # in case a refresher's thread is busy in a long CreateSession
            mono = time.monotonic()
            if watchdog is not None and mono >= next_ping and server.serving:  # a dead HTTP thread starves it
                notifier.send("WATCHDOG=1")
                next_ping = mono + watchdog
            if notifier.enabled and mono >= next_status:
                notifier.status(status_text(identities, refreshers[0].now()))
                next_status = mono + 1.0
        for r in refreshers:
            r.request_stop()
        notifier.send("STOPPING=1")
        log.info("shutting down")
    finally:
        for thread in renewing:
            thread.stop()
        server.close()
        if metrics is not None:
            metrics.close()
        for r in refreshers:
            r.close()
        notifier.close()
        for ident in identities:
            if isinstance(ident.container_token, bytearray):
                wipe(ident.container_token)
    return 0
