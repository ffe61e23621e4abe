"""Throwaway SoftHSM2 tokens under a temporary SOFTHSM2_CONF, filled with softhsm2-util and pkcs11-tool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

MODULE = next(
    (
        p
        for p in (
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib64/softhsm/libsofthsm2.so",
        )
        if os.path.exists(p)
    ),
    "/usr/lib/softhsm/libsofthsm2.so",
)
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"
PIN = "1234"
SO_PIN = "5678"
CKA_OS_TOKENFLAGS = bytes.fromhex("000000008000534b0000000000000002")


class SoftHSM:
    """A SoftHSM2 configuration of our own: tokens live under ``base/tokens``."""

    def __init__(self, base: Path, *, mechanisms: str = "ALL") -> None:
        self.base = base
        self.tokendir = base / "tokens"
        self.tokendir.mkdir(parents=True, exist_ok=True)
        self.conf = base / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {self.tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
            f"slots.removable = false\nslots.mechanisms = {mechanisms}\n"
        )
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        self.pin_file = base / "pin"
        self.pin_file.write_text(PIN + "\n")
        self.pin_file.chmod(0o600)
        self._n = 0

    def _run(self, args: list[str]) -> str:
        env = {**os.environ, **self.env}
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def init_token(self, label: str) -> None:
        self._run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN])

    def _file(self, suffix: str, data: bytes) -> Path:
        self._n += 1
        p = self.base / f"obj{self._n}{suffix}"
        p.write_bytes(data)
        return p

    def tool(self, token: str, *args: str) -> str:
        return self._run(["pkcs11-tool", "--module", MODULE, "--token-label", token, "--login", "--pin", PIN, *args])

    def import_key(
        self, token: str, key: Any, label: str, id_hex: str, *, method: str = "softhsm2-util", always_auth: bool = False
    ) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if method == "softhsm2-util" and not always_auth:
            self._run(
                [
                    "softhsm2-util",
                    "--import",
                    str(self._file(".pem", pem)),
                    "--token",
                    token,
                    "--label",
                    label,
                    "--id",
                    id_hex,
                    "--pin",
                    PIN,
                ]
            )
            return
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        extra = ["--always-auth"] if always_auth else []
        self.tool(
            token,
            "--write-object",
            str(self._file(".p8", der)),
            "--type",
            "privkey",
            "--label",
            label,
            "--id",
            id_hex,
            "--usage-sign",
            *extra,
        )
        pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.tool(
            token, "--write-object", str(self._file(".pub", pub)), "--type", "pubkey", "--label", label, "--id", id_hex
        )

    def write_cert(self, token: str, cert: Any, label: str, id_hex: str) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        self.tool(
            token, "--write-object", str(self._file(".der", der)), "--type", "cert", "--label", label, "--id", id_hex
        )

    def add_identity(self, token: str, issued: Any, label: str, id_hex: str, **kw: Any) -> None:
        self.import_key(token, issued.key, label, id_hex, **kw)
        self.write_cert(token, issued.cert, label, id_hex)

    def token_dir(self, label: str) -> Path:
        for d in self.tokendir.iterdir():
            if label.encode() in (d / "token.object").read_bytes():
                return d
        raise KeyError(label)

    def token_flags(self, label: str) -> int:
        data = (self.token_dir(label) / "token.object").read_bytes()
        i = data.index(CKA_OS_TOKENFLAGS) + len(CKA_OS_TOKENFLAGS)
        return int.from_bytes(data[i : i + 8], "big")

    def set_token_flags(self, label: str, flags: int) -> None:
        """Write the flags SoftHSM reports in C_GetTokenInfo (how a card reports a locked PIN)."""
        path = self.token_dir(label) / "token.object"
        data = bytearray(path.read_bytes())
        i = data.index(CKA_OS_TOKENFLAGS) + len(CKA_OS_TOKENFLAGS)
        data[i : i + 8] = flags.to_bytes(8, "big")
        path.write_bytes(bytes(data))

    def uri(self, token: str, obj: str | None = None, *, pin: bool = True, extra: str = "") -> str:
        path = f"pkcs11:token={token}" + (f";object={obj}" if obj else "") + extra
        return path + (f"?pin-source=file:{self.pin_file}" if pin else "")

    def spy_env(self, log: Path) -> dict[str, str]:
        return {**self.env, "PKCS11SPY": MODULE, "PKCS11SPY_OUTPUT": str(log)}


def login_results(log: Path) -> list[str]:
    """The return codes of every C_Login call in a pkcs11-spy log."""
    out: list[str] = []
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    inside = False
    for line in lines:
        if "C_Login" in line and line.lstrip()[:1].isdigit():
            inside = True
        elif inside and line.startswith("Returned:"):
            out.append(line.split()[-1])
            inside = False
    return out


def remove(path: Path, to: Path) -> None:
    shutil.move(str(path), str(to))
