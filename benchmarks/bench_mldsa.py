"""ML-DSA sign() overhead: our PEM signer against ``cryptography``'s own ``key.sign(data)`` on the same key.

    python benchmarks/bench_mldsa.py [--rounds N] [--batch K] [--key-type ml-dsa-65]

Prints one JSON line. ML-DSA signing takes a varying number of rejection-sampling iterations, so
timing the two sides in separate runs would compare noise. Instead each round times a batch of
ours and a batch of raw calls back to back (which goes first alternates), and the figure is the
median of the per-round ratios ours/raw. The signer is loaded from a real key file and certificate
through ``load_signer``, as credential-process does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fixtures  # noqa: E402, F401 - puts the tests' support package on sys.path

from support.pki import issue, new_key  # noqa: E402

#: about the size of a real CreateSession string to sign
DATA = (
    b"AWS4-X509-MLDSA\n20261129T080000Z\n20261129/us-east-1/rolesanywhere/aws4_request\n"
    b"3f0a4a8e0c8f6a6f0f2ad7a6b1b0c0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3"
)


def _timed(fn: Any, batch: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - start) / batch / 1e3  # µs per call


def measure(key_type: str, rounds: int, batch: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    from rolesanywhere_signer.backends import load_signer
    from rolesanywhere_signer.options import IdentityOptions

    ca = issue("Bench Root CA", key_type="ec-p256", ca=True)
    key = new_key(key_type)
    leaf = issue("Bench ML-DSA leaf", issuer=ca, key=key)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "leaf.crt", Path(tmp) / "leaf.key"
        cert_path.write_bytes(leaf.pem)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        signer = load_signer(IdentityOptions(str(cert_path), str(key_path)))
    raw_key = signer.key  # type: ignore[attr-defined]  # the very key object our signer holds

    def ours() -> bytes:
        return signer.sign(DATA)

    def raw() -> bytes:
        signature: bytes = raw_key.sign(DATA)
        return signature

    key.public_key().verify(ours(), DATA)  # the pair really signs the same way
    for _ in range(3):  # warm-up
        _timed(ours, batch)
        _timed(raw, batch)
    ratios, ours_us, raw_us = [], [], []
    for i in range(rounds):
        if i % 2:
            r, o = _timed(raw, batch), _timed(ours, batch)
        else:
            o, r = _timed(ours, batch), _timed(raw, batch)
        ratios.append(o / r)
        ours_us.append(o)
        raw_us.append(r)
    signer.close()
    return {
        "key_type": key_type,
        "rounds": rounds,
        "batch": batch,
        "ratio_median": statistics.median(ratios),
        "ours_median_us": statistics.median(ours_us),
        "ours_min_us": min(ours_us),
        "ours_max_us": max(ours_us),
        "raw_median_us": statistics.median(raw_us),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--key-type", default="ml-dsa-65")
    args = ap.parse_args()
    print(json.dumps(measure(args.key_type, args.rounds, args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
