"""A private pcscd with vpcd and our card emulator, for the PIV tests.

pcscd always writes /run/pcscd/pcscd.pid and vpcd listens on a TCP port, so pcscd runs in a
mount and network namespace of its own (``unshare --mount --net``, a tmpfs over /run, lo up):
nothing on the host is touched and two of these can run side by side. Every port is free in a
new network namespace, so vpcd's port needs no search.

Clients on the host reach pcscd through a Unix socket in our temporary directory: we bind and
listen on it here and hand it to pcscd by socket activation (``LISTEN_FDS``); clients find it
through ``PCSCLITE_CSOCK_NAME``. libpcsclite remembers that name for the life of a process, so a
test session uses one socket path; pcscd and the card behind it may be restarted freely.

The card (``emulator.py``) is started with ``nsenter --net`` into pcscd's namespace, so it can
connect to vpcd; "removing" the card stops that process, "inserting" starts it again on the same
state file. We stop what we start, by PID, and wait on it (no zombies).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import emulator

VPCD_DRIVER = next(
    (
        p
        for p in (
            "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
            "/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so",
        )
        if os.path.exists(p)
    ),
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
)
OPENSC = next(
    (
        p
        for p in ("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so")
        if os.path.exists(p)
    ),
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
)
YKCS11 = "/usr/lib/x86_64-linux-gnu/libykcs11.so"
MODULES = {"opensc": OPENSC, "ykcs11": YKCS11}
VPCD_PORT = 35963
PIN = "271828"  # not the YubiKey default, so it cannot be confused with a serial number
PUK = "12345678"
MGM_HEX = emulator.DEFAULT_MGM.hex()
#: ykcs11 looks only at readers whose name starts with "Yubico"
READER_NAME = "Yubico YubiKey virtual"


def missing_tools() -> list[str]:
    need = [VPCD_DRIVER, OPENSC, YKCS11]
    out = [p for p in need if not os.path.exists(p)]
    out += [t for t in ("pcscd", "unshare", "nsenter", "ip") if shutil.which(t) is None]
    return out


def _wait(proc: subprocess.Popen[Any], timeout: float = 5) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class VirtualPiv:
    """pcscd + vpcd in a private namespace, and the card emulator plugged into it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.socket_path = base / "pcscd.comm"
        self.state_path = base / "card.json"
        self.conf_dir = base / "reader.conf.d"
        self.conf_dir.mkdir(exist_ok=True)
        (self.conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{READER_NAME}"\nDEVICENAME /dev/null:{VPCD_PORT}\nLIBPATH {VPCD_DRIVER}\nCHANNELID {VPCD_PORT}\n'
        )
        self.pcscd: subprocess.Popen[bytes] | None = None
        self.card: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = None
        self.env = {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    # ---- pcscd
    def start_pcscd(self) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(str(self.socket_path))
        lst.listen(64)
        os.chmod(self.socket_path, 0o666)
        self._listener = lst
        fd = lst.fileno()
        script = (
            "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/pcscd; ip link set lo up; "
            f"exec 3<&{fd}; exec env LISTEN_PID=$$ LISTEN_FDS=1 pcscd --foreground --error -c {self.conf_dir}"
        )
        log = open(self.base / "pcscd.log", "ab")  # noqa: SIM115 - the child keeps it
        self.pcscd = subprocess.Popen(
            ["unshare", "--mount", "--net", "bash", "-c", script],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        # pcscd owns the socket now; if it dies, clients get "refused" instead of waiting forever
        lst.close()
        self._listener = None

    def stop_pcscd(self) -> None:
        if self.pcscd is not None:
            self.pcscd.terminate()
            _wait(self.pcscd)
            self.pcscd = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # ---- the card
    def new_card(self, **kw: Any) -> dict[str, Any]:
        state = emulator.new_state(pin=PIN, puk=PUK, **kw)
        emulator.save_state(self.state_path, state)
        return state

    def insert(self) -> None:
        """Start the card on the current state file; wait until a client can see it.

        A card already running reloads the file instead (SIGHUP): a new card in the same
        reader without the second it takes pcscd to see a removal and an insertion."""
        assert self.pcscd is not None
        if self.card is not None and self.card.poll() is None:
            self.card.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while self.state()["counters"].get("loads", 0) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the virtual card did not reload: {self.log('card.log')}")
                time.sleep(0.005)
            return
        self.card = None
        before = self.state()["counters"]["connects"]
        log = open(self.base / "card.log", "ab")  # noqa: SIM115 - the child keeps it
        self.card = subprocess.Popen(
            [
                "nsenter",
                f"--net=/proc/{self.pcscd.pid}/ns/net",
                "--",
                sys.executable,
                "-m",
                "tests.piv.emulator",
                "--port",
                str(VPCD_PORT),
                "--state",
                str(self.state_path),
            ],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 15
        while self.state()["counters"]["connects"] == before:
            if self.card.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the virtual card did not connect: {self.log('card.log')} {self.log('pcscd.log')}")
            time.sleep(0.02)
        self.wait_present(True)

    def remove(self) -> None:
        if self.card is not None:
            self.card.terminate()
            _wait(self.card)
            self.card = None
            self.wait_present(False)

    def wait_present(self, present: bool, timeout: float = 10) -> None:
        from .pcsc_client import card_present

        deadline = time.monotonic() + timeout
        while card_present(str(self.socket_path)) != present:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"pcscd never saw the card {'inserted' if present else 'removed'}: {self.log('pcscd.log')}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        self.remove()
        self.stop_pcscd()

    # ---- what the card saw
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def counters(self) -> dict[str, int]:
        c: dict[str, int] = self.state()["counters"]
        return c

    def update(self, **changes: Any) -> None:
        """Change the card's state file (only while the card is out, or for settings it re-reads)."""
        state = self.state()
        state.update(changes)
        emulator.save_state(self.state_path, state)

    def log(self, name: str) -> str:
        p = self.base / name
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""


def provision(
    piv: VirtualPiv, slot: int, issued: Any, *, pin_policy: str | None = None, touch_policy: str = "never"
) -> None:
    """Put a key and its certificate in a slot, as `ykman piv keys import` + `certificates import` would."""
    from cryptography.hazmat.primitives import serialization

    state = piv.state()
    emulator.put_key(state, slot, issued.key, pin_policy=pin_policy, touch_policy=touch_policy)
    emulator.put_certificate(state, slot, issued.cert.public_bytes(serialization.Encoding.DER))
    emulator.save_state(piv.state_path, state)
