"""`make bench`: every scenario of issue 7 against its baseline, in one run, as one table.

    python benchmarks/run.py [--smoke] [--only 1,3,...] [--out docs/performance.md]

Prints the table and rewrites the generated part of ``docs/performance.md`` (between the
``bench:begin``/``bench:end`` markers; the hand-written analysis around them is kept). ``--smoke``
runs one or two cheap scenarios twice, to check the harness, and measures nothing worth quoting.
These are benchmarks, not tests: missed targets are reported, never raised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fixtures import ARN_ARGS, CLI, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN, Bench  # noqa: E402
from report import Row, machine, markdown_table, notes_text, text_table  # noqa: E402
from timing import Command, RunError, Sample, measure, paired_ratio  # noqa: E402

PY = sys.executable
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Ctx:
    bench: Bench
    smoke: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: results other scenarios reuse (scenario 2 and 6 build on scenario 1)
    samples: dict[str, Sample] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return 2 if self.smoke else 25

    @property
    def warmup(self) -> int:
        return 1 if self.smoke else 3


def is_credentials(out: bytes) -> bool:
    try:
        doc = json.loads(out)
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("AccessKeyId", "")).startswith("ASIA")


def ms(s: Sample) -> dict[str, float]:
    return {"median": s.median * 1e3, "min": s.min * 1e3, "max": s.max * 1e3}


def ours_command(ctx: Ctx, name: str, identity: list[str], *extra: str) -> Command:
    argv = [CLI, "credential-process", *identity, "--endpoint", ctx.bench.endpoint(), *ARN_ARGS, *extra]
    return Command(name, argv, ctx.bench.env(), is_credentials)


# --- scenario 1 (and the peak-RSS half of 6) -------------------------------------------------------


#: What a cold credential-process cannot do without, and nothing else: the certificate parser, the
#: key's serialization module, an HTTPS client (http.client, ssl), JSON and hashing. Conveniences
#: (logging, argparse, dataclasses, typing) are not floor; tests/test_cold_imports.py fails when a
#: cold run imports a third-party module this command does not.
FLOOR = "import cryptography.x509, cryptography.hazmat.primitives.serialization, http.client, ssl, json, hashlib"
RSA_BITS = (2048, 3072, 4096)


def scenario_1(ctx: Ctx) -> None:
    b = ctx.bench
    url = b.endpoint()
    host = url.removeprefix("https://")
    commands = [
        Command("python -c pass", [PY, "-c", "pass"], b.env()),
        Command("import floor", [PY, "-c", FLOOR], b.env()),
        # the same imports with the collector as our entry point leaves it for a one-shot run (off,
        # everything frozen before exit): what ours gains there is no part of the comparison
        Command("import floor, collector off", [PY, "-c", f"import gc; gc.disable(); {FLOOR}; gc.freeze()"], b.env()),
        ours_command(ctx, "ours PEM", b.pem_args()),
    ]
    if not ctx.smoke:
        commands += [ours_command(ctx, f"ours RSA-{bits}", b.rsa_args(bits)) for bits in RSA_BITS]
        peer = [
            PY,
            str(HERE / "peer_fetch.py"),
            str(b.leaf_cert_path),
            str(b.leaf_key_path),
            host,
            TRUST_ANCHOR_ARN,
            PROFILE_ARN,
            ROLE_ARN,
        ]
        commands.append(Command("peer", peer, b.env(), is_credentials))
    before = b.endpoint_stats(url)["sessions_created"]
    ctx.commands.update((c.name, c) for c in commands)
    s = measure(commands, runs=ctx.runs, warmup=ctx.warmup)
    created = b.endpoint_stats(url)["sessions_created"] - before
    ctx.samples.update(s)
    ours, floor, bare = s["ours PEM"], s["import floor"], s["python -c pass"]
    ctx.rows += [
        Row("1 python -c pass", **ms(bare)),
        Row(
            "1 import floor (x509, serialization, http.client, ssl, json, hashlib)",
            **ms(floor),
            baseline="python -c pass",
            baseline_median=bare.median * 1e3,
            measured_ratio=paired_ratio(floor, bare),
        ),
    ]
    if "peer" in s:
        peer_s = s["peer"]
        ctx.rows += [
            Row("1 peer iam-rolesanywhere-session, cold fetch", **ms(peer_s)),
            Row(
                "1 credential-process PEM EC, cold, TLS",
                **ms(ours),
                baseline="peer",
                baseline_median=peer_s.median * 1e3,
                measured_ratio=paired_ratio(ours, peer_s),
                target=0.5,
            ),
        ]
    floors = ((floor, "import floor"), (s["import floor, collector off"], "import floor, collector off as ours"))
    for base_s, label in floors:
        ctx.rows.append(
            Row(
                "1 credential-process PEM EC, cold, TLS",
                **ms(ours),
                baseline=label,
                baseline_median=base_s.median * 1e3,
                measured_ratio=paired_ratio(ours, base_s),
                target=1.3,
            )
        )
    for bits in RSA_BITS:
        if f"ours RSA-{bits}" in s:
            ctx.rows.append(
                Row(
                    f"1 credential-process PEM RSA-{bits}, cold, TLS",
                    **ms(s[f"ours RSA-{bits}"]),
                    baseline="PEM EC",
                    baseline_median=ours.median * 1e3,
                    measured_ratio=paired_ratio(s[f"ours RSA-{bits}"], ours),
                    target=1.2 if bits == 4096 else None,
                )
            )
    ctx.notes.append(
        f"Scenario 1: {len(commands)} commands × {ctx.runs} interleaved runs after {ctx.warmup} warm-up each; "
        f"the endpoint verified and answered {created} CreateSession calls "
        "(every run of ours and of the peer is checked to print credentials). "
        f"The import floor is `python -c '{FLOOR}'`."
    )


def scenario_6_peak(ctx: Ctx) -> None:
    from timing import peak_rss_kib

    if "ours PEM" not in ctx.commands:
        scenario_1(ctx)
    runs = 2 if ctx.smoke else 5
    names = [n for n in ("python -c pass", "ours PEM", "peer") if n in ctx.commands]
    try:
        rss = {n: peak_rss_kib(ctx.commands[n], runs) for n in names}
    except RunError as e:
        ctx.rows.append(Row("6 credential-process peak RSS", "MiB", note=f"not available: {e}"))
        return
    base = statistics.median(rss["python -c pass"]) / 1024
    for n, label in (("ours PEM", "6 credential-process peak RSS"), ("peer", "6 peer cold fetch peak RSS")):
        if n in rss:
            v = [x / 1024 for x in rss[n]]
            ctx.rows.append(
                Row(
                    label,
                    "MiB",
                    median=statistics.median(v),
                    min=min(v),
                    max=max(v),
                    baseline="python -c pass",
                    baseline_median=base,
                )
            )
    ctx.notes.append(f"Scenario 6: peak RSS by GNU time (%M), {runs} runs each.")


# --- scenario 2: hardware-held keys ---------------------------------------------------------------


def scenario_2(ctx: Ctx) -> None:
    import hardware

    if "ours PEM" not in ctx.samples:
        scenario_1(ctx)
    pem = ctx.samples["ours PEM"]
    for label, setup in (("SoftHSM2 (PKCS#11)", hardware.softhsm_identity), ("swtpm (TPM 2.0)", hardware.tpm_identity)):
        name = f"2 credential-process {label}, cold, TLS"
        try:
            identity, extra_env = setup(ctx.bench)
        except hardware.Unavailable as e:
            ctx.rows.append(Row(name, note=f"not available: {e}"))
            continue
        cmd = ours_command(ctx, name, identity)
        cmd = Command(cmd.name, cmd.argv, {**ctx.bench.env(), **extra_env}, cmd.check)
        try:
            s = measure([cmd], runs=ctx.runs, warmup=ctx.warmup)[name]
        except Exception as e:
            ctx.rows.append(Row(name, note=f"not available: {str(e)[:120]}"))
            continue
        ctx.rows.append(Row(name, **ms(s), baseline="PEM (scenario 1)", baseline_median=pem.median * 1e3))
        ctx.notes.append(
            f"Scenario 2, {label}: extra cost of the hardware path "
            f"{(s.median - pem.median) * 1e3:+.1f} ms per cold run (median vs PEM)."
        )
    hardware.stop_swtpm(ctx.bench)  # scenario 4 starts its own in its bench dir


# --- scenario 3: cache hit ------------------------------------------------------------------------


def scenario_3(ctx: Ctx) -> None:
    b = ctx.bench
    cmd = ours_command(ctx, "ours --cache hit", b.pem_args(), "--cache")
    url = b.endpoint()
    from timing import run_once

    run_once(cmd)  # fills the cache
    before = b.endpoint_stats(url)["sessions_created"]
    s = measure(
        [cmd, Command("python -c import json", [PY, "-c", "import json"], b.env())], runs=ctx.runs, warmup=ctx.warmup
    )
    calls = b.endpoint_stats(url)["sessions_created"] - before
    hit, base = s["ours --cache hit"], s["python -c import json"]
    ctx.rows.append(
        Row(
            "3 credential-process --cache hit",
            **ms(hit),
            baseline="python -c 'import json'",
            baseline_median=base.median * 1e3,
            measured_ratio=paired_ratio(hit, base),
            target=1.5,
        )
    )
    ctx.notes.append(f"Scenario 3: {calls} CreateSession calls during the cache-hit runs (0 expected).")


# --- scenario 4: in-process sign() overhead, interleaved rounds ------------------------------------


SIGN_LABELS = {
    "pem": "PEM EC P-256 vs cryptography",
    "pkcs11": "PKCS#11 (SoftHSM2) vs python-pkcs11",
    "tpm": "TPM (swtpm) vs tpm2-pytss",
    "mldsa": "PEM ML-DSA-65 vs cryptography",
}


def scenario_4(ctx: Ctx) -> None:
    import subprocess

    out = ctx.bench.base / "sign-bench.json"
    argv = [PY, str(HERE / "bench_sign.py"), "--out", str(out)]
    if ctx.smoke:
        argv += ["--smoke", "--only", "pem,mldsa"]
    env = ctx.bench.env(BENCH_BASE=str(ctx.bench.base))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        ctx.rows.append(Row("4 sign() overhead", note=f"not available: {' / '.join(tail)[:160]}"))
        return
    doc = json.loads(out.read_text())
    rounds = []
    for key, label in SIGN_LABELS.items():
        name = f"4 sign() {label}"
        r = doc.get(key)
        if r is None:
            continue
        if "unavailable" in r:
            ctx.rows.append(Row(name, "µs", note=f"not available: {r['unavailable']}"[:160]))
            continue
        ctx.rows.append(
            Row(
                name,
                "µs",
                median=r["ours_median"],
                min=r["ours_min"],
                max=r["ours_max"],
                baseline="raw call",
                baseline_median=r["raw_median"],
                target=1.15,
                measured_ratio=r["ratio_median"],
            )
        )
        rounds.append(f"{key} {r['rounds']}×{r['batch']}")
    ctx.notes.append(
        "Scenario 4: ours and the raw call in alternating rounds (GC off), each round a batch of calls on "
        "each side; min/max are per-call figures of the fastest and slowest round; the ratio is the median "
        f"of the per-round ratios (rounds×calls: {', '.join(rounds)})."
    )


# --- scenario 5 and the RSS half of 6: serve under load -----------------------------------------


def scenario_5(ctx: Ctx) -> None:
    import serve_load

    serve_load.run(ctx)


SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "1": scenario_1,
    "2": scenario_2,
    "3": scenario_3,
    "4": scenario_4,
    "5": scenario_5,
    "6": scenario_6_peak,
}


def write_markdown(path: Path, body: str) -> None:
    generated = f"{BEGIN}\n{body}\n{END}"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + generated + tail
    else:
        text = "# Performance\n\nWritten by `make bench` (benchmarks/run.py).\n\n" + generated + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="2 runs of scenarios 1 and 4 (PEM only): checks the harness")
    ap.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "performance.md")
    args = ap.parse_args(argv)
    chosen = args.only.split(",") if args.only else (["1", "6", "4"] if args.smoke else list(SCENARIOS))
    started = time.monotonic()
    load_start = ", ".join(f"{x:.2f}" for x in __import__("os").getloadavg())
    with tempfile.TemporaryDirectory(prefix="rolesanywhere-bench-") as tmp:
        ctx = Ctx(Bench(Path(tmp)), args.smoke)
        try:
            for key in chosen:
                try:
                    SCENARIOS[key](ctx)
                except Exception as e:
                    traceback.print_exc(file=sys.stderr)
                    ctx.rows.append(Row(f"{key} (scenario failed)", note=f"error: {type(e).__name__}: {e}"[:160]))
        finally:
            ctx.bench.close()
    elapsed = time.monotonic() - started
    ctx.notes.insert(0, f"Load average at the start of the run: {load_start} (other work here inflates medians).")
    table = text_table(ctx.rows)
    print(table)
    mode = "SMOKE RUN (harness check, numbers not meaningful)" if args.smoke else "full run"
    body = "\n\n".join(
        [
            f"## Latest run ({mode}, {elapsed:.0f} s)",
            machine(),
            markdown_table(ctx.rows),
            "Notes from this run:\n\n" + notes_text(ctx.notes) if ctx.notes else "",
        ]
    )
    write_markdown(args.out, body)
    print(f"\nwritten to {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
