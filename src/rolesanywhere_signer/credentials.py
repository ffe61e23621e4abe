"""Temporary AWS credentials: parsing the CreateSession answer and the output formats."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .credcheck import MALFORMED, bad_field, is_rfc3339_utc
from .errors import EndpointError
from .records import Record

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def mask_access_key(value: str) -> str:
    """Access keys may appear only as their last 4 characters."""
    return "****" + value[-4:] if len(value) > 4 else "****"


class Credentials(Record):
    __slots__ = ("access_key_id", "expiration", "secret_access_key", "session_token")
    _fields = ("access_key_id", "secret_access_key", "session_token", "expiration")

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str, expiration: datetime) -> None:
        self._init(
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            expiration=expiration,
        )

    def __repr__(self) -> str:
        return (
            f"Credentials(access_key_id={mask_access_key(self.access_key_id)!r}, "
            f"secret_access_key='********', session_token='********', "
            f"expiration={self.expiration_text()!r})"
        )

    __str__ = __repr__

    def expiration_text(self) -> str:
        return self.expiration.astimezone(timezone.utc).strftime(EXPIRATION_FORMAT)

    def seconds_left(self, now: datetime) -> float:
        return (self.expiration - now).total_seconds()

    def to_process_dict(self) -> dict[str, Any]:
        return {
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.expiration_text(),
        }

    def to_process_json(self) -> str:
        # compact, as aws_signing_helper prints it (Go's json.Marshal)
        return json.dumps(self.to_process_dict(), separators=(",", ":"))

    @classmethod
    def from_process_dict(cls, doc: dict[str, Any]) -> Credentials:
        return cls(
            access_key_id=str(doc["AccessKeyId"]),
            secret_access_key=str(doc["SecretAccessKey"]),
            session_token=str(doc["SessionToken"]),
            expiration=parse_expiration(str(doc["Expiration"])),
        )


def parse_expiration(text: str) -> datetime:
    """Parse an ISO 8601 timestamp as AWS sends it (``Z`` or an offset, with or without fraction)."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


#: how far past the requested duration an expiration may lie (clock skew between us and AWS)
EXPIRATION_SLACK = 300


def parse_create_session(body: bytes, now: datetime, duration: int | None = None) -> Credentials:
    """Credentials from a 201 CreateSession body; every defect is an ``EndpointError``.

    The fields must have their real shapes (see credcheck.py) and the expiration must be RFC 3339
    UTC, no later than ``now`` + ``duration`` (the requested session duration) + 5 minutes.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EndpointError("the endpoint answered with a body that is not JSON") from None
    except RecursionError:  # a hostile answer: [[[[…]]]] deeper than the parser's stack
        raise EndpointError("the endpoint answered with JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise EndpointError("the endpoint answered with JSON that is not an object")
    cset = doc.get("credentialSet")
    if not isinstance(cset, list) or not cset:
        raise EndpointError("the endpoint's answer has an empty or missing credentialSet")
    first = cset[0]
    creds = first.get("credentials") if isinstance(first, dict) else None
    if not isinstance(creds, dict):
        raise EndpointError("the endpoint's answer has no credentials object")
    missing = [
        k
        for k in ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")
        if not isinstance(creds.get(k), str) or not creds.get(k)
    ]
    if missing:
        raise EndpointError(f"the endpoint's credentials lack {', '.join(missing)}")
    bad = bad_field(creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"])
    if bad is not None:
        raise EndpointError(MALFORMED, hint=f"{bad} has characters or a length AWS never sends; nothing was written")
    if not is_rfc3339_utc(creds["expiration"]):
        raise EndpointError(MALFORMED, hint="expiration is not an RFC 3339 UTC time; nothing was written")
    try:
        expiration = parse_expiration(creds["expiration"])
    except ValueError:
        raise EndpointError(MALFORMED, hint="expiration is not a valid time; nothing was written") from None
    if duration is not None and (expiration - now).total_seconds() > duration + EXPIRATION_SLACK:
        raise EndpointError(
            MALFORMED, hint="expiration is later than the requested session duration allows; nothing was written"
        )
    if expiration <= now:
        raise EndpointError(
            f"the endpoint returned credentials that expired at {expiration:%Y-%m-%dT%H:%M:%SZ}",
            hint="check the system clock",
        )
    return Credentials(creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"], expiration)
