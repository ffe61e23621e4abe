"""``doctor``: every check Roles Anywhere (and the key store) would make, done offline and reported together.

Each check returns ``checks.Check`` records instead of raising, so one run shows every problem.
Only ``--check-endpoint`` touches the network: DNS, a TLS handshake and the clock against the
endpoint's ``Date`` header.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .checks import Check
from .errors import SignerError
from .options import DEFAULT_DURATION, MAX_DURATION, MIN_DURATION, IdentityOptions

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from .arn import Arn
    from .signer import KeyHandle, Signer

Clock = Callable[[], datetime]
#: warn when less than this share of the certificate's lifetime is left, or fewer days than WARN_DAYS
WARN_FRACTION = 0.2
WARN_DAYS = 7
#: the service refuses requests whose X-Amz-Date is more than 5 minutes off; warn well before
SKEW_FAIL = timedelta(minutes=5)
SKEW_WARN = timedelta(seconds=60)


@dataclass(frozen=True)
class DoctorOptions:
    identity: IdentityOptions
    trust_anchor_arn: str | None = None
    profile_arn: str | None = None
    role_arn: str | None = None
    session_duration: int = DEFAULT_DURATION
    role_session_name: str | None = None
    region: str | None = None
    endpoint: str | None = None
    verify: bool | str = True
    trust_anchor_certificate: str | None = None
    check_endpoint: bool = False
    timeout: float = 10.0


@dataclass
class _Found:
    """What the certificate and key checks learned, for the checks after them."""

    leaf: x509.Certificate | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    chain_error: Check | None = None
    signer: Signer | None = None
    anchor: Arn | None = None


def _now() -> datetime:
    from .certs import now_utc

    return now_utc()


def run_checks(opts: DoctorOptions, *, clock: Clock = _now) -> list[Check]:
    found = _Found()
    out: list[Check] = []
    try:
        out += certificate_checks(opts.identity, found, clock())
        out += key_checks(opts.identity, found)
        out += chain_checks(opts, found, clock())
    finally:
        if found.signer is not None:
            found.signer.close()
    out += request_checks(opts, found)
    out += backend_checks(opts.identity)
    from .enroll.schedule import renewal_check

    out.append(renewal_check(opts.identity.certificate, clock()))
    if opts.check_endpoint:
        out += endpoint_checks(opts, found, clock)
    return out


# --- certificate ---------------------------------------------------------------------------------


def _cert_from_store(identity: IdentityOptions) -> bool:
    """True when the certificate comes with its key from a store (token, PKCS#12) rather than a file."""
    from .backends import backend_for

    cert = identity.certificate
    if cert is None:
        return backend_for(identity).certificate_in_store and not identity.private_key
    if cert.startswith("pkcs11:"):
        return True
    from .inputs import read_input

    try:
        head = read_input(cert, "certificate", flag="--certificate")[:4096]  # a file, env:NAME or -
    except SignerError:
        return False  # the file checks report why
    from .backends.pem import looks_like_pkcs12
    from .certs import pem_labels

    return not pem_labels(head) and looks_like_pkcs12(head)


def _load_leaf(identity: IdentityOptions, found: _Found) -> Check | None:
    """Fill ``found.leaf`` (and chain); a failing Check when that is impossible."""
    from .certs import chain_from_pool, load_certificate_file

    if _cert_from_store(identity):
        from .backends import load_signer

        try:
            found.signer = load_signer(identity)
        except SignerError as e:
            return Check("certificate", "fail", e.diagnostics())
        found.leaf = found.signer.certificate
        found.chain = list(found.signer.chain)
        return None
    assert identity.certificate
    try:
        certs = load_certificate_file(identity.certificate)
    except SignerError as e:
        return Check("certificate", "fail", e.diagnostics())
    found.leaf = certs[0]
    if identity.intermediates:
        from .certs import load_intermediates

        try:
            found.chain = load_intermediates(identity.intermediates)
        except SignerError as e:
            found.chain_error = Check("chain", "fail", e.diagnostics())
    else:
        found.chain = chain_from_pool(certs[0], certs[1:])
    return None


def certificate_checks(identity: IdentityOptions, found: _Found, now: datetime) -> list[Check]:
    from cryptography import x509

    from . import certs
    from .certs import certificate_issues, describe, end_entity_issues, signature_hash_name

    if identity.certificate is None and not _cert_from_store(identity):
        return [Check("certificate", "warn", "no --certificate given: only the key is checked")]
    failed = _load_leaf(identity, found)
    if failed is not None or found.leaf is None:
        return [failed or Check("certificate", "fail", "no certificate found")]
    leaf = found.leaf
    out: list[Check] = []
    name = describe(leaf)
    # the decisions are certs.py's (the same credential-process and local-endpoint make); the words are ours
    issues = set(certificate_issues(leaf, now) + end_entity_issues(leaf))
    if certs.NOT_V3 in issues:
        out.append(Check("certificate", "fail", f"{name} is X.509 {leaf.version.name}; Roles Anywhere needs v3"))
    else:
        out.append(Check("certificate", "pass", f"{name}, serial {leaf.serial_number}, X.509 v3"))
    out.append(validity_check(leaf, now))
    if certs.IS_CA in issues:
        out.append(
            Check("ca-false", "fail", "basicConstraints says CA=true: this is a CA, not an end-entity certificate")
        )
    else:
        try:
            leaf.extensions.get_extension_for_class(x509.BasicConstraints)
            out.append(Check("ca-false", "pass", "basicConstraints CA=false"))
        except x509.ExtensionNotFound:
            out.append(Check("ca-false", "pass", "no basicConstraints: an end-entity certificate"))
    if certs.NO_KEY_USAGE in issues:
        out.append(Check("key-usage", "fail", "no keyUsage extension; Roles Anywhere needs digitalSignature"))
    elif certs.NO_DIGITAL_SIGNATURE in issues:
        out.append(Check("key-usage", "fail", "keyUsage lacks digitalSignature; reissue the certificate with it"))
    else:
        out.append(Check("key-usage", "pass", "keyUsage includes digitalSignature"))
    hname = signature_hash_name(leaf)
    if certs.WEAK_HASH in issues or certs.NO_HASH in issues:
        shown = (hname or "no hash").upper()
        out.append(Check("signature-hash", "fail", f"signed with {shown}; Roles Anywhere needs SHA-256 or stronger"))
    else:
        out.append(Check("signature-hash", "pass", f"signed with {(hname or '').upper()}"))
    return out


def validity_check(cert: x509.Certificate, now: datetime) -> Check:
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < nb:
        return Check("validity", "fail", f"not valid until {nb:%Y-%m-%d %H:%M} UTC (check the clock, or wait)")
    if now > na:
        return Check("validity", "fail", f"expired on {na:%Y-%m-%d %H:%M} UTC; renew the certificate")
    left, life = na - now, na - nb
    days = left.total_seconds() / 86400
    text = f"valid until {na:%Y-%m-%d %H:%M} UTC ({days:.1f} days left)"
    if days < WARN_DAYS or left < life * WARN_FRACTION:
        share = 100 * left / life if life else 0.0
        return Check("validity", "warn", f"{text}, {share:.0f}% of its lifetime: renew it soon")
    return Check("validity", "pass", text)


# --- key -------------------------------------------------------------------------------------------


def _open_key(identity: IdentityOptions) -> KeyHandle:
    from .backends import backend_for

    return backend_for(identity).open_key(identity)


def key_checks(identity: IdentityOptions, found: _Found) -> list[Check]:
    """The key really signs, and the certificate's public key verifies it (no shortcut by comparing keys)."""
    from .backends import backend_for
    from .certs import pem_labels, public_keys_equal
    from .keys import describe_public_key
    from .signer import verify_signature

    name = "key-match" if found.leaf is not None else "key"
    public: PublicKeyTypes
    key_public: PublicKeyTypes
    if found.signer is not None:
        sign, public = found.signer.sign, found.signer.certificate.public_key()
        key: KeyHandle | None = None
        key_public = public
    else:
        if backend_for(identity).key_in_certificate_file and not identity.private_key:
            from .inputs import read_input

            try:
                data = read_input(identity.certificate or "", "certificate", flag="--certificate")
                combo = any(lb.endswith("PRIVATE KEY") for lb in pem_labels(data))
            except SignerError:
                combo = False
            if not combo:
                return [Check(name, "fail", "no --private-key given, and the certificate file holds no key")]
        try:
            key = _open_key(identity)
        except SignerError as e:
            return [Check(name, "fail", e.diagnostics())]
        sign, key_public = key.sign, key.public_key()
        public = found.leaf.public_key() if found.leaf is not None else key_public
    challenge = b"rolesanywhere-signer doctor " + os.urandom(32)
    try:
        try:
            signature = sign(challenge, "sha256")
        except SignerError as e:
            return [Check(name, "fail", f"the key could not sign: {e.diagnostics()}")]
    finally:
        if key is not None:
            key.close()
    kind = describe_public_key(key_public)
    if verify_signature(public, signature, challenge, "sha256"):
        what = "the certificate's public key" if found.leaf is not None else "its public key"
        return [Check(name, "pass", f"{kind} key {identity.key_source()} signs, and {what} verifies it")]
    if found.leaf is not None and not public_keys_equal(public, key_public):
        return [
            Check(
                name,
                "fail",
                f"key {identity.key_source()} does not belong to the certificate "
                "(its signature does not verify with the certificate's public key)",
            )
        ]
    return [Check(name, "fail", f"key {identity.key_source()} made a signature that does not verify")]


# --- chain and trust anchor ----------------------------------------------------------------------


def chain_checks(opts: DoctorOptions, found: _Found, now: datetime) -> list[Check]:
    from cryptography import x509

    from .certs import MAX_CHAIN, check_chain, describe

    if found.chain_error is not None:
        return [found.chain_error]
    if found.leaf is None:
        return []
    out: list[Check] = []
    chain = found.chain
    try:
        check_chain(found.leaf, chain, now)
        for i, cert in enumerate(chain, start=1):
            try:
                if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                    raise ValueError
            except (x509.ExtensionNotFound, ValueError):
                raise SignerError(f"intermediate {i} ({describe(cert)}) is not a CA certificate") from None
        if chain:
            path = " <- ".join(describe(c) for c in chain)
            out.append(Check("chain", "pass", f"{len(chain)} intermediate(s) in order (max {MAX_CHAIN}): {path}"))
        else:
            out.append(Check("chain", "pass", f"no intermediates: {describe(found.leaf)} must be issued by the CA"))
    except SignerError as e:
        out.append(Check("chain", "fail", e.diagnostics()))
    if opts.trust_anchor_certificate:
        out.append(trust_anchor_check(opts.trust_anchor_certificate, found.leaf, chain, now))
    return out


def trust_anchor_check(path: str, leaf: x509.Certificate, chain: Sequence[x509.Certificate], now: datetime) -> Check:
    from .certs import PathRefused, describe, parse_certificates, verify_path
    from .files import read_input_file

    try:
        anchors = parse_certificates(read_input_file(path, "trust anchor certificate"), path, "trust anchor")
    except SignerError as e:
        return Check("trust-anchor", "fail", e.diagnostics())
    try:
        # the same verification the local endpoint (and so AWS) performs
        verify_path(leaf, chain, anchors, now)
    except PathRefused as r:
        detail = r.detail
        if not detail:
            top = chain[-1] if chain else leaf
            detail = (
                f"the path does not reach {describe(anchors[0])}: {describe(top)} is issued by "
                f"{top.issuer.rfc4514_string()}, which is neither in --intermediates nor the trust anchor"
            )
        return Check("trust-anchor", "fail", detail)
    return Check("trust-anchor", "pass", f"the path validates to {describe(anchors[0])}")


# --- request options ----------------------------------------------------------------------------


def request_checks(opts: DoctorOptions, found: _Found) -> list[Check]:
    from .arn import REGION_PATTERN, SESSION_NAME_PATTERN, parse_arn

    out: list[Check] = []
    given = {
        "--trust-anchor-arn": opts.trust_anchor_arn,
        "--profile-arn": opts.profile_arn,
        "--role-arn": opts.role_arn,
    }
    if any(given.values()):
        missing = [flag for flag, v in given.items() if not v]
        problems: list[str] = [f"{flag} is missing" for flag in missing]
        parsed: dict[str, Arn] = {}
        specs = {
            "--trust-anchor-arn": ("rolesanywhere", "trust-anchor"),
            "--profile-arn": ("rolesanywhere", "profile"),
            "--role-arn": ("iam", "role"),
        }
        for flag, value in given.items():
            if value:
                try:
                    parsed[flag] = parse_arn(value, flag, *specs[flag])
                except SignerError as e:
                    problems.append(e.diagnostics())
        if problems:
            out.append(Check("arns", "fail", "; ".join(problems)))
        else:
            out.append(Check("arns", "pass", "trust anchor, profile and role ARNs parse"))
        anchor, profile = parsed.get("--trust-anchor-arn"), parsed.get("--profile-arn")
        found.anchor = anchor
        if anchor and profile:
            if anchor.region != profile.region:
                out.append(
                    Check(
                        "region",
                        "fail",
                        f"the trust anchor is in {anchor.region} but the profile is in {profile.region}; "
                        "they must be in one region",
                    )
                )
            elif anchor.partition != profile.partition:
                out.append(Check("region", "fail", "the trust anchor and profile are in different partitions"))
            elif opts.region and opts.region != anchor.region:
                out.append(
                    Check("region", "warn", f"--region {opts.region} differs from the trust anchor's {anchor.region}")
                )
            else:
                out.append(Check("region", "pass", f"trust anchor and profile are both in {anchor.region}"))
    if opts.region and not REGION_PATTERN.match(opts.region):
        out.append(Check("region", "fail", f"--region {opts.region!r} is not a region name (e.g. us-east-2)"))
    if opts.role_session_name is not None:
        if SESSION_NAME_PATTERN.match(opts.role_session_name):
            out.append(Check("role-session-name", "pass", repr(opts.role_session_name)))
        else:
            out.append(
                Check(
                    "role-session-name",
                    "fail",
                    f"{opts.role_session_name!r} is invalid: use 2-64 characters from letters, digits and +=,.@_-",
                )
            )
    d = opts.session_duration
    if not MIN_DURATION <= d <= MAX_DURATION:
        out.append(Check("session-duration", "fail", f"{d} seconds is outside {MIN_DURATION}..{MAX_DURATION}"))
    elif d > DEFAULT_DURATION:
        out.append(
            Check(
                "session-duration",
                "warn",
                f"{d} seconds is over an hour: the profile's durationSeconds and the role's maximum must allow it",
            )
        )
    else:
        out.append(Check("session-duration", "pass", f"{d} seconds"))
    return out


def backend_checks(identity: IdentityOptions) -> list[Check]:
    from .backends import backend_for

    if not (identity.private_key or identity.certificate or identity.pkcs11_uri):
        return []
    try:
        return backend_for(identity).health(identity)
    except SignerError as e:
        return [Check("backend", "fail", e.diagnostics())]


# --- endpoint ------------------------------------------------------------------------------------


def _endpoint_url(opts: DoctorOptions, found: _Found) -> str:
    from .endpoints import resolve_endpoint

    region = opts.region or (found.anchor.region if found.anchor else None)
    return resolve_endpoint(region, endpoint=opts.endpoint)


def endpoint_checks(opts: DoctorOptions, found: _Found, clock: Clock) -> list[Check]:
    import socket
    import ssl
    from urllib.parse import urlsplit

    try:
        url = _endpoint_url(opts, found)
    except SignerError as e:
        return [Check("endpoint", "fail", e.diagnostics())]
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    try:
        addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "lookup failed"
        return [Check("endpoint-dns", "fail", f"{host} does not resolve: {reason}")]
    shown = sorted({str(a[4][0]) for a in addrs})
    out = [Check("endpoint-dns", "pass", f"{host} resolves to {', '.join(shown[:3])}")]
    try:
        sock = socket.create_connection((host, port), timeout=opts.timeout)
    except OSError as e:
        out.append(Check("endpoint-tls", "fail", f"cannot connect to {host}:{port}: {e.strerror or type(e).__name__}"))
        return out
    try:
        conn: socket.socket = sock
        if tls:
            try:
                ctx = _tls_context(opts.verify)
            except SignerError as e:
                out.append(Check("endpoint-tls", "fail", e.diagnostics()))
                return out
            try:
                conn = ctx.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as e:
                out.append(
                    Check(
                        "endpoint-tls",
                        "fail",
                        f"{host}:{port} presented a certificate that is not trusted ({e.verify_message}); "
                        "set AWS_CA_BUNDLE to its CA",
                    )
                )
                return out
            except (ssl.SSLError, OSError) as e:
                reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or type(e).__name__
                out.append(Check("endpoint-tls", "fail", f"TLS handshake with {host}:{port} failed: {reason}"))
                return out
            assert isinstance(conn, ssl.SSLSocket)
            verified = "" if ctx.verify_mode == ssl.CERT_REQUIRED else ", certificate NOT verified (--no-verify-ssl)"
            out.append(
                Check(
                    "endpoint-tls",
                    "pass" if not verified else "warn",
                    f"TLS handshake with {host}:{port} completed ({conn.version()}{verified})",
                )
            )
        else:
            out.append(Check("endpoint-tls", "warn", f"{url} is plain http: no TLS (local testing only)"))
        out.append(_clock_check(conn, host, clock))
    finally:
        sock.close()
    return out


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    import ssl

    from .transport import resolve_verify

    resolved = resolve_verify(verify)
    if resolved is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=resolved if isinstance(resolved, str) else None)


