"""`generate-key` for PEM files, and the flag combinations every backend shares."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support.util import assert_one_line_error, clean_env, run_cli

EXPECTED = {
    "ec-p256": (ec.EllipticCurvePrivateKey, "secp256r1"),
    "ec-p384": (ec.EllipticCurvePrivateKey, "secp384r1"),
    "rsa2048": (rsa.RSAPrivateKey, 2048),
    "rsa3072": (rsa.RSAPrivateKey, 3072),
}


def describe(key: object) -> object:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.key_size
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.curve.name


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_pem_key_file_is_0600_and_matches_printed_public_key(tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.key"
    proc = run_cli(["generate-key", "--key-type", kind, "--output", out])
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(out.read_bytes(), None)
    cls, size = EXPECTED[kind]
    assert isinstance(key, cls) and describe(key) == size
    printed = serialization.load_pem_public_key(proc.stdout.encode())
    assert printed == key.public_key()
    assert "created a new" in proc.stderr and str(out) in proc.stderr


def test_default_key_type_is_ec_p256_and_umask_cannot_widen_mode(tmp_path: Path) -> None:
    out = tmp_path / "default.key"
    proc = subprocess.run(
        ["sh", "-c", f'umask 000 && exec "{sys.executable}" -m rolesanywhere_signer generate-key --output "{out}"'],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(out.read_bytes(), None)
    assert describe(key) == "secp256r1"


def test_encrypted_with_password_flag_and_environment(tmp_path: Path) -> None:
    flag = tmp_path / "flag.key"
    proc = run_cli(["generate-key", "--output", flag, "--pkcs8-password", "s3cret-flag"])
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-flag" not in proc.stderr + proc.stdout
    assert "visible to other local users" in proc.stderr  # the argv warning
    assert flag.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(flag.read_bytes(), None)
    serialization.load_pem_private_key(flag.read_bytes(), b"s3cret-flag")

    envkey = tmp_path / "env.key"
    proc = run_cli(
        ["generate-key", "--key-type", "ec-p384", "--output", envkey],
        env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "s3cret-env"},
    )
    assert proc.returncode == 0, proc.stderr
    key = serialization.load_pem_private_key(envkey.read_bytes(), b"s3cret-env")
    assert describe(key) == "secp384r1"
    # the key loads back through our own reader too (csr signs with it)
    csr = run_cli(
        ["csr", "--private-key", envkey, "--subject", "CN=x"], env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "s3cret-env"}
    )
    assert csr.returncode == 0, csr.stderr


def _run_with_tty(args: list[object], answers: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the CLI with a pseudo-terminal as its "/dev/tty"; answer each prompt as it appears."""
    master, slave = os.openpty()
    env = clean_env({"ROLESANYWHERE_SIGNER_TTY": os.ttyname(slave)})
    p = subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = ""
    answered = 0
    deadline = time.monotonic() + 60
    try:
        while p.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                seen += os.read(master, 4096).decode(errors="replace")
                # answer each prompt once, only after it has been written (echo is off by then)
                prompts = seen.count("password for")
                if answered < prompts <= len(answers) and seen.endswith(": "):
                    os.write(master, (answers[answered] + "\n").encode())
                    answered += 1
        out, err = p.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), seen


def test_encrypt_asks_twice_on_the_terminal(tmp_path: Path) -> None:
    out = tmp_path / "prompted.key"
    proc, seen = _run_with_tty(["generate-key", "--output", out, "--encrypt"], ["typed pw", "typed pw"])
    assert proc.returncode == 0, proc.stderr
    assert "New password for key file" in seen and "Repeat the password" in seen
    serialization.load_pem_private_key(out.read_bytes(), b"typed pw")


def test_encrypt_with_different_answers_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "differ.key"
    proc, _ = _run_with_tty(["generate-key", "--output", out, "--encrypt"], ["one", "two"])
    assert_one_line_error(proc, "the two passwords differ")
    assert not out.exists()


def test_encrypt_without_terminal_fails_fast(tmp_path: Path) -> None:
    out = tmp_path / "notty.key"
    proc = run_cli(["generate-key", "--output", out, "--encrypt"])
    assert_one_line_error(proc, "no terminal")
    assert "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD" in proc.stderr
    assert not out.exists()


def test_refuses_to_overwrite_an_existing_file_or_symlink(tmp_path: Path) -> None:
    existing = tmp_path / "existing.key"
    existing.write_text("precious")
    assert_one_line_error(run_cli(["generate-key", "--output", existing]), "already exists; refusing to overwrite")
    assert existing.read_text() == "precious"
    link = tmp_path / "dangling.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    assert_one_line_error(run_cli(["generate-key", "--output", link]), "already exists")
    assert not (tmp_path / "elsewhere.key").exists()


@pytest.mark.parametrize(
    ("args", "phrase", "code"),
    [
        (["--key-type", "rsa1024", "--output", "{tmp}/k"], "invalid choice: 'rsa1024'", 2),
        (["--key-type", "ed25519", "--output", "{tmp}/k"], "invalid choice", 2),
        (["--output", "/sys/rolesanywhere-test.key"], "not writable", 1),
        (["--output", "{tmp}/no/such/dir/k"], "directory does not exist", 1),
        (["--output", "{tmp}/file/k"], "not a directory", 1),
        (["--output", "{tmp}"], "already exists", 1),
        ([], "say where to create the key", 2),
        (["--output", "{tmp}/k", "--persistent-handle", "0x81000001"], "--persistent-handle needs --tpm", 2),
        (["--output", "{tmp}/k", "--tcti", "swtpm:port=2321"], "--tcti needs --tpm", 2),
        (["--tpm", "--persistent-handle", "81000001"], "not a hex handle", 2),
        (["--tpm", "--persistent-handle", "0xZZ"], "not a hex handle", 2),
        (["--tpm", "--persistent-handle", ""], "not a hex handle", 2),
        (["--tpm", "--persistent-handle", "0x80000001"], "not an owner-hierarchy persistent handle", 2),
        (["--tpm", "--persistent-handle", "0x81800000"], "not an owner-hierarchy persistent handle", 2),
        (["--tpm", "--persistent-handle", "0x1810000001"], "not an owner-hierarchy persistent handle", 2),
        (["--tpm"], "exactly one of --output FILE or --persistent-handle", 2),
        (["--tpm", "--output", "{tmp}/k", "--persistent-handle", "0x81000001"], "exactly one of", 2),
        (["--tpm", "--output", "{tmp}/file"], "already exists", 2),
        (["--tpm", "--output", "{tmp}/k", "--encrypt"], "--encrypt does not apply with --tpm", 2),
        (["--pkcs11-uri", "pkcs11:token=t;object=o", "--output", "{tmp}/k"], "--output does not apply", 2),
        (["--pkcs11-uri", "pkcs11:token=t;object=o", "--tpm"], "--tpm does not apply", 2),
        (["--pkcs11-uri", "token=t;object=o"], "does not start with pkcs11:", 2),
        (["--output", "{tmp}/k", "--certificate", "c.pem"], "--certificate does not apply to generate-key", 2),
        (["--output", "{tmp}/k", "--private-key", "k.pem"], "--private-key does not apply", 2),
        (["--output", "{tmp}/k", "--pkcs8-password", ""], "--pkcs8-password is empty", 1),
    ],
)
def test_bad_input(tmp_path: Path, args: list[str], phrase: str, code: int) -> None:
    (tmp_path / "file").write_text("not a directory")
    argv = ["generate-key", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    assert_one_line_error(run_cli(argv), phrase, code=code)
    assert not (tmp_path / "k").exists()
