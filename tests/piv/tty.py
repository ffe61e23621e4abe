"""Answering PIN prompts on a pseudo-terminal, counting them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence

from support.util import clean_env


class PromptAnswerer:
    """A pty whose slave the CLI uses as its terminal (ROLESANYWHERE_SIGNER_TTY); we type the PIN."""

    def __init__(self, answer: str, trigger: bytes = b"PIN") -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.answer = answer
        self.trigger = trigger
        self.prompts = 0
        self.output = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.output += data
            pending += data
            while True:  # a prompt is the trigger and the next colon
                start = pending.find(self.trigger)
                colon = pending.find(b":", start) if start >= 0 else -1
                if colon < 0:
                    break
                pending = pending[colon + 1 :]
                self.prompts += 1
                os.write(self.master, self.answer.encode() + b"\n")

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)
        self._thread.join(2)


def run_cli_tty(
    args: Sequence[str], tty: PromptAnswerer, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rolesanywhere_signer", *map(str, args)],
        env=clean_env({"ROLESANYWHERE_SIGNER_TTY": tty.path, **(env or {})}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
