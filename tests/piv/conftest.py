"""Fixtures for the PIV tests: one private pcscd per test session, a fresh virtual card per test."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def piv_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualPiv]:
    """pcscd + vpcd in a private namespace. libpcsclite keeps the socket name for the whole
    process, so the variable is set once here and the same path is used all session."""
    v = VirtualPiv(tmp_path_factory.mktemp("piv"))
    os.environ.update(v.env)
    v.start_pcscd()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture
def piv(piv_service: VirtualPiv) -> Iterator[VirtualPiv]:
    """A fresh card (default PIN 123456, PUK 12345678, management key) not yet inserted:
    provision its slots, then ``piv.insert()``."""
    import pkcs11

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
