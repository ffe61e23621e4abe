"""Scenario 5 (and the steady-RSS half of 6): ``serve`` under load from ``wrk`` on loopback.

- IMDSv2 as botocore uses it (a token PUT, then the credentials GET with that token; wrk's Lua
  script alternates them) at 1, 16, 64 and 256 connections;
- the credentials GET of the container endpoint (``/credentials`` with its Authorization token,
  what the SDKs poll) at 1, 16, 64 and 256 connections;
- each of those side by side with the same load on a minimal asyncio server
  (benchmarks/minimal_server.py), the baseline for throughput;
- then the container GET during a refresh while the endpoint takes 3 s to answer (SIGHUP starts
  the refresh), counting CreateSession calls.
- then an IMDSv2 client (a new connection, PUT token, GET credentials, as botocore does) while 4
  connections pipeline thousands of token PUTs per write (tests/support/hostile.py).
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


#: IMDSv2 as an SDK does it: PUT a token, GET the credentials with it. Requests alternate; a
#: response that is not JSON is a token, which later GETs of this thread carry.
IMDS_LUA = """
local token = nil
local n = 0
request = function()
  n = n + 1
  if token == nil or n % 2 == 1 then
    return wrk.format("PUT", "/latest/api/token", {["X-aws-ec2-metadata-token-ttl-seconds"] = "21600"})
  end
  return wrk.format("GET", "/latest/meta-data/iam/security-credentials/bench",
                    {["X-aws-ec2-metadata-token"] = token})
end
response = function(status, headers, body)
  if status == 200 and string.sub(body, 1, 1) ~= "{" then token = body end
