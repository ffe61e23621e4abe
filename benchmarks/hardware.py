"""Hardware-held keys for the benchmarks: a SoftHSM2 token and a swtpm TPM, made in the bench dir.

Each ``*_identity(bench)`` returns the ``credential-process`` identity arguments and extra
environment, or raises ``Unavailable`` with a short reason (backend still a stub, tool missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:
    from fixtures import Bench

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
)
PIN = "1234"
TOKEN = "bench"
LABEL = "leaf"


class Unavailable(Exception):
    pass


def _stub(module: str) -> bool:
    """True while a backend module is still the placeholder that refuses every key."""
    import importlib

    mod = importlib.import_module(f"rolesanywhere_signer.backends.{module}")
    src = Path(mod.__file__ or "").read_text()
    return "not yet supported" in src or "Not yet implemented" in src


def softhsm_module() -> str:
    module = next((p for p in SOFTHSM_MODULES if os.path.exists(p)), None)
    if module is None or not shutil.which("softhsm2-util"):
        raise Unavailable("SoftHSM2 is not installed")
    return module


def softhsm_token(bench: Bench) -> tuple[str, dict[str, str]]:
    """An initialised token holding an EC P-256 key and its certificate; (module, env). Made once."""
    module = softhsm_module()
    base = bench.base / "softhsm"
    env = {"SOFTHSM2_CONF": str(base / "softhsm2.conf")}
    if (base / "ready").exists():
        return module, env
    (base / "tokens").mkdir(parents=True, exist_ok=True)
    (base / "softhsm2.conf").write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    (base / "pin").write_text(PIN + "\n")
    (base / "pin").chmod(0o600)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = bench.certify("Bench SoftHSM2 leaf", key.public_key())
    (base / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (base / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    run_env = {**os.environ, **env}

    def run(*argv: str) -> None:
        subprocess.run(argv, env=run_env, check=True, capture_output=True, timeout=60)

    run("softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--so-pin", "5678", "--pin", PIN)
    run(
        "softhsm2-util",
        "--import",
        str(base / "key.pem"),
        "--token",
        TOKEN,
        "--label",
        LABEL,
        "--id",
        "01",
        "--pin",
        PIN,
    )
    run(
        "pkcs11-tool",
        "--module",
        module,
        "--token-label",
        TOKEN,
        "--login",
        "--pin",
        PIN,
        "--write-object",
        str(base / "cert.der"),
        "--type",
        "cert",
        "--label",
        LABEL,
        "--id",
        "01",
    )
    (base / "ready").write_text("")
    return module, env


def softhsm_identity(bench: Bench) -> tuple[list[str], dict[str, str]]:
    if _stub("pkcs11"):
        raise Unavailable("the PKCS#11 backend is not implemented yet")
    module, env = softhsm_token(bench)
    uri = f"pkcs11:token={TOKEN};object={LABEL}?pin-source=file:{bench.base / 'softhsm' / 'pin'}"
    return ["--pkcs11-uri", uri, "--pkcs11-lib", module], env


def _swtpm_class() -> Any:
    """The tests' swtpm starter (tests/tpm/swtpm.py: free ports, own state dir), imported from its file."""
    import importlib.util
    import sys

    tests = Path(__file__).resolve().parent.parent / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))  # swtpm.py imports support.util
    spec = importlib.util.spec_from_file_location("bench_swtpm", tests / "tpm" / "swtpm.py")
    if spec is None or spec.loader is None:
        raise Unavailable("tests/tpm/swtpm.py is missing")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Swtpm


#: bench dir -> (tcti, key file, certificate file, swtpm): one swtpm per bench, stopped by Bench.close
_TPMS: dict[Path, tuple[str, Path, Path, Any]] = {}


def swtpm_key(bench: Bench) -> tuple[str, Path, Path]:
    """A running swtpm holding a fresh EC P-256 key (TSS2 key file, no password) and its certificate.

    Returns (tcti, key file, certificate file). The swtpm process joins ``bench.procs``, so
    ``Bench.close()`` stops it; ``stop_swtpm`` stops it earlier.
    """
    if bench.base in _TPMS:
        tcti, key, cert, _ = _TPMS[bench.base]
        return tcti, key, cert
    if not shutil.which("swtpm"):
        raise Unavailable("swtpm is not installed")
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        raise Unavailable("tpm2-pytss is not installed") from None
    from rolesanywhere_signer.backends.tpm import generate_key
    from rolesanywhere_signer.options import IdentityOptions

    base = bench.base / "swtpm"
    base.mkdir(parents=True, exist_ok=True)
    tpm = _swtpm_class()(base)
    assert tpm.proc is not None
    bench.procs.append(tpm.proc)
    key = base / "key.tss2.pem"
    public = generate_key(IdentityOptions(tcti=tpm.tcti, no_tpm_key_password=True), "ec-p256", output=str(key))
    leaf = bench.certify("Bench swtpm leaf", public)
    cert = bench.write("swtpm-leaf.crt", leaf.public_bytes(serialization.Encoding.PEM))
    _TPMS[bench.base] = (tpm.tcti, key, cert, tpm)
    return tpm.tcti, key, cert


def stop_swtpm(bench: Bench) -> None:
    entry = _TPMS.pop(bench.base, None)
    if entry is not None:
        entry[3].stop()


def tpm_identity(bench: Bench) -> tuple[list[str], dict[str, str]]:
    if _stub("tpm"):
        raise Unavailable("the TPM backend is not implemented yet")
    tcti, key, cert = swtpm_key(bench)
    args = ["--certificate", str(cert), "--private-key", str(key), "--tcti", tcti]  # the key has emptyAuth
    return args, {"TSS2_LOG": "all+NONE"}
