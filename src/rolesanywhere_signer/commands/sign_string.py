"""``sign-string``: sign standard input with the key (a diagnostic, as in the reference)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cliargs import debug_parent, identity_parent


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(
        name,
        parents=[identity_parent(), debug_parent()],
        help="sign standard input with the key",
        description="Sign the bytes on standard input.",
    )
    p.add_argument(
        "--format",
        choices=["text", "json", "bin"],
        default="text",
        help="hex text, a JSON string (base64) or raw bytes (default %(default)s)",
    )
    p.add_argument("--digest", choices=["SHA256", "SHA384", "SHA512"], default="SHA256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import base64
    import json

    from ..backends import load_signer
    from ..cliargs import identity_from_args
    from ..signer import DigestName

    data = sys.stdin.buffer.read()
    digest: DigestName = args.digest.lower()
    signer = load_signer(identity_from_args(args))
    try:
        signature = signer.sign(data, digest)
    finally:
        signer.close()
    if args.format == "bin":
        sys.stdout.buffer.write(signature)
    elif args.format == "json":
        sys.stdout.write(json.dumps(base64.b64encode(signature).decode()) + "\n")
    else:
        sys.stdout.write(signature.hex() + "\n")
    sys.stdout.flush()
    return 0
