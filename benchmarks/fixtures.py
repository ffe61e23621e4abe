"""What the benchmarks run against: a throwaway PKI, the verifying local endpoint over TLS, keys.

Everything lives in one temporary directory and every process started here is stopped by
``Bench.close()``. Nothing is mocked: the endpoint is ``rolesanywhere-signer local-endpoint`` in its
own process, verifying every signature, behind a TLS certificate trusted through ``AWS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

REGION = "us-east-1"
TRUST_ANCHOR_ARN = f"arn:aws:rolesanywhere:{REGION}:123456789012:trust-anchor/00000000-0000-4000-8000-000000000001"
PROFILE_ARN = f"arn:aws:rolesanywhere:{REGION}:123456789012:profile/00000000-0000-4000-8000-000000000002"
ROLE_ARN = "arn:aws:iam::123456789012:role/bench"
ARN_ARGS = ["--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN, "--role-arn", ROLE_ARN]

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.pki import issue  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "rolesanywhere-signer")


@dataclass
class Bench:
    """The shared set-up of one benchmark run."""

    base: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint_url: str = ""

    def __post_init__(self) -> None:
        # the test suite's PKI helper: the same certificate rules as the tests (v3, keyUsage, SHA-256)
        self.ca = issue("Bench Root CA", key_type="ec-p256", ca=True)
        self.ca_key, self.ca_cert = self.ca.key, self.ca.cert
        self.ca_path = self.write("ca.pem", self.ca.pem)
        tls = issue("127.0.0.1", issuer=self.ca, client_auth=False, ip_sans=("127.0.0.1",))
        self.tls_cert_path = self.write("tls.crt", tls.pem)
        self.tls_key_path = self.write("tls.key", tls.key_pem())
        leaf = issue("Bench EC leaf", issuer=self.ca, key_type="ec-p256")
        self.leaf_key, self.leaf_cert = leaf.key, leaf.cert
        self.leaf_cert_path = self.write("leaf.crt", leaf.pem)
        self.leaf_key_path = self.write("leaf.key", leaf.key_pem())

    def write(self, name: str, data: bytes) -> Path:
        p = self.base / name
        p.write_bytes(data)
        p.chmod(0o600)
        return p

    def certify(self, cn: str, public_key: object) -> x509.Certificate:
        return issue(cn, issuer=self.ca, public_key=public_key).cert

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for measured processes: no proxies, the bench CA trusted."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and not k.startswith("AWS_")
        }
        # Bytecode caching on, as in any installed copy (pip compiles at install). With
        # PYTHONDONTWRITEBYTECODE=1 inherited from a developer shell, every run of ours recompiled
        # our (editable, uncompiled) modules from source, ~20 ms, while the peer's and the
        # stdlib's cached bytecode was read as usual. The cache lives in the bench dir, not in src/.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.base / "pycache")
        env.update(AWS_CA_BUNDLE=str(self.ca_path), HOME=str(self.base), AWS_CONFIG_FILE="/dev/null")
        env.update(AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_EC2_METADATA_DISABLED="true")
        env.update(extra)
        return env

    def start_endpoint(self, delay: float = 0.0) -> str:
        """The verifying endpoint over TLS in its own process (``local-endpoint``); returns its URL."""
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rolesanywhere_signer",
                "local-endpoint",
                "--trust-anchor",
                str(self.ca_path),
                "--tls-cert",
                str(self.tls_cert_path),
                "--tls-key",
                str(self.tls_key_path),
                "--delay",
                str(delay),
            ],
            stdout=subprocess.PIPE,
            env=self.env(),
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        if not url.startswith("https://"):
            raise RuntimeError(f"local endpoint did not start (said {url!r})")
        return url

    def endpoint(self) -> str:
        if not self.endpoint_url:
            self.endpoint_url = self.start_endpoint()
        return self.endpoint_url

    def endpoint_stats(self, url: str) -> dict[str, int]:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        with urllib.request.urlopen(f"{url}/_local/stats", context=ctx, timeout=5) as r:
            doc: dict[str, int] = json.loads(r.read())
        return doc

    def pem_args(self) -> list[str]:
        return ["--certificate", str(self.leaf_cert_path), "--private-key", str(self.leaf_key_path)]

    def rsa_args(self, bits: int) -> list[str]:
        """A PEM RSA leaf of ``bits`` (made on first use: RSA-4096 key generation takes a while)."""
        cert, key = self.base / f"rsa{bits}.crt", self.base / f"rsa{bits}.key"
        if not cert.exists():
            leaf = issue(f"Bench RSA-{bits} leaf", issuer=self.ca, key_type=f"rsa{bits}")
            self.write(key.name, leaf.key_pem())
            self.write(cert.name, leaf.pem)
        return ["--certificate", str(cert), "--private-key", str(key)]

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
