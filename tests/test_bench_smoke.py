"""`make bench` harness check: a smoke run (2 runs of the cheapest scenarios) prints the table and
writes the markdown. No timing target is asserted: benchmarks never pass or fail on speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_run_prints_table_and_writes_markdown(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    out.write_text(
        "# Performance\n\nhand-written intro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nanalysis kept\n"
    )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["scenario", "median", "min", "max"]
    assert "met?" in header
    # the cold credential-process row ran for real: it has a median in ms and a ratio to the import floor
    cold = next(line for line in lines if line.startswith("1 credential-process PEM"))
    assert " ms " in cold and "import floor" in cold and "×" in cold
    assert any(line.startswith("1 python -c pass") for line in lines)
    assert any(line.startswith("4 sign() PEM EC") and "µs" in line for line in lines)
    assert any(line.startswith("4 sign() PEM ML-DSA-65") and "µs" in line for line in lines)
    assert "error:" not in proc.stdout  # no scenario crashed
    md = out.read_text()
    assert "hand-written intro" in md and "analysis kept" in md  # only the generated part is replaced
    assert "old\n" not in md
    assert "| scenario | median | min | max |" in md
    assert "logical cores" in md and "Python: " in md and "CPU: " in md and "Date: " in md
    assert "SMOKE RUN" in md
