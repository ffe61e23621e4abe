"""ACM Private CA as an issuer: IssueCertificate, then GetCertificate until it is ready.

boto3 is an extra, imported only here. The endpoint is whatever boto3 resolves for ``acm-pca`` in
the CA's region (``AWS_ENDPOINT_URL_ACM_PCA``, ``AWS_ENDPOINT_URL``, the config file), so a test
or a VPC endpoint needs no flag of ours. Credentials are either given (self-renewal: temporary
credentials from Roles Anywhere with the current certificate) or boto3's own chain (``ambient``).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import EndpointError, InputError, NotSupportedError, ServiceError, UsageError
from .issuer import IssuedCertificate

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..credentials import Credentials

CA_ARN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):acm-pca:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):"
    r"certificate-authority/[0-9a-f-]{36}$"
)
TEMPLATE_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):acm-pca:::template/[A-Za-z0-9_./-]{1,200}$")
DEFAULT_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
SIGNING_ALGORITHMS = (
    "SHA256WITHECDSA",
    "SHA384WITHECDSA",
    "SHA512WITHECDSA",
    "SHA256WITHRSA",
    "SHA384WITHRSA",
    "SHA512WITHRSA",
)
EXTRA_HINT = "install it with: pip install 'rolesanywhere-signer[boto3]'"
#: GetCertificate answers RequestInProgressException while the CA signs; ask again this long
READY_WAIT = 60.0


def check_ca_arn(text: str) -> str:
    if not CA_ARN.match(text):
        raise UsageError(
            f"--ca-arn {text!r} is not an ACM Private CA ARN",
            hint="expected arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/UUID",
        )
    return text


def check_template_arn(text: str) -> str:
    if not TEMPLATE_ARN.match(text):
        raise UsageError(
            f"--template-arn {text!r} is not an ACM Private CA template ARN",
            hint=f"e.g. {DEFAULT_TEMPLATE}",
        )
    return text


def region_of(ca_arn: str) -> str:
    return ca_arn.split(":")[3]


def default_signing_algorithm(ca_key: PublicKeyTypes) -> str:
    """The CA signs with its own key: SHA256WITHRSA for RSA, SHA256/384/512WITHECDSA by curve."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(ca_key, rsa.RSAPublicKey):
        return "SHA256WITHRSA"
    if isinstance(ca_key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "SHA384WITHECDSA", "secp521r1": "SHA512WITHECDSA"}.get(
            ca_key.curve.name, "SHA256WITHECDSA"
        )
    raise NotSupportedError(f"the CA's {type(ca_key).__name__.lstrip('_')} key has no known signing algorithm")


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise NotSupportedError("renewal through ACM Private CA needs boto3", hint=EXTRA_HINT) from None
    return boto3


def _client_error(e: Exception, action: str) -> EndpointError:
    """One line for a botocore failure, chosen by exception type."""
    import botocore.exceptions as bx

    if isinstance(e, bx.ClientError):
        err = e.response.get("Error", {})
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(err.get("Code") or f"HTTP {status}")
        message = " ".join(str(err.get("Message") or "").split())[:300]
        hint = None
        if code in ("AccessDeniedException", "AccessDenied"):
            hint = "the renewal role needs acm-pca:IssueCertificate and acm-pca:GetCertificate (see docs/renewal.md)"
        return ServiceError(status, code, f"ACM Private CA {action}: {message}" if message else action, hint=hint)
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return EndpointError(
            f"ACM Private CA {action}: no AWS credentials",
            hint="use --renew-credentials roles-anywhere or set up boto3",
        )
    if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return EndpointError(f"ACM Private CA {action}: cannot reach the endpoint ({type(e).__name__})")
    return EndpointError(f"ACM Private CA {action} failed ({type(e).__name__})")


def _parse_pem(data: str, what: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data.encode())
    except ValueError:
        raise EndpointError(f"ACM Private CA returned an unreadable {what}") from None


