"""PKCS#11 backend (HSMs, smartcards, YubiKey PIV). Not yet implemented."""

from __future__ import annotations

from ..errors import NotSupportedError
from ..options import IdentityOptions
from ..signer import Signer


def load(opts: IdentityOptions) -> Signer:
    raise NotSupportedError(
        "PKCS#11 keys (pkcs11: URIs) are not yet supported by this version",
        hint="use a PEM key file for now",
    )


def list_certificates(uri: str, module: str | None) -> list[dict[str, object]]:
    raise NotSupportedError("PKCS#11 URIs are not yet supported by this version")
