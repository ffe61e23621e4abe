"""`make demo` part: doctor's table for the demo PEM key and certificate, then for a broken set-up."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import TYPE_CHECKING

from support.pki import now
from support.util import ARN_ARGS, clean_env

if TYPE_CHECKING:
    from demo import DemoContext


def _doctor(ctx: DemoContext, args: list[object], expect: int) -> None:
    base = str(ctx.workdir) + "/"
    shown = ["ARN" if str(a).startswith("arn:") else str(a).replace(base, "") for a in args]
    print("$ rolesanywhere-signer doctor " + " ".join(shown) + " …", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", "doctor", *map(str, args)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    print(proc.stdout, end="", flush=True)
    if proc.returncode != expect:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"doctor exited {proc.returncode}, expected {expect}")
    print(f"(exit {proc.returncode})", flush=True)


def run(ctx: DemoContext) -> None:
    pki = ctx.pki
    print("\n== doctor: the demo key and certificate, checked offline (plus the local endpoint)")
    leaf = pki.leaf("ec-p256", via_intermediate=True, cn="demo-host.example")
    cert, key = pki.leaf_files("doctor-demo", leaf)
    _doctor(
        ctx,
        [
            "--certificate", cert, "--private-key", key, "--intermediates", pki.intermediates_path,
            "--trust-anchor-certificate", pki.root_path, *ARN_ARGS,
            "--check-endpoint", "--endpoint", ctx.endpoint.url,
        ],
        expect=0,
    )  # fmt: skip
    print("\n== doctor: an expired certificate, another machine's key, a 14-hour session")
    expired = pki.leaf("ec-p256", via_intermediate=True, cn="old-host.example",
                       not_before=now() - dt.timedelta(days=40), days=30)  # fmt: skip
    old_cert, _ = pki.leaf_files("doctor-expired", expired)
    _doctor(
        ctx,
        ["--certificate", old_cert, "--private-key", key, "--intermediates", pki.intermediates_path,
         *ARN_ARGS, "--session-duration", "50400"],
        expect=1,
    )  # fmt: skip
