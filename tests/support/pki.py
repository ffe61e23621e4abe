"""A throwaway PKI for tests, made with `cryptography`: CAs, intermediates, leaves of every kind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384", "ec-p521")
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ec-p256": ec.SECP256R1,
    "ec-p384": ec.SECP384R1,
    "ec-p521": ec.SECP521R1,
}
_RSA_CACHE: dict[int, list[Any]] = {}


def new_key(kind: str = "ec-p256") -> Any:
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind]())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(kind)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def name(cn: str, org: str = "rolesanywhere-signer tests") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any  # private key, or None when only the public key was certified

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self, fmt: str = "pkcs8", password: bytes | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        pf = {
            "pkcs8": serialization.PrivateFormat.PKCS8,
            "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
        }[fmt]
        pem: bytes = self.key.private_bytes(serialization.Encoding.PEM, pf, enc)
        return pem


def issue(
    subject_cn: str,
    *,
    issuer: Issued | None = None,
    key: Any = None,
    public_key: Any = None,
    key_type: str = "ec-p256",
    ca: bool = False,
    path_length: int | None = None,
    digital_signature: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 30,
    hash_alg: Any = None,
    serial: int | None = None,
    extensions: bool = True,
    client_auth: bool = True,
    ip_sans: tuple[str, ...] = (),
) -> Issued:
    """Issue a certificate. ``issuer=None`` makes it self-signed."""
    if public_key is None:
        key = key or new_key(key_type)
        public_key = key.public_key()
    nb = not_before or now() - dt.timedelta(minutes=10)
    na = not_after or nb + dt.timedelta(days=days)
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else name(subject_cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(name(subject_cn))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
    )
    if extensions:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
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
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if issuer:
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        if ip_sans:  # a TLS server certificate for a loopback endpoint
            import ipaddress

            sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if not ca and client_auth:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = b.sign(signer_key, hash_alg or hashes.SHA256())
    return Issued(cert, key)


class PKI:
    """A root CA, an intermediate, and helpers to write files under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.root = issue("Test Root CA", key_type="ec-p384", ca=True, days=365)
        self.intermediate = issue("Test Intermediate CA", issuer=self.root, key_type="ec-p256", ca=True, days=180)
        self.root_path = self.write("root.pem", self.root.pem)

    def write(self, filename: str, data: bytes, mode: int = 0o600) -> Path:
        p = self.base / filename
        p.write_bytes(data)
        p.chmod(mode)
        return p

    def leaf(self, key_type: str = "ec-p256", *, via_intermediate: bool = False, **kw: Any) -> Issued:
        issuer = self.intermediate if via_intermediate else self.root
        return issue(kw.pop("cn", f"leaf {key_type}"), issuer=issuer, key_type=key_type, **kw)

    def leaf_files(self, stem: str, leaf: Issued, *, key_fmt: str = "pkcs8") -> tuple[Path, Path]:
        return self.write(f"{stem}.crt", leaf.pem), self.write(f"{stem}.key", leaf.key_pem(key_fmt))

    @property
    def intermediates_path(self) -> Path:
        return self.write("intermediates.pem", self.intermediate.pem)


def weak_hash_chain(base: Path, digest: str = "sha1") -> tuple[Issued, Issued]:
    """(CA, leaf) where the leaf is signed with ``digest`` (sha1, md5) by an RSA CA, made with openssl.

    `cryptography` refuses to sign with these hashes, so the openssl CLI does it, as a CA with old
    software would.
    """
    import subprocess

    base.mkdir(parents=True, exist_ok=True)
    ca = issue(f"Weak {digest} CA", key_type="rsa2048", ca=True)
    leaf_key = new_key("rsa2048")
    (base / "ca.pem").write_bytes(ca.pem)
    (base / "ca.key").write_bytes(ca.key_pem())
    (base / "leaf.key").write_bytes(Issued(ca.cert, leaf_key).key_pem())
    (base / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    env = {"OPENSSL_CONF": "/dev/null", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            base / "leaf.key",
            "-subj",
            f"/CN=leaf signed with {digest}",
            "-out",
            base / "leaf.csr",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            base / "leaf.csr",
            "-CA",
            base / "ca.pem",
            "-CAkey",
            base / "ca.key",
            "-CAcreateserial",
            f"-{digest}",
            "-days",
            "30",
            "-extfile",
            base / "ext.cnf",
            "-out",
            base / "leaf.pem",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    cert = x509.load_pem_x509_certificate((base / "leaf.pem").read_bytes())
    return ca, Issued(cert, leaf_key)