end
"""


def wrk(url: str, token: str, conns: int, seconds: float, script: str | None = None) -> dict[str, float]:
    extra = ["-s", script] if script else ["-H", f"Authorization: {token}"]
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
            "--timeout",
            "5s",
            *extra,
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
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = float(sum(int(x) for x in m.groups())) if m else 0.0
    if "p99" not in res:
        raise RuntimeError(f"cannot read wrk output: {out[-300:]}")
    return res


def _start_minimal(ctx: Ctx) -> tuple[subprocess.Popen[bytes], int]:
    import sys
    from pathlib import Path

    port = _free_port()
    script = Path(__file__).resolve().parent / "minimal_server.py"
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.DEVNULL, env=ctx.bench.env())
    ctx.bench.procs.append(proc)
    _wait_port(port, proc, 30)
    return proc, port


def _side_by_side(ctx: Ctx, label: str, serve_url: str, base_url: str, token: str, script: str | None) -> None:
    """serve and the minimal server under the same load, alternating, per connection count.

    Each figure is the median of ``rounds`` runs (serve and the baseline take turns, so a noisy
    moment of the machine falls on both); min and max show the spread of serve's runs.
    """
    import statistics

    seconds = 1.0 if ctx.smoke else 4.0
    rounds = 1 if ctx.smoke else 3
    for conns in (1, 16, 64, 256):
        if ctx.smoke and conns > 16:
            break
        runs: list[tuple[dict[str, float], dict[str, float]]] = []
        for _ in range(rounds):
            base = wrk(base_url, token, conns, seconds, script)
            runs.append((wrk(serve_url, token, conns, seconds, script), base))

        def med(who: int, key: str, runs: list[tuple[dict[str, float], dict[str, float]]] = runs) -> float:
            return statistics.median(r[who][key] for r in runs)

        p99s = [r[0]["p99"] for r in runs]
        rps = [r[0]["rps"] for r in runs]
        target = {64: 10.0, 256: 25.0}.get(conns)
        ctx.rows.append(
            Row(
                f"5 serve {label} p99, {conns} conn",
                median=med(0, "p99"),
                min=min(p99s),
                max=max(p99s),
                baseline="minimal asyncio server",
                baseline_median=med(1, "p99"),
                target=target,
                absolute=True,
                note=f"p50 {med(0, 'p50'):.2f} ms",
            )
        )
        ctx.rows.append(
            Row(
                f"5 serve {label} throughput, {conns} conn",
                "req/s",
                median=med(0, "rps"),
                min=min(rps),
                max=max(rps),
                baseline="minimal asyncio server",
                baseline_median=med(1, "rps"),
                target=0.5,
                at_least=True,
            )
        )
        errors = sum(r[0]["errors"] for r in runs)
        socket_errors = sum(r[0]["socket_errors"] for r in runs)
        ctx.notes.append(
            f"Scenario 5, {label}, {conns} connection(s), median of {rounds} run(s) of {seconds:g} s: serve "
            f"p50 {med(0, 'p50'):.2f} ms, p99 {med(0, 'p99'):.2f} ms (runs: "
            + ", ".join(f"{p:.2f}" for p in p99s)
            + f"), {med(0, 'rps'):.0f} req/s, {errors:.0f} non-2xx, {socket_errors:.0f} socket errors; minimal "
            f"server p99 {med(1, 'p99'):.2f} ms, {med(1, 'rps'):.0f} req/s."
        )


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
    token = token_file.read_text().strip()
    _wait_credentials(port, token, 30)
    return proc, port, token


def _wait_credentials(port: int, token: str, within: float) -> None:
    """serve listens before its first CreateSession (503 until then): measure only real answers."""
    import http.client

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/credentials", headers={"Authorization": token})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError("serve has no credentials to answer with")


def run(ctx: Ctx) -> None:
    if not shutil.which("wrk"):
        ctx.rows.append(Row("5 serve under load", note="not available: wrk is not installed"))
        return
    b = ctx.bench
    proc, port, token = _start_serve(ctx, b.endpoint())
    url = f"http://127.0.0.1:{port}/credentials"
    wrk(url, token, 4, 1.0)  # warm-up
    rss_start = _rss_kib(proc.pid)
    _minimal, base_port = _start_minimal(ctx)
    lua = b.base / "imds.lua"
    lua.write_text(IMDS_LUA)
    _side_by_side(ctx, "container GET /credentials", url, f"http://127.0.0.1:{base_port}/credentials", token, None)
    imds = "/latest/meta-data/iam/security-credentials/bench"
    serve_imds, base_imds = f"http://127.0.0.1:{port}{imds}", f"http://127.0.0.1:{base_port}{imds}"
    _side_by_side(ctx, "IMDSv2 PUT token + GET", serve_imds, base_imds, "", str(lua))
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
        f"Scenario 6: serve RSS {rss_start / 1024:.1f} MiB after warm-up, {rss_end / 1024:.1f} MiB after "
        "the container and IMDSv2 load runs."
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    token_store_row(ctx)
    flood_row(ctx)
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


def token_store_row(ctx: Ctx) -> None:
    """Scenario 5: one IMDSv2 token PUT + GET on a full token store vs an empty one, in-process.

    The full store holds its bound of never-used and of used tokens, so every PUT evicts a fresh
    token and every GET a used one: the most work either can do. Interleaved rounds, GC off, the
    median of per-round ratios (as the sign rows).
    """
    import gc
    import statistics

    from rolesanywhere_signer.imds import TokenStore

    def ops(store: TokenStore, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            store.valid(store.issue(21600))
        return (time.perf_counter() - started) / n

    full = TokenStore()
    for _ in range(4096):
        full.valid(full.issue(21600))  # used tokens, up to their bound
    for _ in range(4096):
        full.issue(21600)  # never-used ones, up to theirs
    assert len(full) == 2 * 4096
    rounds, n = (5, 100) if ctx.smoke else (41, 400)
    ratios, empty_us, full_us = [], [], []
    gc.disable()
    try:
        for _ in range(rounds):
            e = ops(TokenStore(), n)
            f = ops(full, n)
            ratios.append(f / e)
            empty_us.append(e * 1e6)
            full_us.append(f * 1e6)
    finally:
        gc.enable()
    ctx.rows.append(
        Row(
            "5 IMDSv2 token store PUT+GET, full (8,192 tokens) vs empty",
            "µs",
            median=statistics.median(full_us),
            min=min(full_us),
            max=max(full_us),
            baseline="empty store",
            baseline_median=statistics.median(empty_us),
            measured_ratio=statistics.median(ratios),
            target=1.5,
        )
    )


def _imds_round(port: int) -> float:
    """One IMDSv2 fetch as botocore makes it, on a new connection; seconds taken."""
    import http.client

    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        r = conn.getresponse()
        token = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"token PUT answered {r.status}")
        conn.request(
            "GET", "/latest/meta-data/iam/security-credentials/bench", headers={"X-aws-ec2-metadata-token": token}
        )
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or b'"Token"' not in body:
            raise RuntimeError(f"credentials GET answered {r.status}")
    finally:
        conn.close()
    return time.perf_counter() - started


def flood_row(ctx: Ctx) -> None:
    """Scenario 5, the flood row: p99 of a legitimate IMDSv2 client while others pipeline PUTs."""
    from support.hostile import start_flood

    b = ctx.bench
    proc, port, _ = _start_serve(ctx, b.endpoint())
    rounds = 50 if ctx.smoke else 400
    seconds = 3.0 if ctx.smoke else 12.0
    flood = start_flood(port, 4, seconds)
    try:
        time.sleep(0.5)  # the flood is under way
        took = sorted(_imds_round(port) * 1e3 for _ in range(rounds))
    finally:
        answered = flood.communicate(timeout=seconds + 30)[0].strip()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    p50 = took[len(took) // 2]
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    ctx.rows.append(
        Row(
            "5 serve p99 for a legitimate client during the flood",
            median=p99,
            target=50.0,
            absolute=True,
            note=f"IMDSv2 PUT+GET on a new connection; p50 {p50:.2f} ms, max {took[-1]:.1f} ms",
        )
    )
    ctx.notes.append(
        f"Scenario 5, flood: {rounds} IMDSv2 rounds (new connection, token PUT, credentials GET) while 4 "
        f"connections pipelined 2,000 token PUTs per write ({answered} PUTs answered to them in "
        f"{seconds:g} s): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {took[-1]:.1f} ms."
    )
