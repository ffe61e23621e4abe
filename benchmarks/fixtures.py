"""What the benchmarks run against: a throwaway PKI, the verifying local endpoint over TLS, keys.

Everything lives in one temporary directory and every process started here is stopped by
``Bench.close()``. Nothing is mocked: the endpoint is ``rolesanywhere-signer local-endpoint`` in its
own process, verifying every signature, behind a TLS certificate trusted through ``AWS_CA_BUNDLE``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
TRUST_ANCHOR_ARN = f"arn:aws:rolesanywhere:{REGION}:123456789012:trust-anchor/00000000-0000-4000-8000-000000000001"
PROFILE_ARN = f"arn:aws:rolesanywhere:{REGION}:123456789012:profile/00000000-0000-4000-8000-000000000002"
ROLE_ARN = "arn:aws:iam::123456789012:role/bench"
ARN_ARGS = ["--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN, "--role-arn", ROLE_ARN]

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "rolesanywhere-signer")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def issue_cert(
    cn: str,
    public_key: object,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name | None,
    *,
    ca: bool = False,
    server_ip: str | None = None,
) -> x509.Certificate:
    """A certificate as the Roles Anywhere checks want it (v3, keyUsage, SHA-256)."""
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_name or _name(cn))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=10))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if server_ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]), False)
    return b.sign(ca_key, hashes.SHA256())


@dataclass
class Bench:
    """The shared set-up of one benchmark run."""

    base: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint_url: str = ""

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = issue_cert("Bench Root CA", self.ca_key.public_key(), self.ca_key, None, ca=True)
        self.ca_path = self.write("ca.pem", self.ca_cert.public_bytes(serialization.Encoding.PEM))
        tls_key = ec.generate_private_key(ec.SECP256R1())
        tls_cert = issue_cert(
            "127.0.0.1", tls_key.public_key(), self.ca_key, self.ca_cert.subject, server_ip="127.0.0.1"
        )
        self.tls_cert_path = self.write("tls.crt", tls_cert.public_bytes(serialization.Encoding.PEM))
        self.tls_key_path = self.write("tls.key", _pem_key(tls_key))
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf_cert = self.certify("Bench EC leaf", self.leaf_key.public_key())
        self.leaf_cert_path = self.write("leaf.crt", self.leaf_cert.public_bytes(serialization.Encoding.PEM))
        self.leaf_key_path = self.write("leaf.key", _pem_key(self.leaf_key))

    def write(self, name: str, data: bytes) -> Path:
        p = self.base / name
        p.write_bytes(data)
        p.chmod(0o600)
        return p

    def certify(self, cn: str, public_key: object) -> x509.Certificate:
        return issue_cert(cn, public_key, self.ca_key, self.ca_cert.subject)

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
