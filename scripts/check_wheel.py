"""CI: build the wheel, install it (not editable) into a fresh venv, and use it end to end.

The test suite runs against the editable install, which reads ``src/`` directly: a module or a
package-data file (``py.typed``) left out of the wheel would go unnoticed there. This check
fails on it twice over: the wheel's file list is compared with ``src/``, and the installed
``rolesanywhere-signer`` (run from outside the source tree) starts ``local-endpoint`` and gets
credentials from it with ``credential-process``.

Run by ``make wheel-check`` (and so by ``.ci/run``); it needs what ``make install`` needs (the
package index, for the build backend and the runtime dependencies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rolesanywhere_signer"
sys.path.insert(0, str(ROOT / "tests"))


def expected_files(src: Path = ROOT / "src") -> set[str]:
    """Every module and package-data file the wheel must carry, as wheel paths."""
    out = set()
    for path in (src / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            out.add(path.relative_to(src).as_posix())
    return out


def missing_from_wheel(wheel_names: Iterable[str], src: Path = ROOT / "src") -> list[str]:
    return sorted(expected_files(src) - set(wheel_names))


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"wheel check: {cmd[0]} exited {proc.returncode}")
    return proc


def main() -> int:
    from support.pki import PKI
    from support.util import ARN_ARGS

    with tempfile.TemporaryDirectory(prefix="rolesanywhere-wheel-") as tmp:
        work = Path(tmp)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)])
        (wheel,) = (work / "dist").glob("rolesanywhere_signer-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            missing = missing_from_wheel(zf.namelist())
        if missing:
            raise SystemExit(f"wheel check: {wheel.name} lacks {', '.join(missing)}")
        print(f"{wheel.name}: every module and py.typed present", flush=True)

        venv = work / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        python, cli = venv / "bin" / "python", venv / "bin" / "rolesanywhere-signer"
        run([str(python), "-m", "pip", "install", "-q", str(wheel)])

        # from outside the source tree, with nothing on PYTHONPATH: only the installed copy is importable
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLESANYWHERE_SIGNER_", "PYTHON"))}
        env["NO_PROXY"] = "127.0.0.1,localhost,::1"
        where = run([str(python), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=work, env=env)
        if not Path(where.stdout.strip()).is_relative_to(venv):
            raise SystemExit(f"wheel check: imported {where.stdout.strip()}, not the installed wheel")

        pki = PKI(work / "pki")
        cert, key = pki.leaf_files("wheel", pki.leaf("ec-p256", via_intermediate=True))
        anchor = pki.root_path
        endpoint = subprocess.Popen(
            [str(cli), "local-endpoint", "--trust-anchor", str(anchor)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert endpoint.stdout is not None
            url = endpoint.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                raise SystemExit(f"wheel check: local-endpoint did not start: {url!r} {endpoint.stderr}")
            proc = run(
                [
                    *(str(cli), "credential-process", "--certificate", str(cert), "--private-key", str(key)),
                    *("--intermediates", str(pki.intermediates_path), *ARN_ARGS, "--endpoint", url),
                ],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            endpoint.terminate()
            endpoint.wait(10)
        doc = json.loads(proc.stdout)
        if doc.get("Version") != 1 or not str(doc.get("AccessKeyId", "")).startswith("ASIA"):
            raise SystemExit("wheel check: credential-process printed no credentials")
        print(f"installed {wheel.name}: credential-process got credentials from local-endpoint", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
