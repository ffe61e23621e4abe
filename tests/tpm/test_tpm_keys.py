"""The TPM backend in process on swtpm: keys from every tool, signing, generation, long-running use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from rolesanywhere_signer.backends import tpm
from rolesanywhere_signer.certs import public_keys_equal
from rolesanywhere_signer.errors import BackendError, InputError, UsageError
from rolesanywhere_signer.options import IdentityOptions
from rolesanywhere_signer.protocol import ALGORITHM_ECDSA, ALGORITHM_RSA
from rolesanywhere_signer.secret import Secret
from rolesanywhere_signer.signer import verify_signature

from .conftest import PASSWORD, Key
from .swtpm import Swtpm

ALL_KEYS = [
    "openssl-ec",
    "openssl-ec-pw",
    "openssl-rsa",
    "openssl-rsa-pw",
    "tools-ec",
    "tools-rsa-handle",
    "tools-ec-handle",
    "pytss-ec",
]


def _opts(swtpm: Swtpm, key: Key, **kw: object) -> IdentityOptions:
    if key.password is not None and "tpm_key_password" not in kw:
        kw["tpm_key_password"] = Secret(key.password)
    if key.password is None and key.arg.startswith("handle:"):
        kw.setdefault("no_tpm_key_password", True)
    return IdentityOptions(certificate=str(key.cert), private_key=key.arg, tcti=swtpm.tcti, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL_KEYS)
def test_every_kind_of_key_signs_for_its_certificate(swtpm: Swtpm, keys: dict[str, Key], name: str) -> None:
    key = keys[name]
    signer = tpm.load(_opts(swtpm, key))
    try:
        assert signer.algorithm == (ALGORITHM_RSA if "rsa" in name else ALGORITHM_ECDSA)
        for msg in (b"AWS4-X509-ECDSA-SHA256\n20260101T000000Z\nscope\nhash", b""):
            sig = signer.sign(msg)
            assert verify_signature(key.issued.cert.public_key(), sig, msg)
        if "rsa" not in name:
            assert sig[0] == 0x30  # DER SEQUENCE{r, s}, converted from the TPM's separate r and s
    finally:
        signer.close()


def test_password_from_file_and_environment(
    swtpm: Swtpm, keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys["openssl-rsa-pw"]
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    for opts in (_opts(swtpm, key, tpm_key_password=None, tpm_key_password_file=str(pw_file)),):
        s = tpm.load(opts)
        assert verify_signature(key.issued.cert.public_key(), s.sign(b"x"), b"x")
        s.close()
    monkeypatch.setenv(tpm.PASSWORD_ENV, PASSWORD)
    s = tpm.load(_opts(swtpm, key, tpm_key_password=None))
    assert verify_signature(key.issued.cert.public_key(), s.sign(b"y"), b"y")
    s.close()


def test_five_signers_in_a_row_leave_no_objects(swtpm: Swtpm, keys: dict[str, Key]) -> None:
    """swtpm has three object slots: each close() must flush its key."""
    for name in ("openssl-ec", "openssl-rsa", "pytss-ec", "openssl-ec", "tools-ec"):
        s = tpm.load(_opts(swtpm, keys[name]))
        s.sign(b"m")
        s.close()
        s.close()  # twice is fine
    assert swtpm.transient_handles() == []
    with pytest.raises(BackendError, match="closed"):
        s.sign(b"m")


def test_one_key_loaded_once_and_shared_by_threads(swtpm: Swtpm, keys: dict[str, Key]) -> None:
    key = keys["openssl-ec"]
    signer = tpm.load(_opts(swtpm, key))
    results: list[bool] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                msg = f"{i}-{j}".encode()
                results.append(verify_signature(key.issued.cert.public_key(), signer.sign(msg), msg))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(swtpm.transient_handles()) == 1  # loaded once, not per signature
    signer.close()
    assert not errors and len(results) == 60 and all(results)


def test_open_key_alone_for_csr(swtpm: Swtpm, keys: dict[str, Key]) -> None:
    key = keys["tools-rsa-handle"]
    handle = tpm.open_key(IdentityOptions(private_key=key.arg, tcti=swtpm.tcti, tpm_key_password=Secret(PASSWORD)))
    try:
        assert public_keys_equal(handle.public_key(), key.issued.cert.public_key())
        assert verify_signature(handle.public_key(), handle.sign(b"csr"), b"csr")
    finally:
        handle.close()
    # the persistent key is still there after close
    assert "0x81000010" in swtpm.run("tpm2_getcap", "handles-persistent").stdout


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa2048"])
def test_generate_key_file_loads_in_openssl_and_signs(swtpm: Swtpm, tmp_path: Path, key_type: str) -> None:
    out = tmp_path / f"{key_type}.tss"
    with_pw = key_type == "rsa2048"
    opts = IdentityOptions(tcti=swtpm.tcti, tpm_key_password=Secret(PASSWORD) if with_pw else None)
    public = tpm.generate_key(opts, key_type, output=str(out))
    assert out.stat().st_mode & 0o777 == 0o600
    from_openssl = load_pem_public_key(swtpm.public_pem(out, PASSWORD if with_pw else None))
    assert public_keys_equal(public, from_openssl)
    key = tpm.open_key(
        IdentityOptions(private_key=str(out), tcti=swtpm.tcti, tpm_key_password=Secret(PASSWORD) if with_pw else None)
    )
    try:
        assert verify_signature(public, key.sign(b"z"), b"z")
    finally:
        key.close()
    with pytest.raises(InputError, match="already exists"):
        tpm.generate_key(opts, key_type, output=str(out))


def test_generate_key_at_a_persistent_handle(swtpm: Swtpm) -> None:
    opts = IdentityOptions(tcti=swtpm.tcti)
    public = tpm.generate_key(opts, "ec-p256", persistent_handle=0x81000020)
    try:
        key = tpm.open_key(IdentityOptions(private_key="handle:0x81000020", tcti=swtpm.tcti, no_tpm_key_password=True))
        assert public_keys_equal(key.public_key(), public)
        assert verify_signature(public, key.sign(b"p"), b"p")
        key.close()
        with pytest.raises(InputError, match="already in use"):
            tpm.generate_key(opts, "ec-p256", persistent_handle=0x81000020)
    finally:
        swtpm.run("tpm2_evictcontrol", "-C", "o", "-c", "0x81000020")
    with pytest.raises(InputError, match="not an owner-hierarchy persistent handle"):
        tpm.generate_key(opts, "ec-p256", persistent_handle=0x81800000)
    with pytest.raises(UsageError, match="not one of"):
        tpm.generate_key(opts, "ed25519", output="x")


def test_recovers_after_the_tpm_restarts(fresh_tpm: Swtpm, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same swtpm process restarted on the same state: the transient key is gone and is loaded again."""
    path = fresh_tpm.openssl_key(tmp_path / "k.tss", "rsa:2048", PASSWORD)
    key = tpm.open_key(IdentityOptions(private_key=str(path), tcti=fresh_tpm.tcti, tpm_key_password=Secret(PASSWORD)))
    try:
        pub = key.public_key()
        assert verify_signature(pub, key.sign(b"before"), b"before")
        fresh_tpm.restart()
        assert verify_signature(pub, key.sign(b"after"), b"after")
        fresh_tpm.restart()
        fresh_tpm.restart()
        assert verify_signature(pub, key.sign(b"again"), b"again")
    finally:
        key.close()


