"""SoftHSM2 fixtures: a fresh configuration (and so fresh tokens) for every test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .softhsm import MODULE, SoftHSM

if not (shutil.which("softhsm2-util") and shutil.which("pkcs11-tool") and os.path.exists(MODULE)):
    pytest.skip("softhsm2 and opensc are needed (scripts/install-system.sh)", allow_module_level=True)


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHSM]:
    """A temporary SOFTHSM2_CONF; in-process users get a freshly initialised library."""
    import pkcs11

    h = SoftHSM(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(h.conf))
    pkcs11.unload(MODULE)  # SoftHSM reads its configuration at C_Initialize
    try:
        yield h
    finally:
        pkcs11.unload(MODULE)
