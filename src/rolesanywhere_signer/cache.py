"""Opt-in credential cache for ``credential-process --cache``. Not yet implemented."""

from __future__ import annotations

from .errors import NotSupportedError
from .options import IdentityOptions, RequestOptions


def cached_credential_process(identity: IdentityOptions, request: RequestOptions, *, timeout: float) -> str:
    raise NotSupportedError("--cache is not yet implemented in this version")
