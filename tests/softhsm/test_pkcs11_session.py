"""Long-running use on real SoftHSM2: one login, thread-safe signing, recovery after removal, key generation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rolesanywhere_signer.backends import pkcs11 as p11
from rolesanywhere_signer.errors import BackendError, InputError
from rolesanywhere_signer.options import IdentityOptions
from rolesanywhere_signer.signer import DigestName, verify_signature
from support.pki import PKI

from .softhsm import MODULE, SPY, SoftHSM, login_results, remove


def _opts(hsm: SoftHSM, obj: str = "k", lib: str = MODULE, **kw: object) -> IdentityOptions:
    return IdentityOptions(pkcs11_uri=hsm.uri("tok", obj), pkcs11_lib=lib, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tok(hsm: SoftHSM, pki: PKI) -> SoftHSM:
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    return hsm


@pytest.mark.skipif(not __import__("os").path.exists(SPY), reason="needs OpenSC pkcs11-spy")
def test_one_login_for_many_signatures_from_many_threads(
    tok: SoftHSM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "spy.log"
    for k, v in tok.spy_env(log).items():
        monkeypatch.setenv(k, v)
    import pkcs11

    pkcs11.unload(SPY)
    signer = p11.load(_opts(tok, lib=SPY))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(10):
                msg = f"{threading.get_ident()}-{i}".encode()
                assert verify_signature(signer.certificate.public_key(), signer.sign(msg), msg)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    signer.close()
    signer.close()  # safe twice
    pkcs11.unload(SPY)
    assert errors == []
    assert login_results(log) == ["CKR_OK"]


def test_token_removed_and_restored(tok: SoftHSM, tmp_path: Path) -> None:
    signer = p11.load(_opts(tok))
    pub = signer.certificate.public_key()
    assert verify_signature(pub, signer.sign(b"one"), b"one")
    tok.pin_file.unlink()  # from now on the PIN exists only in the signer's memory
    tokdir = tok.token_dir("tok")
    remove(tokdir, tmp_path / "pulled-out")
    with pytest.raises(BackendError, match="is not present"):
        signer.sign(b"two")
    remove(tmp_path / "pulled-out", tokdir)
    assert verify_signature(pub, signer.sign(b"three"), b"three")  # re-opened and logged in again
    assert verify_signature(pub, signer.sign(b"four"), b"four")
    signer.close()


def test_library_reinitialised_under_the_signer(tok: SoftHSM) -> None:
    import pkcs11

    signer = p11.load(_opts(tok))
    assert verify_signature(signer.certificate.public_key(), signer.sign(b"a"), b"a")
    pkcs11.lib(MODULE).reinitialize()  # every session handle is now invalid (CKR_SESSION_HANDLE_INVALID)
    tok.pin_file.unlink()
    assert verify_signature(signer.certificate.public_key(), signer.sign(b"b"), b"b")
    signer.close()


@pytest.mark.parametrize("key_type", ["rsa2048", "rsa3072", "ec-p256", "ec-p384"])
def test_generate_key_on_token(hsm: SoftHSM, key_type: str) -> None:
    import pkcs11
    from pkcs11 import Attribute as A
    from pkcs11 import ObjectClass as OC

    hsm.init_token("tok")
    opts = IdentityOptions(pkcs11_uri=hsm.uri("tok", "new", extra=";id=%42"), pkcs11_lib=MODULE)
    public = p11.generate_key(opts, key_type)
    with pytest.raises(InputError, match="already has an object with id 42"):
        p11.generate_key(opts, key_type)
    other = IdentityOptions(pkcs11_uri=hsm.uri("tok", "new", extra=";id=%43"), pkcs11_lib=MODULE)
    with pytest.raises(InputError, match="already has an object with object 'new'"):
        p11.generate_key(other, key_type)
    with pkcs11.lib(MODULE).get_token(token_label="tok").open(user_pin="1234") as s:
        (priv,) = list(s.get_objects({A.CLASS: OC.PRIVATE_KEY, A.ID: b"\x42"}))
        assert priv[A.SENSITIVE] is True and priv[A.EXTRACTABLE] is False and priv[A.TOKEN] is True
        assert priv[A.LABEL] == "new" and priv[A.SIGN] is True
    key = p11.open_key(opts)
    try:
        from rolesanywhere_signer.certs import public_keys_equal

        assert public_keys_equal(key.public_key(), public)
        assert verify_signature(public, key.sign(b"csr body"), b"csr body")
    finally:
        key.close()


def test_health(tok: SoftHSM) -> None:
    checks = {c.name: c for c in p11.health(_opts(tok))}
    assert [c.status for c in checks.values()] == ["pass", "pass", "pass"]
    assert "CKM_ECDSA" in checks["PKCS#11 mechanisms"].detail
    bad = p11.health(IdentityOptions(pkcs11_uri="pkcs11:token=nope", pkcs11_lib=MODULE))
    assert bad[-1].status == "fail" and "no token matches" in bad[-1].detail
    nolib = p11.health(IdentityOptions(pkcs11_uri="pkcs11:token=tok", pkcs11_lib="/nonexistent.so"))
    assert nolib[0].status == "fail"


def test_touch_notice_when_a_signature_is_slow(tok: SoftHSM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = tmp_path / "tty"
    tty.write_text("")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", str(tty))
    monkeypatch.setattr(p11, "TOUCH_DELAY", 0.0)
    signer = p11.load(_opts(tok))
    key = signer._key
    assert isinstance(key, p11.TokenKey)
    key._touch = True  # SoftHSM is no hardware slot; pretend, as a YubiKey reader is
    raw = key._raw_sign

    def slow(data: bytes, digest: DigestName) -> bytes:
        # the "touch": the token waits until the notice has reached the terminal (bounded)
        deadline = time.monotonic() + 10
        while not tty.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        return raw(data, digest)

    key._raw_sign = slow  # type: ignore[method-assign]
    signer.sign(b"x", "sha384")  # sha384 goes through _raw_sign (sha256 EC is inlined); the timer is the same
    signer.close()
    assert "touch your security key" in tty.read_text()
