"""The renewal flags, shared by ``renew`` and (with ``--renew-`` names) by ``serve`` and ``update``."""

from __future__ import annotations

import argparse

from ..cliargs import Parser
from .renew import CREDENTIAL_SOURCES, RenewOptions, parse_before


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def renewal_parent(*, long_running: bool) -> argparse.ArgumentParser:
    """``long_running`` (serve, update): ``--renew-ca-arn``/``--renew-before`` and no ``--force``."""
    p = Parser(add_help=False)
    g = p.add_argument_group("certificate renewal" + (" (renews on schedule while running)" if long_running else ""))
    ca_flag = "--renew-ca-arn" if long_running else "--ca-arn"
    before_flag = "--renew-before" if long_running else "--before"
    g.add_argument(ca_flag, dest="renew_ca_arn", metavar="ARN", help="ACM Private CA that issues the certificate")
    g.add_argument(
        "--renew-command",
        metavar="CMD",
        help="any other CA: CMD reads the CSR PEM on stdin and prints the certificate PEM (chain after it)",
    )
    g.add_argument(
        "--renew-command-timeout", metavar="SECONDS", type=_seconds, default=60.0, help="default %(default)s"
    )
    g.add_argument("--validity-days", metavar="N", type=_positive_int, help="validity asked of ACM Private CA")
    g.add_argument("--template-arn", metavar="ARN", help="default arn:aws:acm-pca:::template/EndEntityCertificate/V1")
    g.add_argument("--signing-algorithm", metavar="ALG", help="default from the CA's key type, e.g. SHA256WITHECDSA")
    g.add_argument("--new-key", action="store_true", help="rotate the key too (a new key in the same backend)")
    g.add_argument(
        before_flag,
        dest="renew_before",
        metavar="DURATION|PERCENT",
        help="renew when less than this is left (10d, 36h, 33%%); default a third of the lifetime",
    )
    if not long_running:
        g.add_argument("--force", action="store_true", help="renew now, whatever is left")
    g.add_argument(
        "--renew-role-arn", metavar="ARN", help="role whose credentials call ACM Private CA (default --role-arn)"
    )
    g.add_argument(
        "--renew-credentials",
        choices=CREDENTIAL_SOURCES,
        default="roles-anywhere",
        help="roles-anywhere (self-renewal with the current certificate, the default) or ambient (boto3's chain)",
    )
    g.add_argument(
        "--trust-anchor-certificate",
        metavar="PATH",
        help="CA certificate the new certificate must chain to (default: from ACM Private CA)",
    )
    return p


def renew_options_from_args(args: argparse.Namespace) -> RenewOptions | None:
    """The renewal settings, or None when no issuer was given (long-running modes without renewal)."""
    from .renew import DEFAULT_BEFORE, check_options

    long_running = not hasattr(args, "force")
    if not args.renew_ca_arn and not args.renew_command and long_running:
        given = [
            flag
            for flag, value in (
                ("--renew-before", args.renew_before),
                ("--validity-days", args.validity_days),
                ("--template-arn", args.template_arn),
                ("--signing-algorithm", args.signing_algorithm),
                ("--new-key", args.new_key),
                ("--renew-role-arn", args.renew_role_arn),
                ("--trust-anchor-certificate", args.trust_anchor_certificate),
            )
            if value
        ]
        if given:
            from ..errors import UsageError

            raise UsageError(f"{given[0]} needs --renew-ca-arn or --renew-command")
        return None
    before = (
        parse_before(args.renew_before, "--renew-before" if long_running else "--before")
        if args.renew_before
        else DEFAULT_BEFORE
    )
    options = RenewOptions(
        ca_arn=args.renew_ca_arn,
        command=args.renew_command,
        command_timeout=args.renew_command_timeout,
        template_arn=args.template_arn,
        validity_days=args.validity_days,
        signing_algorithm=args.signing_algorithm,
        before=before,
        force=bool(getattr(args, "force", False)),
        new_key=args.new_key,
        credentials=args.renew_credentials,
        role_arn=args.renew_role_arn,
        trust_anchor_certificate=args.trust_anchor_certificate,
    )
    check_options(options)
    return options