def test_sign_while_the_tpm_is_down_fails_clearly_then_recovers(fresh_tpm: Swtpm, tmp_path: Path) -> None:
    """A failed reconnect must leave the key usable once the TPM is back (no AttributeError on None)."""
    path = fresh_tpm.openssl_key(tmp_path / "k.tss", "ec:P-256")
    key = tpm.open_key(IdentityOptions(private_key=str(path), tcti=fresh_tpm.tcti))
    try:
        assert verify_signature(key.public_key(), key.sign(b"up"), b"up")
        fresh_tpm.stop()
        for _ in range(2):  # twice: the second call starts from the failed recovery's state
            with pytest.raises(BackendError):
                key.sign(b"down")
        fresh_tpm.restart()  # powered on again on the same port
        assert verify_signature(key.public_key(), key.sign(b"back"), b"back")
    finally:
        key.close()


def test_recovers_when_the_handle_is_flushed(fresh_tpm: Swtpm, tmp_path: Path) -> None:
    path = fresh_tpm.openssl_key(tmp_path / "k.tss", "ec:P-256")
    key = tpm.open_key(IdentityOptions(private_key=str(path), tcti=fresh_tpm.tcti))
    try:
        assert verify_signature(key.public_key(), key.sign(b"1"), b"1")
        fresh_tpm.flush_all()  # as a resource manager or another program would
        assert fresh_tpm.transient_handles() == []
        assert verify_signature(key.public_key(), key.sign(b"2"), b"2")
        assert len(fresh_tpm.transient_handles()) == 1
    finally:
        key.close()


def test_persistent_key_survives_restart(fresh_tpm: Swtpm) -> None:
    public = tpm.generate_key(IdentityOptions(tcti=fresh_tpm.tcti), "ec-p256", persistent_handle=0x81000030)
    key = tpm.open_key(IdentityOptions(private_key="handle:81000030", tcti=fresh_tpm.tcti, no_tpm_key_password=True))
    try:
        fresh_tpm.restart()
        assert verify_signature(public, key.sign(b"r"), b"r")
    finally:
        key.close()


def test_health_reports_tcti_lockout_and_key(swtpm: Swtpm, keys: dict[str, Key]) -> None:
    checks = tpm.health(_opts(swtpm, keys["openssl-ec"]))
    by_name = {c.name: c for c in checks}
    assert by_name["TPM"].status == "pass" and swtpm.tcti in by_name["TPM"].detail
    assert by_name["TPM lockout"].status == "pass"
    assert by_name["TPM key"].status == "pass" and "EC P-256" in by_name["TPM key"].detail
    dead = tpm.health(IdentityOptions(private_key=keys["openssl-ec"].arg, tcti="swtpm:host=127.0.0.1,port=1"))
    assert dead[0].status == "fail" and "swtpm:host=127.0.0.1,port=1" in dead[0].detail


def test_tcti_discovery_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rolesanywhere_signer.backends.tpm_tcti import resolve

    for var in ("TPM2TOOLS_TCTI", "TCTI", "TPM_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TPM_DEVICE", "/dev/tpm7")
    assert resolve(None).spec == "device:/dev/tpm7"
    monkeypatch.setenv("TCTI", "mssim:port=2321")
    assert resolve(None).spec == "mssim:port=2321"
    monkeypatch.setenv("TPM2TOOLS_TCTI", "tabrmd")
    assert (resolve(None).spec, resolve(None).origin) == ("tabrmd", "TPM2TOOLS_TCTI")
    assert resolve("device:/dev/tpmrm0").origin == "--tcti"
    import socket

    sock_path = tmp_path / "tpm.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        monkeypatch.delenv("TPM2TOOLS_TCTI")
        monkeypatch.delenv("TCTI")
        monkeypatch.setenv("TPM_DEVICE", str(sock_path))
        assert resolve(None).spec == f"swtpm:path={sock_path}"
    with pytest.raises(InputError, match="not a TCTI"):
        resolve("bad name!")
