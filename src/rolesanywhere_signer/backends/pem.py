"""Keys in files: PEM (PKCS#1, SEC1, PKCS#8, encrypted PKCS#8), DER, PKCS#12 bundles, combo files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..certs import (
    check_chain,
    check_key_matches,
    check_leaf,
    describe,
    parse_certificates,
    pem_labels,
)
from ..errors import InputError, NotSupportedError, SecretError
from ..files import warn_if_exposed
from ..inputs import is_inline, label, read_input
from ..keytypes import DigestName, KeyType, key_type_of
from ..options import IdentityOptions
from ..secret import Secret, first_secret, from_env, from_terminal, from_value

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

    from ..checks import Check

PASSWORD_ENV = "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD"
#: a PKCS#12 bundle's own variable (CI systems keep the bundle and its password side by side);
#: the PKCS#8 one is honoured for bundles too
PKCS12_PASSWORD_ENV = "ROLESANYWHERE_SIGNER_PKCS12_PASSWORD"
_PASSWORD_HINT = f"pass --pkcs8-password, set {PASSWORD_ENV}, or run it from a terminal"


class PemSigner:
    """A software key held in this process.

    A plain class (no ``@dataclass``: its class-creation cost is on every cold run, records.py).
    """

    __slots__ = ("_sign", "algorithm", "certificate", "chain", "key", "source")

    def __init__(
        self,
        key: PrivateKeyTypes,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        algorithm: str,
        source: str,
    ) -> None:
        self.key = key
        self.certificate = certificate
        self.chain = chain
        self.algorithm = algorithm
        self.source = source
        self._sign = software_signer(key, source)

    def __repr__(self) -> str:
        return f"PemSigner(source={self.source!r}, certificate={describe(self.certificate)!r})"

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        return self._sign(data, digest)

    def close(self) -> None:
        pass


def software_signer(key: PrivateKeyTypes, source: str) -> Callable[[bytes, DigestName], bytes]:
    """``sign(data, digest)`` for a key in this process; RSA signatures are verified before use.

    RSA keys are loaded without cryptography's private-key validation (62-366 ms of a cold run,
    RSA-2048 to 4096). That is safe only because no signature leaves this process unverified: a
    damaged private part makes a wrong signature, and a wrong RSA-CRT signature can give away the
    key's factors. The check is a public-key operation (~20 µs, about 2% of an RSA-2048
    signature). See docs/security.md.
    """
    key_type = key_type_of(key.public_key())
    sign = key_type.software_signer(key)
    if key_type.family != "rsa":
        return sign
    public_key = key.public_key()

    def sign_verified(data: bytes, digest: DigestName) -> bytes:
        signature = sign(data, digest)
        if not key_type.verify(public_key, signature, data, digest):
            raise InputError(
                f"private key {source} is damaged: its signature does not verify with the certificate",
                hint="restore the key file from a backup or enrol a new key",
            )
        return signature

    return sign_verified


def _password(opts: IdentityOptions, what: str) -> Secret:
    """--pkcs8-password, the environment, the terminal (secret.py's order)."""
    password = first_secret(
        from_value(opts.pkcs8_password),
        from_env(PASSWORD_ENV),
        from_terminal(f"Password for {what}: ", what=f"the password for {what}", hint=_PASSWORD_HINT),
    )
    assert password is not None  # the terminal source answers or raises
    return password


def _check_key_type(key: PrivateKeyTypes, source: str) -> KeyType:
    return key_type_of(key.public_key(), source)


def parse_private_key(data: bytes, source: str, opts: IdentityOptions) -> PrivateKeyTypes:
    """Load an unencrypted or encrypted private key from PEM or DER."""
    from cryptography.hazmat.primitives import serialization

    labels = pem_labels(data)
    key_labels = [lb for lb in labels if lb.endswith("PRIVATE KEY")]
    if labels and not key_labels:
        if "CERTIFICATE" in labels:
            raise InputError(
                f"private key file {source} holds a certificate, not a private key",
                hint="did you swap --certificate and --private-key?",
            )
        raise InputError(f"private key file {source} holds no private key (found {', '.join(sorted(set(labels)))})")
    if "TSS2 PRIVATE KEY" in key_labels:
        raise InputError(f"{source} is a TPM key; it is handled by the TPM backend")
    encrypted = "ENCRYPTED PRIVATE KEY" in key_labels or b"Proc-Type: 4,ENCRYPTED" in data
    if labels:
        start = data.index(b"-----BEGIN " + key_labels[0].encode())
        end_marker = b"-----END " + key_labels[0].encode() + b"-----"
        end = data.find(end_marker, start)
        if end < 0:
            raise InputError(f"private key file {source} has a truncated PEM block (no END line)")
        block = data[start : end + len(end_marker)]
        loader = serialization.load_pem_private_key
    else:
        block, loader = data, serialization.load_der_private_key
    if "ENCRYPTED PRIVATE KEY" in key_labels:
        _check_limits(block, source)
    password: Secret | None = _password(opts, f"private key {source}") if encrypted else None
    # RSA keys: cryptography's validation of the private part is skipped (the dominant cost of an
    # RSA cold run); PemSigner verifies every signature against the certificate instead.
    key: PrivateKeyTypes | None
    try:
        key = loader(block, password.encode() if password else None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        if password is None:  # an encrypted DER key: ask, once
            _check_limits(block, source)
            password = _password(opts, f"private key {source}")
            try:
                key = loader(block, password.encode(), unsafe_skip_rsa_key_validation=True)
            except ValueError:
                key = _other_forms(block, password, source)
                if key is None:
                    raise SecretError(f"wrong password for encrypted private key {source}") from None
        else:
            raise InputError(f"private key {source} is not encrypted but a password was given") from None
    except ValueError:
        key = _other_forms(block, password, source)
        if key is None:
            if password is not None:
                raise SecretError(f"wrong password for encrypted private key {source}") from None
            if labels:
                raise InputError(f"private key file {source} has a damaged or truncated PEM key") from None
            raise InputError(f"private key file {source} is neither a PEM nor a DER private key") from None
    except Exception as e:  # noqa: BLE001 - unsupported algorithms raise UnsupportedAlgorithm
        key = _other_forms(block, password, source)  # ML-DSA on an old cryptography: says to upgrade
        if key is None:
            raise NotSupportedError(
                f"private key {source} uses an unsupported algorithm ({type(e).__name__})"
            ) from None
    _check_key_type(key, source)
    return key


def _check_limits(block: bytes, source: str) -> None:
    """Bound the key-derivation cost a file asks for before cryptography runs it (hostile files)."""
    from ..pkcs8 import check_limits

    check_limits(block, source)


def _other_forms(block: bytes, password: Secret | None, source: str) -> PrivateKeyTypes | None:
    """Keys ``cryptography`` cannot load by itself (ML-DSA ``both`` form, encrypted or not); None otherwise.

    Only reached when loading failed, so RSA and EC runs never import the ML-DSA module.
    """
    from .. import mldsa

    return mldsa.load_pkcs8(block, password.encode() if password is not None else None, source)


def _load_pkcs12(data: bytes, source: str, opts: IdentityOptions) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    tries: list[bytes | None] = [None, b""]
    env_password = os.environ.get(PKCS12_PASSWORD_ENV) or os.environ.get(PASSWORD_ENV)
    if opts.pkcs8_password is not None:
        tries = [opts.pkcs8_password.encode()]
    elif env_password:
        tries = [env_password.encode()]
    for pw in tries:
        try:
            bundle = pkcs12.load_pkcs12(data, pw)
            break
        except ValueError:
            continue
    else:
        if opts.pkcs8_password is not None or env_password:
            raise SecretError(f"wrong password for PKCS#12 bundle {source} (or the file is damaged)")
        pw_secret = _password(opts, f"PKCS#12 bundle {source}")
        try:
            bundle = pkcs12.load_pkcs12(data, pw_secret.encode())
        except ValueError:
            raise SecretError(f"wrong password for PKCS#12 bundle {source} (or the file is damaged)") from None
    if bundle.key is None or bundle.cert is None:
        raise InputError(f"PKCS#12 bundle {source} must hold a private key and its certificate")
    return bundle.key, [bundle.cert.certificate, *(c.certificate for c in bundle.additional_certs)]


def looks_like_pkcs12(data: bytes) -> bool:
    # DER SEQUENCE whose first element is INTEGER 3 (PFX version)
    return data[:1] == b"\x30" and b"\x02\x01\x03" in data[2:8]


class PemKey:
    """A software key alone (``KeyHandle``), for CSRs and checks before a certificate exists."""

    __slots__ = ("_sign", "key", "source")

    def __init__(self, key: PrivateKeyTypes, source: str) -> None:
        self.key = key
        self.source = source
        self._sign = software_signer(key, source)

    def __repr__(self) -> str:
        return f"PemKey(source={self.source!r})"

    def public_key(self) -> PublicKeyTypes:
        return self.key.public_key()

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        return self._sign(data, digest)

    def close(self) -> None:
        pass


def open_key(opts: IdentityOptions) -> PemKey:
    """Open just the private key named by ``--private-key`` (or a combo/PKCS#12 ``--certificate``)."""
    source = opts.private_key or opts.certificate
    if not source:
        from ..errors import UsageError

        raise UsageError("--private-key is required", hint="see --help")
    data = read_input(source, "private key", flag="--private-key" if opts.private_key else "--certificate", secret=True)
    source = label(source)
    if not pem_labels(data) and looks_like_pkcs12(data):
        key, _ = _load_pkcs12(data, source, opts)
        _check_key_type(key, source)
    else:
        key = parse_private_key(data, source, opts)
    return PemKey(key, source)


def load(opts: IdentityOptions) -> PemSigner:
    # --private-key - (or env:NAME) alone names one bundle holding the certificate and the key
    cert_source = opts.certificate or (opts.private_key if is_inline(opts.private_key) else None)
    if not cert_source:
        from ..errors import NoCertificateError

        raise NoCertificateError("--certificate is required", hint="see --help")
    cert_flag = "--certificate" if opts.certificate else "--private-key"
    cert_data = read_input(cert_source, "certificate", flag=cert_flag)
    cert_path = label(cert_source)
    # "--certificate - --private-key -" (or the same env:NAME twice) is one bundle, read once
    separate_key = bool(opts.private_key) and not (opts.private_key == cert_source and is_inline(cert_source))
    extra: list[x509.Certificate] = []
    key: PrivateKeyTypes
    if not pem_labels(cert_data) and looks_like_pkcs12(cert_data):
        if separate_key:
            raise InputError(f"{cert_path} is a PKCS#12 bundle; it carries its own key, so drop --private-key")
        warn_if_exposed(cert_path, "PKCS#12 bundle")  # it carries the key
        key, certs = _load_pkcs12(cert_data, cert_path, opts)
        _check_key_type(key, cert_path)
        leaf, extra = certs[0], certs[1:]
        key_source = cert_path
    else:
        certs = parse_certificates(cert_data, cert_path)
        leaf, extra = certs[0], certs[1:]
        if separate_key and opts.private_key:
            key_source = label(opts.private_key)
            key_data = read_input(opts.private_key, "private key", flag="--private-key", secret=True)
            key = parse_private_key(key_data, key_source, opts)
        elif any(lb.endswith("PRIVATE KEY") for lb in pem_labels(cert_data)):
            key_source = cert_path  # a combo file: key and certificate together
            warn_if_exposed(cert_path, "certificate file (it holds the private key)")
            key = parse_private_key(cert_data, cert_path, opts)
        else:
            raise InputError(
                f"no private key given for certificate {cert_path}",
                hint="pass --private-key, or a PKCS#12 bundle as --certificate",
            )
    check_leaf(leaf)
    key_type = _check_key_type(key, key_source)
    check_key_matches(leaf, key.public_key(), key_source)
    # certificates after the leaf in the certificate file or bundle (only real issuers) win over
    # --intermediates: a renewed pair is installed as one file
    from ..certs import choose_chain

    chain = choose_chain(leaf, extra, opts.intermediates)
    check_chain(leaf, chain)
    return PemSigner(key, leaf, tuple(chain), key_type.algorithm, key_source)


def health(opts: IdentityOptions) -> list[Check]:
    """Key files have no store to check: the file checks (doctor's key and certificate rows) say it all."""
    return []
