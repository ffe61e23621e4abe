"""swtpm fixtures: one shared TPM with keys made by every tool, fresh TPMs where state matters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.pki import PKI, Issued, issue

from .swtpm import Swtpm

if not (shutil.which("swtpm") and shutil.which("tpm2_createprimary") and shutil.which("openssl")):
    pytest.skip("swtpm and tpm2-tools are needed (scripts/install-system.sh)", allow_module_level=True)
pytest.importorskip("tpm2_pytss")

PASSWORD = "s3cret-tpm-pw"


@dataclass
class Key:
    """A key in the shared swtpm: what to pass as --private-key, its password, and a certificate."""

    arg: str
    password: str | None
    issued: Issued
    cert: Path


@pytest.fixture(scope="session")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    tpm = Swtpm(tmp_path_factory.mktemp("swtpm"))
    try:
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture
def fresh_tpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A TPM of its own (for lockout counters, restarts, a 'second TPM')."""
    tpm = Swtpm(tmp_path / "tpm")
    try:
        yield tpm
        left = tpm.transient_handles()
        assert left == [], f"transient objects left in the TPM: {left}"
    finally:
        tpm.stop()


@pytest.fixture(autouse=True)
def _no_leaked_objects(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test the TPMs hold no transient object: swtpm has only three slots."""
    yield
    if "swtpm" in request.fixturenames:
        tpm: Swtpm = request.getfixturevalue("swtpm")
        left = tpm.transient_handles()
        tpm.flush_all()
        assert left == [], f"transient objects left in the TPM: {left}"


def _certify(pki: PKI, name: str, public_pem: bytes) -> tuple[Issued, Path]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    leaf = issue(f"tpm {name}", issuer=pki.root, public_key=load_pem_public_key(public_pem))
    return leaf, pki.write(f"tpm-{name}.crt", leaf.pem)


@pytest.fixture(scope="session")
def keys(swtpm: Swtpm, pki: PKI) -> dict[str, Key]:
    """Keys made by openssl's tpm2 provider, tpm2-tools and tpm2-pytss, each with a certificate."""
    base = swtpm.base
    out: dict[str, Key] = {}

    def add(name: str, arg: str, public_pem: bytes, password: str | None = None) -> None:
        issued, cert = _certify(pki, name, public_pem)
        out[name] = Key(arg, password, issued, cert)

    for name, alg, pw in (
        ("openssl-ec", "ec:P-256", None),
        ("openssl-ec-pw", "ec:P-384", PASSWORD),
        ("openssl-rsa", "rsa:2048", None),
        ("openssl-rsa-pw", "rsa:2048", PASSWORD),
    ):
        path = swtpm.openssl_key(base / f"{name}.tss", alg, pw)
        add(name, str(path), swtpm.public_pem(path, pw), pw)
    parent = swtpm.persistent_parent()
    pub, priv = swtpm.tools_key("tools-ec", password=PASSWORD)
    path = swtpm.encode(pub, priv, base / "tools-ec.tss", parent=parent, password=True)
    add("tools-ec", str(path), swtpm.public_pem(path, PASSWORD), PASSWORD)
    pub, priv = swtpm.tools_key("tools-rsa-handle", alg="rsa2048", password=PASSWORD)
    handle = swtpm.persist(pub, priv, "0x81000010")
    swtpm.run("tpm2_readpublic", "-c", handle, "-f", "pem", "-o", base / "h.pem")
    add("tools-rsa-handle", f"handle:{handle}", (base / "h.pem").read_bytes(), PASSWORD)
    pub, priv = swtpm.tools_key("tools-nopw-handle")
    handle = swtpm.persist(pub, priv, "0x81000011")
    swtpm.run("tpm2_readpublic", "-c", handle, "-f", "pem", "-o", base / "h2.pem")
    add("tools-ec-handle", f"handle:{handle[2:]}", (base / "h2.pem").read_bytes())  # without 0x
    path = _pytss_key(swtpm, base / "pytss.tss")
    add("pytss-ec", str(path), swtpm.public_pem(path))
    swtpm.flush_all()
    return out


def _pytss_key(swtpm: Swtpm, path: Path) -> Path:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.tsskey import TSSPrivKey

    with ESAPI(swtpm.tcti) as esapi:
        key = TSSPrivKey.create_ecc(esapi)
    path.write_bytes(key.to_pem())
    path.chmod(0o600)
    return path
