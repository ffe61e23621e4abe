"""The credentials-file editor: byte preservation, atomic writes, permissions, symlinks, locking."""

from __future__ import annotations

import configparser
import datetime as dt
import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from rolesanywhere_signer import credfile
from rolesanywhere_signer.credentials import Credentials
from rolesanywhere_signer.credfile import update_profile, write_credentials
from rolesanywhere_signer.errors import InputError, UsageError

V = {"aws_access_key_id": "AKNEW", "aws_secret_access_key": "SKNEW", "aws_session_token": "TKNEW"}
NEW_BLOCK = b"aws_access_key_id = AKNEW\naws_secret_access_key = SKNEW\naws_session_token = TKNEW"


def creds(n: int = 1) -> Credentials:
    return Credentials(f"AK{n}", f"SK{n}", f"TK{n}", dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))


CASES = {
    "empty": (b"", b"[default]\n" + NEW_BLOCK + b"\n"),
    "replace in place, everything else kept": (
        b"# my creds\n[other]\naws_access_key_id = O\n\n[default]\nregion = eu-west-1\n"
        b"aws_access_key_id=OLD\n; note\naws_secret_access_key =  OLDS\naws_session_token= OLDT\nfoo = bar\n\n"
        b"[last]\nx = 1\n",
        b"# my creds\n[other]\naws_access_key_id = O\n\n[default]\nregion = eu-west-1\n"
        b"aws_access_key_id=AKNEW\n; note\naws_secret_access_key =  SKNEW\naws_session_token= TKNEW\nfoo = bar\n\n"
        b"[last]\nx = 1\n",
    ),
    "target is the last section without a final newline": (
        b"[a]\nk = 1\n\n[default]\naws_access_key_id = OLD\nkeep = me",
        b"[a]\nk = 1\n\n[default]\naws_access_key_id = AKNEW\nkeep = me\n"
        b"aws_secret_access_key = SKNEW\naws_session_token = TKNEW",
    ),
    "last line is the target key without a final newline": (
        b"[default]\naws_session_token = OLD",
        b"[default]\naws_session_token = TKNEW\naws_access_key_id = AKNEW\naws_secret_access_key = SKNEW",
    ),
    "missing profile is appended": (
        b"[a]\nk = 1\n",
        b"[a]\nk = 1\n\n[default]\n" + NEW_BLOCK + b"\n",
    ),
    "missing profile appended to a file without final newline": (
        b"[a]\nk = 1",
        b"[a]\nk = 1\n\n[default]\n" + NEW_BLOCK,
    ),
    "CRLF preserved": (
        b"[default]\r\naws_access_key_id = OLD\r\nregion = x\r\n",
        b"[default]\r\naws_access_key_id = AKNEW\r\nregion = x\r\n"
        b"aws_secret_access_key = SKNEW\r\naws_session_token = TKNEW\r\n",
    ),
    "lookalike keys do not match": (
        b"[default]\naws_access_key_id_backup = B\nxaws_secret_access_key = C\naws_session_token_old = D\n",
        b"[default]\naws_access_key_id_backup = B\nxaws_secret_access_key = C\naws_session_token_old = D\n"
        + NEW_BLOCK
        + b"\n",
    ),
    "other profile's keys untouched": (
        b"[default-2]\naws_access_key_id = X\n[default]\naws_access_key_id = Y\n",
        b"[default-2]\naws_access_key_id = X\n[default]\naws_access_key_id = AKNEW\n"
        b"aws_secret_access_key = SKNEW\naws_session_token = TKNEW\n",
    ),
    "upper-case keys (botocore's parser lowercases them)": (
        b"[default]\nAWS_ACCESS_KEY_ID = OLD\n",
        b"[default]\nAWS_ACCESS_KEY_ID = AKNEW\naws_secret_access_key = SKNEW\naws_session_token = TKNEW\n",
    ),
    "continuation lines of an old value go with it": (
        b"[default]\naws_session_token = OLD\n  MORE\nx = 1\n",
        b"[default]\naws_session_token = TKNEW\nx = 1\naws_access_key_id = AKNEW\naws_secret_access_key = SKNEW\n",
    ),
    "duplicate key: first replaced, later copies dropped": (
        b"[default]\naws_access_key_id = A\naws_access_key_id = B\n",
        b"[default]\naws_access_key_id = AKNEW\naws_secret_access_key = SKNEW\naws_session_token = TKNEW\n",
    ),
    "non-ASCII comment bytes survive": (
        "# café ☕\n[default]\naws_access_key_id = A\n".encode(),
        "# café ☕\n[default]\naws_access_key_id = AKNEW\n".encode()
        + b"aws_secret_access_key = SKNEW\naws_session_token = TKNEW\n",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_update_profile_preserves_bytes(case: str) -> None:
    before, after = CASES[case]
    got = update_profile(before, "default", V)
    assert got == after
    # idempotent, and readable by the parser botocore uses
    assert update_profile(got, "default", V) == got
    cp = configparser.RawConfigParser()
    cp.read_string(got.decode())
    assert cp.get("default", "aws_secret_access_key") == "SKNEW"


def test_other_profile_targeted() -> None:
    data = b"[default]\naws_access_key_id = D\n\n[dev]\naws_access_key_id = OLD\n"
    got = update_profile(data, "dev", V)
    assert got.startswith(b"[default]\naws_access_key_id = D\n\n[dev]\naws_access_key_id = AKNEW\n")


@pytest.mark.parametrize("name", ["", " dev", "dev ", "a]b", "[x", "a\nb", "#x"])
def test_bad_profile_names(name: str) -> None:
    with pytest.raises(UsageError):
        credfile.check_profile_name(name)


def test_new_file_and_directory_modes(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".aws" / "credentials"
    write_credentials(str(path), "default", creds())
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert b"aws_access_key_id = AK1" in path.read_bytes()
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in ("credentials", ".credentials.lock")]
    assert leftovers == []


def test_loose_permissions_fixed_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "credentials"
    path.write_bytes(b"[default]\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, "rolesanywhere_signer"):
        write_credentials(str(path), "default", creds())
    assert path.stat().st_mode & 0o777 == 0o600
    assert any("readable by others" in r.getMessage() for r in caplog.records)


def test_symlink_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "aws-credentials"
    real.parent.mkdir()
    real.write_bytes(b"# managed\n[default]\n")
    link = tmp_path / ".aws" / "credentials"
    link.parent.mkdir()
    link.symlink_to(real)
    write_credentials(str(link), "default", creds())
    assert link.is_symlink()
    assert real.read_bytes().startswith(b"# managed\n[default]\naws_access_key_id = AK1")


def test_failing_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "credentials"
    old = b"[keep]\nx = 1\n[default]\naws_access_key_id = OLD\n"
    path.write_bytes(old)

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rolesanywhere_signer.credfile.os.write", full_disk)
    with pytest.raises(InputError, match="disk is full"):
        write_credentials(str(path), "default", creds())
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [".credentials.lock", "credentials"]


def test_failing_rename_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "credentials"
    old = b"[default]\naws_access_key_id = OLD\n"
    path.write_bytes(old)

    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("rolesanywhere_signer.credfile.os.replace", refuse)
    with pytest.raises(InputError, match="left intact"):
        write_credentials(str(path), "default", creds())
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [".credentials.lock", "credentials"]


def test_two_updaters_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    errors: list[BaseException] = []

    def updater(profile: str) -> None:
        try:
            for i in range(40):
                write_credentials(str(path), profile, creds(i))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=updater, args=(p,)) for p in ("one", "two", "three")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    cp = configparser.RawConfigParser()
    cp.read_string(path.read_text())
    assert sorted(cp.sections()) == ["one", "three", "two"]  # no lost update
    assert all(cp.get(s, "aws_access_key_id") == "AK39" for s in cp.sections())


def test_lock_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    write_credentials(str(path), "default", creds(1))
    fd = os.open(tmp_path / ".credentials.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    done = threading.Event()

    def second_writer() -> None:
        write_credentials(str(path), "default", creds(2))
        done.set()

    t = threading.Thread(target=second_writer)
    t.start()
    time.sleep(0.3)
    assert not done.is_set()  # waits for the other holder
    assert b"AK1" in path.read_bytes()
    os.close(fd)
    t.join(5)
    assert done.is_set() and b"AK2" in path.read_bytes()


def test_unusable_locations(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        write_credentials(str(blocker / "credentials"), "default", creds())
    (tmp_path / "dir-as-file").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_credentials(str(tmp_path / "dir-as-file"), "default", creds())


def test_private_file(tmp_path: Path) -> None:
    p = tmp_path / "run" / "token"
    credfile.write_private_file(str(p), b"tok")
    assert p.read_bytes() == b"tok" and p.stat().st_mode & 0o777 == 0o600
    assert p.parent.stat().st_mode & 0o777 == 0o700
