"""``credential-process``: print credential_process JSON for the AWS SDKs and CLI."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent, request_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), request_parent(), debug_parent()],
        help="print temporary credentials as credential_process JSON",
        description="Sign a CreateSession request with the certificate's key and print credential_process JSON.",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="reuse credentials cached in a 0600 file while enough time remains [ours]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cliargs import identity_from_args, request_from_args

    identity = identity_from_args(args)
    request = request_from_args(args)
    from ..arn import validate_request

    valid = validate_request(request)  # refuse bad ARNs/durations before any PIN prompt or key access
    if getattr(args, "cache", False):
        from ..cache import cached_credential_process

        text = cached_credential_process(identity, request, timeout=args.timeout)
    else:
        from ..api import fetch_credentials

        text = fetch_credentials(identity, valid, timeout=args.timeout).to_process_json()
    sys.stdout.write(text)  # no newline, byte for byte as aws_signing_helper
    sys.stdout.flush()
    return 0
