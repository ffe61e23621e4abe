"""Frozen option records shared by the CLI, the library API and the long-running modes."""

from __future__ import annotations

from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .secret import Secret

DEFAULT_DURATION = 3600
MIN_DURATION = 900
MAX_DURATION = 43200


class IdentityOptions(Record):
    """Where the certificate and key are, and how to unlock them (any backend)."""

    __slots__ = (
        "certificate",
        "intermediates",
        "no_tpm_key_password",
        "pkcs8_password",
        "pkcs11_lib",
        "pkcs11_uri",
        "private_key",
        "reuse_pin",
        "tcti",
        "tpm_key_password",
        "tpm_key_password_file",
    )
    _fields = (
        "certificate",
        "private_key",
        "intermediates",
        "pkcs8_password",
        "pkcs11_uri",
        "pkcs11_lib",
        "reuse_pin",
        "tpm_key_password",
        "tpm_key_password_file",
        "no_tpm_key_password",
        "tcti",
    )
    # the Secret fields are never shown
    _shown = tuple(f for f in _fields if f not in ("pkcs8_password", "tpm_key_password"))

    certificate: str | None
    private_key: str | None
    intermediates: str | None
    # PEM / PKCS#12
    pkcs8_password: Secret | None
    # PKCS#11
    pkcs11_uri: str | None
    pkcs11_lib: str | None
    reuse_pin: bool
    # TPM
    tpm_key_password: Secret | None
    tpm_key_password_file: str | None
    no_tpm_key_password: bool
    tcti: str | None

    def __init__(
        self,
        certificate: str | None = None,
        private_key: str | None = None,
        intermediates: str | None = None,
        pkcs8_password: Secret | None = None,
        pkcs11_uri: str | None = None,
        pkcs11_lib: str | None = None,
        reuse_pin: bool = False,
        tpm_key_password: Secret | None = None,
        tpm_key_password_file: str | None = None,
        no_tpm_key_password: bool = False,
        tcti: str | None = None,
    ) -> None:
        self._init(
            certificate=certificate,
            private_key=private_key,
            intermediates=intermediates,
            pkcs8_password=pkcs8_password,
            pkcs11_uri=pkcs11_uri,
            pkcs11_lib=pkcs11_lib,
            reuse_pin=reuse_pin,
            tpm_key_password=tpm_key_password,
            tpm_key_password_file=tpm_key_password_file,
            no_tpm_key_password=no_tpm_key_password,
            tcti=tcti,
        )

    def __repr__(self) -> str:
        # a pkcs11: URI may carry pin-value: shown masked, like the Secret fields are left out
        shown = []
        for name in self._shown:
            value = getattr(self, name)
            if isinstance(value, str) and value.lower().startswith("pkcs11:"):
                value = redact_pkcs11_uri(value)
            shown.append(f"{name}={value!r}")
        return f"IdentityOptions({', '.join(shown)})"

    def key_source(self) -> str:
        """A printable name of where the key is (never a secret)."""
        return self.pkcs11_uri_redacted() or self.private_key or self.certificate or "(none)"

    def pkcs11_uri_redacted(self) -> str | None:
        uri = self.pkcs11_uri or next(
            (v for v in (self.private_key, self.certificate) if v and v.startswith("pkcs11:")), None
        )
        if uri is None:
            return None
        return redact_pkcs11_uri(uri)


def redact_pkcs11_uri(uri: str) -> str:
    """Hide ``pin-value`` in a PKCS#11 URI so it can be printed."""
    import re

    return re.sub(r"(pin-value=)[^&;]*", r"\1********", uri)


class RequestOptions(Record):
    """What CreateSession is asked for and where."""

    __slots__ = (
        "endpoint",
        "profile_arn",
        "region",
        "role_arn",
        "role_session_name",
        "session_duration",
        "trust_anchor_arn",
        "verify",
        "with_proxy",
    )
    _fields = _shown = (
        "trust_anchor_arn",
        "profile_arn",
        "role_arn",
        "session_duration",
        "role_session_name",
        "region",
        "endpoint",
        "verify",
        "with_proxy",
    )

    trust_anchor_arn: str
    profile_arn: str
    role_arn: str
    session_duration: int
    role_session_name: str | None
    region: str | None
    endpoint: str | None
    #: True, False (``--no-verify-ssl``) or a CA bundle path
    verify: bool | str
    with_proxy: bool

    def __init__(
        self,
        trust_anchor_arn: str,
        profile_arn: str,
        role_arn: str,
        session_duration: int = DEFAULT_DURATION,
        role_session_name: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        verify: bool | str = True,
        with_proxy: bool = False,
    ) -> None:
        self._init(
            trust_anchor_arn=trust_anchor_arn,
            profile_arn=profile_arn,
            role_arn=role_arn,
            session_duration=session_duration,
            role_session_name=role_session_name,
            region=region,
            endpoint=endpoint,
            verify=verify,
            with_proxy=with_proxy,
        )
