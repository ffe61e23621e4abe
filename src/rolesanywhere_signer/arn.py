"""ARN parsing and request validation for Roles Anywhere requests (endpoints: endpoints.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import InputError, UsageError
from .options import MAX_DURATION, MIN_DURATION, RequestOptions
from .protocol import SessionRequest
from .records import Record

REGION_PATTERN = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d+$")  # eusc-de-east-1 has four letters
SESSION_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)  # AWS allows ASCII only


class Arn(Record):
    __slots__ = ("account", "partition", "region", "resource", "service")
    _fields = _shown = ("partition", "service", "region", "account", "resource")

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __init__(self, partition: str, service: str, region: str, account: str, resource: str) -> None:
        self._init(partition=partition, service=service, region=region, account=account, resource=resource)


def parse_arn(value: str, flag: str, service: str, resource_type: str) -> Arn:
    """Parse ``arn:partition:service:region:account:type/id`` and check service and type."""
    if not value.isprintable() or any(c.isspace() for c in value):
        # control characters, line breaks or undecodable argv bytes (surrogates) would otherwise
        # crash the URI encoder or be sent to AWS
        raise InputError(
            f"{flag} {value!r} contains spaces or unprintable characters",
            hint="copy the ARN again from the IAM Roles Anywhere console",
        )
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not all(parts[1:3]) or not parts[5]:
        raise InputError(
            f"{flag} {value!r} is not an ARN",
            hint=f"expected arn:aws:{service}:REGION:ACCOUNT:{resource_type}/ID",
        )
    _, partition, svc, region, account, resource = parts
    if svc != service:
        raise InputError(f"{flag} names service {svc!r}; it must be a {service} ARN")
    if not resource.startswith(resource_type + "/") or len(resource) == len(resource_type) + 1:
        raise InputError(f"{flag} must name a {resource_type} (…:{resource_type}/ID), not {resource!r}")
    if not re.fullmatch(r"\d{12}", account):
        raise InputError(f"{flag} has account {account!r}; expected 12 digits")
    if service != "iam" and not REGION_PATTERN.match(region):
        raise InputError(f"{flag} has region {region!r}, which is not a region name")
    return Arn(partition, svc, region, account, resource)


class ValidRequest(Record):
    """Request options that passed ``validate_request``: what CreateSession needs, checked once.

    Commands validate before touching a key (no PIN prompt for a typo) and hand this down; the
    library API and the client accept it as it is instead of checking the same options again.
    """

    __slots__ = ("anchor", "options", "region", "session")
    _fields = _shown = ("options", "session", "region", "anchor")

    options: RequestOptions
    session: SessionRequest
    region: str  # the signing region: --region, else the trust anchor's
    anchor: Arn

    def __init__(self, options: RequestOptions, session: SessionRequest, region: str, anchor: Arn) -> None:
        self._init(options=options, session=session, region=region, anchor=anchor)

    def __iter__(self) -> Iterator[object]:  # ``request, region, anchor = validate_request(opts)``
        return iter((self.session, self.region, self.anchor))


def validate_request(opts: RequestOptions | ValidRequest) -> ValidRequest:
    """Check every request option locally (a ``ValidRequest`` is returned as it is)."""
    if isinstance(opts, ValidRequest):
        return opts
    anchor = parse_arn(opts.trust_anchor_arn, "--trust-anchor-arn", "rolesanywhere", "trust-anchor")
    profile = parse_arn(opts.profile_arn, "--profile-arn", "rolesanywhere", "profile")
    parse_arn(opts.role_arn, "--role-arn", "iam", "role")
    if profile.region != anchor.region:
        raise InputError(
            f"the trust anchor is in {anchor.region} but the profile is in {profile.region}",
            hint="a trust anchor and profile must be in one region",
        )
    if profile.partition != anchor.partition:
        raise InputError("the trust anchor and profile ARNs are in different partitions")
    if not MIN_DURATION <= opts.session_duration <= MAX_DURATION:
        raise UsageError(
            f"--session-duration {opts.session_duration} is out of range",
            hint=f"use {MIN_DURATION}..{MAX_DURATION} seconds",
        )
    if opts.role_session_name is not None and not SESSION_NAME_PATTERN.match(opts.role_session_name):
        raise UsageError(
            f"--role-session-name {opts.role_session_name!r} is invalid",
            hint="use 2-64 characters from letters, digits and +=,.@_-",
        )
    region = opts.region or anchor.region
    if not REGION_PATTERN.match(region):
        raise UsageError(f"--region {region!r} is not a region name")
    req = SessionRequest(
        trust_anchor_arn=opts.trust_anchor_arn,
        profile_arn=opts.profile_arn,
        role_arn=opts.role_arn,
        duration_seconds=opts.session_duration,
        role_session_name=opts.role_session_name,
    )
    return ValidRequest(opts, req, region, anchor)
