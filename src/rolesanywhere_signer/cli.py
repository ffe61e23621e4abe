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


def _install_handler(logging: Any, debug: bool, json_lines: bool = False) -> None:
    class _Formatter(logging.Formatter):  # type: ignore[misc]  # logging is the module, typed Any
        def format(self, record: Any) -> str:
            if record.levelno >= logging.WARNING:
                return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
            return f"{PROG}: {record.levelname.lower()}: [{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}"

    class _JsonFormatter(logging.Formatter):  # type: ignore[misc]
        """One JSON object per line (journald, fleet log pipelines); same messages, so no secret."""

        def format(self, record: Any) -> str:
            import json
            import time

            doc = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            identity = getattr(record, "identity", None)
            if identity:
                doc["identity"] = identity
            if record.exc_info and debug:
                doc["exception"] = self.formatException(record.exc_info)
            return json.dumps(doc, ensure_ascii=False)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _Formatter())
    root = logging.getLogger("rolesanywhere_signer")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


def use_log_format(fmt: str, debug: bool) -> None:
    """``--log-format json`` of the long-running commands: swap the handler's formatter."""
    if fmt == "json":
        import logging

        _install_handler(logging, debug, json_lines=True)


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


def command_of(args: Sequence[str]) -> str | None:
    """The command word: the first argument that is not a flag (only ``--debug`` comes before it)."""
    return next((a for a in args if not a.startswith("-")), None)


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
        first = command_of(args_list)
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


#: the commands that run as long as the machine does; every other one is a short, one-shot run
LONG_RUNNING = frozenset({"serve", "update", "local-endpoint"})


def entry() -> None:
    """The console script and ``python -m rolesanywhere_signer``: ``main()`` as a process.

    A one-shot run (credential-process runs once per AWS CLI call) keeps the cycle collector off.
    Importing cryptography, ssl and http.client allocates some 100,000 objects, which sets off
    collections that find nothing to free, and the interpreter's last collection at exit walks
    them all once more: together a tenth of a cold credential-process, which the caller waits out
    (it reads our stdout to EOF). Nothing a one-shot run makes is left for a collector to close:
    keys, sessions, sockets and files are closed before ``main()`` returns, and the OS takes the
    memory back. The long-running commands keep the collector, as a library caller of ``main()``
    does (only this entry point changes it).
    """
    import gc

    one_shot = command_of(sys.argv[1:]) not in LONG_RUNNING
    if one_shot:
        gc.disable()
    rc = main()
    if one_shot:
        gc.freeze()  # out of the final collection's sight: the exit frees them all without a walk
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()
