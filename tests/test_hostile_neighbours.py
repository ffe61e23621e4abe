"""Hostile neighbours: another local user (``nobody``) attacks root's runs through the file system.

Each case of issue 12 and each rule of files.py has a test here. The attacker's steps (planting a
symlink or a FIFO, owning a directory, holding a lock) run as ``nobody`` through ``setpriv``; the
victim is root (the tests' user). Each test asserts the victim file is unchanged and that nothing
``nobody`` can read holds a credential. FIFO cases must end with a one-line error; their
``timeout`` is a bound against a hang, not a timed assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolesanywhere_signer import files
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.errors import InputError
from support.pki import PKI
from support.servers import ScriptedServer, session_body
from support.util import (
    ARN_ARGS,
    AS_NOBODY,
    NOBODY,
    assert_one_line_error,
    cli_as_nobody,
    free_port,
    nobody_env,
    run_as_nobody,
    run_cli,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to play another user"
)

PRECIOUS = b"root's precious file\n"
#: a bound against hangs; FIFO cases finish at once
BOUND = 20


@pytest.fixture
def arena() -> Iterator[Path]:
    """A directory in /tmp that ``nobody`` can traverse (pytest's own are 0700 root)."""
    work = Path(tempfile.mkdtemp(prefix="rass-hostile-", dir="/tmp"))
    work.chmod(0o755)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def kit(pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return cert, key


def _command(name: str, kit: tuple[Path, Path], url: str, *extra: str) -> list[str]:
    return [name, "--certificate", str(kit[0]), "--private-key", str(kit[1]), *ARN_ARGS, "--endpoint", url, *extra]


def _cp(kit: tuple[Path, Path], url: str, *extra: str) -> list[str]:
    return _command("credential-process", kit, url, *extra)


def _update(kit: tuple[Path, Path], url: str, *extra: str) -> list[str]:
    return _command("update", kit, url, "--once", *extra)


def nobody_mkdir(path: Path, mode: int = 0o755) -> Path:
    """A directory of nobody's: made by nobody when it can, else given to nobody (a home, say)."""
    if path.parent.stat().st_uid == NOBODY:
        run_as_nobody(["mkdir", "-m", f"{mode:o}", str(path)])
    else:
        path.mkdir()
        path.chmod(mode)
        os.chown(path, NOBODY, NOBODY)
    return path


def victim(arena: Path) -> Path:
    """A root-owned 0600 file in a root-owned directory: what the attacker wants overwritten."""
    d = arena / "root-only"
    d.mkdir(mode=0o700, exist_ok=True)
    v = d / "victim"
    v.write_bytes(PRECIOUS)
    v.chmod(0o600)
    return v


def attacker_view(where: Path) -> str:
    """Everything ``nobody`` can read under ``where`` (names and contents)."""
    script = (
        "import os,sys\n"
        "for root, dirs, names in os.walk(sys.argv[1]):\n"
        "    for n in names:\n"
        "        p = os.path.join(root, n)\n"
        "        print(p)\n"
        "        try:\n"
        "            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)\n"
        "            print(os.read(fd, 1 << 20).decode('latin-1')); os.close(fd)\n"
        "        except OSError: pass\n"
    )
    proc = subprocess.run([*AS_NOBODY, sys.executable, "-c", script, str(where)], capture_output=True, text=True)
    return proc.stdout


def assert_learned_nothing(where: Path, ep: LocalEndpoint | None = None) -> None:
    seen = attacker_view(where)
    assert "aws_secret_access_key" not in seen and "SecretAccessKey" not in seen and "ASIA" not in seen, seen
    if ep is not None:
        assert ep.state.sessions_created == 0  # refused before any credentials existed


def snapshot(d: Path) -> dict[str, tuple[int, int, bytes | str]]:
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        body: bytes | str = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else b"")
        out[str(p.relative_to(d))] = (st.st_uid, stat.S_IMODE(st.st_mode), body)
    return out


# ---- writes: directories another user controls --------------------------------------------------


def test_credentials_file_in_a_directory_another_user_owns_is_refused(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """Issue case 1: root's update used to chown the file back to its owner, who then read it."""
    home = nobody_mkdir(arena / "nobody-home")
    run_as_nobody(["sh", "-c", f"printf '[x]\\nregion = eu\\n' > {home}/credentials"])
    before = snapshot(home)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")})
    assert_one_line_error(proc, f"directory {home} belongs to nobody")
    assert snapshot(home) == before
    assert_learned_nothing(arena, endpoint)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_credentials_file_in_a_directory_others_can_write_is_refused(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path, mode: int
) -> None:
    """Root-owned but writable by others (sticky or not): they could swap the file after the write."""
    shared = arena / "shared"
    shared.mkdir()
    shared.chmod(mode)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(shared / "credentials")})
    assert_one_line_error(proc, "is writable by other users")
    assert list(shared.iterdir()) == []
    assert_learned_nothing(arena, endpoint)


