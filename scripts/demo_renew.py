"""`make demo` part: certificate renewal through ACM Private CA, played by moto's server on loopback.

A machine whose certificate has one hour of its day left runs `renew`: credentials from Roles
Anywhere with the current certificate (self-renewal), IssueCertificate and GetCertificate on the
CA, strict checks, an atomic install with the old pair kept as .prev, then credential-process with
the new certificate.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.moto_pca import MotoServer, make_root_ca
from support.pki import now
from support.util import ARN_ARGS, clean_env, free_port

if TYPE_CHECKING:
    from demo import DemoContext


def _start_moto() -> MotoServer:
    import time
    import urllib.request

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()  # noqa: S310 - loopback
            return MotoServer(url, proc)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)


def _serial(path: Path) -> str:
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return f"serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


def run(ctx: DemoContext) -> None:
    if not Path(sys.executable).with_name("moto_server").exists():
        print("\n== renewal: skipped (moto_server is not installed)")
        return
    print("\n== renewal: ACM Private CA played by moto_server on loopback")
    moto = _start_moto()
    try:
        with tempfile.TemporaryDirectory(prefix="renew-demo-") as tmp:
            pca = make_root_ca(moto, Path(tmp), cn="Demo Private CA")
            print("   CA:", pca.arn)
            start = now() - dt.timedelta(hours=23)
            leaf = ctx.pki.leaf("ec-p256", cn="renew-host.example", not_before=start, days=1)
            cert, key = ctx.pki.leaf_files("renew", leaf)
            print("   before:", _serial(cert))
            with LocalEndpoint([ctx.pki.root.cert, pca.cert]) as ep:
                args = ["renew", "--certificate", cert, "--private-key", key, *ARN_ARGS, "--endpoint", ep.url]
                args += ["--ca-arn", pca.arn]
                print("$ rolesanywhere-signer renew --certificate renew.crt --private-key renew.key --ca-arn … …")
                proc = subprocess.run(
                    [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)],
                    env=clean_env({"AWS_ENDPOINT_URL_ACM_PCA": moto.url}),
                    capture_output=True,
                    text=True,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                )
                print(proc.stderr, end="", flush=True)
                if proc.returncode != 0:
                    raise SystemExit(f"renew exited {proc.returncode}")
                print("   after: ", _serial(cert), "| previous kept as", Path(str(cert) + ".prev").name)
                own = ctx.endpoint
                ctx.endpoint = ep
                try:
                    ctx.run(
                        [
                            "credential-process",
                            "--certificate",
                            cert,
                            "--private-key",
                            key,
                            "--endpoint",
                            ep.url,
                            *ARN_ARGS,
                        ]
                    )
                finally:
                    ctx.endpoint = own
                calls = ep.state.sessions_created
                print(f"   the endpoint accepted the renewed certificate ({calls} CreateSession calls)")
    finally:
        moto.proc.terminate()
        moto.proc.wait(10)
