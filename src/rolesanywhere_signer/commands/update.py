"""``update``: keep a profile in the shared credentials file fresh (or write it ``--once``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..cliargs import debug_parent, identity_parent, log_parent, request_parent
from ..enroll.cliargs import renewal_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), request_parent(), renewal_parent(long_running=True), log_parent(), debug_parent()],
        help="write temporary credentials into the AWS shared credentials file and keep them fresh",
        description="Write credentials into AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials), changing "
        "only the three credential keys of --profile, and refresh them ahead of expiry.",
    )
    p.add_argument("--profile", default="default", help="profile to write (default %(default)s)")
    p.add_argument("--once", action="store_true", help="write once and exit instead of running in a loop")
    p.add_argument(
        "--as-user",
        metavar="NAME",
        help="(root) write the file for this user: checked as that user would trust it, owned by them, "
        "default path in their home [ours]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from ..arn import validate_request
    from ..cli import use_log_format
    from ..cliargs import identity_from_args, request_from_args
    from ..credentials import Credentials
    from ..credfile import LOCK_TIMEOUT, check_profile_name, credentials_path
    from ..credfile import write_credentials as write_file
    from ..enroll.cliargs import renew_options_from_args
    from ..enroll.install import repair_interrupted_switch
    from ..enroll.schedule import start_for as start_renewal
    from ..errors import SignerError
    from ..files import Owner, locked, prepare_target
    from ..hardening import harden_process
    from ..refresher import MAX_SLEEP, Refresher, handle_signals
    from ..transport import Cancelled

    use_log_format(args.log_format, args.debug)
    log = logging.getLogger("rolesanywhere_signer.update")
    profile = check_profile_name(args.profile)
    renewal = renew_options_from_args(args)
    identity = identity_from_args(args)
    request = request_from_args(args)
    validate_request(request)
    if renewal is not None:
        repair_interrupted_switch(identity)
    owner = Owner.named(args.as_user) if args.as_user else Owner.me()
    path = credentials_path(home=owner.home if args.as_user else None)
    # an unusable or untrusted path fails before any PIN prompt, and before the lock file appears
    target = prepare_target(path, "credentials file", owner=owner)
    with locked(target, LOCK_TIMEOUT, what="credentials file"):  # the lock file is usable
        pass
    harden_process()

    def write(path: str, profile: str, creds: Credentials) -> str:
        return write_file(path, profile, creds, owner=owner)

    refresher = Refresher(identity, request, timeout=args.timeout)
    # a SIGHUP (a renewal hook) during start-up must not kill the process, as its default action
    # would: until the full handlers are in, it just asks for a reload
    signal.signal(signal.SIGHUP, lambda signum, frame: refresher.post_signal("reload"))
    handle_signals(refresher)  # SIGTERM/SIGINT cancel even the first CreateSession (exit 0)
    renewing = None
    try:
        # the first CreateSession must work: bad settings end here, said once by main()
        try:
            refresher.starting = True
            try:
                creds = refresher.refresh(log_failure=False)
            finally:
                refresher.starting = False
        except Cancelled:
            return 0
        written_path = write(path, profile, creds)
        written = refresher.generation
        log.info("wrote profile %s in %s, valid until %s", profile, written_path, creds.expiration_text())
        if args.once:
            if renewal is not None:  # one renewal check, as `renew` would do it
                from ..enroll.renew import Renewer

                result = Renewer(identity, request, renewal, timeout=args.timeout, credentials=refresher.get).renew()
                log.info("%s", result.message)
            return 0
        renewing = start_renewal(renewal, identity, request, refresher, timeout=args.timeout)
        while not refresher.stopping:
            # tick() compares wall-clock expiry, so a suspend/resume is caught on the next wake-up
            delay = refresher.tick()
            if refresher.generation != written:
                current = refresher.current()
                if current is not None:
                    try:
                        write(path, profile, current)
                        written = refresher.generation
                        log.info("wrote profile %s, valid until %s", profile, current.expiration_text())
                    except SignerError as e:
                        log.warning("writing %s failed (will retry): %s", path, e.diagnostics())
                        delay = min(delay, 10.0)
            refresher.sleep(max(0.05, min(delay, MAX_SLEEP)))
    finally:
        if renewing is not None:
            renewing.stop()
        refresher.close()
    return 0