def test_an_ancestor_owned_by_another_user_is_refused(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """StrictModes checks every component, not just the last: nobody could rename the subtree."""
    top = nobody_mkdir(arena / "nobody-top")
    run_as_nobody(["mkdir", "-m", "755", str(top / "sub")])
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(top / "sub" / "credentials")})
    assert_one_line_error(proc, "belongs to nobody")
    assert_learned_nothing(arena, endpoint)


def test_a_sticky_world_writable_ancestor_is_allowed(kit: tuple[Path, Path], endpoint: LocalEndpoint) -> None:
    """/tmp itself (1777) may be on the way: others cannot rename what is below it."""
    work = Path(tempfile.mkdtemp(dir="/tmp"))  # 0700 root, directly in sticky /tmp
    try:
        path = work / "credentials"
        proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
        assert proc.returncode == 0, proc.stderr
        assert b"aws_secret_access_key = " in path.read_bytes()
    finally:
        shutil.rmtree(work)


# ---- writes: planted symlinks -------------------------------------------------------------------


def test_planted_credentials_symlink_to_a_root_file_is_refused(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """Issue case 2: ~/.aws/credentials planted as a link to a root-owned file."""
    target = victim(arena)
    home = nobody_mkdir(arena / "home")
    aws = nobody_mkdir(home / ".aws", 0o700)
    run_as_nobody(["ln", "-s", str(target), str(aws / "credentials")])
    for extra, env in (
        ((), {"HOME": str(home)}),  # root's run with HOME pointing there
        (("--as-user", "nobody"), {"AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials")}),  # root for nobody
    ):
        proc = run_cli(_update(kit, endpoint.url, *extra), env=env)
        assert_one_line_error(proc, "refusing to write credentials file")
        assert target.read_bytes() == PRECIOUS and stat.S_IMODE(target.stat().st_mode) == 0o600
        assert target.stat().st_uid == 0
    assert_learned_nothing(arena, endpoint)


def test_symlink_owned_by_another_user_in_our_directory_is_not_followed(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """A link that only another user could have made (it is theirs) is never followed."""
    target = victim(arena)
    ours = arena / "ours"
    ours.mkdir(mode=0o700)
    link = ours / "credentials"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(link)})
    assert_one_line_error(proc, "is a symlink owned by nobody")
    assert target.read_bytes() == PRECIOUS
    assert_learned_nothing(arena, endpoint)


