"""``doctor``: check certificate, key, chain, request options and (optionally) the endpoint, all at once."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent, request_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), request_parent(required=False), debug_parent()],
        help="check the whole set-up offline and report each check",
        description="Take the same flags as credential-process and report every check Roles Anywhere "
        "would make (pass, warn or fail) without calling it. Exit 0 when nothing fails.",
    )
    p.add_argument(
        "--trust-anchor-certificate",
        metavar="CA.pem",
        help="the trust anchor's CA certificate(s): check that the path validates to it",
    )
    p.add_argument(
        "--check-endpoint",
        action="store_true",
        help="also resolve the endpoint, complete a TLS handshake and compare clocks (network)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cliargs import identity_from_args
    from ..doctor import DoctorOptions, failed, render_json, render_table, run_checks
    from ..errors import UsageError

    identity = identity_from_args(args)
    if not (identity.certificate or identity.private_key or identity.pkcs11_uri):
        raise UsageError("nothing to check: pass --certificate and --private-key (or --pkcs11-uri)")
    opts = DoctorOptions(
        identity=identity,
        trust_anchor_arn=args.trust_anchor_arn,
        profile_arn=args.profile_arn,
        role_arn=args.role_arn,
        session_duration=args.session_duration,
        role_session_name=args.role_session_name,
        region=args.region,
        endpoint=args.endpoint,
        verify=not args.no_verify_ssl,
        trust_anchor_certificate=args.trust_anchor_certificate,
        check_endpoint=args.check_endpoint,
        timeout=args.timeout,
    )
    checks = run_checks(opts)
    sys.stdout.write(render_json(checks) if args.json else render_table(checks))
    sys.stdout.flush()
    return 1 if failed(checks) else 0
