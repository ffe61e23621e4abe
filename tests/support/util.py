"""Helpers shared by tests: running the CLI as a user does, ARNs, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REGION = "us-east-2"
ACCOUNT = "123456789012"
TRUST_ANCHOR_ARN = f"arn:aws:rolesanywhere:{REGION}:{ACCOUNT}:trust-anchor/11111111-2222-3333-4444-555555555555"
PROFILE_ARN = f"arn:aws:rolesanywhere:{REGION}:{ACCOUNT}:profile/66666666-7777-8888-9999-000000000000"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/rolesanywhere-test"
ARN_ARGS = ["--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN, "--role-arn", ROLE_ARN]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would give: no AWS variables leaking in from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLESANYWHERE_SIGNER_"))}
    env["PYTHONPATH"] = SRC
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    env["NO_PROXY"] = "127.0.0.1,localhost,::1"
    if extra:
        env.update(extra)
    return env


# Arguments may be paths: they are passed through str() like a shell would.
CliArg = str | os.PathLike[str]


def run_cli(
    args: Sequence[CliArg],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``rolesanywhere-signer`` in a fresh process with no controlling terminal."""
    return subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)],
        env=clean_env(env),
        input=input.decode() if input is not None else None,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
    )


NOBODY = 65534
#: setpriv to uid/gid 65534 with no supplementary groups: the "other local user" of the tests
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def nobody_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``clean_env`` with the venv's site-packages on the path (root's venv is not nobody's)."""
    import cryptography

    site = str(Path(cryptography.__file__).resolve().parents[1])  # the venv's site-packages
    return clean_env({"PYTHONPATH": f"{SRC}:{site}", **(extra or {})})


def cli_as_nobody(args: Sequence[CliArg]) -> list[str]:
    """The argv that runs the CLI as nobody (for ``Popen`` of long-running commands)."""
    return [*AS_NOBODY, sys.executable, "-m", "rolesanywhere_signer", *map(str, args)]


def run_cli_as_nobody(
    args: Sequence[CliArg], *, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as uid/gid 65534 (``setpriv``): tests run as root, which reads any file."""
    return subprocess.run(
        cli_as_nobody(args),
        env=nobody_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def run_as_nobody(cmd: Sequence[CliArg], *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """An attacker's step (``ln -s``, ``mkfifo``...) run as nobody; it must succeed."""
    proc = subprocess.run(
        [*AS_NOBODY, *map(str, cmd)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, (cmd, proc.stderr)
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], phrase: str, code: int = 1) -> None:
    """The bad-input contract: exit code, empty stdout, one short stderr line naming it, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "", proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("rolesanywhere-signer: error: "), proc.stderr
    assert phrase.lower() in errors[0].lower(), (phrase, proc.stderr)
    assert len(errors[0]) < 400, errors[0]
