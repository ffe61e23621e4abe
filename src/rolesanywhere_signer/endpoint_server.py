"""A local IAM Roles Anywhere endpoint that verifies ``POST /sessions`` as strictly as AWS.

It checks everything in docs/protocol.md's "What the service checks": the end-entity certificate
(v3, not a CA, digitalSignature, SHA-256+ signature, validity), the chain to a configured trust
anchor (depth at most 5), the serial in ``Credential=``, the signature over the canonical request
recomputed from what was received, the scope, the signed headers, the clock skew and the body.
It answers 201 with fresh random credentials or an AWS-shaped error. Loopback only.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import string
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from . import protocol
from .errors import NotSupportedError
from .keytypes import ALGORITHMS, key_type_of

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger("rolesanywhere_signer.endpoint")

MAX_SKEW = timedelta(minutes=5)
REQUIRED_SIGNED = ("host", "x-amz-date", "x-amz-x509")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Refusal(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _denied(message: str) -> Refusal:
    return Refusal(403, "AccessDeniedException", message)


def _invalid(message: str) -> Refusal:
    return Refusal(400, "ValidationException", message)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class EndpointState:
    """What the tests can observe and steer."""

    anchors: Sequence[x509.Certificate]
    clock: Callable[[], datetime] = _now
    #: seconds to wait before answering each request (a slow service)
    delay: float = 0.0
    #: statuses to answer with, one per request, before verifying normally (fault injection)
    inject: list[int] = field(default_factory=list)
    #: only this trust anchor / profile ARN is known, when set
    trust_anchor_arn: str | None = None
    profile_arn: str | None = None
    max_duration: int = 43200
    sessions_created: int = 0
    requests_seen: int = 0
    refusals: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    #: every request answered with 201, as received (tests re-verify them independently)
    accepted: list[ReceivedRequest] = field(default_factory=list)
    #: access key id -> role ARN of every session created (tests check who got which role)
    issued: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _random_id(prefix: str, n: int) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def _load_der(b64: str, what: str) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(base64.b64decode(b64.strip(), validate=True))
    except ValueError:
        raise _denied(f"{what} is not a base64 DER certificate") from None


def verify_certificates(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """Raise ``Refusal`` unless ``leaf`` chains through ``chain`` to one of ``anchors`` (``certs.verify_path``)."""
    from .certs import PathRefused, verify_path

    try:
        verify_path(leaf, chain, anchors, now)
    except PathRefused as e:
        raise _denied("Untrusted signing certificate" + (f": {e.detail}" if e.detail else "")) from None


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes


def _assumed_role_arn(role_arn: str) -> str:
    return role_arn.replace(":iam:", ":sts:").replace(":role/", ":assumed-role/")


def verify_request(req: ReceivedRequest, state: EndpointState) -> dict[str, Any]:
    """Verify a CreateSession request; return the 201 body or raise ``Refusal``."""
    now = state.clock()
    split = urlsplit(req.raw_path)
    if split.path != protocol.SESSIONS_PATH:
        raise Refusal(404, "UnknownOperationException", f"no operation at {split.path}")
    if req.method != "POST":
        raise Refusal(405, "UnknownOperationException", f"{req.method} is not allowed on /sessions")
    headers: dict[str, list[str]] = {}
    for k, v in req.headers:
        headers.setdefault(k.lower(), []).append(v)
    one = {k: ",".join(v) for k, v in headers.items()}
    for name in ("authorization", "x-amz-date", "x-amz-x509", "host"):
        if name not in one:
            raise _denied(f"Missing {name} header")
    try:
        auth = protocol.parse_authorization(one["authorization"])
    except ValueError as e:
        raise _denied(f"Invalid Authorization header: {e}") from None
    if auth.algorithm not in ALGORITHMS:
        raise _denied(f"Unsupported signing algorithm {auth.algorithm}")
    try:
        when = datetime.strptime(one["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise _denied("X-Amz-Date is not YYYYMMDDTHHMMSSZ") from None
    if abs(now - when) > MAX_SKEW:
        raise _denied("Signature expired: the request date is more than 5 minutes from the server's time")
    query = parse_qsl(split.query, keep_blank_values=True, strict_parsing=False)
    params = dict(query)
    try:
        body_doc = json.loads(req.body or b"{}")
    except ValueError:
        raise _invalid("The request body is not JSON") from None
    if not isinstance(body_doc, dict):
        raise _invalid("The request body is not a JSON object")
    anchor_arn = params.get("trustAnchorArn") or body_doc.get("trustAnchorArn")
    profile_arn = params.get("profileArn") or body_doc.get("profileArn")
    role_arn = params.get("roleArn") or body_doc.get("roleArn")
    if not (anchor_arn and profile_arn and role_arn):
        raise _invalid("profileArn, roleArn and trustAnchorArn are required")
    region = str(anchor_arn).split(":")[3] if str(anchor_arn).count(":") >= 5 else ""
    date_stamp = one["x-amz-date"][:8]
    expected_scope = f"{date_stamp}/{region}/{protocol.SERVICE}/aws4_request"
    if auth.scope != expected_scope:
        raise _denied(f"Credential scope {auth.scope} does not match {expected_scope}")
    signed = auth.signed_headers
    if list(signed) != sorted(set(signed)):
        raise _denied("SignedHeaders must be lower-case, sorted and unique")
    must = set(REQUIRED_SIGNED) | {k for k in headers if k.startswith("x-amz-")}
    if not must <= set(signed):
        raise _denied(f"Headers {', '.join(sorted(must - set(signed)))} must be signed")
    if any(h not in headers for h in signed):
        raise _denied("A signed header is missing from the request")
    leaf = _load_der(one["x-amz-x509"], "X-Amz-X509")
    chain = (
        [_load_der(c, "X-Amz-X509-Chain") for c in one["x-amz-x509-chain"].split(",")]
        if "x-amz-x509-chain" in one
        else []
    )
    verify_certificates(leaf, chain, state.anchors, now)
    if auth.serial != str(leaf.serial_number):
        raise _denied("Credential serial number does not match the certificate")
    try:
        key_type = key_type_of(leaf.public_key())
    except NotSupportedError as e:
        raise _denied(f"Unsupported certificate key: {e.message}") from None
    if key_type.algorithm != auth.algorithm:
        raise _denied(f"Algorithm {auth.algorithm} does not match the certificate's key type")
    creq, _ = protocol.canonical_request(req.method, split.path, query, {h: one[h] for h in signed}, req.body)
    sts = protocol.string_to_sign(auth.algorithm, one["x-amz-date"], region, creq)
    if not key_type.verify(leaf.public_key(), auth.signature, sts.encode(), key_type.prehash or "sha256"):
        raise _denied("Invalid signature")
    if state.trust_anchor_arn and anchor_arn != state.trust_anchor_arn:
        raise Refusal(404, "ResourceNotFoundException", "Trust anchor not found")
    if state.profile_arn and profile_arn != state.profile_arn:
        raise Refusal(404, "ResourceNotFoundException", "Profile not found")
    duration = body_doc.get("durationSeconds", 3600)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 900 <= duration <= state.max_duration:
        raise _invalid(f"durationSeconds must be between 900 and {state.max_duration}")
    session_name = body_doc.get("roleSessionName")
    role_session = session_name if isinstance(session_name, str) else str(leaf.serial_number)
    expiration = (now + timedelta(seconds=duration)).replace(microsecond=0)
    return {
        "credentialSet": [
            {
                "assumedRoleUser": {
                    "arn": f"{_assumed_role_arn(str(role_arn))}/{role_session}",
                    "assumedRoleId": f"{_random_id('AROA', 17)}:{role_session}",
                },
                "credentials": {
                    "accessKeyId": _random_id("ASIA", 16),
                    "secretAccessKey": base64.b64encode(secrets.token_bytes(30)).decode(),
                    "sessionToken": base64.b64encode(secrets.token_bytes(180)).decode(),
                    "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "packedPolicySize": 0,
                "roleArn": role_arn,
                "sourceIdentity": leaf.subject.rfc4514_string(),
            }
        ],
        "subjectArn": f"arn:aws:rolesanywhere:{region}:000000000000:subject/{secrets.token_hex(16)}",
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY the body waits ~40 ms for
    # the client's delayed ACK, which AWS does not make clients wait
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, doc: dict[str, Any], error_type: str | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_local/stats":
            with state.lock:
                doc = {"sessions_created": state.sessions_created, "requests_seen": state.requests_seen}
            self._send(200, doc)
            return
        with state.lock:
            state.requests_seen += 1
            injected = state.inject.pop(0) if state.inject else None
        if state.delay:
            import time

            time.sleep(state.delay)
        if injected is not None:
            etype = "ThrottlingException" if injected == 429 else "InternalServerException"
            self._send(injected, {"message": f"injected {injected}"}, etype)
            return
        req = ReceivedRequest(self.command, self.path, list(self.headers.items()), body)
        try:
            answer = verify_request(req, state)
        except Refusal as r:
            with state.lock:
                state.refusals.append(f"{r.error_type}: {r.message}")
            self._send(r.status, {"message": r.message}, r.error_type)
            return
        with state.lock:
            state.sessions_created += 1
            state.authorizations.append(self.headers.get("Authorization", ""))
            state.accepted.append(req)
            issued = answer["credentialSet"][0]
            state.issued[issued["credentials"]["accessKeyId"]] = issued["roleArn"]
        self._send(201, answer)

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's default backlog of 5 drops connects under bursts
    state: EndpointState


class LocalEndpoint:
    """Run the verifying endpoint on loopback in a background thread."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        **state_kwargs: Any,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError("the local endpoint listens on loopback only")
        import socket

        _Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = EndpointState(anchors=list(anchors), **state_kwargs)
        self._server = _Server((host, port), _Handler)
        self._server.state = self.state
        self.scheme = "http"
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        addr = self._server.server_address[0]
        host = addr.decode() if isinstance(addr, bytes) else str(addr)
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> LocalEndpoint:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-endpoint", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
