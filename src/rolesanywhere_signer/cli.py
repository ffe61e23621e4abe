"""``rolesanywhere-signer`` entry point: ``main(argv)`` catches ``SignerError`` once.

Each command lives in ``commands/<name>.py`` with ``register(subparsers)`` and ``run(args)``;
command modules import only argparse-level code at registration, so start-up stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing is not needed at run time
if TYPE_CHECKING:
    from typing import Any

PROG = "rolesanywhere-signer"

#: command name -> module under rolesanywhere_signer.commands
COMMANDS: dict[str, str] = {
    "credential-process": "credential_process",
    "sign-string": "sign_string",
    "read-certificate-data": "read_certificate_data",
    "serve": "serve",
    "update": "update",
    "generate-key": "generate_key",
    "csr": "csr",
    "renew": "renew",
    "doctor": "doctor",
    "local-endpoint": "local_endpoint",
    "version": "version",
}


def setup_logging(debug: bool) -> None:
    """Our handler on the package's logger. ``logging`` itself is imported only when something
    logs (logs.py); a quiet run never pays for it. ``--debug`` imports it now."""
    from . import logs

    logs.configure(lambda logging: _install_handler(logging, debug))
    if debug:
        import logging  # noqa: F401 - installs the handler at once


def _install_handler(logging: Any, debug: bool) -> None:
    class _Formatter(logging.Formatter):  # type: ignore[misc]  # logging is the module, typed Any
        def format(self, record: Any) -> str:
            if record.levelno >= logging.WARNING:
                return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
            return f"{PROG}: {record.levelname.lower()}: [{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("rolesanywhere_signer")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


def build_parser(only: str | None = None) -> object:
    from .cliargs import Parser

    parser = Parser(prog=PROG, description="AWS IAM Roles Anywhere credentials from hardware-held keys.")
    parser.add_argument("--debug", action="store_true", help=__import__("argparse").SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue  # building one subparser keeps credential_process start-up short
        mod = importlib.import_module(f".commands.{module}", __package__)
        mod.register(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["credential-process"] and "--cache" in args_list:
        from .cache import fast_hit  # stdlib-only: a cache hit costs about a bare interpreter

        try:
            text = fast_hit(args_list)
        except Exception:  # noqa: BLE001 - the full path below reports any real problem properly
            text = None
        if text is not None:
            sys.stdout.write(text)  # as the full path prints it: no newline, like the reference
            sys.stdout.flush()
            return 0
    debug = "--debug" in args_list
    setup_logging(debug)
    from .errors import SignerError

    try:
        first = next((a for a in args_list if not a.startswith("-")), None)
        parser = build_parser(first if first in COMMANDS else None)
        args = parser.parse_args(args_list)  # type: ignore[attr-defined]
        if not args.command:
            parser.print_help(sys.stderr)  # type: ignore[attr-defined]
            return 2
        rc: int = args.func(args)
        return rc
    except SignerError as e:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: {e.diagnostics()}\n")
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: internal error ({type(e).__name__}); run again with --debug and report it\n")
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
