"""Whole-process timing: warm-up, then interleaved repeated runs, medians, per-round ratios; peak RSS.

Commands measured against each other run round-robin (one run of each per round, in a shuffled
order), so a burst of load on a shared machine hits every command alike instead of whichever one
happened to be running. Each run is checked (exit status, and a caller's check of stdout): a
benchmark of a failing command would measure the error path.

Peak RSS is measured apart, through GNU ``time -f %M`` (``getrusage`` of the child as seen by a
small parent). Taken here with ``wait4`` it would be wrong: a child forked (or vforked) from this
harness inherits the harness's resident size until it calls exec, and Linux keeps that as its peak.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Check = Callable[[bytes], bool]


@dataclass(frozen=True)
class Command:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    #: stdout must satisfy this, else the run is an error
    check: Check | None = None


@dataclass
class Sample:
    """Wall times (seconds) of repeated runs of one command."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def paired_ratio(a: Sample, b: Sample) -> float:
    """The median of per-round ratios a/b of two commands measured in the same rounds.

    Each round runs both within moments of each other, so a slow phase of a shared machine lands
    on both sides of a round and cancels in its ratio; the ratio of the two medians would let it
    fall on one side.
    """
    if len(a.times) != len(b.times):
        raise ValueError(f"{a.name} and {b.name} were not measured in the same rounds")
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


class RunError(RuntimeError):
    pass


def run_once(cmd: Command) -> float:
    """One checked run: wall seconds from spawn to exit."""
    env = dict(cmd.env) if cmd.env is not None else dict(os.environ)
    with tempfile.TemporaryFile() as errf, open(os.devnull, "rb") as devnull:
        r, w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, w, 1),
            (os.POSIX_SPAWN_DUP2, errf.fileno(), 2),
            (os.POSIX_SPAWN_CLOSE, r),
        ]
        t0 = time.perf_counter()
        pid = os.posix_spawn(cmd.argv[0], list(cmd.argv), env, file_actions=actions)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            out = pipe.read()
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - t0
        returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
    if returncode != 0 or (cmd.check is not None and not cmd.check(out)):
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["(no stderr)"]
        raise RunError(f"{cmd.name}: exit {returncode}: {detail[0]}")
    return elapsed


def measure(commands: Sequence[Command], *, runs: int, warmup: int, seed: int = 7) -> dict[str, Sample]:
    """Warm each command up, then ``runs`` interleaved rounds."""
    rng = random.Random(seed)
    samples = {c.name: Sample(c.name) for c in commands}
    for _ in range(warmup):
        for c in commands:
            run_once(c)
    for _ in range(runs):
        order = list(commands)
        rng.shuffle(order)
        for c in order:
            samples[c.name].times.append(run_once(c))
    return samples


GNU_TIME = "/usr/bin/time"


def peak_rss_kib(cmd: Command, runs: int) -> list[int]:
    """Peak RSS of ``runs`` checked runs, via GNU time (Debian package ``time``)."""
    if not os.path.exists(GNU_TIME):
        raise RunError("GNU time (/usr/bin/time) is not installed")
    out: list[int] = []
    with tempfile.NamedTemporaryFile("r") as rec:
        wrapped = Command(cmd.name, [GNU_TIME, "-f", "%M", "-o", rec.name, *cmd.argv], cmd.env, cmd.check)
        for _ in range(runs):
            run_once(wrapped)
            rec.seek(0)
            out.append(int(rec.read().strip().splitlines()[-1]))
    return out
