"""Shared argparse parent parsers and their conversion into option records.

Flag names and meanings follow ``aws_signing_helper``; our additions are marked in the help.
"""

from __future__ import annotations

import argparse
import os
import sys

from .logs import get_logger
from .options import DEFAULT_DURATION, IdentityOptions, RequestOptions
from .secret import Secret

log = get_logger("rolesanywhere_signer")


class Parser(argparse.ArgumentParser):
    """Usage errors become one short line (``UsageError``) instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from .errors import UsageError

        raise UsageError(message, hint=f"see {self.prog} --help")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own imports shutil (with bz2, lzma, zlib, fnmatch: ~2 ms of every start-up)
        # only to read the terminal width, and add_argument builds a formatter for every flag
        return self.formatter_class(prog=self.prog, width=_help_width())  # type: ignore[call-arg]


def _help_width() -> int:
    """``shutil.get_terminal_size().columns - 2``, as argparse computes it, without shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


def debug_parent() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    p.add_argument("--debug", action="store_true", help="verbose logging to stderr (never prints secrets)")
    return p


def identity_parent(*, certificate_required: bool = False) -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    g = p.add_argument_group("identity (certificate and key)")
    g.add_argument(
        "--certificate",
        metavar="PATH|URI",
        help="certificate file (PEM, DER, PKCS#12), pkcs11: URI, env:NAME (PEM in a variable) or - (stdin)",
    )
    g.add_argument(
        "--private-key",
        metavar="PATH|URI",
        help="key file (PEM/DER), TSS2 key file, handle:0x81…, pkcs11: URI, env:NAME or - (stdin)",
    )
    g.add_argument(
        "--intermediates",
        metavar="PATH",
        help="PEM bundle of intermediate certificates, nearest first (a file or env:NAME)",
    )
    g.add_argument(
        "--pkcs8-password",
        "--pkcs12-password",
        dest="pkcs8_password",
        metavar="PASSWORD",
        help="password of an encrypted PKCS#8 key or PKCS#12 bundle (visible to other users; prefer "
        "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD, ROLESANYWHERE_SIGNER_PKCS12_PASSWORD or the prompt)",
    )
    g.add_argument("--pkcs11-uri", metavar="URI", help="one pkcs11: URI for certificate and key [ours]")
    g.add_argument("--pkcs11-lib", metavar="PATH", help="PKCS#11 module to load")
    g.add_argument(
        "--reuse-pin",
        action="store_true",
        help="reuse the user PIN for keys that need context-specific login (YubiKey slot 9c)",
    )
    g.add_argument(
        "--tpm-key-password",
        metavar="PASSWORD",
        help="TPM key password (visible in the process list; prefer "
        "ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD or --tpm-key-password-file)",
    )
    g.add_argument("--tpm-key-password-file", metavar="PATH", help="file holding the TPM key password [ours]")
    g.add_argument("--no-tpm-key-password", action="store_true", help="the TPM key has no password")
    g.add_argument("--tcti", metavar="TCTI", help="how to reach the TPM, e.g. device:/dev/tpmrm0 [ours]")
    # accepted so that a copied aws_signing_helper line fails with a clear reason, not "unrecognized"
    for flag in STORE_FLAGS:
        g.add_argument(flag, help=argparse.SUPPRESS, default=None, nargs="?", const=True)
    return p


#: aws_signing_helper flags for the Windows/macOS certificate stores, which do not exist on Linux
STORE_FLAGS = ("--cert-selector", "--system-store-name", "--use-latest-expiring-certificate")


#: aws_signing_helper's mutually exclusive flag pairs (cobra MarkFlagsMutuallyExclusive), per command
_CREDENTIALS_EXCLUSIVE = (
    ("certificate", "cert-selector"),
    ("certificate", "system-store-name"),
    ("private-key", "cert-selector"),
    ("private-key", "system-store-name"),
    ("private-key", "use-latest-expiring-certificate"),
    ("use-latest-expiring-certificate", "intermediates"),
    ("use-latest-expiring-certificate", "reuse-pin"),
    ("cert-selector", "intermediates"),
    ("cert-selector", "reuse-pin"),
    ("system-store-name", "reuse-pin"),
    ("tpm-key-password", "cert-selector"),
    ("tpm-key-password", "reuse-pin"),
    ("no-tpm-key-password", "cert-selector"),
    ("no-tpm-key-password", "tpm-key-password"),
    ("pkcs8-password", "tpm-key-password"),
)
REFERENCE_EXCLUSIVE: dict[str, tuple[tuple[str, str], ...]] = {
    "credential-process": _CREDENTIALS_EXCLUSIVE,
    "serve": _CREDENTIALS_EXCLUSIVE,
    "update": _CREDENTIALS_EXCLUSIVE,
    "sign-string": (
        *(p for p in _CREDENTIALS_EXCLUSIVE if "intermediates" not in p),
        ("no-tpm-key-password", "reuse-pin"),
    ),
    "read-certificate-data": (("certificate", "cert-selector"), ("certificate", "system-store-name")),
}
#: pairs of our own flags that contradict each other, for every command that has them
OUR_EXCLUSIVE = (
    ("tpm-key-password-file", "tpm-key-password"),
    ("tpm-key-password-file", "no-tpm-key-password"),
    ("pkcs8-password", "tpm-key-password-file"),
)


