"""Scenario 5 (and the steady-RSS half of 6): ``serve`` under load from ``wrk`` on loopback.

The credentials GET of the container endpoint (``/credentials`` with its Authorization token,
what the SDKs poll) at 1, 16 and 64 connections; then the same during a refresh while the
endpoint takes 3 s to answer (SIGHUP starts the refresh), counting CreateSession calls.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

from fixtures import ARN_ARGS, CLI
from report import Row

if TYPE_CHECKING:
    from run import Ctx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], within: float) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("serve did not start listening")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, token: str, conns: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(2, conns)),
            "-c",
            str(conns),
            "-d",
            f"{seconds:g}s",
            "--latency",
            "-H",
            f"Authorization: {token}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    res: dict[str, float] = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}"] = _ms(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = float(m.group(1)) if m else 0.0
    if "p99" not in res:
        raise RuntimeError(f"cannot read wrk output: {out[-300:]}")
    return res


def _start_serve(ctx: Ctx, endpoint: str) -> tuple[subprocess.Popen[bytes], int, str]:
    b = ctx.bench
    port = _free_port()
    token_file = b.base / f"serve-token-{port}"
    proc = subprocess.Popen(
        [
            CLI,
            "serve",
            *b.pem_args(),
            "--endpoint",
            endpoint,
            *ARN_ARGS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--container-token-file",
            str(token_file),
        ],
        env=b.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    b.procs.append(proc)
    _wait_port(port, proc, 30)
    return proc, port, token_file.read_text().strip()


def run(ctx: Ctx) -> None:
    if not shutil.which("wrk"):
        ctx.rows.append(Row("5 serve under load", note="not available: wrk is not installed"))
        return
    b = ctx.bench
    seconds = 1.0 if ctx.smoke else 5.0
    proc, port, token = _start_serve(ctx, b.endpoint())
    url = f"http://127.0.0.1:{port}/credentials"
    wrk(url, token, 4, 1.0)  # warm-up
    rss_start = _rss_kib(proc.pid)
    served = 0.0
    rss_10k: int | None = None
    for conns in (1, 16, 64):
        r = wrk(url, token, conns, seconds)
        served += r["requests"]
        if rss_10k is None and served >= 10_000:
            rss_10k = _rss_kib(proc.pid)
        ctx.rows.append(
            Row(
                f"5 serve GET /credentials p99, {conns} conn",
                median=r["p99"],
                target=10.0,
                absolute=True,
                note=f"p50 {r['p50']:.2f} ms, {r['rps']:.0f} req/s",
            )
        )
        ctx.notes.append(
            f"Scenario 5, {conns} connection(s): p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
            f"{r['rps']:.0f} requests/s, {r['requests']:.0f} requests, {r['errors']:.0f} non-2xx."
        )
    while not ctx.smoke and served < 10_000:  # the RSS figure is after at least 10,000 requests
        served += wrk(url, token, 64, 2.0)["requests"]
        if rss_10k is None and served >= 10_000:
            rss_10k = _rss_kib(proc.pid)
    rss_end = _rss_kib(proc.pid)
    ctx.rows.append(
        Row(
            "6 serve RSS after the load runs",
            "MiB",
            median=rss_end / 1024,
            baseline="after warm-up",
            baseline_median=rss_start / 1024,
        )
    )
    ctx.notes.append(
        f"Scenario 6: serve RSS {rss_start / 1024:.1f} MiB after warm-up, "
        f"{(rss_10k or rss_end) / 1024:.1f} MiB at 10,000 requests, {rss_end / 1024:.1f} MiB after "
        f"{served:.0f} requests."
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    if ctx.smoke:
        return
    # p99 while a refresh waits 3 s on the endpoint
    slow = b.start_endpoint(delay=3.0)
    proc, port, token = _start_serve(ctx, slow)
    url = f"http://127.0.0.1:{port}/credentials"
    before = b.endpoint_stats(slow)["sessions_created"]
    time.sleep(0.5)
    proc.send_signal(signal.SIGHUP)  # re-open the key and refresh now: 3 s on the endpoint
    t0 = time.monotonic()
    r = wrk(url, token, 16, 4.0)
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    during = b.endpoint_stats(slow)["sessions_created"] - before
    ctx.rows.append(
        Row(
            "5 serve p99 during a 3 s refresh, 16 conn",
            median=r["p99"],
            target=10.0,
            absolute=True,
            note=f"p50 {r['p50']:.2f} ms",
        )
    )
    ctx.notes.append(
        f"Scenario 5, during a refresh that waits 3 s on the endpoint: p50 {r['p50']:.2f} ms, "
        f"p99 {r['p99']:.2f} ms, {r['rps']:.0f} requests/s, {r['errors']:.0f} non-2xx; "
        f"CreateSession calls during the refresh: {during} (exactly 1 expected)."
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
