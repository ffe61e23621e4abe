"""Any other CA through a command (``step ca sign``, Vault's ``pki/sign``, a script).

The CSR PEM goes to the command's standard input; the certificate PEM, then its chain, comes back
on standard output. The command runs without a shell, in its own process group (so a timeout
ends its children too), with a deadline and a bound on what it may print.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

from ..errors import InputError, UsageError
from .issuer import IssuedCertificate

#: certificates and chains are a few kilobytes; more is not a certificate
MAX_OUTPUT = 256 * 1024
DEFAULT_TIMEOUT = 60.0


def parse_command(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"--renew-command cannot be split into words: {e}", hint="check its quotes") from None
    if not argv:
        raise UsageError("--renew-command is empty")
    return argv


@dataclass(frozen=True)
class CommandIssuer:
    command: str
    timeout: float = DEFAULT_TIMEOUT

    def _name(self) -> str:
        return os.path.basename(parse_command(self.command)[0])

    def issue(self, csr_pem: bytes) -> IssuedCertificate:
        argv = parse_command(self.command)
        name = self._name()
        try:
            proc = subprocess.Popen(
                argv,
                env=child_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise InputError(f"--renew-command: {argv[0]} was not found", hint="give a full path") from None
        except PermissionError:
            raise InputError(f"--renew-command: {argv[0]} is not executable") from None
        except OSError as e:
            raise InputError(f"--renew-command: cannot start {argv[0]}: {e.strerror or type(e).__name__}") from None
        try:
            out, err = _communicate(proc, csr_pem, self.timeout, name)
        finally:
            _end(proc)
        if proc.returncode != 0:
            last = next((ln.strip() for ln in reversed(err.decode("utf-8", "replace").splitlines()) if ln.strip()), "")
            raise InputError(
                f"--renew-command {name} exited with status {proc.returncode}" + (f": {last[:200]}" if last else ""),
                hint="the old certificate is kept",
            )
        return parse_output(out, name)


def child_environment() -> dict[str, str]:
    """Our environment without our own secrets (PIN and password variables): the CA command has
    no business with them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ROLESANYWHERE_SIGNER_")}


def _communicate(proc: subprocess.Popen[bytes], data: bytes, timeout: float, name: str) -> tuple[bytes, bytes]:
    """``communicate`` with a deadline and a size bound on both outputs."""
    import selectors

    assert proc.stdin
    assert proc.stdout
    assert proc.stderr
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    pending = memoryview(data)
    sel = selectors.DefaultSelector()
    os.set_blocking(proc.stdin.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise InputError(
                    f"--renew-command {name} did not finish within {timeout:g} seconds",
                    hint="the old certificate is kept",
                )
            for key, _ in sel.select(left):
                if key.fileobj is proc.stdin:
                    try:
                        n = os.write(proc.stdin.fileno(), pending[:65536])
                        pending = pending[n:]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                buf += chunk
                if len(buf) > MAX_OUTPUT:
                    raise InputError(
                        f"--renew-command {name} printed more than {MAX_OUTPUT} bytes", hint="it should print PEM only"
                    )
    finally:
        sel.close()
    left = max(0.1, deadline - time.monotonic())
    try:
        proc.wait(left)
    except subprocess.TimeoutExpired:
        raise InputError(
            f"--renew-command {name} did not finish within {timeout:g} seconds", hint="the old certificate is kept"
        ) from None
    return bytes(out), bytes(err)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group if it is still there; reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


def parse_output(out: bytes, name: str) -> IssuedCertificate:
    from cryptography import x509

    if b"-----BEGIN CERTIFICATE-----" not in out:
        raise InputError(
            f"--renew-command {name} printed no PEM certificate",
            hint="it must print the certificate PEM (chain after it) on standard output",
        )
    try:
        certs = x509.load_pem_x509_certificates(out)
    except ValueError:
        raise InputError(f"--renew-command {name} printed a damaged PEM certificate") from None
    # the interface's chain holds intermediates only: a self-signed root is the trust anchor's business
    return IssuedCertificate(certs[0], tuple(c for c in certs[1:] if c.subject != c.issuer))
