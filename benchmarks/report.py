"""The one table `make bench` prints, and docs/performance.md around it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the table. Values are in ``unit``; a row without numbers says why in ``note``."""

    scenario: str
    unit: str = "ms"
    median: float | None = None
    min: float | None = None
    max: float | None = None
    baseline: str = ""
    baseline_median: float | None = None
    #: at most this ratio (or, with ``absolute``, this value) meets the target; with ``at_least``,
    #: at least this (throughput)
    target: float | None = None
    absolute: bool = False
    at_least: bool = False
    note: str = ""
    #: a ratio measured directly (the median of per-round ratios of interleaved rounds), which
    #: is reported instead of median / baseline_median
    measured_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.measured_ratio is not None:
            return self.measured_ratio
        if self.median is None or not self.baseline_median:
            return None
        return self.median / self.baseline_median

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.median if self.absolute else self.ratio
        if value is None:
            return None
        return value >= self.target if self.at_least else value <= self.target


HEADERS = ("scenario", "median", "min", "max", "baseline (median)", "ratio", "target", "met?")


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f} {unit}"
    if abs(v) >= 10:
        return f"{v:.1f} {unit}"
    return f"{v:.2f} {unit}"


def cells(r: Row) -> tuple[str, ...]:
    base = f"{r.baseline}: {_num(r.baseline_median, r.unit)}" if r.baseline else ""
    ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
    if r.target is None:
        target = ""
    else:
        sign = "≥" if r.at_least else "≤"
        target = f"{sign} {_num(r.target, r.unit)}" if r.absolute else f"{sign} {r.target:g}×"
    met = {True: "yes", False: "NO", None: ""}[r.met]
    if r.median is None:
        met = r.note or "not available"
    return (r.scenario, _num(r.median, r.unit), _num(r.min, r.unit), _num(r.max, r.unit), base, ratio, target, met)


def text_table(rows: Sequence[Row]) -> str:
    table = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |")
    return "\n".join(out)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    import cryptography

    try:
        import requests

        req = requests.__version__
    except ImportError:
        req = "absent"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
            f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
            f"- Python: {sys.version.split()[0]} ({sys.executable})",
            f"- cryptography {cryptography.__version__}, requests {req}",
            f"- Load average at the end of the run: {load}",
            "- Measured processes run with bytecode caching on (PYTHONPYCACHEPREFIX in the bench dir,"
            " PYTHONDONTWRITEBYTECODE removed), as an installed copy would",
        ]
    )


def notes_text(notes: Sequence[str]) -> str:
    return "\n".join(f"- {n}" for n in notes)
