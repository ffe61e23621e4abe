"""swtpm in TCP mode on free ports with its own state directory, and the tools that fill it with keys."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from support.util import free_port


class Swtpm:
    """One software TPM. ``restart`` keeps the state directory (persistent keys survive, transient ones don't)."""

    def __init__(self, base: Path) -> None:
        self.state = base / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, port: int | None = None) -> None:
        if port is None:
            for _ in range(20):
                port = free_port()
                if _free(port + 1):
                    break
        assert port is not None
        self.port = port
        self.proc = subprocess.Popen(
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--tpmstate",
                f"dir={self.state}",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("swtpm exited at start") from None
                time.sleep(0.02)
        raise RuntimeError("swtpm did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        """The same TPM powered off and on again, on the same port: transient objects are gone."""
        port = self.port
        self.stop()
        for _ in range(100):  # the port may linger for a moment
            if _free(port) and _free(port + 1):
                break
            time.sleep(0.05)
        self.start(port)

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"TPM2TOOLS_TCTI": self.tcti, "TPM2OPENSSL_TCTI": self.tcti, "TSS2_LOG": "all+NONE"}

    def run(self, *args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(a) for a in args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.base,
        )
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def transient_handles(self) -> list[str]:
        """Transient objects and loaded sessions."""
        out = (
            self.run("tpm2_getcap", "handles-transient").stdout
            + self.run("tpm2_getcap", "handles-loaded-session").stdout
        )
        return [ln.strip("- ").strip() for ln in out.splitlines() if ln.strip()]

    def flush_all(self) -> None:
        self.run("tpm2_flushcontext", "-t")
        self.run("tpm2_flushcontext", "-l")

    def clear_lockout(self) -> None:
        self.run("tpm2_dictionarylockout", "--clear-lockout")

    # -- keys

    def openssl_key(self, path: Path, algorithm: str, password: str | None = None) -> Path:
        """``openssl genpkey -provider tpm2``: EC (P-256, P-384) or RSA (bits)."""
        opts = (
            ["-algorithm", "EC", "-pkeyopt", f"group:{algorithm[3:]}"]
            if algorithm.startswith("ec:")
            else ["-algorithm", "RSA", "-pkeyopt", f"bits:{algorithm[4:]}"]
        )
        if password is not None:
            opts += ["-pkeyopt", f"user-auth:{password}"]
        self.run("openssl", "genpkey", "-provider", "tpm2", *opts, "-out", path)
        return path

    def public_pem(self, key: Path, password: str | None = None) -> bytes:
        extra = ["-passin", f"pass:{password}"] if password else []
        return self.run(
            "openssl", "pkey", "-provider", "tpm2", "-provider", "default", "-in", key, *extra, "-pubout"
        ).stdout.encode()

    def persistent_parent(self, handle: str = "0x81000001") -> str:
        """tpm2_createprimary + tpm2_evictcontrol: a storage key at a persistent handle."""
        if handle in self.run("tpm2_getcap", "handles-persistent").stdout:
            return handle
        self.run("tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", "primary.ctx")
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "primary.ctx", handle)
        self.flush_all()
        return handle

    def tools_key(
        self,
        stem: str,
        *,
        alg: str = "ecc256",
        parent: str = "0x81000001",
        password: str | None = None,
        attributes: str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
    ) -> tuple[Path, Path]:
        """tpm2_create under ``parent``: (key.pub, key.priv)."""
        pub, priv = self.base / f"{stem}.pub", self.base / f"{stem}.priv"
        extra = ["-p", password] if password else []
        self.run("tpm2_create", "-C", parent, "-G", alg, "-a", attributes, "-u", pub, "-r", priv, *extra)
        return pub, priv

    def encode(self, pub: Path, priv: Path, out: Path, *, parent: str = "0x81000001", password: bool = False) -> Path:
        """tpm2_encodeobject: the pair as a TSS2 PRIVATE KEY file.

        tpm2-tools 5.4 writes emptyAuth inverted to its -p flag (fixed later); pick the flag that
        gives the file the truth, checked with our reader.
        """
        from rolesanywhere_signer.tss2 import parse_pem

        for flag in ([], ["-p"]):
            out.unlink(missing_ok=True)
            self.run("tpm2_encodeobject", "-C", parent, "-u", pub, "-r", priv, "-o", out, *flag)
            self.flush_all()  # tpm2_encodeobject 5.4 leaves its session loaded
            if parse_pem(out.read_bytes(), str(out)).empty_auth is not password:
                return out
        raise AssertionError("tpm2_encodeobject never wrote the right emptyAuth")

    def persist(self, pub: Path, priv: Path, handle: str, *, parent: str = "0x81000001") -> str:
        """tpm2_load + tpm2_evictcontrol: the key at a persistent handle."""
        ctx = self.base / "key.ctx"
        self.run("tpm2_load", "-C", parent, "-u", pub, "-r", priv, "-c", ctx)
        self.run("tpm2_evictcontrol", "-C", "o", "-c", ctx, handle)
        self.flush_all()
        return handle


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
