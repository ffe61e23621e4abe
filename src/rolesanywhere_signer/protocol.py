"""SigV4-X509 for CreateSession: pure functions, no files, sockets or clocks.

Everything here follows docs/protocol.md. The caller supplies the time, the identity
(certificate DER, chain DER, serial, algorithm) and a ``sign`` callable performed by the key.
Only the standard library is imported so that this module costs nothing at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import quote

from .records import Record

ALGORITHM_RSA = "AWS4-X509-RSA-SHA256"
ALGORITHM_ECDSA = "AWS4-X509-ECDSA-SHA256"
#: ML-DSA-44/65/87: pure ML-DSA over the string to sign itself (docs/protocol.md)
ALGORITHM_MLDSA = "AWS4-X509-MLDSA"
ALGORITHMS = (ALGORITHM_RSA, ALGORITHM_ECDSA, ALGORITHM_MLDSA)
SERVICE = "rolesanywhere"
SESSIONS_PATH = "/sessions"
MAX_CHAIN = 5
#: headers that are sent but never signed (docs/protocol.md)
UNSIGNED_HEADERS = frozenset({"authorization", "user-agent", "x-amzn-trace-id"})
_SAFE = "-_.~"


def uri_encode(value: str) -> str:
    """RFC 3986 encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay bare."""
    return quote(value, safe=_SAFE)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Encode each key and value, then sort the pairs (by encoded key, then value)."""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_value(value: str) -> str:
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """Return (canonical header block ending in a newline, signed-headers list).

    Every header passed in is signed except the ones AWS never signs.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.strip().lower()
        if lname in UNSIGNED_HEADERS:
            continue
        merged.setdefault(lname, []).append(_canonical_value(value))
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def hex_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> tuple[str, str]:
    """Return (canonical request, signed headers)."""
    block, signed = canonical_headers(headers)
    text = "\n".join([method.upper(), path, canonical_query(query), block, signed, hex_sha256(body)])
    return text, signed


def amz_date(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def credential_scope(date_stamp: str, region: str) -> str:
    return f"{date_stamp[:8]}/{region}/{SERVICE}/aws4_request"


def string_to_sign(algorithm: str, x_amz_date: str, region: str, creq: str) -> str:
    return "\n".join([algorithm, x_amz_date, credential_scope(x_amz_date, region), hex_sha256(creq.encode())])


def authorization_header(algorithm: str, serial: int, scope: str, signed_headers: str, signature: bytes) -> str:
    return f"{algorithm} Credential={serial}/{scope}, SignedHeaders={signed_headers}, Signature={signature.hex()}"


class SessionRequest(Record):
    """What CreateSession is asked for (all strings already validated by the caller)."""

    __slots__ = ("duration_seconds", "profile_arn", "role_arn", "role_session_name", "trust_anchor_arn")
    _fields = _shown = ("trust_anchor_arn", "profile_arn", "role_arn", "duration_seconds", "role_session_name")

    trust_anchor_arn: str
    profile_arn: str
    role_arn: str
    duration_seconds: int
    role_session_name: str | None

    def __init__(
        self,
        trust_anchor_arn: str,
        profile_arn: str,
        role_arn: str,
        duration_seconds: int = 3600,
        role_session_name: str | None = None,
    ) -> None:
        self._init(
            trust_anchor_arn=trust_anchor_arn,
            profile_arn=profile_arn,
            role_arn=role_arn,
            duration_seconds=duration_seconds,
            role_session_name=role_session_name,
        )

    def query(self) -> list[tuple[str, str]]:
        return [
            ("profileArn", self.profile_arn),
            ("roleArn", self.role_arn),
            ("trustAnchorArn", self.trust_anchor_arn),
        ]

    def body(self) -> bytes:
        doc: dict[str, object] = {"durationSeconds": self.duration_seconds}
        if self.role_session_name is not None:
            doc["roleSessionName"] = self.role_session_name
        return json.dumps(doc, separators=(",", ":")).encode()


class Identity(Record):
    """What the protocol needs of a key backend, in wire form."""

    __slots__ = ("algorithm", "certificate_der", "chain_der", "serial")
    _fields = _shown = ("certificate_der", "serial", "algorithm", "chain_der")

    certificate_der: bytes
    serial: int
    algorithm: str
    chain_der: Sequence[bytes]

    def __init__(self, certificate_der: bytes, serial: int, algorithm: str, chain_der: Sequence[bytes] = ()) -> None:
        self._init(certificate_der=certificate_der, serial=serial, algorithm=algorithm, chain_der=chain_der)


class SignedRequest(Record):
    __slots__ = ("body", "canonical_request", "headers", "method", "string_to_sign", "url")
    _fields = ("method", "url", "headers", "body", "canonical_request", "string_to_sign")
    _shown = ("method", "url", "headers", "body")

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    canonical_request: str
    string_to_sign: str

    def __init__(
        self, method: str, url: str, headers: dict[str, str], body: bytes, canonical_request: str, string_to_sign: str
    ) -> None:
        self._init(
            method=method,
            url=url,
            headers=headers,
            body=body,
            canonical_request=canonical_request,
            string_to_sign=string_to_sign,
        )


def sign_create_session(
    *,
    identity: Identity,
    sign: Callable[[bytes], bytes],
    request: SessionRequest,
    endpoint: str,
    region: str,
    when: datetime,
) -> SignedRequest:
    """Build and sign ``POST /sessions`` for ``endpoint`` (scheme://host[:port][/base])."""
    if identity.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {identity.algorithm!r}")
    if len(identity.chain_der) > MAX_CHAIN:
        raise ValueError(f"at most {MAX_CHAIN} intermediate certificates may be sent")
    scheme, _, rest = endpoint.partition("://")
    host, _, base = rest.partition("/")
    path = ("/" + base.strip("/") if base.strip("/") else "") + SESSIONS_PATH
    x_amz_date = amz_date(when)
    body = request.body()
    headers = {
        "Content-Type": "application/json",
        "Host": host,
        "X-Amz-Date": x_amz_date,
        "X-Amz-X509": base64.b64encode(identity.certificate_der).decode(),
    }
    if identity.chain_der:
        headers["X-Amz-X509-Chain"] = ",".join(base64.b64encode(c).decode() for c in identity.chain_der)
    query = request.query()
    creq, signed = canonical_request("POST", path, query, headers, body)
    sts = string_to_sign(identity.algorithm, x_amz_date, region, creq)
    signature = sign(sts.encode())
    headers["Authorization"] = authorization_header(
        identity.algorithm, identity.serial, credential_scope(x_amz_date, region), signed, signature
    )
    url = f"{scheme}://{host}{path}?{canonical_query(query)}"
    return SignedRequest("POST", url, headers, body, creq, sts)


class ParsedAuthorization(Record):
    __slots__ = ("algorithm", "scope", "serial", "signature", "signed_headers")
    _fields = _shown = ("algorithm", "serial", "scope", "signed_headers", "signature")

    algorithm: str
    serial: str
    scope: str
    signed_headers: tuple[str, ...]
    signature: bytes

    def __init__(
        self, algorithm: str, serial: str, scope: str, signed_headers: tuple[str, ...], signature: bytes
    ) -> None:
        self._init(algorithm=algorithm, serial=serial, scope=scope, signed_headers=signed_headers, signature=signature)


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse an ``Authorization`` header of this scheme; raises ValueError when malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        k, sep, v = item.strip().partition("=")
        if not sep or k in parts:
            raise ValueError("malformed Authorization header")
        parts[k] = v
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise ValueError("Authorization header needs Credential, SignedHeaders and Signature")
    serial, _, scope = parts["Credential"].partition("/")
    try:
        signature = bytes.fromhex(parts["Signature"])
    except ValueError:
        raise ValueError("Signature is not hex") from None
    return ParsedAuthorization(algorithm, serial, scope, tuple(parts["SignedHeaders"].split(";")), signature)
