"""scripts/check_wheel.py (run by CI) notices a module or package-data file missing from the wheel."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_and_py_typed_is_expected_and_a_gap_is_named() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        check = importlib.import_module("check_wheel")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    expected: set[str] = check.expected_files()
    assert "rolesanywhere_signer/py.typed" in expected
    assert "rolesanywhere_signer/backends/__init__.py" in expected
    assert "rolesanywhere_signer/enroll/issuer.py" in expected
    assert check.missing_from_wheel(expected) == []
    names = expected - {"rolesanywhere_signer/py.typed", "rolesanywhere_signer/keytypes.py"}
    assert check.missing_from_wheel([*names, "rolesanywhere_signer-0.1.0.dist-info/RECORD"]) == [
        "rolesanywhere_signer/keytypes.py",
        "rolesanywhere_signer/py.typed",
    ]
