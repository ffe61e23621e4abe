"""A hostile endpoint cannot hold ``credential-process`` longer than its deadlines or grow its memory.

Each case runs the real CLI against an endpoint the suite starts (``support.hostile``) and checks
the three bounds: one line on stderr, the time taken (the attempts × ``--timeout`` plus the
backoff), and memory: the CLI runs under ``ulimit -v`` (RLIMIT_AS) of 256 MiB, which an endless
body would pass in well under a second without the 1 MiB cap (ending in a MemoryError, not the
expected one-line error). A cold run needs less than half of that address space.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.hostile import HostileEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, clean_env

#: the address space the CLI may use (``ulimit -v``); a cold run fits in 128 MiB
ADDRESS_SPACE = 256 << 20


@dataclass
class Measured:
    proc: subprocess.CompletedProcess[str]
    seconds: float


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_measured(args: list[str], tmp_path: Path, timeout: float = 60) -> Measured:
    """Run the CLI under ``ulimit -v`` and time it."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", *args],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )
    return Measured(proc, time.monotonic() - started)


@pytest.fixture
def leaf_args(pki: PKI, tmp_path: Path) -> list[str]:
    cert, key = pki.leaf_files("hostile", pki.leaf())
    return ["--certificate", str(cert), "--private-key", str(key), *ARN_ARGS]


@pytest.mark.parametrize(
    ("mode", "phrase"),
    [
        ("endless", "sent an answer larger than 1048576 bytes"),
        ("endless-chunked", "sent an answer larger than 1048576 bytes"),
        ("huge", "announced an answer of 10737418240 bytes"),
        ("nested", "JSON nested too deeply"),
    ],
)
def test_oversized_or_deep_answers_end_at_once(leaf_args: list[str], tmp_path: Path, mode: str, phrase: str) -> None:
    with HostileEndpoint(mode) as ep:
        m = run_measured(["credential-process", *leaf_args, "--endpoint", ep.url, "--timeout", "5"], tmp_path)
        sent = ep.sent
    assert_one_line_error(m.proc, phrase)
    assert ep.accepted == 1  # not retried: a second try would get the same answer
    assert m.seconds < 5, m.seconds  # well within one --timeout: the cap, not the deadline, ended it
    if mode == "huge":
        assert sent < 4 << 20  # refused on the Content-Length, before reading the body


def test_trickling_endpoint_is_cut_off_by_the_attempt_deadline(leaf_args: list[str], tmp_path: Path) -> None:
    """A byte every 0.3 s never trips a per-read timeout of 1 s; the per-attempt deadline does."""
    with HostileEndpoint("trickle", interval=0.3) as ep:
        m = run_measured(["credential-process", *leaf_args, "--endpoint", ep.url, "--timeout", "1"], tmp_path)
    assert_one_line_error(m.proc, "did not answer within 1s")
    assert ep.accepted == 4  # every attempt was made, and each ended at its deadline
    # 4 attempts × 1 s + backoff ceilings 0.5 + 1 + 2 s, plus start-up
    assert 4.0 <= m.seconds < 4 + 3.5 + 2.5, m.seconds


@pytest.mark.parametrize("mode", ["headers", "garbage"])
def test_malformed_http_is_one_line(leaf_args: list[str], tmp_path: Path, mode: str) -> None:
    with HostileEndpoint(mode) as ep:
        m = run_measured(["credential-process", *leaf_args, "--endpoint", ep.url, "--timeout", "2"], tmp_path)
    assert_one_line_error(m.proc, "malformed HTTP answer")
    assert m.seconds < 4 * 2 + 3.5 + 2.5


def test_deep_json_in_an_error_answer_is_one_line() -> None:
    from rolesanywhere_signer.client import service_error
    from rolesanywhere_signer.transport import HttpResponse

    err = service_error(HttpResponse(400, {}, b"[" * 200_000 + b"]" * 200_000))
    assert "nested too deeply" in err.diagnostics()
    assert len(err.diagnostics()) < 200
