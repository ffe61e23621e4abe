"""`make demo`: the main job end to end on an embedded default, with nothing left running.

It makes a throwaway CA and keys, starts the local verifying endpoint, runs
`rolesanywhere-signer credential-process` as the AWS SDKs would, prints the credentials JSON
(secrets masked), and stops what it started. Backend parts (PKCS#11 on SoftHSM2, TPM on swtpm,
doctor) live in scripts/demo_*.py and run when present.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from rolesanywhere_signer.endpoint_server import LocalEndpoint  # noqa: E402
from support.pki import PKI  # noqa: E402
from support.util import ARN_ARGS, clean_env  # noqa: E402

PARTS = ["demo_pkcs11", "demo_piv", "demo_tpm", "demo_doctor", "demo_renew"]


@dataclass
class DemoContext:
    pki: PKI
    endpoint: LocalEndpoint
    workdir: Path

    def run(self, args: list[str], *, env: dict[str, str] | None = None, show: bool = True) -> dict[str, str]:
        """Run the CLI as credential_process does; print the command and the (masked) JSON."""
        cmd = [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)]
        shown = [str(a) for a in args if not str(a).startswith("arn:")]
        printable = " ".join(["rolesanywhere-signer", *shown])
        print(f"$ {printable} …", flush=True)
        proc = subprocess.run(
            cmd, env=clean_env(env), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"demo step failed with exit {proc.returncode}")
        doc: dict[str, str] = json.loads(proc.stdout)
        if show:
            print(json.dumps(mask(doc), indent=2, ensure_ascii=False), flush=True)
        return doc


def mask(doc: dict[str, str]) -> dict[str, str]:
    out = dict(doc)
    for k in ("SecretAccessKey", "SessionToken"):
        if k in out:
            out[k] = out[k][:4] + "…(" + str(len(out[k])) + " chars, masked)"
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rolesanywhere-demo-") as tmp:
        work = Path(tmp)
        pki = PKI(work / "pki")
        print("== throwaway CA:", pki.root.cert.subject.rfc4514_string())
        with LocalEndpoint([pki.root.cert]) as ep:
            print("== local Roles Anywhere endpoint (verifying) at", ep.url)
            ctx = DemoContext(pki, ep, work)
            leaf = pki.leaf("ec-p256", via_intermediate=True, cn="demo-host.example")
            cert, key = pki.leaf_files("demo", leaf)
            print("\n== PEM key file (EC P-256, with an intermediate)")
            ctx.run(
                [
                    "credential-process",
                    "--certificate",
                    cert,
                    "--private-key",
                    key,
                    "--intermediates",
                    pki.intermediates_path,
                    "--endpoint",
                    ep.url,
                    *ARN_ARGS,
                ]
            )
            for part in PARTS:
                if (ROOT / "scripts" / f"{part}.py").exists():
                    importlib.import_module(part).run(ctx)
            print(f"\n== the endpoint verified and answered {ep.state.sessions_created} CreateSession request(s)")
        print("== stopped everything; demo done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
