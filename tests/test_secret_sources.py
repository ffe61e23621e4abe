"""One helper decides where a PIN or password comes from: flag, file, environment, terminal, in order."""

from __future__ import annotations

import os
import pty
import threading
from pathlib import Path

import pytest

from rolesanywhere_signer.errors import SecretError
from rolesanywhere_signer.secret import Secret, first_secret, from_env, from_file, from_terminal, from_value


def test_first_given_source_wins_in_the_documented_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\nsecond line ignored\n")
    monkeypatch.setenv("RS_TEST_SECRET", "from-env")
    master, slave = pty.openpty()  # a real terminal for the prompt; answered once the prompt shows

    def answer() -> None:
        seen = b""
        while b"Password: " not in seen:
            seen += os.read(master, 100)
        os.write(master, b"from-terminal\n")

    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", os.ttyname(slave))

    def chain(flag: Secret | None, path: str | None, env: str) -> Secret | None:
        return first_secret(
            from_value(flag),
            from_file(path, what="test password"),
            from_env(env),
            from_terminal("Password: ", what="the test password", hint="set RS_TEST_SECRET"),
        )

    assert chain(Secret("from-flag"), str(pw_file), "RS_TEST_SECRET") == Secret("from-flag")
    assert chain(None, str(pw_file), "RS_TEST_SECRET") == Secret("from-file")
    assert chain(None, None, "RS_TEST_SECRET") == Secret("from-env")
    monkeypatch.setenv("RS_TEST_SECRET", "")  # empty counts as unset
    responder = threading.Thread(target=answer, daemon=True)
    responder.start()
    assert chain(None, None, "RS_TEST_SECRET") == Secret("from-terminal")
    responder.join(5)
    assert Secret("") == chain(Secret(""), None, "RS_TEST_SECRET")  # an empty flag is still given: callers judge it
    os.close(master)
    os.close(slave)


def test_no_source_and_no_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RS_TEST_SECRET", raising=False)
    assert first_secret(from_value(None), from_file(None, what="x"), from_env("RS_TEST_SECRET")) is None
    monkeypatch.setenv("ROLESANYWHERE_SIGNER_TTY", str(tmp_path / "no-such-tty"))
    with pytest.raises(SecretError, match="no terminal") as e:
        first_secret(from_env("RS_TEST_SECRET"), from_terminal("PIN: ", what="the PIN", hint="set RS_TEST_SECRET"))
    assert e.value.hint == "set RS_TEST_SECRET"


def test_sources_are_lazy_and_a_bad_file_is_reported(tmp_path: Path) -> None:
    asked: list[str] = []

    def never() -> Secret | None:
        asked.append("never")
        return Secret("unused")

    warned: list[str] = []
    assert first_secret(from_value(Secret("v"), warn=lambda: warned.append("w")), never) == Secret("v")
    assert asked == [] and warned == ["w"]
    with pytest.raises(SecretError, match="does not exist"):
        first_secret(from_file(str(tmp_path / "missing"), what="test password"), never)
    assert asked == []
