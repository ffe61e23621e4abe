"""rolesanywhere-signer: AWS IAM Roles Anywhere credentials from keys that never leave hardware.

The public surface is small and imported lazily so that ``import rolesanywhere_signer`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import fetch_credentials
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
    "fetch_credentials",
]

_LAZY = {
    "Credentials": ".credentials",
    "IdentityOptions": ".options",
    "RequestOptions": ".options",
    "Signer": ".signer",
    "SignerError": ".errors",
    "fetch_credentials": ".api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
