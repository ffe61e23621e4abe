"""``serve``: an IMDSv2 (and container credentials) endpoint fed by a background refresher."""

from __future__ import annotations

import argparse
from typing import Any

from ..cliargs import debug_parent, identity_parent, request_parent
from ..enroll.cliargs import renewal_parent

DEFAULT_PORT = 9911


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), request_parent(), renewal_parent(long_running=True), debug_parent()],
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
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import time

    from ..arn import validate_request
    from ..cliargs import identity_from_args, request_from_args
    from ..enroll.cliargs import renew_options_from_args
    from ..enroll.install import repair_interrupted_switch
    from ..enroll.schedule import start_for as start_renewal
    from ..errors import UsageError
    from ..files import write_private_file
    from ..hardening import harden_process, wipe
    from ..imds import CredentialServer, ServeConfig, new_container_token, role_name_of
    from ..refresher import Refresher, handle_signals

    log = logging.getLogger("rolesanywhere_signer.serve")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range", hint="use 1..65535")
    if not 1 <= args.hop_limit <= 255:
        raise UsageError(f"--hop-limit {args.hop_limit} is out of range", hint="use 1..255")
    binds = check_binds(args.bind, args.allow_remote)
    renewal = renew_options_from_args(args)
    identity = identity_from_args(args)
    request = request_from_args(args)
    validate_request(request)
    if renewal is not None:
        repair_interrupted_switch(identity)
    harden_process()  # before any secret (PIN, key, token, credentials) is in memory
    # a bytearray, overwritten on the way out: the one copy of the token this code controls
    token = bytearray(new_container_token().encode()) if args.container_token_file else None
    config = ServeConfig(
        role_name=role_name_of(request.role_arn),
        binds=binds,
        port=args.port,
        hop_limit=args.hop_limit,
        allow_remote=args.allow_remote,
        container_token=token,
    )
    refresher = Refresher(identity, request, timeout=args.timeout)
    # a SIGHUP (a renewal hook) during start-up must not kill the process, as its default action
    # would: until the full handlers are in, it just asks for a reload
    signal.signal(signal.SIGHUP, lambda signum, frame: refresher.post_signal("reload"))
    server = CredentialServer(refresher, config)
    renewing = None
    try:
        server.bind()  # a busy port fails now, before any PIN prompt or CreateSession
        if token is not None:
            write_private_file(args.container_token_file, token, what="container token file")
        # the first CreateSession happens before listening; its failure ends serve, said once by main()
        refresher.refresh(log_failure=False)
        handle_signals(refresher)
        server.start()
        refresher.start()
        renewing = start_renewal(renewal, identity, request, refresher, timeout=args.timeout)
        log.info("serving credentials on %s port %d", " and ".join(server.addresses), server.port)
        while not refresher.stopping:  # the refresher's loop acts on signals and wakes us
            time.sleep(0.2)
            refresher.take_signals()  # in case its thread is busy in a long CreateSession
        log.info("shutting down")
    finally:
        if renewing is not None:
            renewing.stop()
        server.close()
        refresher.close()
        wipe(token)
    return 0
