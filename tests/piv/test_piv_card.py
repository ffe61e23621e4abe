"""The virtual card's PIV commands through the real stack (pcscd, vpcd, the modules): PIN change,
unblock with the PUK, key import, management-key change, and the raw APDU behaviour the modules
rely on (status VERIFY, P1=FF reset, PIN policies, chaining and GET RESPONSE)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rolesanywhere_signer import pcsc
from rolesanywhere_signer.backends import load_signer
from rolesanywhere_signer.options import IdentityOptions
from rolesanywhere_signer.signer import verify_signature
from support.pki import PKI

from . import emulator
from .virtual import MGM_HEX, PIN, PUK, YKCS11, VirtualPiv, provision


@contextmanager
def _card() -> Iterator[pcsc._Card]:
    with pcsc._context() as (lib, ctx), pcsc._connect(lib, ctx, pcsc._readers(lib, ctx)[0]) as card:
        yield card


def _pin_apdu(p1: int, pin: str | None) -> bytes:
    body = b"" if pin is None else pin.encode().ljust(8, b"\xff")
    return bytes([0x00, 0x20, p1, 0x80, len(body)]) + body if body else bytes([0x00, 0x20, p1, 0x80])


def test_apdus_the_modules_rely_on(piv: VirtualPiv, pki: PKI) -> None:
    provision(piv, 0x9A, pki.leaf("ec-p256"), pin_policy="once")
    provision(piv, 0x9C, pki.leaf("ec-p256"), pin_policy="always")
    provision(piv, 0x9E, pki.leaf("ec-p256"), pin_policy="never")
    piv.insert()
    digest = bytes(32)
    sign = {
        slot: bytes([0x00, 0x87, 0x11, slot, 38])
        + emulator.tlv(0x7C, emulator.tlv(0x82, b"") + emulator.tlv(0x81, digest))
        for slot in (0x9A, 0x9C, 0x9E)
    }
    with _card() as card:
        assert card.transmit(pcsc.SELECT_PIV)[1] == 0x9000
        assert card.transmit(_pin_apdu(0, None))[1] == 0x63C3  # status: 3 tries, nothing spent
        assert card.transmit(sign[0x9E])[1] == 0x9000  # PIN policy never
        assert card.transmit(sign[0x9A])[1] == 0x6982  # once: not yet verified
        assert card.transmit(_pin_apdu(0, PIN))[1] == 0x9000
        assert card.transmit(_pin_apdu(0, None))[1] == 0x9000  # status: verified
        assert card.transmit(sign[0x9A])[1] == 0x9000
        assert card.transmit(sign[0x9A])[1] == 0x9000  # once stays verified
        assert card.transmit(sign[0x9C])[1] == 0x9000  # always: one signature per VERIFY ...
        assert card.transmit(sign[0x9C])[1] == 0x6982  # ... and no second
        assert card.transmit(_pin_apdu(0xFF, None))[1] == 0x9000  # P1=FF: forget the PIN
        assert card.transmit(sign[0x9A])[1] == 0x6982
        # a 2048-bit public key (> 256 bytes) comes back in parts: 61xx, then GET RESPONSE
        mgm = bytes.fromhex(MGM_HEX)
        witness, sw = card.transmit(bytes.fromhex("008703 9b 04 7c028000".replace(" ", "")))
        assert sw == 0x9000
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        dec = Cipher(TripleDES(mgm), modes.ECB()).decryptor()
        plain = dec.update(witness[4:12]) + dec.finalize()
        resp = emulator.tlv(0x7C, emulator.tlv(0x80, plain) + emulator.tlv(0x81, bytes(8)))
        assert card.transmit(bytes([0x00, 0x87, 0x03, 0x9B, len(resp)]) + resp)[1] == 0x9000
        gen = emulator.tlv(0xAC, emulator.tlv(0x80, b"\x07"))
        data, sw = card.transmit(bytes([0x00, 0x47, 0x00, 0x9D, len(gen)]) + gen)
        assert sw == 0x9000 and len(data) > 256 and data[:2] == b"\x7f\x49"
    c = piv.counters()
    assert (c["verify"], c["verify_status"]) == (1, 2)
    assert piv.state()["slots"]["9d"]["origin"] == "generated"


def test_unblock_with_the_puk_then_sign(piv: VirtualPiv, pki: PKI, pin_file: Path) -> None:
    """Locked, then unblocked with the PUK through ykcs11 (RESET RETRY), then the key signs."""
    import pkcs11

    leaf = pki.leaf("ec-p256")
    provision(piv, 0x9A, leaf)
    piv.update(pin_retries=0)
    piv.insert()
    token = pkcs11.lib(YKCS11).get_slots(token_present=True)[0].get_token()
    with token.open(rw=True) as session:
        session.set_pin(f"puk:{PUK}", f"pin:{PIN}")  # ykcs11's way to unblock: "puk:<PUK>" -> "pin:<new PIN>"
    assert piv.state()["pin_retries"] == 3
    signer = load_signer(IdentityOptions(pkcs11_uri=f"pkcs11:id=%01?pin-source=file:{pin_file}", pkcs11_lib=YKCS11))
    try:
        assert verify_signature(leaf.cert.public_key(), signer.sign(b"x"), b"x", "sha256")
    finally:
        signer.close()


def test_change_pin_import_key_and_management_key_through_ykcs11(piv: VirtualPiv, pki: PKI, tmp_path: Path) -> None:
    piv.insert()
    imported = pki.leaf("ec-p384")
    so = ["pkcs11-tool", "--module", YKCS11, "--login", "--login-type", "so", "--so-pin", MGM_HEX]

    def tool(*args: str) -> None:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    import pkcs11
    from pkcs11 import Attribute as A
    from pkcs11.util.ec import encode_named_curve_parameters

    token = pkcs11.lib(YKCS11).get_slots(token_present=True)[0].get_token()
    with token.open(rw=True, so_pin=MGM_HEX) as session:  # IMPORT KEY into 9d, as ykcs11 takes it
        session.create_object(
            {
                A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                A.KEY_TYPE: pkcs11.KeyType.EC,
                A.ID: b"\x03",
                A.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.34"),
                A.VALUE: imported.key.private_numbers().private_value.to_bytes(48, "big"),
            }
        )
    pkcs11.unload(YKCS11)  # pkcs11-tool below is another process; this one lets go of the card
    assert piv.state()["slots"]["9d"]["origin"] == "imported"
    new_mgm = "0a0b0c0d0e0f10111213141516171819" + "1a1b1c1d1e1f2021"
    tool(*so, "--change-pin", "--new-pin", new_mgm)  # SET MGMKEY
    assert piv.state()["mgm"] == new_mgm
    tool("pkcs11-tool", "--module", YKCS11, "--change-pin", "--pin", PIN, "--new-pin", "97531")  # CHANGE REFERENCE
    assert piv.state()["pin"] == "97531"


@pytest.mark.parametrize("algo", [0x11, 0x14])
def test_import_rejected_without_the_management_key(piv: VirtualPiv, algo: int) -> None:
    piv.insert()
    with _card() as card:
        card.transmit(pcsc.SELECT_PIV)
        body = emulator.tlv(0x06, bytes(32 if algo == 0x11 else 48))
        assert card.transmit(bytes([0x00, 0xFE, algo, 0x9A, len(body)]) + body)[1] == 0x6982
