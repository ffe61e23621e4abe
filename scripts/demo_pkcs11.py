"""`make demo` part: a throwaway SoftHSM2 token, a key and certificate on it, credential-process via pkcs11:."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.util import ARN_ARGS

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
)


def run(ctx: Any) -> None:
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if module is None or not shutil.which("softhsm2-util") or not shutil.which("pkcs11-tool"):
        print("\n== PKCS#11: skipped (softhsm2 and opensc are not installed)")
        return
    base = ctx.workdir / "softhsm"
    (base / "tokens").mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    pin = base / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    print("\n== PKCS#11 on a throwaway SoftHSM2 token (RSA 2048 key imported, certificate written by pkcs11-tool)")
    leaf = ctx.pki.leaf("rsa2048", cn="demo-hsm.example")
    key_pem = base / "key.pem"
    key_pem.write_bytes(leaf.key_pem())
    cert_der = base / "cert.der"
    cert_der.write_bytes(leaf.cert.public_bytes(serialization.Encoding.DER))

    def sh(*args: str) -> None:
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=60)

    try:
        sh("softhsm2-util", "--init-token", "--free", "--label", "demo", "--so-pin", "5678", "--pin", "1234")
        sh(
            "softhsm2-util",
            "--import",
            str(key_pem),
            "--token",
            "demo",
            "--label",
            "demo-key",
            "--id",
            "01",
            "--pin",
            "1234",
        )
        sh(
            "pkcs11-tool",
            "--module",
            module,
            "--token-label",
            "demo",
            "--login",
            "--pin",
            "1234",
            "--write-object",
            str(cert_der),
            "--type",
            "cert",
            "--label",
            "demo-key",
            "--id",
            "01",
        )
        key_pem.unlink()  # the key now lives only on the token
        uri = f"pkcs11:token=demo;object=demo-key?pin-source=file:{pin}"
        ctx.run(
            [
                "credential-process",
                "--pkcs11-uri",
                uri,
                "--pkcs11-lib",
                module,
                "--endpoint",
                ctx.endpoint.url,
                *ARN_ARGS,
            ],
            env={"SOFTHSM2_CONF": str(conf)},
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
