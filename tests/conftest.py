"""Fixtures shared by every test: a throwaway PKI, a verifying local endpoint, the CLI runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI


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
