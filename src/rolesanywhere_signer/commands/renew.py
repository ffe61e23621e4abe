"""``renew``: a new certificate for the key that already holds the current one (ours)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent, request_parent
from ..enroll.cliargs import renewal_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), request_parent(required=False), renewal_parent(long_running=False), debug_parent()],
        help="renew the certificate through ACM Private CA or a command, with the key where it lives",
        description="When less than --before is left (default a third of the lifetime), make a CSR signed by "
        "the key (file, PKCS#11, TPM) with the current subject and SANs, have the CA sign it, check the result "
        "strictly, and install certificate and chain together, keeping the previous ones as .prev. ACM Private "
        "CA is called with credentials from Roles Anywhere for the current certificate (self-renewal) unless "
        "--renew-credentials ambient.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..arn import validate_request
    from ..cliargs import identity_from_args, request_from_args
    from ..enroll.cliargs import renew_options_from_args
    from ..enroll.renew import Renewer
    from ..errors import UsageError

    options = renew_options_from_args(args)
    assert options is not None
    identity = identity_from_args(args)
    if not identity.certificate:
        raise UsageError("--certificate is required", hint="the certificate file to renew")
    request = None
    if args.trust_anchor_arn or args.profile_arn or args.role_arn:
        missing = [
            f
            for f, v in (
                ("--trust-anchor-arn", args.trust_anchor_arn),
                ("--profile-arn", args.profile_arn),
                ("--role-arn", args.role_arn),
            )
            if not v
        ]
        if missing:
            raise UsageError(f"{missing[0]} is required with the other Roles Anywhere ARNs")
        request = request_from_args(args)
        validate_request(request)
    result = Renewer(identity, request, options, timeout=args.timeout).renew()
    sys.stderr.write(f"rolesanywhere-signer: {result.message}\n")
    return 0