@dataclass(frozen=True)
class AcmPcaIssuer:
    """``Issuer`` for one CA and template; ``credentials`` None means boto3's own chain."""

    ca_arn: str
    template_arn: str = DEFAULT_TEMPLATE
    validity_days: int | None = None
    signing_algorithm: str | None = None
    credentials: Callable[[], Credentials] | None = None
    timeout: float = 10.0
    ready_wait: float = READY_WAIT
    sleep: Callable[[float], None] = time.sleep
    #: one client (so one CreateSession for self-renewal) per issuer
    _clients: list[Any] = field(default_factory=list, compare=False, repr=False)

    def client(self) -> Any:
        if self._clients:
            return self._clients[0]
        boto3 = _boto3()
        from botocore.config import Config

        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            creds = self.credentials()
            kwargs = {
                "aws_access_key_id": creds.access_key_id,
                "aws_secret_access_key": creds.secret_access_key,
                "aws_session_token": creds.session_token,
            }
        session = boto3.session.Session(region_name=region_of(self.ca_arn), **kwargs)
        self._clients.append(session.client("acm-pca", config=config))
        return self._clients[0]

    def ca_certificates(self, client: Any | None = None) -> list[x509.Certificate]:
        """The CA's certificate, then its own chain (GetCertificateAuthorityCertificate)."""
        import botocore.exceptions as bx

        client = client or self.client()
        try:
            doc = client.get_certificate_authority_certificate(CertificateAuthorityArn=self.ca_arn)
        except (bx.BotoCoreError, bx.ClientError) as e:
            raise _client_error(e, "GetCertificateAuthorityCertificate") from None
        certs = _parse_pem(str(doc.get("Certificate") or ""), "CA certificate")
        if doc.get("CertificateChain"):
            certs += _parse_pem(str(doc["CertificateChain"]), "CA certificate chain")
        return certs

    def issue(
        self, csr_pem: bytes, client: Any | None = None, signing_algorithm: str | None = None
    ) -> IssuedCertificate:
        import botocore.exceptions as bx

        client = client or self.client()
        algorithm = signing_algorithm or self.signing_algorithm
        if algorithm is None:
            algorithm = default_signing_algorithm(self.ca_certificates(client)[0].public_key())
        params: dict[str, Any] = {
            "CertificateAuthorityArn": self.ca_arn,
            "Csr": csr_pem,
            "SigningAlgorithm": algorithm,
            "TemplateArn": self.template_arn,
            "IdempotencyToken": secrets.token_hex(16),
        }
        if self.validity_days is not None:
            params["Validity"] = {"Value": self.validity_days, "Type": "DAYS"}
        try:
            arn = str(client.issue_certificate(**params)["CertificateArn"])
        except (bx.BotoCoreError, bx.ClientError) as e:
            raise _client_error(e, "IssueCertificate") from None
        deadline = time.monotonic() + self.ready_wait
        delay = 0.5
        while True:
            try:
                doc = client.get_certificate(CertificateAuthorityArn=self.ca_arn, CertificateArn=arn)
                break
            except bx.ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code != "RequestInProgressException" or time.monotonic() + delay > deadline:
                    raise _client_error(e, "GetCertificate") from None
            except bx.BotoCoreError as e:
                raise _client_error(e, "GetCertificate") from None
            self.sleep(delay)
            delay = min(delay * 2, 5.0)
        certs = _parse_pem(str(doc.get("Certificate") or ""), "certificate")
        chain = _parse_pem(str(doc["CertificateChain"]), "certificate chain") if doc.get("CertificateChain") else []
        if len(certs) != 1:
            raise InputError(f"ACM Private CA returned {len(certs)} certificates where one was expected")
        # the interface's chain holds intermediates only: a self-signed root is the trust anchor's business
        return IssuedCertificate(certs[0], tuple(c for c in chain if c.subject != c.issuer))
