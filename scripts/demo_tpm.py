"""`make demo` part: a throwaway swtpm, a key made inside it, a certificate for it, credential-process via TCTI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.pki import issue
from support.util import ARN_ARGS, free_port


def _start(state: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate",
            f"dir={state}",
            "--flags",
            "not-need-init,startup-clear",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(250):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("swtpm did not start")


def run(ctx: Any) -> None:
    if not shutil.which("swtpm"):
        print("\n== TPM 2.0: skipped (swtpm is not installed)")
        return
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        print("\n== TPM 2.0: skipped (tpm2-pytss is not installed)")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rolesanywhere_signer.backends import tpm
    from rolesanywhere_signer.options import IdentityOptions

    base = ctx.workdir / "swtpm"
    (base / "state").mkdir(parents=True)
    proc, port = _start(base / "state")
    tcti = f"swtpm:host=127.0.0.1,port={port}"
    try:
        print(f"\n== TPM 2.0 on a throwaway swtpm ({tcti}): EC P-256 key made inside the TPM")
        key_file = base / "demo-key.tss"
        os.environ.setdefault("TSS2_LOG", "all+NONE")
        public = tpm.generate_key(IdentityOptions(tcti=tcti), "ec-p256", output=str(key_file))
        leaf = issue("demo-tpm.example", issuer=ctx.pki.root, public_key=public)
        cert = ctx.pki.write("demo-tpm.crt", leaf.pem)
        print(f"   {key_file.name}: TSS2 PRIVATE KEY (only this TPM can load it); certificate from the demo CA")
        ctx.run(
            [
                "credential-process",
                "--certificate",
                cert,
                "--private-key",
                key_file,
                "--tcti",
                tcti,
                "--endpoint",
                ctx.endpoint.url,
                *ARN_ARGS,
            ]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)
