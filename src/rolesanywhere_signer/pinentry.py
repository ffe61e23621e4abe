"""A PIN from a pinentry program (the Assuan protocol of GnuPG's pinentry family).

Laptops run credential_process from IDEs and GUIs with no terminal; a pinentry (gnome3, qt,
curses, tty) asks in a dialog instead. We speak the few commands needed: OPTION, SETTITLE,
SETDESC, SETPROMPT, GETPIN, BYE. Every read is bounded (line length, total time); the PIN is
handed straight to a ``Secret`` by ``secret.from_pinentry``; a cancel is final (no second dialog).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

from .errors import SecretError

#: the user has this long to answer the dialog
ANSWER_TIMEOUT = 300.0
#: Assuan lines are at most 1000 bytes; a D line with a percent-escaped PIN stays well below
MAX_LINE = 4096
GPG_ERR_CANCELED = 99
GPG_ERR_TIMEOUT = 62


def find_pinentry(program: str | None = None) -> str | None:
    """The pinentry to run: ``program`` (a path or a name on PATH), else ``pinentry`` on PATH."""
    name = program or os.environ.get("ROLESANYWHERE_SIGNER_PINENTRY") or "pinentry"
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def graphical_session() -> bool:
    """A pinentry without a terminal can only ask on a display."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _escape(text: str) -> str:
    out = []
    for ch in text:
        out.append(f"%{ord(ch):02X}" if ch in "%\r\n" or ord(ch) < 0x20 else ch)
    return "".join(out)


def _unescape(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25 and i + 2 < len(data):
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


class _Conversation:
    def __init__(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        self.proc = proc
        self.deadline = deadline
        self.buf = b""

    def line(self) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise SecretError(
                    "pinentry did not answer in time", hint="enter the PIN sooner, or use pin-source=file:"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SecretError("pinentry exited without giving a PIN")
            self.buf += chunk
            if len(self.buf) > MAX_LINE and b"\n" not in self.buf:
                raise SecretError("pinentry sent an over-long line")
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def command(self, text: str) -> list[bytes]:
        """Send one command; return its D lines. Raises on ERR."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        data: list[bytes] = []
        while True:
            line = self.line()
            if line == b"OK" or line.startswith(b"OK "):
                return data
            if line.startswith(b"D "):
                data.append(_unescape(line[2:]))
            elif line.startswith(b"ERR "):
                code = int((line.split(b" ")[1:2] or [b"0"])[0] or b"0") & 0xFFFF
                if code == GPG_ERR_CANCELED:
                    raise SecretError("PIN entry was cancelled in pinentry", hint="it was not asked again")
                if code == GPG_ERR_TIMEOUT:
                    raise SecretError("pinentry timed out waiting for the PIN")
                raise SecretError(f"pinentry refused {text.split(' ', 1)[0]} (error {code})")
            # S (status) and # (comment) lines are informational


def get_pin(program: str | None, *, description: str, prompt: str = "PIN:", what: str) -> str:
    """Ask with a pinentry program; one dialog, a cancel is final. The caller wraps the answer
    in a ``Secret`` at once (this module stays free of ``secret``, which imports it lazily)."""
    path = find_pinentry(program)
    if path is None:
        shown = program or os.environ.get("ROLESANYWHERE_SIGNER_PINENTRY") or "pinentry"
        raise SecretError(
            f"{what} is to come from pinentry, but the program {shown} was not found",
            hint="install one (pinentry-gnome3, pinentry-qt, pinentry-tty) or give its path: "
            "pin-source=pinentry:/usr/bin/pinentry-tty",
        )
    try:
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=False,
        )
    except OSError as e:
        raise SecretError(f"cannot run pinentry {path}: {e.strerror or type(e).__name__}") from None
    talk = _Conversation(proc, time.monotonic() + ANSWER_TIMEOUT)
    try:
        greeting = talk.line()
        if not greeting.startswith(b"OK"):
            raise SecretError(f"{path} does not speak the pinentry protocol")
        tty = os.environ.get("ROLESANYWHERE_SIGNER_TTY") or os.environ.get("GPG_TTY")
        if tty:
            talk.command(f"OPTION ttyname={tty}")
            talk.command(f"OPTION ttytype={os.environ.get('TERM') or 'dumb'}")
        talk.command("SETTITLE rolesanywhere-signer")
        talk.command(f"SETDESC {_escape(description)}")
        talk.command(f"SETPROMPT {_escape(prompt)}")
        data = talk.command("GETPIN")
        pin = b"".join(data).decode("utf-8", "replace")
        try:
            talk.command("BYE")
        except SecretError:
            pass
        if not pin:
            raise SecretError(f"{what} from pinentry is empty")
        return pin
    finally:
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(0.5)  # it exits on BYE or end of input; a stuck one is not waited for
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2)
