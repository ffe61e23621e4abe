"""``version``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, name: str) -> None:
    from ..cliargs import debug_parent

    p = sub.add_parser(name, parents=[debug_parent()], help="print the version")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._version import __version__

    sys.stdout.write(__version__ + "\n")
    return 0
