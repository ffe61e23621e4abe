"""The CreateSession client: validate, sign, send, retry (re-signing each time), parse."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from .arn import ValidRequest, validate_request
from .credentials import Credentials, parse_create_session
from .endpoints import resolve_endpoint
from .errors import EndpointError, ServiceError
from .logs import get_logger
from .options import RequestOptions
from .protocol import sign_create_session
from .retry import RetryPolicy
from .signer import Signer, identity_of
from .transport import DEFAULT_TIMEOUT, Cancelled, HttpResponse, TransientError, Transport

if TYPE_CHECKING:
    from .cancel import CancelToken

log = get_logger("rolesanywhere_signer.client")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
Clock = Callable[[], datetime]


def _now() -> datetime:
    from .certs import now_utc

    return now_utc()


def service_error(resp: HttpResponse) -> ServiceError:
    """Turn an AWS-shaped error answer (or anything else) into a one-line error."""
    etype = resp.headers.get("x-amzn-errortype", "").split(":")[0].strip()
    message = ""
    try:
        doc = json.loads(resp.body)
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("Message") or "")
            etype = etype or str(doc.get("__type") or doc.get("code") or "").split("#")[-1]
    except RecursionError:
        message = "the endpoint answered with JSON nested too deeply"
    except (ValueError, UnicodeDecodeError):
        ctype = resp.headers.get("content-type", "")
        if "html" in ctype or resp.body.lstrip()[:1] == b"<":
            message = "the endpoint answered with an HTML page, not an AWS error (is it the right URL?)"
    etype = " ".join((etype or f"HTTP {resp.status}").split())[:100]
    message = " ".join(message.split())[:300]
    hint = None
    if resp.status == 404 and not message:
        hint = "check --endpoint"
    return ServiceError(resp.status, etype, message, hint=hint)


def create_session(
    signer: Signer,
    opts: RequestOptions | ValidRequest,
    *,
    transport: Transport | None = None,
    clock: Clock = _now,
    retry: RetryPolicy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cancel: CancelToken | None = None,
) -> Credentials:
    """Get temporary credentials. Retries 5xx, 429 and connection failures; never 4xx.

    Bounded in time whatever the endpoint does: each attempt by ``timeout`` (connect to last
    byte, in the transport), all of them by the attempts × ``timeout`` plus the backoff ceilings
    (4 attempts with ``timeout=5``: 20 s + 3.5 s). ``cancel`` ends the attempt and the retries.
    """
    valid = validate_request(opts)
    request, region, options = valid.session, valid.region, valid.options
    endpoint = resolve_endpoint(region, endpoint=options.endpoint)
    identity = identity_of(signer)
    policy = retry or RetryPolicy()
    own_transport = transport is None
    if transport is None:
        from .transport import DefaultTransport

        transport = DefaultTransport(options.verify, timeout=timeout, cancel=cancel)
    rng = random.Random()
    start = policy.monotonic()
    last: EndpointError | None = None
    try:
        for attempt in range(1, policy.attempts + 1):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            signed = sign_create_session(
                identity=identity,
                sign=signer.sign,
                request=request,
                endpoint=endpoint,
                region=region,
                when=clock(),
            )
            log.debug("CreateSession attempt %d: POST %s", attempt, signed.url.split("?")[0])
            log.debug("canonical request:\n%s", signed.canonical_request)
            try:
                resp = transport.send(signed.method, signed.url, signed.headers, signed.body)
            except TransientError as e:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled") from None
                last = e
            else:
                if resp.status in (200, 201):
                    return parse_create_session(resp.body, clock(), options.session_duration)
                err = service_error(resp)
                if resp.status not in RETRYABLE_STATUS:
                    raise err
                last = err
            log.info("CreateSession attempt %d of %d failed: %s", attempt, policy.attempts, last.diagnostics())
            delay = policy.delay(attempt, rng)
            if attempt == policy.attempts or policy.monotonic() - start + delay > policy.total_seconds:
                break
            if cancel is not None and policy.sleep is time.sleep:
                cancel.sleep(delay)  # a shutdown does not wait for the backoff
            else:
                policy.sleep(delay)
    finally:
        if own_transport:
            transport.close()
    assert last is not None
    raise last
