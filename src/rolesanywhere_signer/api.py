"""Library entry points for Python programs (kept free of CLI concerns).

- ``fetch_credentials``: one CreateSession, key opened and closed around it.
- ``get_credentials``: valid credentials from a per-process refresher that keeps the key open
  and refreshes ahead of expiry (one PIN per process for a token).
- ``boto3_session``: a boto3 ``Session`` whose credentials refresh themselves through that same
  refresher, with botocore's refresh windows scaled to the session length.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .credentials import Credentials
from .options import IdentityOptions, RequestOptions
from .transport import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from .arn import ValidRequest
    from .refresher import Clock, Refresher

__all__ = ["boto3_session", "fetch_credentials", "get_credentials", "refresher_for"]

_REFRESHERS: dict[tuple[IdentityOptions, RequestOptions], Refresher] = {}
_REFRESHERS_LOCK = threading.Lock()


def fetch_credentials(
    identity: IdentityOptions, request: RequestOptions | ValidRequest, *, timeout: float = DEFAULT_TIMEOUT
) -> Credentials:
    """Open the key, call CreateSession once (with retries), close the key."""
    from .arn import validate_request
    from .backends import load_signer
    from .client import create_session

    valid = validate_request(request)  # before the key: no PIN prompt for a bad ARN
    signer = load_signer(identity)
    try:
        return create_session(signer, valid, timeout=timeout)
    finally:
        signer.close()


def refresher_for(
    identity: IdentityOptions,
    request: RequestOptions,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock | None = None,
) -> Refresher:
    """The process-wide refresher for this identity and request (a new one when a clock is given)."""
    from .arn import validate_request
    from .refresher import Refresher

    validate_request(request)
    if clock is not None:
        return Refresher(identity, request, timeout=timeout, clock=clock)
    key = (identity, request)
    with _REFRESHERS_LOCK:
        refresher = _REFRESHERS.get(key)
        if refresher is None:
            refresher = _REFRESHERS[key] = Refresher(identity, request, timeout=timeout)
    return refresher


def get_credentials(
    identity: IdentityOptions,
    request: RequestOptions,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    refresher: Refresher | None = None,
) -> Credentials:
    """Valid credentials, refreshed when a third of the session (or less) is left.

    Repeated calls reuse the same credentials and the open key; a failed refresh falls back to the
    previous credentials while they are valid. Raises ``SignerError`` when none can be had.
    """
    return (refresher or refresher_for(identity, request, timeout=timeout)).get()


def boto3_session(
    identity: IdentityOptions,
    request: RequestOptions,
    *,
    region_name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock | None = None,
    refresher: Refresher | None = None,
    **session_kwargs: Any,
) -> Any:
    """A ``boto3.Session`` with auto-refreshing credentials (needs the ``boto3`` extra).

    ``region_name`` defaults to ``request.region``, else the trust anchor's region. ``clock``
    (tests) drives both our refresher and botocore's expiry checks.
    """
    try:
        import boto3
        import botocore.session
        from botocore.credentials import CredentialProvider, RefreshableCredentials
    except ImportError:
        from .errors import NotSupportedError

        raise NotSupportedError("boto3_session needs boto3", hint="pip install 'rolesanywhere-signer[boto3]'") from None
    from .arn import validate_request
    from .refresher import botocore_windows

    anchor_region = validate_request(request).region
    ref = refresher or refresher_for(identity, request, timeout=timeout, clock=clock)
    creds = ref.get()
    advisory, mandatory = botocore_windows(ref.lifetime())

    def metadata(c: Credentials) -> dict[str, str]:
        return {
            "access_key": c.access_key_id,
            "secret_key": c.secret_access_key,
            "token": c.session_token,
            "expiry_time": c.expiration.isoformat(),
        }

    def refresh() -> dict[str, str]:
        # botocore asks once the advisory window is reached: hand out credentials that outlive it
        return metadata(ref.get(min_remaining=advisory))

    kwargs: dict[str, Any] = {"advisory_timeout": advisory, "mandatory_timeout": mandatory}
    if clock is not None:
        kwargs["time_fetcher"] = clock
    refreshable = RefreshableCredentials(
        access_key=creds.access_key_id,
        secret_key=creds.secret_access_key,
        token=creds.session_token,
        expiry_time=creds.expiration,
        refresh_using=refresh,
        method="rolesanywhere-signer",
        **kwargs,
    )

    class _Provider(CredentialProvider):  # type: ignore[misc]
        METHOD = "rolesanywhere-signer"
        CANONICAL_NAME = "rolesanywhere-signer"

        def load(self) -> Any:
            return refreshable

    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", _Provider())
    return boto3.Session(
        botocore_session=core, region_name=region_name or request.region or anchor_region, **session_kwargs
    )
