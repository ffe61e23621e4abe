"""Fixtures shared by every test: a throwaway PKI, a verifying local endpoint, the CLI runner."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions
from support.clock import FakeClock
from support.pki import PKI

pytest_plugins = ["support.moto_pca"]

# files the tests write (keys, PINs, passwords) are private, as a careful user's are: a key file
# readable by group or others draws a warning (files.py); the tests of that warning chmod explicitly
os.umask(0o077)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def endpoint(pki: PKI) -> Iterator[LocalEndpoint]:
    """A verifying Roles Anywhere endpoint that trusts ``pki.root``, on a free loopback port."""
    ep = LocalEndpoint([pki.root.cert]).start()
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock starting now (whole seconds)."""
    return FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))


@pytest.fixture
def ep(pki: PKI, clock: FakeClock) -> Iterator[LocalEndpoint]:
    """The verifying endpoint on ``clock``'s time, so expiry can be reached without sleeping."""
    e = LocalEndpoint([pki.root.cert], clock=clock).start()
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def identity(pki: PKI, tmp_path: Path) -> IdentityOptions:
    """A PEM key and its certificate from ``pki``, as identity options."""
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return IdentityOptions(certificate=str(cert), private_key=str(key))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test starts (serve, update, ...): whatever is still running at the end is killed."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(5)
