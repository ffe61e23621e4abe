"""Reaching the TPM: which TCTI to use, opening an ESAPI context, and errors that say what to check.

Order: ``--tcti``; ``TPM2TOOLS_TCTI``, ``TCTI``, ``TPM_DEVICE`` (a device path or a socket, as the
reference helper takes it); then ``/dev/tpmrm0`` (the kernel resource manager) and ``/dev/tpm0``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, InputError

DEFAULT_DEVICES = ("/dev/tpmrm0", "/dev/tpm0")
ENV_VARS = ("TPM2TOOLS_TCTI", "TCTI", "TPM_DEVICE")
KNOWN = ("device", "swtpm", "mssim", "tabrmd", "cmd", "pcap", "libtpms", "spi-helper", "spi-ltt2go", "i2c-helper")
GROUP_HINT = "check its permissions: add the user to the tss group (usermod -aG tss USER), then log in again"


@dataclass(frozen=True)
class Tcti:
    """A TCTI string for the TSS loader and where it came from (for messages)."""

    spec: str  # "device:/dev/tpmrm0", "swtpm:host=…,port=…", "tabrmd"
    origin: str  # "--tcti", "TPM2TOOLS_TCTI", "default"

    @property
    def name(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def conf(self) -> str:
        return self.spec.split(":", 1)[1] if ":" in self.spec else ""

    def describe(self) -> str:
        return f"TCTI {self.spec} (from {self.origin})"


def quiet_tss_logging() -> None:
    """libtss2 prints its own ERROR lines on stderr; we report one clear line instead.

    ``TSS2_LOG`` is read when the library first logs, so this must run before any TSS call.
    A value the user set (for debugging) is kept.
    """
    os.environ.setdefault("TSS2_LOG", "all+NONE")


def _from_device_value(value: str, origin: str) -> Tcti:
    """``TPM_DEVICE`` holds a device path or a socket path (the reference helper's convention)."""
    try:
        st = os.stat(value)
    except OSError:
        return Tcti(f"device:{value}", origin)
    if stat.S_ISSOCK(st.st_mode):
        return Tcti(f"swtpm:path={value}", origin)
    return Tcti(f"device:{value}", origin)


def resolve(flag: str | None) -> Tcti:
    """The TCTI to use, without opening it."""
    if flag is not None:
        return _checked(flag.strip(), "--tcti")
    for var in ENV_VARS:
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        if var == "TPM_DEVICE":
            return _from_device_value(value, var)
        return _checked(value, var)
    for dev in DEFAULT_DEVICES:
        if os.path.exists(dev):
            return Tcti(f"device:{dev}", "default")
    raise BackendError(
        "no TPM found: neither /dev/tpmrm0 nor /dev/tpm0 exists",
        hint="enable the TPM in the firmware, or name one with --tcti (e.g. swtpm:host=127.0.0.1,port=2321, tabrmd)",
    )


def _checked(spec: str, origin: str) -> Tcti:
    if not spec:
        raise InputError(f"{origin} is empty", hint="e.g. device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, tabrmd")
    if spec.startswith("/"):
        return Tcti(f"device:{spec}", origin)  # a bare device path, as some tools accept
    name = spec.split(":", 1)[0]
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise InputError(
            f"{origin} value {spec!r} is not a TCTI",
            hint="use NAME[:CONFIG], e.g. device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, tabrmd",
        )
    return Tcti(spec, origin)


def _precheck_device(tcti: Tcti) -> None:
    """Say exactly what is wrong with a device before the TSS reports a bare 'IO failure'."""
    path = tcti.conf or DEFAULT_DEVICES[1]
    if not os.path.exists(path):
        raise BackendError(
            f"TPM device {path} does not exist ({tcti.describe()})",
            hint="is there a TPM (firmware setting)? on a machine without one, pass --tcti",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise BackendError(
            f"TPM device {path} is not readable and writable by this user ({tcti.describe()})", hint=GROUP_HINT
        )


def require_pytss() -> None:
    """TPM support is an extra: say how to get it instead of an ImportError traceback."""
    quiet_tss_logging()
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        from ..errors import NotSupportedError

        raise NotSupportedError(
            "TPM keys need tpm2-pytss, which is not installed",
            hint="pip install 'rolesanywhere-signer[tpm]' (it needs the system's libtss2)",
        ) from None


def connect(tcti: Tcti) -> Any:
    """An ``ESAPI`` context on the TPM, or a ``BackendError`` naming the TCTI and what to check."""
    require_pytss()
    if tcti.name == "device":
        _precheck_device(tcti)
    from tpm2_pytss import ESAPI, TSS2_Exception

    try:
        return ESAPI(tcti.spec)
    except TSS2_Exception as e:
        raise connect_error(tcti, int(e.rc)) from None


def connect_error(tcti: Tcti, rc: int) -> BackendError:
    base = rc & 0xFFFF
    if base == 21:  # NOT_SUPPORTED: the loader found no libtss2-tcti-NAME
        if tcti.name not in KNOWN:
            return BackendError(
                f"unknown TCTI {tcti.name!r} ({tcti.describe()})", hint="use device, swtpm, mssim or tabrmd"
            )
        if tcti.name == "tabrmd":
            return BackendError(
                f"cannot reach the TPM access broker ({tcti.describe()})",
                hint="is tpm2-abrmd installed and running (systemctl status tpm2-abrmd), and is the user in the "
                "tss group? or use device:/dev/tpmrm0",
            )
        return BackendError(
            f"the TSS cannot load libtss2-tcti-{tcti.name} ({tcti.describe()})",
            hint="install the tpm2-tss TCTI libraries",
        )
    if tcti.name in ("swtpm", "mssim"):
        return BackendError(
            f"cannot connect to the TPM simulator ({tcti.describe()})",
            hint="is swtpm/the simulator running at that host and port?",
        )
    if tcti.name == "tabrmd":
        return BackendError(
            f"cannot reach the TPM access broker ({tcti.describe()})",
            hint="is tpm2-abrmd running (systemctl status tpm2-abrmd)? is the user in the tss group?",
        )
    if tcti.name == "device":
        return BackendError(
            f"cannot open the TPM ({tcti.describe()})",
            hint=f"is another program holding /dev/tpm0? prefer /dev/tpmrm0; {GROUP_HINT}",
        )
    return BackendError(f"cannot open the TPM ({tcti.describe()}, TSS error 0x{rc:x})")
