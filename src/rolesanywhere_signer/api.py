"""Library entry points for Python programs (kept free of CLI concerns)."""

from __future__ import annotations

from .credentials import Credentials
from .options import IdentityOptions, RequestOptions
from .transport import DEFAULT_TIMEOUT


def fetch_credentials(
    identity: IdentityOptions, request: RequestOptions, *, timeout: float = DEFAULT_TIMEOUT
) -> Credentials:
    """Open the key, call CreateSession once (with retries), close the key."""
    from .arn import validate_request
    from .backends import load_signer
    from .client import create_session

    validate_request(request)
    signer = load_signer(identity)
    try:
        return create_session(signer, request, timeout=timeout)
    finally:
        signer.close()
