"""Fixtures for the PIV tests: one private pcscd per test session, a fresh virtual card per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .virtual import MODULES, VirtualPiv, missing_tools

_missing = missing_tools()
if _missing or os.geteuid() != 0:
    # CI runs as root with scripts/install-system.sh done: there these tests always run
    if os.environ.get("CI"):
        raise RuntimeError(f"PIV tests cannot run on CI: missing {_missing or 'root'}")
    pytest.skip(f"needs root and {', '.join(_missing) or 'nothing else'}", allow_module_level=True)


_BASE: list[Path] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """libpcsclite reads PCSCLITE_CSOCK_NAME once per process, at its first use (the hardware
    tests' YubiKey probe loads ykcs11 before us), so the variable is set before any test runs,
    and only when PIV tests are selected."""
    here = Path(__file__).parent
    if _BASE or not any(here in Path(str(item.path)).parents for item in items):
        return
    _BASE.append(Path(tempfile.mkdtemp(prefix="rolesanywhere-piv-")))
    os.environ["PCSCLITE_CSOCK_NAME"] = str(_BASE[0] / "pcscd.comm")


@pytest.fixture(scope="session")
def piv_service() -> Iterator[VirtualPiv]:
    """pcscd + vpcd in a private namespace, its socket where PCSCLITE_CSOCK_NAME already points."""
    assert _BASE, "pytest_collection_modifyitems sets the socket path"
    v = VirtualPiv(_BASE[0])
    assert os.environ.get("PCSCLITE_CSOCK_NAME") == v.env["PCSCLITE_CSOCK_NAME"]
    v.start_pcscd()
    try:
        yield v
    finally:
        v.stop()
        shutil.rmtree(_BASE[0], ignore_errors=True)


@pytest.fixture
def piv(piv_service: VirtualPiv) -> Iterator[VirtualPiv]:
    """A fresh card (default PIN 123456, PUK 12345678, management key) not yet inserted:
    provision its slots, then ``piv.insert()``."""
    import pkcs11

    for path in MODULES.values():
        pkcs11.unload(path)  # loaded earlier in this process (the hardware tests' probe): a stale view
    piv_service.new_card()
    try:
        yield piv_service
    finally:
        for path in MODULES.values():
            pkcs11.unload(path)  # a module keeps its view of the reader across tests otherwise


@pytest.fixture(params=sorted(MODULES))
def module(request: pytest.FixtureRequest) -> str:
    """Each test runs with OpenSC's opensc-pkcs11.so and with Yubico's libykcs11.so."""
    return MODULES[str(request.param)]


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    from .virtual import PIN

    p = tmp_path / "pin"
    p.write_text(PIN + "\n")
    p.chmod(0o600)
    return p
