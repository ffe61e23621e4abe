"""Frozen option records shared by the CLI, the library API and the long-running modes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .secret import Secret

DEFAULT_DURATION = 3600
MIN_DURATION = 900
MAX_DURATION = 43200


@dataclass(frozen=True)
class IdentityOptions:
    """Where the certificate and key are, and how to unlock them (any backend)."""

    certificate: str | None = None
    private_key: str | None = None
    intermediates: str | None = None
    # PEM / PKCS#12
    pkcs8_password: Secret | None = field(default=None, repr=False)
    # PKCS#11
    pkcs11_uri: str | None = None
    pkcs11_lib: str | None = None
    reuse_pin: bool = False
    # TPM
    tpm_key_password: Secret | None = field(default=None, repr=False)
    tpm_key_password_file: str | None = None
    no_tpm_key_password: bool = False
    tcti: str | None = None

    def __repr__(self) -> str:
        # a pkcs11: URI may carry pin-value: shown masked, like the Secret fields are left out
        from dataclasses import fields

        shown = []
        for f in fields(self):
            if f.repr:
                value = getattr(self, f.name)
                if isinstance(value, str) and value.lower().startswith("pkcs11:"):
                    value = redact_pkcs11_uri(value)
                shown.append(f"{f.name}={value!r}")
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


@dataclass(frozen=True)
class RequestOptions:
    """What CreateSession is asked for and where."""

    trust_anchor_arn: str
    profile_arn: str
    role_arn: str
    session_duration: int = DEFAULT_DURATION
    role_session_name: str | None = None
    region: str | None = None
    endpoint: str | None = None
    #: True, False (``--no-verify-ssl``) or a CA bundle path
    verify: bool | str = True
    with_proxy: bool = False
