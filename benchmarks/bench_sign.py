"""Scenario 4: our backends' ``sign()`` against the raw library call on the same key (pytest-benchmark).

Run by run.py as ``pytest benchmarks/bench_sign.py --benchmark-json=…``; ``BENCH_BASE`` names the
bench directory (run.py's temporary one). Each pair signs the same 150-byte string to sign:
- PEM: ``PemSigner.sign`` vs ``key.sign(data, ECDSA(SHA256()))`` in cryptography;
- PKCS#11: ``Pkcs11Signer.sign`` vs python-pkcs11 ``key.sign(sha256(data), mechanism=ECDSA)`` on an
  open, logged-in session (the same mechanism the backend uses; the backend adds DER encoding);
- TPM: ``TpmSigner.sign`` vs tpm2-pytss ``ESAPI.sign`` on a loaded copy of the same key in swtpm
  (the same scheme and ticket the backend uses; the backend adds DER encoding of r and s).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fixtures import Bench  # noqa: E402

import hardware  # noqa: E402

#: about the size of a real CreateSession string to sign
DATA = (
    b"AWS4-X509-ECDSA-SHA256\n20261129T080000Z\n20261129/us-east-1/rolesanywhere/aws4_request\n"
    + hashlib.sha256(b"canonical request").hexdigest().encode()
)


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    base = Path(os.environ.get("BENCH_BASE") or "/tmp") / "sign"
    base.mkdir(parents=True, exist_ok=True)
    b = Bench(base)
    yield b
    b.close()


def _pem(bench: Bench) -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from rolesanywhere_signer.backends import load_signer
    from rolesanywhere_signer.options import IdentityOptions

    signer = load_signer(IdentityOptions(str(bench.leaf_cert_path), str(bench.leaf_key_path)))
    key = bench.leaf_key
    algo = ec.ECDSA(hashes.SHA256())
    return signer, lambda: key.sign(DATA, algo)


def _pkcs11(bench: Bench) -> tuple[Any, Any]:
    try:
        if hardware._stub("pkcs11"):
            pytest.skip("the PKCS#11 backend is not implemented yet")
        module, env = hardware.softhsm_token(bench)
    except hardware.Unavailable as e:
        pytest.skip(str(e))
    os.environ.update(env)
    import pkcs11

    from rolesanywhere_signer.backends import load_signer
    from rolesanywhere_signer.options import IdentityOptions

    identity, _ = hardware.softhsm_identity(bench)
    signer = load_signer(IdentityOptions(pkcs11_uri=identity[1], pkcs11_lib=module))
    # our signer's session is logged in, and a PKCS#11 login covers every session of the process
    session = pkcs11.lib(module).get_token(token_label=hardware.TOKEN).open()
    key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=hardware.LABEL)
    mech = pkcs11.Mechanism.ECDSA

    def raw() -> Any:
        return key.sign(hashlib.sha256(DATA).digest(), mechanism=mech)

    _CLEANUPS.append(session.close)
    return signer, raw


def _tpm(bench: Bench) -> tuple[Any, Any]:
    try:
        if hardware._stub("tpm"):
            pytest.skip("the TPM backend is not implemented yet")
        tcti, key_file, cert = hardware.swtpm_key(bench)
    except hardware.Unavailable as e:
        pytest.skip(str(e))
    from rolesanywhere_signer.backends import load_signer, tpm
    from rolesanywhere_signer.options import IdentityOptions

    opts = IdentityOptions(str(cert), str(key_file), tcti=tcti, no_tpm_key_password=True)
    signer = load_signer(opts)
    assert isinstance(signer, tpm.TpmSigner)
    # the raw call runs on the very key our signer loaded: same ESAPI context, handle, scheme, ticket
    key = signer._key
    esapi, handle, scheme, ticket = key._esapi, key._handle, key._schemes["sha256"], key._ticket

    def raw() -> Any:
        return esapi.sign(handle, hashlib.sha256(DATA).digest(), scheme, ticket)

    _CLEANUPS.append(lambda: hardware.stop_swtpm(bench))  # after signer.close() flushed the key
    return signer, raw


_CLEANUPS: list[Any] = []
MAKERS = {"pem": _pem, "pkcs11": _pkcs11, "tpm": _tpm}


@pytest.fixture(scope="module", params=list(MAKERS))
def pair(request: pytest.FixtureRequest, bench: Bench) -> Iterator[tuple[str, Any, Any]]:
    signer, raw = MAKERS[request.param](bench)
    yield request.param, signer, raw
    signer.close()
    while _CLEANUPS:
        _CLEANUPS.pop()()


@pytest.mark.parametrize("side", ["ours", "raw"])
def test_sign(benchmark: Any, pair: tuple[str, Any, Any], side: str) -> None:
    kind, signer, raw = pair
    benchmark.name = f"test_sign[{side}-{kind}]"
    fn = (lambda: signer.sign(DATA)) if side == "ours" else raw
    result = benchmark(fn)
    assert result  # a signature came back