def test_planted_container_token_symlink_is_refused(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """Issue case 2, serve: --container-token-file through a planted link."""
    target = victim(arena)
    d = nobody_mkdir(arena / "tokens")
    run_as_nobody(["ln", "-s", str(target), str(d / "token")])
    args = ["serve", "--certificate", str(kit[0]), "--private-key", str(kit[1]), *ARN_ARGS]
    args += ["--endpoint", endpoint.url, "--port", str(free_port()), "--container-token-file", str(d / "token")]
    proc = run_cli(args, timeout=BOUND)
    assert_one_line_error(proc, "refusing to write container token file")
    assert target.read_bytes() == PRECIOUS
    assert_learned_nothing(arena, endpoint)


def test_our_own_symlink_is_followed(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """Dotfile managers link ~/.aws/credentials into a repository: our own links keep working."""
    repo = arena / "dotfiles"
    repo.mkdir(mode=0o700)
    real = repo / "aws-credentials"
    real.write_bytes(b"[keep]\nregion = eu-west-1\n")
    aws = arena / "aws"
    aws.mkdir(mode=0o700)
    (aws / "credentials").symlink_to(real)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials")})
    assert proc.returncode == 0, proc.stderr
    assert (aws / "credentials").is_symlink()
    assert real.read_bytes().startswith(b"[keep]\nregion = eu-west-1\n") and b"aws_session_token" in real.read_bytes()


# ---- writes: lock files -------------------------------------------------------------------------


def test_symlinked_lock_file_is_not_followed(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """Issue case 3: O_CREAT without O_NOFOLLOW made root create a file wherever the link pointed."""
    d = arena / "aws"
    d.mkdir(mode=0o700)
    planted = arena / "created-by-root"
    (d / ".credentials.lock").symlink_to(planted)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")})
    assert_one_line_error(proc, "is a symlink; refusing to follow it")
    assert not planted.exists() and not (d / "credentials").exists()
    assert_learned_nothing(arena, endpoint)


def test_lock_file_of_another_user_is_refused(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    d = arena / "aws"
    d.mkdir(mode=0o700)
    lock = d / ".credentials.lock"
    lock.write_bytes(b"")
    os.chown(lock, NOBODY, NOBODY)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")})
    assert_one_line_error(proc, "belongs to nobody")
    assert not (d / "credentials").exists()


def test_lock_file_that_is_a_fifo_is_refused(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    d = arena / "aws"
    d.mkdir(mode=0o700)
    os.mkfifo(d / ".credentials.lock", 0o600)
    proc = run_cli(
        _update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")}, timeout=BOUND
    )
    assert_one_line_error(proc, "not a regular file")


def test_lock_file_is_0600_and_ours(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    d = arena / "aws"
    d.mkdir(mode=0o700)
    lock = d / ".credentials.lock"
    lock.write_bytes(b"")
    lock.chmod(0o666)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")})
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.stat().st_uid == 0


def test_cache_lock_symlink_is_not_followed(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """The cache's lock too: bypass the cache (one warning), still print credentials."""
    run = arena / "run"
    run.mkdir(mode=0o700)
    cache = run / "rolesanywhere-signer"
    cache.mkdir(mode=0o700)
    first = run_cli(_cp(kit, endpoint.url, "--cache"), env={"XDG_RUNTIME_DIR": str(run)})
    assert first.returncode == 0, first.stderr
    for p in cache.iterdir():
        p.unlink()
    lock_name = "." + _cache_file_name(kit, endpoint, run) + ".lock"
    planted = arena / "created-by-root"
    (cache / lock_name).symlink_to(planted)
    proc = run_cli(_cp(kit, endpoint.url, "--cache"), env={"XDG_RUNTIME_DIR": str(run)}, timeout=BOUND)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
    assert proc.stderr.count("warning: not using the credential cache") == 1, proc.stderr
    assert not planted.exists()


def _cache_file_name(kit: tuple[Path, Path], endpoint: LocalEndpoint, run: Path) -> str:
    """The cache entry's file name for these arguments (the same key the CLI computes)."""
    from rolesanywhere_signer import cache

    argv = _cp(kit, endpoint.url, "--cache")
    values = cache._parse_plain(argv)
    assert values is not None
    env = {"XDG_RUNTIME_DIR": str(run)}
    return os.path.basename(cache.cache_path(cache._key(values, env), env))


# ---- writes: ownership --------------------------------------------------------------------------


def test_root_never_chowns_to_the_previous_owner(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """A file of nobody's in root's own directory: root's new file is root's, 0600."""
    d = arena / "root-aws"
    d.mkdir(mode=0o700)
    path = d / "credentials"
    path.write_bytes(b"[keep]\nregion = eu\n")
    os.chown(path, NOBODY, NOBODY)
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert proc.returncode == 0, proc.stderr
    st = path.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert_learned_nothing(arena)


def test_as_user_writes_a_users_file_owned_by_that_user(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """Root maintaining nobody's file: named explicitly, checked as nobody, owned by nobody."""
    home = nobody_mkdir(arena / "home")
    path = home / ".aws" / "credentials"
    proc = run_cli(_update(kit, endpoint.url, "--as-user", "nobody"), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert proc.returncode == 0, proc.stderr
    for p, mode in ((path.parent, 0o700), (path, 0o600), (path.parent / ".credentials.lock", 0o600)):
        st = p.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, mode), p
    assert b"aws_secret_access_key = " in run_as_nobody(["cat", str(path)]).stdout.encode()


def test_as_user_is_root_only(kit: tuple[Path, Path], arena: Path) -> None:
    proc = subprocess.run(
        cli_as_nobody([*_update(kit, "http://127.0.0.1:1", "--as-user", "root")]),
        env=nobody_env({"AWS_SHARED_CREDENTIALS_FILE": str(arena / "c")}),
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert_one_line_error(proc, "only root can write files for another user")


def test_as_user_unknown(kit: tuple[Path, Path]) -> None:
    assert_one_line_error(run_cli(_update(kit, "http://127.0.0.1:1", "--as-user", "no-such-user-x")), "no such user")


# ---- temporary files ----------------------------------------------------------------------------


def test_stale_temporary_files_are_swept(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """A kill -9 leaves a temporary file; the next write under the lock removes it."""
    d = arena / "aws"
    d.mkdir(mode=0o700)
    stale = d / ".credentials.0123456789abcdef.tmp"
    stale.write_bytes(b"aws_secret_access_key = left by kill -9\n")
    theirs = d / ".credentials.theirs.tmp"
    theirs.write_bytes(b"")
    os.chown(theirs, NOBODY, NOBODY)  # not ours: left alone
    proc = run_cli(_update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in d.iterdir()) == [".credentials.lock", ".credentials.theirs.tmp", "credentials"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_temporary_file_removed_on_signal(tmp_path: Path, signum: int) -> None:
    """SIGTERM/SIGINT in the middle of a write: no temporary file stays, the old file is intact."""
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(files.__file__).parents[1])!r})
from rolesanywhere_signer import files
real_fsync = os.fsync
def fsync(fd):
    os.kill(os.getpid(), {int(signum)})
    real_fsync(fd)
os.fsync = fsync
t = files.prepare_target({str(tmp_path / "credentials")!r}, "credentials file")
files.write_atomic(t, b"new secret contents")
"""
    (tmp_path / "credentials").write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=BOUND)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]
    assert (tmp_path / "credentials").read_bytes() == b"old"


# ---- reads: FIFOs and other non-files -----------------------------------------------------------


def _fifo(arena: Path, name: str) -> Path:
    """The attacker's FIFO, made by nobody in nobody's directory and never opened for writing."""
    drop = arena / "drop"
    if not drop.exists():
        nobody_mkdir(drop)
    p = drop / name
    run_as_nobody(["mkfifo", "-m", "666", str(p)])
    return p


@pytest.mark.parametrize("which", ["certificate", "private-key", "intermediates"])
def test_fifo_input_is_a_one_line_error(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path, which: str
) -> None:
    """Issue case 4: a FIFO used to hang every command for good."""
    fifo = _fifo(arena, which)
    args = {"certificate": str(kit[0]), "private-key": str(kit[1]), "intermediates": None}
    args[which] = str(fifo)
    argv = ["credential-process", *[x for k, v in args.items() if v for x in (f"--{k}", v)], *ARN_ARGS]
    proc = run_cli([*argv, "--endpoint", endpoint.url], timeout=BOUND)
    assert_one_line_error(proc, f"{fifo} is a named pipe (FIFO), not a regular file")
    assert endpoint.state.sessions_created == 0


def test_fifo_secret_files_are_one_line_errors(arena: Path) -> None:
    """PIN (pin-source) and password files go through the same read: a FIFO ends at once (the CLI
    cases run against SoftHSM2 and swtpm in tests/softhsm and tests/tpm)."""
    from rolesanywhere_signer.errors import SecretError
    from rolesanywhere_signer.secret import read_secret_file

    fifo = _fifo(arena, "pin")
    for what in ("PKCS#11 PIN", "TPM key password"):
        with pytest.raises(SecretError, match=r"named pipe \(FIFO\), not a regular file"):
            read_secret_file(str(fifo), what=what)


def test_fifo_credentials_file_is_a_one_line_error(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    d = arena / "aws"
    d.mkdir(mode=0o700)
    os.mkfifo(d / "credentials", 0o600)
    proc = run_cli(
        _update(kit, endpoint.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials")}, timeout=BOUND
    )
    assert_one_line_error(proc, "not a regular file")
    assert stat.S_ISFIFO((d / "credentials").lstat().st_mode)


def test_fifo_cache_entry_never_hangs(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    run = arena / "run"
    run.mkdir(mode=0o700)
    cache = run / "rolesanywhere-signer"
    cache.mkdir(mode=0o700)
    os.mkfifo(cache / _cache_file_name(kit, endpoint, run), 0o600)
    for _ in range(2):  # the fast path and the full path
        proc = run_cli(_cp(kit, endpoint.url, "--cache"), env={"XDG_RUNTIME_DIR": str(run)}, timeout=BOUND)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")


def test_symlinked_etc_pki_inputs_keep_working(kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path) -> None:
    """/etc/pki setups: a linked directory and linked files."""
    real = arena / "pki-real"
    real.mkdir(mode=0o700)
    shutil.copy(kit[0], real / "host.crt")
    shutil.copy(kit[1], real / "host.key")
    (arena / "pki").symlink_to(real)
    (real / "current.key").symlink_to("host.key")
    proc = run_cli(_cp((arena / "pki" / "host.crt", arena / "pki" / "current.key"), endpoint.url))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_readable_by_others_warns_with_the_fix(kit: tuple[Path, Path], endpoint: LocalEndpoint, mode: int) -> None:
    kit[1].chmod(mode)
    proc = run_cli(_cp(kit, endpoint.url))
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning:" in ln]
    assert len(warnings) == 1, proc.stderr
    assert str(kit[1]) in warnings[0] and f"chmod go-rwx {kit[1]}" in warnings[0]


def test_pin_file_readable_by_others_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from rolesanywhere_signer.secret import read_secret_file

    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o644)
    import logging

    with caplog.at_level(logging.WARNING, logger="rolesanywhere_signer"):
        assert read_secret_file(str(pin), what="PKCS#11 PIN").reveal() == "1234"
    assert f"chmod go-rwx {pin}" in caplog.text and "1234" not in caplog.text
    pin.chmod(0o600)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rolesanywhere_signer"):
        read_secret_file(str(pin), what="PKCS#11 PIN")
    assert caplog.text == ""


def test_a_terminal_device_is_accepted_for_secrets_only(tmp_path: Path) -> None:
    """Character devices make sense for PINs (``/dev/tty``), never for certificates or keys."""
    assert files.read_input_file("/dev/null", "PIN file", allow_chardev=True, allow_empty=True) == b""
    with pytest.raises(InputError, match="too large"):  # bounded even on an endless device
        files.read_input_file("/dev/zero", "PIN file", limit=16, allow_chardev=True)
    with pytest.raises(InputError, match="character device, not a regular file"):
        files.read_input_file("/dev/null", "certificate file")


# ---- the cache ----------------------------------------------------------------------------------


def test_xdg_runtime_dir_of_another_user_does_not_stall(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path, tmp_path: Path
) -> None:
    """Issue case 5: after `su`, XDG_RUNTIME_DIR names nobody's dir, whose lock nobody holds."""
    run = nobody_mkdir(arena / "run-nobody", 0o700)
    cache = nobody_mkdir(run / "rolesanywhere-signer", 0o700)
    lock = cache / ("." + _cache_file_name(kit, endpoint, run) + ".lock")
    holder = subprocess.Popen([*AS_NOBODY, "flock", str(lock), "sleep", "120"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + BOUND
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = snapshot(run)
        env = {"XDG_RUNTIME_DIR": str(run), "HOME": str(tmp_path)}
        proc = run_cli(_cp(kit, endpoint.url, "--cache"), env=env, timeout=BOUND)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
        assert snapshot(run) == before  # nothing of ours went into nobody's directory
        assert (tmp_path / ".cache" / "rolesanywhere-signer").is_dir()  # ~/.cache instead
    finally:
        holder.kill()
        holder.wait()
    assert_learned_nothing(arena)


@pytest.mark.parametrize("problem", ["foreign", "loose"])
def test_cache_directory_not_private_is_bypassed_with_one_warning(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path, problem: str
) -> None:
    run = arena / "run"
    run.mkdir(mode=0o700)
    cache = run / "rolesanywhere-signer"
    cache.mkdir(mode=0o700)
    if problem == "foreign":
        os.chown(cache, NOBODY, NOBODY)
    else:
        cache.chmod(0o755)
    for _ in range(2):
        proc = run_cli(_cp(kit, endpoint.url, "--cache"), env={"XDG_RUNTIME_DIR": str(run)}, timeout=BOUND)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
        assert proc.stderr.count("warning: not using the credential cache") == 1, proc.stderr
    assert list(cache.iterdir()) == []
    assert endpoint.state.sessions_created == 2  # nothing was cached, nothing was trusted


def test_cache_lock_held_past_the_deadline_is_skipped(
    kit: tuple[Path, Path], endpoint: LocalEndpoint, arena: Path
) -> None:
    """A holder that never lets go costs at most the request's own --timeout, then no cache."""
    run = arena / "run"
    run.mkdir(mode=0o700)
    cache = run / "rolesanywhere-signer"
    cache.mkdir(mode=0o700)
    lock = cache / ("." + _cache_file_name(kit, endpoint, run) + ".lock")
    lock.write_bytes(b"")
    holder = subprocess.Popen(["flock", str(lock), "sleep", "120"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        proc = run_cli(
            _cp(kit, endpoint.url, "--cache", "--timeout", "1"), env={"XDG_RUNTIME_DIR": str(run)}, timeout=BOUND
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
        assert "another process holds the lock" in proc.stderr
    finally:
        holder.kill()
        holder.wait()


# ---- credentials validated before they go anywhere ----------------------------------------------

CRLF = {
    "accessKeyId": "ASIAFAKEFAKEFAKE1234",
    "secretAccessKey": "x\r\ncredential_process = sh -c 'touch /tmp/rass-pwned'\r\n",
    "sessionToken": "FwoGZXIvYXdz",
}


def _crlf_endpoint() -> ScriptedServer:
    body = session_body()
    doc = json.loads(body.body)
    doc["credentialSet"][0]["credentials"].update(CRLF)
    return ScriptedServer([type(body)(201, json.dumps(doc).encode(), body.headers)]).start()


def test_crlf_credentials_write_nothing_to_the_credentials_file(kit: tuple[Path, Path], arena: Path) -> None:
    """Issue case 6: a CR/LF in a field became a credential_process line that botocore ran."""
    d = arena / "aws"
    d.mkdir(mode=0o700)
    path = d / "credentials"
    path.write_bytes(b"[default]\nregion = eu-west-1\n")
    srv = _crlf_endpoint()
    try:
        proc = run_cli(_update(kit, srv.url), env={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    finally:
        srv.stop()
    assert_one_line_error(proc, "the endpoint returned malformed credentials")
    assert path.read_bytes() == b"[default]\nregion = eu-west-1\n"
    assert sorted(p.name for p in d.iterdir()) == [".credentials.lock", "credentials"]
    assert "credential_process" not in proc.stderr


def test_crlf_credentials_reach_neither_stdout_nor_the_cache(kit: tuple[Path, Path], arena: Path) -> None:
    run = arena / "run"
    run.mkdir(mode=0o700)
    srv = _crlf_endpoint()
    try:
        proc = run_cli(_cp(kit, srv.url, "--cache"), env={"XDG_RUNTIME_DIR": str(run)})
    finally:
        srv.stop()
    assert_one_line_error(proc, "the endpoint returned malformed credentials")
    cache = run / "rolesanywhere-signer"
    assert not any(p.name.endswith(".json") for p in cache.iterdir())


def test_crlf_credentials_are_never_served(kit: tuple[Path, Path]) -> None:
    srv = _crlf_endpoint()
    try:
        # --exit-on-failure: the first CreateSession before listening, so its refusal ends serve
        # (without it serve answers 503 "no credentials yet: <reason>" and retries)
        args = ["serve", "--exit-on-failure", "--certificate", str(kit[0]), "--private-key", str(kit[1]), *ARN_ARGS]
        proc = run_cli([*args, "--endpoint", srv.url, "--port", str(free_port())], timeout=BOUND)
    finally:
        srv.stop()
    assert_one_line_error(proc, "the endpoint returned malformed credentials")


# ---- process hygiene ----------------------------------------------------------------------------


def test_serve_memory_is_out_of_reach_of_the_same_user(pki: PKI, endpoint: LocalEndpoint, arena: Path) -> None:
    """Issue case 7: another process of the same user read serve's secrets from /proc/PID/mem."""
    leaf = pki.leaf()
    cert, key = arena / "leaf.crt", arena / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    for p in (cert, key):
        os.chown(p, NOBODY, NOBODY)
    port = free_port()
    args = ["serve", "--certificate", str(cert), "--private-key", str(key), *ARN_ARGS]
    serve = subprocess.Popen(
        cli_as_nobody([*args, "--endpoint", endpoint.url, "--port", str(port)]),
        env=nobody_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + BOUND
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/latest/api/token",
                    method="PUT",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                )
                with urllib.request.urlopen(req, timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert serve.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        pid = serve.pid
        # the same user (nobody) tries to read serve's memory: the kernel refuses
        probe = f"import sys\ntry:\n    open('/proc/{pid}/mem', 'rb')\nexcept PermissionError:\n    sys.exit(3)\n"
        attempt = subprocess.run([*AS_NOBODY, sys.executable, "-c", probe], capture_output=True, timeout=BOUND)
        assert attempt.returncode == 3, attempt.stderr
        limits = Path(f"/proc/{pid}/limits").read_text()
        core = next(ln for ln in limits.splitlines() if ln.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
    finally:
        serve.terminate()
        serve.wait(timeout=BOUND)


def test_credential_process_stays_dumpable_and_cheap() -> None:
    """The hardening is for serve and update only: credential-process never loads ctypes."""
    script = (
        "import sys\n"
        "from rolesanywhere_signer import cli, files, cache\n"
        "assert 'ctypes' not in sys.modules and 'rolesanywhere_signer.hardening' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=nobody_env())
    assert proc.returncode == 0, proc.stderr


# ---- the ordinary cases -------------------------------------------------------------------------


def test_root_own_0700_aws_directory_works(kit: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    """Root's own ~/.aws (0700) and file: written, kept 0700/0600 and root's, other profiles kept."""
    home = tmp_path / "root-home"
    aws = home / ".aws"
    aws.mkdir(parents=True, mode=0o700)
    (aws / "credentials").write_bytes(b"[keep]\nregion = eu-west-1\n")
    proc = run_cli(_update(kit, endpoint.url), env={"HOME": str(home)})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data = (aws / "credentials").read_bytes()
    assert data.startswith(b"[keep]\nregion = eu-west-1\n") and b"[default]\naws_access_key_id = ASIA" in data
    assert stat.S_IMODE(aws.stat().st_mode) == 0o700 and stat.S_IMODE((aws / "credentials").stat().st_mode) == 0o600
    assert (aws / "credentials").stat().st_uid == 0


def test_missing_aws_directory_is_created_0700(kit: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    home.mkdir(mode=0o755)
    proc = run_cli(_update(kit, endpoint.url), env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((home / ".aws").stat().st_mode) == 0o700


def test_resolve_strict_walks_dotdot_physically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``link/..`` is the link target's parent, as the kernel resolves it, not the link's."""
    real = tmp_path / "deep" / "real"
    real.mkdir(parents=True)
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path / "top")
    resolved, missing = files.resolve_strict("link/../credentials", files.Owner.me(), why="test")
    assert resolved == str(tmp_path / "deep" / "credentials") and missing == []
    resolved, missing = files.resolve_strict("new/dir/credentials", files.Owner.me(), why="test")
    assert resolved == str(tmp_path / "top" / "new" / "dir" / "credentials") and missing == ["new", "dir"]


def test_certificate_install_into_another_users_directory_is_refused(pki: PKI, arena: Path) -> None:
    """Renewal installs (issue 17) pass the same StrictModes check: nobody's directory is refused."""
    from rolesanywhere_signer.enroll.install import install_certificate

    d = nobody_mkdir(arena / "nobody-pki")
    old = pki.leaf()
    cert = d / "host.crt"
    cert.write_bytes(old.pem)
    os.chown(cert, NOBODY, NOBODY)
    before = snapshot(d)
    with pytest.raises(InputError, match="belongs to nobody"):
        install_certificate(str(cert), None, pki.leaf().cert, [])
    assert snapshot(d) == before