def _given(args: argparse.Namespace, flag: str) -> bool:
    value = getattr(args, flag.replace("-", "_"), None)
    return value is not None and value is not False


def check_exclusive(args: argparse.Namespace) -> None:
    """Refuse the flag pairs the reference refuses (and ours that contradict), naming both flags."""
    from .errors import UsageError

    pairs = REFERENCE_EXCLUSIVE.get(getattr(args, "command", None) or "", ()) + OUR_EXCLUSIVE
    for a, b in pairs:
        if _given(args, a) and _given(args, b):
            raise UsageError(f"--{a} and --{b} cannot be used together", hint="give one of them")


def refuse_store_flags(args: argparse.Namespace) -> None:
    from .errors import NotSupportedError

    for flag in STORE_FLAGS:
        if getattr(args, flag[2:].replace("-", "_"), None) is not None:
            raise NotSupportedError(
                f"{flag} selects from the Windows/macOS certificate stores, which this tool does not read",
                hint="use --certificate/--private-key files, a pkcs11: URI or a TPM key",
            )


def request_parent(*, required: bool = True) -> argparse.ArgumentParser:
    """``required=False`` (doctor) makes the three ARNs optional."""
    p = Parser(add_help=False)
    g = p.add_argument_group("CreateSession request")
    g.add_argument("--trust-anchor-arn", metavar="ARN", required=required)
    g.add_argument("--profile-arn", metavar="ARN", required=required)
    g.add_argument("--role-arn", metavar="ARN", required=required)
    g.add_argument(
        "--session-duration",
        metavar="SECONDS",
        type=int,
        default=DEFAULT_DURATION,
        help="900..43200 (default %(default)s)",
    )
    g.add_argument("--role-session-name", metavar="NAME")
    g.add_argument("--region", metavar="REGION", help="default: the trust anchor's region")
    c = p.add_argument_group("connection")
    c.add_argument("--endpoint", metavar="URL", help="Roles Anywhere endpoint (http or https URL)")
    c.add_argument("--no-verify-ssl", action="store_true", help="do not verify the endpoint's TLS certificate")
    c.add_argument(
        "--with-proxy",
        action="store_true",
        help="accepted for compatibility: proxy variables are always honoured",
    )
    c.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=10.0,
        help="per-attempt network timeout (default %(default)s) [ours]",
    )
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 600 seconds")
    return value


def _warn_argv_secret(flag: str, safer: str) -> None:
    log.warning("%s on the command line is visible to other local users; prefer %s", flag, safer)


def identity_from_args(args: argparse.Namespace) -> IdentityOptions:
    # a store flag is refused with its reason first: "cannot be used together" would send the user
    # on to a flag that cannot work on Linux either
    refuse_store_flags(args)
    check_exclusive(args)
    pkcs8 = getattr(args, "pkcs8_password", None)
    if pkcs8 is not None:
        _warn_argv_secret("--pkcs8-password", "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD or the terminal prompt")
    tpm_pw = getattr(args, "tpm_key_password", None)
    if tpm_pw is not None:
        _warn_argv_secret("--tpm-key-password", "--tpm-key-password-file or ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD")
    return IdentityOptions(
        certificate=args.certificate,
        private_key=args.private_key,
        intermediates=args.intermediates,
        pkcs8_password=Secret(pkcs8) if pkcs8 is not None else None,
        pkcs11_uri=args.pkcs11_uri,
        pkcs11_lib=args.pkcs11_lib,
        reuse_pin=args.reuse_pin,
        tpm_key_password=Secret(tpm_pw) if tpm_pw is not None else None,
        tpm_key_password_file=args.tpm_key_password_file,
        no_tpm_key_password=args.no_tpm_key_password,
        tcti=args.tcti,
    )


def request_from_args(args: argparse.Namespace) -> RequestOptions:
    return RequestOptions(
        trust_anchor_arn=args.trust_anchor_arn,
        profile_arn=args.profile_arn,
        role_arn=args.role_arn,
        session_duration=args.session_duration,
        role_session_name=args.role_session_name,
        region=args.region,
        endpoint=args.endpoint,
        verify=not args.no_verify_ssl,
        with_proxy=args.with_proxy,
    )
