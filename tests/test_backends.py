"""The backend registry: key arguments pick the backend by scheme, prefix or file sniff, lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rolesanywhere_signer import backends
from rolesanywhere_signer.backends import REGISTRY, Backend, LazyBackend, backend_for, load_signer
from rolesanywhere_signer.options import IdentityOptions
from rolesanywhere_signer.signer import KeyHandle, Signer
from support.pki import PKI
from support.util import clean_env

TSS2_HEAD = b"-----BEGIN TSS2 PRIVATE KEY-----\nMIIB\n-----END TSS2 PRIVATE KEY-----\n"


def test_registry_order_and_names() -> None:
    assert [b.name for b in REGISTRY] == ["pkcs11", "tpm", "pem"]
    assert [b.title for b in REGISTRY] == ["PKCS#11", "TPM 2.0", "key files"]


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (IdentityOptions(pkcs11_uri="pkcs11:token=t"), "pkcs11"),
        (IdentityOptions(certificate="pkcs11:token=t;object=c"), "pkcs11"),
        (IdentityOptions(certificate="c.pem", private_key="pkcs11:token=t;object=k"), "pkcs11"),
        (IdentityOptions(certificate="c.pem", private_key="handle:0x81000010"), "tpm"),
        (IdentityOptions(certificate="c.pem", private_key="HANDLE:0x81000010"), "tpm"),
        (IdentityOptions(certificate="c.pem", private_key="/nonexistent/key.pem"), "pem"),
        (IdentityOptions(certificate="bundle.p12"), "pem"),
    ],
)
def test_claims_by_scheme_and_prefix(opts: IdentityOptions, expected: str) -> None:
    assert backend_for(opts).name == expected


def test_claims_tss2_key_files_by_their_content(tmp_path: Path, pki: PKI) -> None:
    tss2 = tmp_path / "key.anything"
    tss2.write_bytes(TSS2_HEAD)
    assert backend_for(IdentityOptions(certificate="c.pem", private_key=str(tss2))).name == "tpm"
    cert, key = pki.leaf_files("reg", pki.leaf())
    assert backend_for(IdentityOptions(certificate=str(cert), private_key=str(key))).name == "pem"
    unreadable = tmp_path / "dir-not-file"
    unreadable.mkdir()
    assert backend_for(IdentityOptions(certificate="c.pem", private_key=str(unreadable))).name == "pem"


def test_a_new_backend_is_one_registry_line(monkeypatch: pytest.MonkeyPatch, pki: PKI) -> None:
    """A backend module with load/open_key and a registry line in front is picked by its claim."""
    leaf = pki.leaf()
    opened: list[str] = []

    class Keychain:
        """Stands in for a new backend module (a macOS keychain, a cloud KMS)."""

        @staticmethod
        def load(opts: IdentityOptions) -> Signer:
            from rolesanywhere_signer.backends.pem import PemSigner

            opened.append(f"load {opts.private_key}")
            return PemSigner(leaf.key, leaf.cert, (), "AWS4-X509-ECDSA-SHA256", "keychain")

        @staticmethod
        def open_key(opts: IdentityOptions) -> KeyHandle:
            from rolesanywhere_signer.backends.pem import PemKey

            opened.append(f"open_key {opts.private_key}")
            return PemKey(leaf.key, "keychain")

    module = ModuleType("keychain")
    module.load = Keychain.load  # type: ignore[attr-defined]
    module.open_key = Keychain.open_key  # type: ignore[attr-defined]
    line: Backend = LazyBackend(
        "keychain", "keychain", lambda o: bool(o.private_key and o.private_key.startswith("keychain:")), lambda: module
    )
    monkeypatch.setattr(backends, "REGISTRY", (line, *REGISTRY))
    opts = IdentityOptions(certificate="c.pem", private_key="keychain:roles-anywhere")
    signer = load_signer(opts)
    assert signer.certificate == leaf.cert
    key = backend_for(opts).open_key(opts)
    assert key.public_key() == leaf.cert.public_key()
    assert opened == ["load keychain:roles-anywhere", "open_key keychain:roles-anywhere"]
    checks = backend_for(opts).health(opts)  # no health() in the module: said so, not an AttributeError
    assert [(c.status, c.detail) for c in checks] == [("warn", "the keychain backend has no health checks yet")]
    # arguments it does not claim still reach the built-in backends
    assert backend_for(IdentityOptions(private_key="handle:0x81000001")).name == "tpm"


def test_a_pem_start_never_imports_the_other_backends(pki: PKI) -> None:
    """Claims run on every start: deciding on a PEM key must not import the PKCS#11 or TPM code."""
    cert, key = pki.leaf_files("lazy", pki.leaf())
    code = (
        "import sys\n"
        "from rolesanywhere_signer.backends import load_signer\n"
        "from rolesanywhere_signer.options import IdentityOptions\n"
        f"load_signer(IdentityOptions({str(cert)!r}, {str(key)!r})).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('rolesanywhere_signer.backends.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['rolesanywhere_signer.backends.pem']"
