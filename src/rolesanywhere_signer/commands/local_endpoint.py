"""``local-endpoint``: a verifying Roles Anywhere endpoint on loopback, for tests and dry runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[debug_parent()],
        help="run a local, verifying CreateSession endpoint",
        description="Answer POST /sessions on loopback, verifying requests as AWS does.",
    )
    p.add_argument("--trust-anchor", metavar="CA.pem", required=True, help="PEM file of trusted CA certificates")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed on stdout)")
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1", "localhost"])
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PEM", help="key of --tls-cert")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal

    from ..certs import parse_certificates
    from ..endpoint_server import LocalEndpoint
    from ..errors import UsageError
    from ..files import read_input_file

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range", hint="use 0..65535")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    anchors = parse_certificates(
        read_input_file(args.trust_anchor, "trust anchor file"), args.trust_anchor, "trust anchor"
    )
    try:
        ep = LocalEndpoint(
            anchors,
            host=args.host,
            port=args.port,
            tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
            delay=args.delay,
        )
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    sys.stdout.write(ep.url + "\n")
    sys.stdout.flush()
    try:
        ep.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
