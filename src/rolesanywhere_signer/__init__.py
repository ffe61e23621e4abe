"""rolesanywhere-signer: AWS IAM Roles Anywhere credentials from keys that never leave hardware.

The public surface is small and imported lazily so that ``import rolesanywhere_signer`` is cheap.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # not `from typing import ...`: typing costs milliseconds on every start-up
if TYPE_CHECKING:
    from typing import Any

    from .api import boto3_session, fetch_credentials, get_credentials
    from .credentials import Credentials
    from .errors import SignerError
    from .options import IdentityOptions, RequestOptions
    from .signer import Signer

__all__ = [
    "Credentials",
    "IdentityOptions",
    "RequestOptions",
    "Signer",
    "SignerError",
    "__version__",
    "boto3_session",
    "fetch_credentials",
    "get_credentials",
]

_LAZY = {
    "Credentials": ".credentials",
    "IdentityOptions": ".options",
    "RequestOptions": ".options",
    "Signer": ".signer",
    "SignerError": ".errors",
    "fetch_credentials": ".api",
    "get_credentials": ".api",
    "boto3_session": ".api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
