"""What a cold credential-process imports: nothing third-party beyond the benchmark's import floor.

`make bench` compares the cold run with an import floor (benchmarks/run.py FLOOR). That comparison
only means something while the floor is what the run really needs: a new third-party import on the
cold path (requests, botocore, a logging library…) must either join the floor, with a reason, or
be cut. This test runs a real cold credential-process over TLS with ``python -X importtime`` and
lists every third-party top-level module it imported.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, issue
from support.util import ARN_ARGS, clean_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Third-party modules a cold run may import beyond what the floor command imports, each with its
#: reason. Empty today; keep it short.
JUSTIFIED_EXTRAS: dict[str, str] = {}


#: Standard-library modules the cold path was cut free of, each with what used to pull it in: a
#: change that brings one back costs every AWS CLI call its import time again.
CUT_STDLIB: dict[str, str] = {
    "encodings.idna": "socket.getaddrinfo and ssl with a str host name run the IDNA codec (~2 ms)",
    "logging": "set up only for --debug and the long-running commands",
    "shutil": "argparse reads the terminal width through it (cliargs.Parser does without)",
    "asyncio": "serve's HTTP layer only",
    "subprocess": "command issuers and p11-kit discovery only",
}


def importtime(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True, timeout=60
    )


def floor_modules(env: dict[str, str]) -> set[str]:
    """What the floor command itself imports (with whatever the floor's own modules pull in)."""
    import importlib

    floor: str = importlib.import_module("run").FLOOR  # benchmarks/run.py: the one definition of the floor
    proc = importtime(["-c", floor], env)
    assert proc.returncode == 0, proc.stderr[-500:]
    return third_party_imports(proc.stderr)


def third_party_imports(stderr: str) -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", line)
        if not m:
            continue
        top = m.group(1).split(".")[0]
        if top not in stdlib and top != "rolesanywhere_signer" and not top.startswith("_frozen"):
            found.add(top)
    return found


def test_cold_run_imports_only_the_floor_and_justified_extras(pki: PKI, tmp_path: Path) -> None:
    tls = issue("127.0.0.1", issuer=pki.root, client_auth=False, ip_sans=("127.0.0.1",))
    tls_cert, tls_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    tls_cert.write_bytes(tls.pem)
    tls_key.write_bytes(tls.key_pem())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.root.pem)
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    key.chmod(0o600)
    ep = LocalEndpoint([pki.root.cert], tls=(str(tls_cert), str(tls_key))).start()
    try:
        argv = ["credential-process", "--certificate", str(cert), "--private-key", str(key)]
        env = clean_env({"AWS_CA_BUNDLE": str(ca)})
        proc = importtime(["-m", "rolesanywhere_signer", *argv, "--endpoint", ep.url, *ARN_ARGS], env)
    finally:
        ep.stop()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ep.url.startswith("https://")
    assert '"AccessKeyId"' in proc.stdout
    imported = third_party_imports(proc.stderr)
    assert "cryptography" in imported  # the scan sees what it should
    floor = floor_modules(env)
    assert "cryptography" in floor
    unexplained = imported - floor - set(JUSTIFIED_EXTRAS)
    assert not unexplained, f"cold run imports {sorted(unexplained)}: add to the floor with a reason, or cut"
    back = {name: why for name, why in CUT_STDLIB.items() if re.search(rf"\|\s*{re.escape(name)}$", proc.stderr, re.M)}
    assert not back, f"the cold path imports again what was cut from it: {back}"


def test_the_scan_catches_a_third_party_import() -> None:
    err = "import time:       100 |        100 |   requests.adapters\nimport time: 5 | 5 | json\n"
    assert third_party_imports(err) == {"requests"}
