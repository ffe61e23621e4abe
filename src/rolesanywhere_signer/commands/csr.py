"""`csr`: not yet implemented (see its issue)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="(not yet implemented)", add_help=True)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import NotSupportedError

    raise NotSupportedError("the csr command is not yet implemented in this version")
