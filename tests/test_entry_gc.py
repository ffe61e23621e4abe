"""The console entry point runs one-shot commands without the cycle collector, long-running
ones with it, and never changes it for a library caller of ``main()``."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from rolesanywhere_signer.cli import main

#: what the interpreter reports just before it tears itself down (atexit runs before the final
#: collection): whether the collector is on, and how many objects it will not walk
PROBE = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"\\nGC enabled={gc.isenabled()} frozen={gc.get_freeze_count()}\\n"))
sys.argv = ["rolesanywhere-signer", *sys.argv[1:]]
from rolesanywhere_signer.cli import entry
entry()
"""


def probe(*argv: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("GC "), proc.stderr[-500:]
    return proc.returncode, line


@pytest.mark.parametrize("argv", [["version"], ["--debug", "version"], ["credential-process", "--bogus"]])
def test_one_shot_runs_leave_the_collector_off_and_freeze_before_exit(argv: list[str]) -> None:
    rc, line = probe(*argv)
    assert "enabled=False" in line
    frozen = int(line.rsplit("frozen=", 1)[1])
    assert frozen > 1000, line  # every object of the run is out of the final collection's sight
    assert rc == (0 if "version" in argv else 2)


def test_long_running_commands_keep_the_collector() -> None:
    # serve with a bad flag: argparse refuses it before serving, and the collector was never off
    rc, line = probe("serve", "--no-such-flag")
    assert rc == 2
    assert line == "GC enabled=True frozen=0"


def test_main_called_as_a_library_leaves_the_collector_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    assert main(["version"]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert capsys.readouterr().out.strip()
