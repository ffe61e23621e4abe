"""doctor on a PIV card: slot, PIN tries left, always-authenticate, touch policy, attestation."""

from __future__ import annotations

import json
from pathlib import Path

from support.pki import PKI
from support.util import run_cli

from .virtual import VirtualPiv, provision


def _checks(proc_stdout: str) -> dict[str, str]:
    doc = json.loads(proc_stdout)
    rows = doc["checks"] if isinstance(doc, dict) else doc
    return {r["name"]: f"{r['status']}: {r['detail']}" for r in rows}


def test_doctor_reports_the_piv_slot(piv: VirtualPiv, module: str, pki: PKI, pin_file: Path) -> None:
    provision(piv, 0x9C, pki.leaf("ec-p256", cn="piv doctor"), touch_policy="cached")
    piv.update(pin_retries=2)
    piv.insert()
    proc = run_cli(["doctor", "--json", "--pkcs11-uri", "pkcs11:id=%02", "--pkcs11-lib", module])
    checks = _checks(proc.stdout)
    assert checks["PIV slot"] == "pass: 9c (Digital Signature)", checks
    assert checks["PIV PIN"] == "pass: 2 tries left", checks
    policy = checks["PIV key policy"]
    assert "always-authenticate" in policy and "touch policy cached" in policy and "PIN policy always" in policy, policy
    assert checks["PIV attestation"].startswith("pass: attestation certificate present"), checks
    c = piv.counters()
    assert c["verify"] == 0 and c["sign"] == 0 and piv.state()["pin_retries"] == 2  # doctor spends nothing
