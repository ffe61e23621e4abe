"""One error hierarchy. Every failure a user can cause or fix is a ``SignerError``.

``cli.main`` catches ``SignerError`` once and prints ``diagnostics()`` as a single line on stderr;
anything else is a bug and gets a traceback only with ``--debug``. Messages must never contain a
secret (PIN, password, key material, credentials, tokens): callers pass only names and facts.
"""

from __future__ import annotations


class SignerError(Exception):
    """Base class: a problem the user can understand and act on."""

    #: process exit status when this error ends the CLI
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The one-line, user-facing text: what is wrong, then what to do."""
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text} ({' '.join(self.hint.split())})"
        return text

    def __str__(self) -> str:
        return self.diagnostics()


class UsageError(SignerError):
    """Wrong or missing command-line arguments."""

    exit_code = 2


class NoCertificateError(SignerError):
    """A key was named but no certificate for it: commands that can work with the key alone
    (``sign-string``) catch this; the others report it (a usage error unless ``exit_code`` says)."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 2) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


class InputError(SignerError):
    """A file, value or setting given by the user is unusable."""


class CertificateError(InputError):
    """The certificate or chain cannot be used for Roles Anywhere."""


class KeyMismatchError(InputError):
    """The private key does not belong to the certificate."""


class SecretError(InputError):
    """A PIN or password is missing, unreadable or wrong."""


class NotSupportedError(SignerError):
    """A feature or key kind that this build does not handle (yet)."""


class BackendError(SignerError):
    """The key store (token, TPM, file) failed to do what was asked."""


class AuthenticationError(BackendError):
    """A PIN or password was refused by the key store. Never retried automatically."""


class EndpointError(SignerError):
    """The Roles Anywhere endpoint could not be reached or gave an unusable answer."""


class ServiceError(EndpointError):
    """The endpoint answered with an AWS error (``x-amzn-ErrorType`` and message)."""

    def __init__(self, status: int, error_type: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{error_type}: {message}" if message else error_type, hint=hint)
        self.status = status
        self.error_type = error_type
        self.service_message = message
