"""`make demo` part: a YubiKey PIV key through the real middleware, on the tests' virtual PIV card.

pcscd and vpcd run in a private namespace (root only); the card emulator answers PIV APDUs. A key
and certificate go into slot 9a, then credential-process signs through Yubico's libykcs11.so and
OpenSC's opensc-pkcs11.so, and the card's VERIFY counter shows one PIN entry per process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.util import ARN_ARGS  # noqa: E402


def run(ctx: Any) -> None:
    from tests.piv.virtual import MODULES, PIN, VirtualPiv, missing_tools, provision

    missing = missing_tools()
    if missing or os.geteuid() != 0:
        print(f"\n== YubiKey PIV: skipped (needs root and {', '.join(missing) or 'nothing else'})")
        return
    print("\n== YubiKey PIV on a virtual card (pcscd + vpcd in a private namespace, slot 9a, PIN once)")
    piv = VirtualPiv(ctx.workdir / "piv")
    os.environ.update(piv.env)  # this process asks the card for its counters over PC/SC
    piv.new_card()
    provision(piv, 0x9A, ctx.pki.leaf("ec-p256", cn="demo-yubikey.example"))
    pin = ctx.workdir / "piv-pin"
    pin.write_text(PIN + "\n")
    pin.chmod(0o600)
    piv.start_pcscd()
    try:
        piv.insert()
        for name, module in sorted(MODULES.items()):
            before = piv.counters()["verify"]
            ctx.run(
                [
                    "credential-process",
                    "--pkcs11-uri",
                    f"pkcs11:id=%01?pin-source=file:{pin}",
                    "--pkcs11-lib",
                    module,
                    "--endpoint",
                    ctx.endpoint.url,
                    *ARN_ARGS,
                ],
                env=piv.env,
            )
            print(f"   ({name}: the card saw {piv.counters()['verify'] - before} PIN VERIFY)", flush=True)
    finally:
        piv.stop()
