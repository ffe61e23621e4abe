"""The PIN from a pinentry program: Debian's pinentry-tty on a pseudo-terminal, and a small fake
pinentry for cancel, a wrong PIN and a missing program. Against the virtual PIV card (OpenSC)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rolesanywhere_signer.backends import load_signer
from rolesanywhere_signer.errors import SignerError
from rolesanywhere_signer.options import IdentityOptions
from support.pki import PKI

from .tty import PromptAnswerer
from .virtual import OPENSC, PIN, VirtualPiv, provision

FAKE = """#!/bin/sh
# speaks just enough Assuan; FAKE_PINENTRY_PIN is the answer, or "cancel"
echo "OK Pleased to meet you"
while read -r cmd rest; do
  case "$cmd" in
    GETPIN) echo getpin >> "$FAKE_PINENTRY_LOG"
      if [ "$FAKE_PINENTRY_PIN" = cancel ]; then echo "ERR 83886179 Operation cancelled <Pinentry>"
      else echo "D $FAKE_PINENTRY_PIN"; echo OK; fi ;;
    SETDESC) echo "$rest" >> "$FAKE_PINENTRY_LOG"; echo OK ;;
    BYE) echo "OK closing connection"; exit 0 ;;
    *) echo OK ;;
  esac
done
"""


@pytest.fixture
def card(piv: VirtualPiv, pki: PKI) -> VirtualPiv:
    provision(piv, 0x9A, pki.leaf("ec-p256", cn="piv pinentry"))
    piv.insert()
    return piv


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``pinentry`` on PATH; its log holds one line per GETPIN and the descriptions."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "pinentry"
    prog.write_text(FAKE)
    prog.chmod(0o755)
    log = tmp_path / "pinentry.log"
    monkeypatch.setenv("FAKE_PINENTRY_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", str(tmp_path / "no-terminal"))
    monkeypatch.delenv("ROLESANYWHERE_SIGNER_PKCS11_PIN", raising=False)
    return log


def _sign(uri: str) -> bytes:
    signer = load_signer(IdentityOptions(pkcs11_uri=uri, pkcs11_lib=OPENSC))
    try:
        return signer.sign(b"data")
    finally:
        signer.close()


def _getpins(log: Path) -> int:
    return log.read_text().splitlines().count("getpin") if log.exists() else 0


def test_pinentry_tty_on_a_pseudo_terminal(card: VirtualPiv, monkeypatch: pytest.MonkeyPatch) -> None:
    program = shutil.which("pinentry-tty")
    assert program, "pinentry-tty is installed by scripts/install-system.sh"
    tty = PromptAnswerer(PIN, trigger=b"PIN:")
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", tty.path)
    try:
        assert _sign(f"pkcs11:id=%01?pin-source=pinentry:{program}")
    finally:
        tty.close()
    assert tty.prompts == 1, tty.output
    assert PIN.encode() not in tty.output  # pinentry-tty does not echo
    assert card.counters()["verify"] == 1


def test_pinentry_chosen_automatically_without_a_terminal(
    card: VirtualPiv, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PINENTRY_PIN", PIN)
    monkeypatch.setenv("DISPLAY", ":0")  # a desktop session, but no terminal
    assert _sign("pkcs11:id=%01")
    assert _getpins(fake) == 1
    assert "PIN for token" in fake.read_text()


def test_without_a_display_no_pinentry_is_tried(card: VirtualPiv, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SignerError, match="no terminal"):
        _sign("pkcs11:id=%01")
    assert _getpins(fake) == 0


def test_cancel_is_final(card: VirtualPiv, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PINENTRY_PIN", "cancel")
    with pytest.raises(SignerError, match="cancelled") as e:
        _sign("pkcs11:id=%01?pin-source=pinentry:")
    assert "Traceback" not in e.value.diagnostics()
    assert _getpins(fake) == 1  # asked once, never again
    assert card.counters()["verify"] == 0 and card.state()["pin_retries"] == 3


def test_wrong_pin_from_pinentry_is_not_retried(card: VirtualPiv, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PINENTRY_PIN", "000000")
    with pytest.raises(SignerError, match="wrong PIN") as e:
        _sign("pkcs11:id=%01?pin-source=pinentry:")
    assert "2 tries left" in str(e.value) and "000000" not in e.value.diagnostics()
    assert _getpins(fake) == 1
    assert card.state()["pin_retries"] == 2


def test_pinentry_program_not_found(card: VirtualPiv, fake: Path) -> None:
    with pytest.raises(SignerError, match="was not found"):
        _sign("pkcs11:id=%01?pin-source=pinentry:/nonexistent/pinentry")
    assert card.counters()["verify"] == 0