def _clock_check(conn: socket.socket, host: str, clock: Clock) -> Check:
    import http.client
    from email.utils import parsedate_to_datetime

    try:
        conn.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(conn, method="HEAD")
        resp.begin()
        date = resp.getheader("Date")
    except (OSError, http.client.HTTPException) as e:
        return Check("clock-skew", "warn", f"no HTTP answer from {host} to read its Date header ({type(e).__name__})")
    local = clock()
    if not date:
        return Check("clock-skew", "warn", f"{host} sent no Date header; the clock was not compared")
    try:
        remote = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return Check("clock-skew", "warn", f"{host} sent an unreadable Date header {date[:40]!r}")
    skew = local - remote
    # the Date header has whole seconds: a second of difference is noise
    seconds = abs(skew.total_seconds())
    direction = "ahead of" if skew.total_seconds() > 0 else "behind"
    text = f"the local clock is {seconds:.0f}s {direction} {host}"
    if abs(skew) > SKEW_FAIL:
        return Check("clock-skew", "fail", f"{text}; requests more than 5 minutes off are refused: sync it (NTP)")
    if abs(skew) > SKEW_WARN:
        return Check("clock-skew", "warn", f"{text}; close to the 5 minute limit: sync it (NTP)")
    return Check("clock-skew", "pass", f"{text} (limit 5 minutes)")


# --- output ----------------------------------------------------------------------------------------


def failed(checks: Sequence[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def render_table(checks: Sequence[Check]) -> str:
    width = max((len(c.name) for c in checks), default=5)
    lines = [f"{'STATUS':<6}  {'CHECK':<{width}}  DETAIL"]
    lines += [f"{c.status.upper():<6}  {c.name:<{width}}  {c.detail}" for c in checks]
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "warn", "fail")}
    lines.append(f"checks: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail")
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    doc = {
        "ok": not failed(checks),
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks],
    }
    return json.dumps(doc, indent=2) + "\n"


if TYPE_CHECKING:
    import socket
    import ssl
