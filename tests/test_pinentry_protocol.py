"""The pinentry client against misbehaving programs: every failure is a clear SecretError, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolesanywhere_signer import pinentry
from rolesanywhere_signer.errors import SecretError


def _program(tmp_path: Path, body: str) -> str:
    p = tmp_path / "pinentry-fake"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def _ask(program: str) -> str:
    return pinentry.get_pin(program, description="PIN for token 't'", what="the PIN")


def test_a_good_answer_with_escapes(tmp_path: Path) -> None:
    prog = _program(
        tmp_path,
        'echo "OK hi"\nwhile read -r c r; do case "$c" in GETPIN) echo "D 12%2534"; echo OK;; '
        'BYE) echo OK; exit 0;; *) echo "# comment"; echo OK;; esac; done\n',
    )
    assert _ask(prog) == "12%34"


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("echo 'OK hi'\nread -r line\nexit 0\n", "exited without giving a PIN"),
        ("echo 'hello, I am not a pinentry'\n", "does not speak the pinentry protocol"),
        ("printf 'OK %05000d' 0\nsleep 5\n", "over-long line"),
        (
            'echo "OK hi"\nwhile read -r c r; do case "$c" in GETPIN) echo "ERR 83886179 Operation cancelled";; '
            "*) echo OK;; esac; done\n",
            "cancelled",
        ),
        (
            'echo "OK hi"\nwhile read -r c r; do case "$c" in GETPIN) echo "D "; echo OK;; *) echo OK;; esac; done\n',
            "is empty",
        ),
    ],
)
def test_misbehaving_pinentry(tmp_path: Path, body: str, phrase: str) -> None:
    with pytest.raises(SecretError, match=phrase):
        _ask(_program(tmp_path, body))


def test_a_silent_pinentry_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pinentry, "ANSWER_TIMEOUT", 0.3)
    with pytest.raises(SecretError, match="did not answer in time"):
        _ask(_program(tmp_path, "sleep 5\n"))


def test_missing_program_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="nonexistent/pinentry was not found"):
        _ask("/nonexistent/pinentry")
