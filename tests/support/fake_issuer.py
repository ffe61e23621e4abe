"""A small CA of our own behind the ``Issuer`` interface, for the paths moto cannot play.

Each knob makes the answer wrong in one way a real CA could: too short, no keyUsage, a CA
certificate, someone else's key, a signature by a key that is not the CA's, an expiry no later
than the current one, or a chain that leaves out the root.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from rolesanywhere_signer.enroll.issuer import IssuedCertificate

from .pki import Issued, new_key


@dataclass
class FakeIssuer:
    ca: Issued
    chain: tuple[x509.Certificate, ...] = ()
    days: float = 30
    key_usage: bool = True
    digital_signature: bool = True
    is_ca: bool = False
    other_public_key: Any = None
    signing_key: Any = None  # sign with this instead of the CA's key (a forged answer)
    not_after: dt.datetime | None = None
    error: Exception | None = None
    csrs: list[x509.CertificateSigningRequest] = field(default_factory=list)

    def issue(self, csr_pem: bytes) -> IssuedCertificate:
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid
        self.csrs.append(csr)
        if self.error is not None:
            raise self.error
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        public = self.other_public_key or csr.public_key()
        b = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.ca.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(self.not_after or now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=self.is_ca, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if self.key_usage:
            b = b.add_extension(
                x509.KeyUsage(self.digital_signature, False, False, False, False, self.is_ca, False, False, False),
                critical=True,
            )
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            b = b.add_extension(san.value, critical=san.critical)
        except x509.ExtensionNotFound:
            pass
        cert = b.sign(self.signing_key or self.ca.key, hashes.SHA256())
        return IssuedCertificate(cert, self.chain)


def forged_key() -> Any:
    return new_key("ec-p384")
