"""A hostile endpoint cannot hold ``credential-process`` longer than its deadlines or grow its memory.

Each case runs the real CLI against an endpoint the suite starts (``support.hostile``) and checks
the three bounds: one line on stderr, the time taken (the attempts × ``--timeout`` plus the
backoff), and the peak RSS of that process (from ``wait4``), which an endless body would grow
by a gigabyte every few seconds without the 1 MiB cap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.hostile import HostileEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, clean_env

#: a cold credential-process peaks at about 45 MiB; 1 MiB of answer adds little
RSS_LIMIT_KIB = 120 * 1024


@dataclass
class Measured:
    proc: subprocess.CompletedProcess[str]
    seconds: float
    peak_rss_kib: int


def run_measured(args: list[str], tmp_path: Path, timeout: float = 60) -> Measured:
    """Run the CLI; reap it with ``wait4`` to get its own peak RSS (not that of every child)."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    started = time.monotonic()
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.Popen(
            [sys.executable, "-m", "rolesanywhere_signer", *args],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.02)
    seconds = time.monotonic() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    proc = subprocess.CompletedProcess(p.args, p.returncode, out.read_text(), err.read_text())
    return Measured(proc, seconds, usage.ru_maxrss)


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
    assert m.peak_rss_kib < RSS_LIMIT_KIB, m.peak_rss_kib
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
    assert m.peak_rss_kib < RSS_LIMIT_KIB


@pytest.mark.parametrize("mode", ["headers", "garbage"])
def test_malformed_http_is_one_line(leaf_args: list[str], tmp_path: Path, mode: str) -> None:
    with HostileEndpoint(mode) as ep:
        m = run_measured(["credential-process", *leaf_args, "--endpoint", ep.url, "--timeout", "2"], tmp_path)
    assert_one_line_error(m.proc, "malformed HTTP answer")
    assert m.seconds < 4 * 2 + 3.5 + 2.5
    assert m.peak_rss_kib < RSS_LIMIT_KIB


def test_deep_json_in_an_error_answer_is_one_line() -> None:
    from rolesanywhere_signer.client import service_error
    from rolesanywhere_signer.transport import HttpResponse

    err = service_error(HttpResponse(400, {}, b"[" * 200_000 + b"]" * 200_000))
    assert "nested too deeply" in err.diagnostics()
    assert len(err.diagnostics()) < 200
