"""Secrets that cannot leak by accident, and terminal prompts that never hang.

A ``Secret`` hides its value from ``repr``/``str``/format, so logging a config object or an
exception can never print a PIN or password. Prompts open ``/dev/tty`` directly because botocore
runs ``credential_process`` with no terminal on stdin; with no terminal we fail at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .errors import SecretError


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def encode(self, encoding: str = "utf-8") -> bytes:
        return self._value.encode(encoding)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str:  # refuse pickling: it would write the value out
        raise TypeError("Secret values cannot be pickled")


#: the terminal used for prompts; tests point it elsewhere to simulate "no terminal"
TTY_PATH = "/dev/tty"


def prompt_secret(prompt: str, *, what: str, hint: str, tty_path: str | None = None) -> Secret:
    """Ask for a secret on the controlling terminal, without echo.

    ``what`` names the secret for the error message ("PKCS#11 PIN"); ``hint`` says which
    non-interactive sources exist. Raises ``SecretError`` at once when there is no terminal.
    """
    path = tty_path or os.environ.get("ROLESANYWHERE_SIGNER_TTY") or TTY_PATH
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise SecretError(f"{what} is needed but there is no terminal to ask for it", hint=hint) from None
    try:
        return Secret(_read_no_echo(fd, prompt))
    finally:
        os.close(fd)


def terminal_available(tty_path: str | None = None) -> bool:
    """Whether a prompt could be shown (the controlling terminal, or the one tests point at)."""
    path = tty_path or os.environ.get("ROLESANYWHERE_SIGNER_TTY") or TTY_PATH
    try:
        os.close(os.open(path, os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def _read_no_echo(fd: int, prompt: str) -> str:
    import termios

    old: list[Any] | None = None
    try:
        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[3] &= ~termios.ECHO  # lflag
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    except termios.error:
        old = None  # not a real terminal (a pipe in tests): read without touching modes
    try:
        os.write(fd, prompt.encode())
        chunks = bytearray()
        while True:
            b = os.read(fd, 1)
            if not b or b in (b"\n", b"\r"):
                break
            chunks += b
        os.write(fd, b"\n")
        return chunks.decode("utf-8", "replace")
    except KeyboardInterrupt:
        raise SecretError(f"cancelled at the {prompt.strip().rstrip(':')} prompt") from None
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)


def tty_message(text: str) -> None:
    """Print a notice ("touch your security key") on the terminal if there is one; never fail."""
    try:
        fd = os.open(os.environ.get("ROLESANYWHERE_SIGNER_TTY") or TTY_PATH, os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


def read_secret_file(path: str, *, what: str) -> Secret:
    """Read a PIN/password from a file: first line, trailing newline removed.

    Through files.py: non-blocking (a FIFO is refused at once), a regular file or a character
    device such as ``/dev/tty``, and a warning when group or others can read it.
    """
    from .errors import InputError
    from .files import read_input_file

    try:
        raw = read_input_file(path, f"{what} file", limit=65536, secret=True, allow_chardev=True, allow_empty=True)
        data = raw.decode("utf-8")
    except InputError as e:
        raise SecretError(e.message, hint=e.hint) from None
    except UnicodeDecodeError:
        raise SecretError(f"cannot read {what} file {path}: it is not UTF-8 text") from None
    value = data.splitlines()[0] if data else ""
    if not value:
        raise SecretError(f"{what} file {path} is empty")
    return Secret(value)


# ---------------------------------------------------------------- where PINs and passwords come from

#: One place a PIN or password may come from: it returns the secret, or ``None`` when that place
#: was not given (no flag, no file named, the variable unset). ``first_secret`` asks them in order.
#: The documented order everywhere: the flag (or URI attribute), a file, the environment, the
#: terminal. A new place (pinentry) is one more function returning a ``SecretSource``.
SecretSource = Callable[[], "Secret | None"]


def from_value(value: Secret | None, *, warn: Callable[[], None] | None = None) -> SecretSource:
    """A secret given directly (a flag, ``pin-value``); ``warn`` runs when it is used (argv is public)."""

    def get() -> Secret | None:
        if value is not None and warn is not None:
            warn()
        return value

    return get


def from_file(path: str | None, *, what: str) -> SecretSource:
    """The first line of the file at ``path`` (``read_secret_file``), when a path is given."""
    return lambda: read_secret_file(path, what=what) if path else None


def from_env(name: str) -> SecretSource:
    """The environment variable ``name``; unset or empty counts as not given."""

    def get() -> Secret | None:
        value = os.environ.get(name)
        return Secret(value) if value else None

    return get


def from_pinentry(program: str | None, description: str, *, what: str) -> SecretSource:
    """A pinentry dialog when chosen (``pin-source=pinentry:[PROGRAM]``; "" is the default program):
    answers, or raises ``SecretError`` (cancel, missing program). ``None`` = not chosen."""

    def get() -> Secret | None:
        if program is None:
            return None
        from .pinentry import get_pin

        return Secret(get_pin(program or None, description=description, what=what))

    return get


def from_terminal(prompt: str, *, what: str, hint: str) -> SecretSource:
    """Ask on the terminal (``prompt_secret``): always answers, or raises ``SecretError`` without one.

    With no terminal but a desktop session and a ``pinentry`` installed, the pinentry asks instead
    (credential_process started by an IDE)."""

    def get() -> Secret:
        return ask(prompt, what=what, hint=hint)

    return get


def ask(prompt: str, *, what: str, hint: str, pinentry: str | None = None) -> Secret:
    """A secret from the user: the terminal, or a pinentry.

    ``pinentry`` is the explicit choice (``pin-source=pinentry:[PROGRAM]``; "" = the default
    program). Without it the terminal is used, and when there is none but a desktop session and
    an installed pinentry, the pinentry asks (credential_process started from an IDE).
    """
    from . import pinentry as pe

    description = prompt.strip().rstrip(":")
    if pinentry is not None:
        return Secret(pe.get_pin(pinentry or None, description=description, what=what))
    if not terminal_available() and pe.graphical_session() and pe.find_pinentry() is not None:
        return Secret(pe.get_pin(None, description=description, what=what))
    return prompt_secret(prompt, what=what, hint=hint)


def first_secret(*sources: SecretSource) -> Secret | None:
    """The secret of the first source that has one; ``None`` when none had."""
    for source in sources:
        value = source()
        if value is not None:
            return value
    return None
