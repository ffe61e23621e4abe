"""The bad-input matrix: every command, run as a user runs it, given something wrong.

Each case asserts four things (``assert_one_line_error``): the exit code, an empty stdout, exactly
one short stderr line naming the problem, and no traceback. Cases that must fail before the network
use a closed port as the endpoint, so an unexpected request shows up as a different message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, Issued, issue, now, weak_hash_chain
from support.servers import (
    FORWARD,
    HangServer,
    Reply,
    ScriptedServer,
    aws_error,
    closed_port_url,
    html_page,
    session_body,
    untrusted_tls_endpoint,
)
from support.util import (
    ARN_ARGS,
    PROFILE_ARN,
    ROLE_ARN,
    TRUST_ANCHOR_ARN,
    assert_one_line_error,
    free_port,
    run_cli,
    run_cli_as_nobody,
)

# ---------------------------------------------------------------------------------------------
# the files every case draws from


@pytest.fixture(scope="module")
def kit(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("matrix")

    def put(name: str, data: bytes) -> Path:
        p = base / name
        p.write_bytes(data)
        return p

    good = pki.leaf("ec-p256")
    other = pki.leaf("ec-p256")
    f: dict[str, Path] = {}
    f["cert"] = put("good.crt", good.pem)
    f["key"] = put("good.key", good.key_pem())
    f["other_key"] = put("other.key", other.key_pem())
    f["empty"] = put("empty.pem", b"")
    f["blank"] = put("blank.pem", b"\n  \n")
    f["garbage"] = put("garbage.bin", os.urandom(1500))
    f["text"] = put("text.txt", b"this is not a certificate\n")
    f["trunc_cert"] = put("trunc.crt", good.pem[: len(good.pem) // 2])
    f["trunc_key"] = put("trunc.key", good.key_pem()[:100])
    f["cert_der"] = put("good.cer", good.der)
    f["key_der"] = put(
        "good.key.der",
        good.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    f["enc_key"] = put("enc.key", good.key_pem(password=b"right-password"))
    f["p12"] = put(
        "bundle.p12",
        pkcs12.serialize_key_and_certificates(
            b"b", good.key, good.cert, None, serialization.BestAvailableEncryption(b"right-password")
        ),
    )
    loop_a, loop_b = base / "loop-a.pem", base / "loop-b.pem"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    f["loop"] = loop_a
    f["dir"] = base / "a-directory"
    f["dir"].mkdir()
    f["missing"] = base / "does-not-exist.pem"
    big = base / "big.pem"
    with open(big, "wb") as fh:  # 10 MB: a disk image or log named by mistake
        fh.write(b"-----BEGIN CERTIFICATE-----\n")
        fh.truncate(10 * 1024 * 1024)
    f["big"] = big

    def leaf_pair(stem: str, leaf: Issued) -> None:
        f[stem + "_cert"] = put(stem + ".crt", leaf.pem)
        f[stem + "_key"] = put(stem + ".key", leaf.key_pem())

    leaf_pair("expired", pki.leaf(not_before=now() - timedelta(days=10), not_after=now() - timedelta(days=1)))
    leaf_pair("future", pki.leaf(not_before=now() + timedelta(days=3)))
    leaf_pair("ca", issue("a sub CA used as leaf", issuer=pki.root, ca=True))
    leaf_pair("nosig", pki.leaf(digital_signature=False))
    for digest in ("md5", "sha1"):
        _, weak = weak_hash_chain(base / digest, digest)
        leaf_pair(digest, weak)
    # leaf <- int2 <- pki.intermediate <- root: a two-intermediate chain to get the order wrong
    int2 = issue("Second Intermediate CA", issuer=pki.intermediate, ca=True)
    deep = issue("deep leaf", issuer=int2)
    leaf_pair("deep", deep)
    f["chain_right"] = put("chain-right.pem", int2.pem + pki.intermediate.pem)
    f["chain_wrong"] = put("chain-wrong.pem", pki.intermediate.pem + int2.pem)
    f["chain_unrelated"] = put("chain-unrelated.pem", issue("Unrelated CA", ca=True).pem)
    f["chain_too_long"] = put("chain-long.pem", (int2.pem + pki.intermediate.pem) * 3)
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf_pair("rsa1024", issue("rsa 1024 leaf", issuer=pki.root, key=weak_rsa))
    f["ed25519_key"] = put(
        "ed25519.key",
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    f["csr"] = put(
        "request.csr",
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    )
    f["bad_tss2"] = put("damaged.tss2", b"-----BEGIN TSS2 PRIVATE KEY-----\nMAMCAQA=\n-----END TSS2 PRIVATE KEY-----\n")
    for p in base.rglob("*"):
        if p.is_file() and not p.is_symlink():
            p.chmod(0o600)
    return f


class Ctx:
    """What a case's argument builder sees: the files, and servers that live for one case."""

    def __init__(
        self, files: dict[str, Path], pki: PKI, stack: ExitStack, tmp: Path, hsm: dict[str, str] | None = None
    ) -> None:
        self._hsm = hsm
        self.f = files
        self.pki = pki
        self._stack = stack
        self.tmp = tmp
        self.servers: list[Any] = []

    def cp(self, cert: str = "cert", key: str | None = "key", *extra: object, endpoint: str | None = None) -> list[str]:
        """credential-process with files by name (``kit`` keys); endpoint defaults to a closed port."""
        args = ["credential-process", "--certificate", str(self.f.get(cert, cert))]
        if key is not None:
            args += ["--private-key", str(self.f.get(key, key))]
        return [*args, *ARN_ARGS, "--endpoint", endpoint or closed_port_url(), *map(str, extra)]

    def mode(
        self, command: str, cert: str = "cert", key: str = "key", *extra: object, endpoint: str | None = None
    ) -> list[str]:
        """``serve`` or ``update`` with the same identity and request flags as ``cp``."""
        return [command, *self.cp(cert, key, *extra, endpoint=endpoint)[1:]]

    def cp_arns(self, anchor: str, profile: str, role: str, *extra: object) -> list[str]:
        return [
            "credential-process",
            "--certificate",
            str(self.f["cert"]),
            "--private-key",
            str(self.f["key"]),
            "--trust-anchor-arn",
            anchor,
            "--profile-arn",
            profile,
            "--role-arn",
            role,
            "--endpoint",
            closed_port_url(),
            *map(str, extra),
        ]

    @property
    def hsm(self) -> dict[str, str]:
        """The SoftHSM2 token of this module (``module``, ``conf``, ``pin``, ``bad_pin`` paths)."""
        if self._hsm is None:
            pytest.skip("softhsm2 and opensc are needed for the PKCS#11 cases")
        return self._hsm

    def p11(self, uri: str, *extra: object) -> list[str]:
        return [
            "credential-process",
            "--pkcs11-uri",
            uri,
            "--pkcs11-lib",
            self.hsm["module"],
            *ARN_ARGS,
            "--endpoint",
            closed_port_url(),
            *map(str, extra),
        ]

    def endpoint(self) -> LocalEndpoint:
        ep = self._stack.enter_context(LocalEndpoint([self.pki.root.cert]))
        self.servers.append(ep)
        return ep

    def scripted(self, *script: Any, after: Any = None, forward: bool = False) -> ScriptedServer:
        upstream = self.endpoint() if forward else None
        srv = self._stack.enter_context(ScriptedServer(script, after=after, upstream=upstream))
        self.servers.append(srv)
        return srv

    def hang(self) -> HangServer:
        srv = self._stack.enter_context(HangServer())
        self.servers.append(srv)
        return srv

    def untrusted_tls(self) -> LocalEndpoint:
        ep = self._stack.enter_context(untrusted_tls_endpoint([self.pki.root.cert], self.tmp / "tls"))
        self.servers.append(ep)
        return ep


@pytest.fixture(scope="module")
def hsm_token(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str] | None:
    """One SoftHSM2 token ('mx', PIN 1234) with a key and certificate, or None without softhsm2."""
    module = next(
        (
            p
            for p in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
            if os.path.exists(p)
        ),
        None,
    )
    if module is None or not shutil.which("softhsm2-util") or not shutil.which("pkcs11-tool"):
        return None
    base = tmp_path_factory.mktemp("matrix-hsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    leaf = pki.leaf("ec-p256", cn="matrix token")
    (base / "k.pem").write_bytes(leaf.key_pem())
    (base / "c.der").write_bytes(leaf.der)
    for cmd in (
        ["softhsm2-util", "--init-token", "--free", "--label", "mx", "--so-pin", "5678", "--pin", "1234"],
        [
            "softhsm2-util",
            "--import",
            str(base / "k.pem"),
            "--token",
            "mx",
            "--label",
            "k",
            "--id",
            "01",
            "--pin",
            "1234",
        ],
        [
            "pkcs11-tool",
            "--module",
            module,
            "--token-label",
            "mx",
            "--login",
            "--pin",
            "1234",
            "--write-object",
            str(base / "c.der"),
            "--type",
            "cert",
            "--label",
            "k",
            "--id",
            "01",
        ],
    ):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=60)
    (base / "pin").write_text("1234\n")
    (base / "bad-pin").write_text("0000\n")
    return {"module": module, "conf": str(conf), "pin": str(base / "pin"), "bad_pin": str(base / "bad-pin")}


@pytest.fixture
def ctx(kit: dict[str, Path], pki: PKI, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ctx]:
    needs_hsm = "pkcs11 token" in request.node.name
    hsm = request.getfixturevalue("hsm_token") if needs_hsm else None
    with ExitStack() as stack:
        yield Ctx(kit, pki, stack, tmp_path, hsm)


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Ctx], list[str]]
    phrase: str
    code: int = 1
    env: dict[str, str] | None = None
    stdin: bytes | None = None
    #: environment computed from the context (e.g. a SoftHSM2 configuration)
    env_of: Callable[[Ctx], dict[str, str]] | None = None
    #: the whole run must end within this many seconds (bounded retries and timeouts)
    within: float = 60.0


def _wrong_partition(arn: str) -> str:
    return arn.replace("arn:aws:", "arn:aws-cn:", 1)


PW_ENV = "ROLESANYWHERE_SIGNER_PKCS8_PASSWORD"


#: well-shaped credential fields (the expiration is added per case)
GOOD_FIELDS = {
    "accessKeyId": "ASIAFAKEFAKEFAKE1234",
    "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "sessionToken": "FwoGZXIvYXdzEJr//////////wEaDG+example==",
}


def _soon(minutes: int = 59) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


#: answers a hostile endpoint (or a man in the middle with --no-verify-ssl) could send
MALFORMED_CREDENTIALS: dict[str, dict[str, str]] = {
    "CR/LF in the secret": {"secretAccessKey": "abc\r\ncredential_process = touch /tmp/pwned"},
    "LF in the token": {"sessionToken": "abc\n[default]"},
    "space in the token": {"sessionToken": "abc def"},
    "lower-case access key": {"accessKeyId": "asiafakefakefake1234"},
    "short access key": {"accessKeyId": "ASIA1234"},
    "access key with a newline": {"accessKeyId": "ASIAFAKEFAKEFAKE1234\n"},
    "non-UTC expiration": {"expiration": "2030-01-01T00:00:00+02:00"},
    "expiration without a zone": {"expiration": "2030-01-01T00:00:00"},
    "expiration a year away": {"expiration": "2099-01-01T00:00:00Z"},
}


def _malformed_answer(fields: dict[str, str]) -> Callable[[Ctx], list[str]]:
    def args(c: Ctx) -> list[str]:
        return c.cp(endpoint=c.scripted(session_body({**GOOD_FIELDS, "expiration": _soon(), **fields})).url)

    return args


CASES: list[Case] = [
    # --- certificate and key files ------------------------------------------------------------
    Case("cert missing", lambda c: c.cp("missing"), "does not exist"),
    Case("cert empty", lambda c: c.cp("empty"), "is empty"),
    Case("cert only whitespace", lambda c: c.cp("blank"), "is empty"),
    Case("cert garbage bytes", lambda c: c.cp("garbage"), "neither a PEM nor a DER certificate"),
    Case("cert plain text", lambda c: c.cp("text"), "neither a PEM nor a DER certificate"),
    Case("cert truncated PEM", lambda c: c.cp("trunc_cert"), "damaged or truncated PEM certificate"),
    Case("cert is a CSR", lambda c: c.cp("csr"), "holds no certificate (found CERTIFICATE REQUEST)"),
    Case("key given as cert", lambda c: c.cp("key", "key"), "holds a private key"),
    Case("cert given as key", lambda c: c.cp("cert", "cert"), "holds a certificate, not a private key"),
    Case("DER key where a cert is expected", lambda c: c.cp("key_der", "key"), "neither a PEM nor a DER certificate"),
    Case("DER cert where a key is expected", lambda c: c.cp("cert", "cert_der"), "neither a PEM nor a DER private key"),
    Case("key missing", lambda c: c.cp("cert", "missing"), "does not exist"),
    Case("key empty", lambda c: c.cp("cert", "empty"), "is empty"),
    Case("key garbage", lambda c: c.cp("cert", "garbage"), "neither a PEM nor a DER private key"),
    Case("key truncated PEM", lambda c: c.cp("cert", "trunc_key"), "truncated PEM block"),
    Case("no key at all", lambda c: c.cp("cert", None), "no private key given"),
    Case("encrypted key, no password, no terminal", lambda c: c.cp("cert", "enc_key"), "no terminal", within=45),
    Case(
        "encrypted key, wrong password (env)",
        lambda c: c.cp("cert", "enc_key"),
        "wrong password for encrypted private key",
        env={PW_ENV: "wrong-password"},
    ),
    Case("PKCS#12 wrong password", lambda c: c.cp("p12", None), "wrong password for PKCS#12", env={PW_ENV: "nope"}),
    Case("PKCS#12 no password, no terminal", lambda c: c.cp("p12", None), "no terminal", within=45),
    Case("PKCS#12 plus --private-key", lambda c: c.cp("p12", "key"), "drop --private-key", env={PW_ENV: "x"}),
    Case("cert symlink loop", lambda c: c.cp("loop"), "symlink loop"),
    Case("key symlink loop", lambda c: c.cp("cert", "loop"), "symlink loop"),
    Case("cert is a directory", lambda c: c.cp("dir"), "is a directory"),
    Case("key is a directory", lambda c: c.cp("cert", "dir"), "is a directory"),
    Case("cert 10 MB", lambda c: c.cp("big"), "too large"),
    Case("key 10 MB", lambda c: c.cp("cert", "big"), "too large"),
    Case("cert path empty string", lambda c: c.cp(""), "--certificate is required", code=2),
    Case("mismatched key and cert", lambda c: c.cp("cert", "other_key"), "does not match certificate"),
    Case("expired cert", lambda c: c.cp("expired_cert", "expired_key"), "expired on"),
    Case("not-yet-valid cert", lambda c: c.cp("future_cert", "future_key"), "not valid yet"),
    Case("CA cert as leaf", lambda c: c.cp("ca_cert", "ca_key"), "is a CA certificate"),
    Case("no digitalSignature", lambda c: c.cp("nosig_cert", "nosig_key"), "lacks the digitalSignature"),
    Case("MD5-signed cert", lambda c: c.cp("md5_cert", "md5_key"), "signed with MD5"),
    Case("SHA-1-signed cert", lambda c: c.cp("sha1_cert", "sha1_key"), "signed with SHA1"),
    Case("RSA 1024 key", lambda c: c.cp("rsa1024_cert", "rsa1024_key"), "has 1024 bits"),
    Case("Ed25519 key", lambda c: c.cp("cert", "ed25519_key"), "takes RSA, EC or ML-DSA keys"),
    Case(
        "intermediates in the wrong order",
        lambda c: c.cp("deep_cert", "deep_key", "--intermediates", c.f["chain_wrong"]),
        "nearest issuer first",
    ),
    Case(
        "intermediates unrelated",
        lambda c: c.cp("deep_cert", "deep_key", "--intermediates", c.f["chain_unrelated"]),
        "not in this leaf's chain",
    ),
    Case(
        "intermediates more than 5",
        lambda c: c.cp("deep_cert", "deep_key", "--intermediates", c.f["chain_too_long"]),
        "at most 5",
    ),
    Case(
        "intermediates file is a key",
        lambda c: c.cp("deep_cert", "deep_key", "--intermediates", c.f["key"]),
        "holds a private key",
    ),
    # --- ARNs and request options ------------------------------------------------------------
    Case("anchor ARN malformed", lambda c: c.cp_arns("trust-anchor/123", PROFILE_ARN, ROLE_ARN), "is not an ARN"),
    Case(
        "anchor ARN wrong service",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN.replace(":rolesanywhere:", ":iam:"), PROFILE_ARN, ROLE_ARN),
        "must be a rolesanywhere ARN",
    ),
    Case(
        "profile ARN names a role",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, PROFILE_ARN.replace("profile/", "role/"), ROLE_ARN),
        "must name a profile",
    ),
    Case(
        "role ARN wrong service",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN.replace(":iam:", ":s3:")),
        "must be a iam ARN",
    ),
    Case(
        "anchor and profile in different regions",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, PROFILE_ARN.replace("us-east-2", "eu-central-1"), ROLE_ARN),
        "but the profile is in eu-central-1",
    ),
    Case(
        "anchor and profile in different partitions",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, _wrong_partition(PROFILE_ARN), ROLE_ARN),
        "different partitions",
    ),
    Case(
        "account not 12 digits",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN.replace("123456789012", "1234"), PROFILE_ARN, ROLE_ARN),
        "expected 12 digits",
    ),
    Case(
        "role ARN with a byte that is not UTF-8",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN + "\udcff"),
        "unprintable characters",
    ),
    Case(
        "profile ARN with a line break",
        lambda c: c.cp_arns(TRUST_ANCHOR_ARN, PROFILE_ARN + "\nx-injected: 1", ROLE_ARN),
        "unprintable characters",
    ),
    Case(
        "role session name not ASCII",
        lambda c: c.cp("cert", "key", "--role-session-name", "café-runner"),
        "--role-session-name",
        code=2,
    ),
    Case("duration below 900", lambda c: c.cp("cert", "key", "--session-duration", 899), "out of range", code=2),
    Case("duration above 43200", lambda c: c.cp("cert", "key", "--session-duration", 43201), "out of range", code=2),
    Case("duration not a number", lambda c: c.cp("cert", "key", "--session-duration", "1h"), "invalid int", code=2),
    Case(
        "role session name with a slash",
        lambda c: c.cp("cert", "key", "--role-session-name", "ci/runner"),
        "--role-session-name",
        code=2,
    ),
    Case(
        "role session name too long",
        lambda c: c.cp("cert", "key", "--role-session-name", "x" * 65),
        "--role-session-name",
        code=2,
    ),
    Case("region not a region", lambda c: c.cp("cert", "key", "--region", "narnia"), "not a region name", code=2),
    # --- endpoints -----------------------------------------------------------------------------
    Case("endpoint bad URL", lambda c: c.cp(endpoint="http://127.0.0.1:notaport"), "not a valid URL", code=2),
    Case("endpoint bad scheme", lambda c: c.cp(endpoint="file:///etc/passwd"), "has scheme 'file'", code=2),
    Case("endpoint with a query", lambda c: c.cp(endpoint="http://127.0.0.1/?x=1"), "query or fragment", code=2),
    Case("endpoint closed port", lambda c: c.cp(endpoint=closed_port_url()), "connection refused", within=45),
    Case(
        "endpoint TLS from an untrusted CA",
        lambda c: c.cp(endpoint=c.untrusted_tls().url),
        "TLS verification of 127.0.0.1",
    ),
    Case(
        "endpoint accepts and never answers",
        lambda c: c.cp("cert", "key", "--timeout", "1", endpoint=c.hang().url),
        "did not answer within 1s",
        within=45,
    ),
    Case(
        "endpoint 403 AWS error",
        lambda c: c.cp(
            endpoint=c.scripted(aws_error(403, "AccessDeniedException", "Untrusted signing certificate")).url
        ),
        "AccessDeniedException: Untrusted signing certificate",
    ),
    Case(
        "endpoint 400 ValidationException",
        lambda c: c.cp(endpoint=c.scripted(aws_error(400, "ValidationException", "1 validation error")).url),
        "ValidationException: 1 validation error",
    ),
    Case(
        "endpoint 404 ResourceNotFound",
        lambda c: c.cp(endpoint=c.scripted(aws_error(404, "ResourceNotFoundException", "Profile not found")).url),
        "ResourceNotFoundException: Profile not found",
    ),
    Case("endpoint 404 bare", lambda c: c.cp(endpoint=c.scripted(Reply(404)).url), "HTTP 404 (check --endpoint)"),
    Case(
        "endpoint 429 every time",
        lambda c: c.cp(endpoint=c.scripted(after=aws_error(429, "ThrottlingException", "Rate exceeded")).url),
        "ThrottlingException: Rate exceeded",
        within=45,
    ),
    Case(
        "endpoint 503 every time",
        lambda c: c.cp(endpoint=c.scripted(after=aws_error(503, "ServiceUnavailableException", "down")).url),
        "ServiceUnavailableException",
        within=45,
    ),
    Case(
        "endpoint non-JSON 201",
        lambda c: c.cp(endpoint=c.scripted(Reply(201, b"OK, here you go")).url),
        "body that is not JSON",
    ),
    Case(
        "endpoint HTML error page",
        lambda c: c.cp(endpoint=c.scripted(html_page(403, "403 Forbidden")).url),
        "HTML page",
    ),
    Case(
        "endpoint JSON array",
        lambda c: c.cp(endpoint=c.scripted(Reply(201, b"[1, 2]")).url),
        "JSON that is not an object",
    ),
    Case(
        "endpoint empty credentialSet",
        lambda c: c.cp(endpoint=c.scripted(session_body(credential_set=[])).url),
        "empty or missing credentialSet",
    ),
    Case(
        "endpoint credentials missing fields",
        lambda c: c.cp(endpoint=c.scripted(session_body({"accessKeyId": "ASIAX", "expiration": "2099-01-01"})).url),
        "lack secretAccessKey, sessionToken",
    ),
    Case(
        "endpoint credentials not an object",
        lambda c: c.cp(endpoint=c.scripted(session_body(credential_set=["nope"])).url),
        "no credentials object",
    ),
    Case(
        "endpoint Expiration in the past",
        lambda c: c.cp(endpoint=c.scripted(session_body({**GOOD_FIELDS, "expiration": "2001-01-01T00:00:00Z"})).url),
        "expired at 2001-01-01T00:00:00Z",
    ),
    Case(
        "endpoint Expiration unreadable",
        lambda c: c.cp(endpoint=c.scripted(session_body({**GOOD_FIELDS, "expiration": "soon"})).url),
        "malformed credentials",
    ),
    *(
        Case(f"endpoint credentials malformed: {name}", _malformed_answer(fields), "malformed credentials")
        for name, fields in MALFORMED_CREDENTIALS.items()
    ),
    Case(
        "AWS_CA_BUNDLE missing",
        lambda c: c.cp(endpoint="https://127.0.0.1:1"),
        "AWS_CA_BUNDLE",
        env={"AWS_CA_BUNDLE": "/nonexistent/ca.pem"},
    ),
    Case("--timeout zero", lambda c: c.cp("cert", "key", "--timeout", "0"), "--timeout", code=2),
    # --- the other commands ---------------------------------------------------------------------
    Case("sign-string no key", lambda c: ["sign-string"], "--certificate is required", code=2),
    Case(
        "sign-string --stdin with stdin as the key",
        lambda c: ["sign-string", "--stdin", "--private-key", "-"],
        "--stdin cannot be used",
        code=2,
        stdin=b"x",
    ),
    Case(
        "sign-string key as cert",
        lambda c: ["sign-string", "--certificate", str(c.f["key"]), "--private-key", str(c.f["key"])],
        "holds a private key",
        stdin=b"x",
    ),
    Case(
        "sign-string mismatched key",
        lambda c: ["sign-string", "--certificate", str(c.f["cert"]), "--private-key", str(c.f["other_key"])],
        "does not match",
        stdin=b"x",
    ),
    Case(
        "sign-string unknown digest",
        lambda c: [
            "sign-string",
            "--certificate",
            str(c.f["cert"]),
            "--private-key",
            str(c.f["key"]),
            "--digest",
            "MD5",
        ],
        "invalid choice",
        code=2,
        stdin=b"x",
    ),
    Case(
        "sign-string encrypted key, no terminal",
        lambda c: ["sign-string", "--certificate", str(c.f["cert"]), "--private-key", str(c.f["enc_key"])],
        "no terminal",
        stdin=b"x",
        within=45,
    ),
    Case("read-certificate-data no flag", lambda c: ["read-certificate-data"], "--certificate is required", code=2),
    Case(
        "read-certificate-data garbage",
        lambda c: ["read-certificate-data", "--certificate", str(c.f["garbage"])],
        "neither a PEM nor a DER certificate",
    ),
    Case(
        "read-certificate-data key file",
        lambda c: ["read-certificate-data", "--certificate", str(c.f["key"])],
        "holds a private key",
    ),
    Case(
        "read-certificate-data 10 MB",
        lambda c: ["read-certificate-data", "--certificate", str(c.f["big"])],
        "too large",
    ),
    Case(
        "read-certificate-data symlink loop",
        lambda c: ["read-certificate-data", "--certificate", str(c.f["loop"])],
        "symlink loop",
    ),
    Case("local-endpoint no anchor", lambda c: ["local-endpoint"], "--trust-anchor", code=2),
    Case(
        "local-endpoint anchor is a key",
        lambda c: ["local-endpoint", "--trust-anchor", str(c.f["key"])],
        "holds a private key",
    ),
    Case(
        "local-endpoint anchor missing",
        lambda c: ["local-endpoint", "--trust-anchor", str(c.f["missing"])],
        "does not exist",
    ),
    Case(
        "local-endpoint port out of range",
        lambda c: ["local-endpoint", "--trust-anchor", str(c.pki.root_path), "--port", "70000"],
        "out of range",
        code=2,
    ),
    Case(
        "local-endpoint tls cert without key",
        lambda c: ["local-endpoint", "--trust-anchor", str(c.pki.root_path), "--tls-cert", str(c.f["cert"])],
        "go together",
        code=2,
    ),
    Case(
        "local-endpoint non-loopback host",
        lambda c: ["local-endpoint", "--trust-anchor", str(c.pki.root_path), "--host", "0.0.0.0"],
        "invalid choice",
        code=2,
    ),
    # --- serve and update (long-running modes: every refusal comes before listening/writing) ---
    Case("serve port 0", lambda c: c.mode("serve", "cert", "key", "--port", "0"), "--port 0 is out of range", 2),
    Case("serve hop limit 0", lambda c: c.mode("serve", "cert", "key", "--hop-limit", "0"), "out of range", 2),
    Case("serve bind not an IP", lambda c: c.mode("serve", "cert", "key", "--bind", "nope"), "not an IP address", 2),
    Case(
        "serve bind non-loopback without --allow-remote",
        lambda c: c.mode("serve", "cert", "key", "--bind", "192.0.2.1"),
        "not a loopback address",
        2,
    ),
    Case("serve expired cert", lambda c: c.mode("serve", "expired_cert", "expired_key"), "expired on"),
    Case("serve mismatched key", lambda c: c.mode("serve", "cert", "other_key"), "does not match certificate"),
    Case(
        "serve endpoint down at start (--exit-on-failure)",
        lambda c: c.mode("serve", "cert", "key", "--port", free_port(), "--exit-on-failure"),
        "refused",
    ),
    Case(
        "serve endpoint refuses at start (--exit-on-failure)",
        lambda c: c.mode(
            "serve",
            "cert",
            "key",
            "--port",
            free_port(),
            "--exit-on-failure",
            endpoint=c.scripted(aws_error(403, "AccessDeniedException", "Untrusted signing certificate")).url,
        ),
        "AccessDeniedException",
    ),
    Case(
        "serve container token file under a file",
        lambda c: c.mode("serve", "cert", "key", "--port", free_port(), "--container-token-file", "/etc/hostname/t"),
        "is not a directory",
    ),
    Case("update bad profile name", lambda c: c.mode("update", "cert", "key", "--profile", "a]b"), "profile name", 2),
    Case(
        "update credentials file is a directory",
        lambda c: c.mode("update", "cert", "key", "--once"),
        "is a directory",
        env={"AWS_SHARED_CREDENTIALS_FILE": "/tmp"},
    ),
    Case(
        "update credentials file under a file",
        lambda c: c.mode("update", "cert", "key", "--once"),
        "is not a directory",
        env={"AWS_SHARED_CREDENTIALS_FILE": "/etc/hostname/credentials"},
    ),
    Case("update key is a cert", lambda c: c.mode("update", "cert", "cert", "--once"), "holds a certificate"),
    Case(
        "update endpoint 404",
        lambda c: c.mode(
            "update",
            "cert",
            "key",
            "--once",
            endpoint=c.scripted(aws_error(404, "ResourceNotFoundException", "Profile not found")).url,
        ),
        "Profile not found",
    ),
    # --- generate-key, csr, doctor -----------------------------------------------------------------
    Case("generate-key nowhere to put it", lambda c: ["generate-key"], "say where to create the key", 2),
    Case(
        "generate-key output exists",
        lambda c: ["generate-key", "--output", str(c.f["key"])],
        "already exists; refusing to overwrite",
    ),
    Case(
        "generate-key unknown key type",
        lambda c: ["generate-key", "--key-type", "dsa", "--output", str(c.tmp / "k.pem")],
        "invalid choice",
        2,
    ),
    Case(
        "generate-key handle outside the owner range",
        lambda c: ["generate-key", "--tpm", "--persistent-handle", "0x1234"],
        "not an owner-hierarchy persistent handle",
        2,
    ),
    Case(
        "generate-key handle without --tpm",
        lambda c: ["generate-key", "--persistent-handle", "0x81000001", "--output", str(c.tmp / "k.pem")],
        "needs --tpm",
        2,
    ),
    Case(
        "generate-key with --certificate",
        lambda c: ["generate-key", "--certificate", str(c.f["cert"]), "--output", str(c.tmp / "k.pem")],
        "does not apply to generate-key",
        2,
    ),
    Case(
        "generate-key --encrypt without a terminal",
        lambda c: ["generate-key", "--encrypt", "--output", str(c.tmp / "k.pem")],
        "no terminal",
        within=45,
    ),
    Case("csr no key", lambda c: ["csr", "--subject", "CN=x"], "--private-key is required", 2),
    Case(
        "csr subject without =",
        lambda c: ["csr", "--private-key", str(c.f["key"]), "--subject", "CN"],
        "has no '='",
    ),
    Case(
        "csr unknown subject attribute",
        lambda c: ["csr", "--private-key", str(c.f["key"]), "--subject", "CN=a,XX=b"],
        "unknown attribute type 'XX'",
    ),
    Case(
        "csr key is a certificate",
        lambda c: ["csr", "--private-key", str(c.f["cert"]), "--subject", "CN=x"],
        "holds a certificate",
    ),
    Case(
        "csr output exists",
        lambda c: ["csr", "--private-key", str(c.f["key"]), "--subject", "CN=x", "--output", str(c.f["cert"])],
        "already exists",
        2,
    ),
    Case(
        "csr renewal with a mismatched key",
        lambda c: ["csr", "--certificate", str(c.f["cert"]), "--private-key", str(c.f["other_key"])],
        "does not match",
    ),
    Case("doctor with nothing to check", lambda c: ["doctor"], "nothing to check", 2),
    # --- PKCS#11 and TPM refusals (each backend's own tests cover them all; a few here) ----------
    Case(
        "pkcs11 URI with a broken escape",
        lambda c: ["credential-process", "--pkcs11-uri", "pkcs11:object=%zz", *ARN_ARGS],
        "malformed percent-encoding",
    ),
    Case(
        "pkcs11 URI with an unknown attribute",
        lambda c: ["credential-process", "--pkcs11-uri", "pkcs11:label=k", *ARN_ARGS],
        "unknown path attribute 'label'",
    ),
    Case(
        "pkcs11 URI with pin-value and pin-source",
        lambda c: ["credential-process", "--pkcs11-uri", "pkcs11:object=k?pin-value=1&pin-source=file:/p", *ARN_ARGS],
        "both pin-value and pin-source",
    ),
    Case(
        "pkcs11 module missing",
        lambda c: [
            "credential-process",
            "--pkcs11-uri",
            "pkcs11:object=k",
            "--pkcs11-lib",
            "/nonexistent/p11.so",
            *ARN_ARGS,
        ],
        "/nonexistent/p11.so (--pkcs11-lib) does not exist",
    ),
    Case(
        "pkcs11 token wrong PIN",
        lambda c: c.p11(f"pkcs11:token=mx;object=k?pin-source=file:{c.hsm['bad_pin']}"),
        "wrong PIN for token 'mx'",
        env_of=lambda c: {"SOFTHSM2_CONF": c.hsm["conf"]},
    ),
    Case(
        "pkcs11 token not present",
        lambda c: c.p11(f"pkcs11:token=nope;object=k?pin-source=file:{c.hsm['pin']}"),
        "no token matches",
        env_of=lambda c: {"SOFTHSM2_CONF": c.hsm["conf"]},
    ),
    Case(
        "pkcs11 token object not there",
        lambda c: c.p11(f"pkcs11:token=mx;object=missing?pin-source=file:{c.hsm['pin']}"),
        "missing",
        env_of=lambda c: {"SOFTHSM2_CONF": c.hsm["conf"]},
    ),
    Case(
        "pkcs11 token PIN needed, no terminal",
        lambda c: c.p11("pkcs11:token=mx;object=k"),
        "no terminal",
        env_of=lambda c: {"SOFTHSM2_CONF": c.hsm["conf"]},
        within=45,
    ),
    Case(
        "pkcs11 token PIN file missing",
        lambda c: c.p11("pkcs11:token=mx;object=k?pin-source=file:/nonexistent/pin"),
        "does not exist",
        env_of=lambda c: {"SOFTHSM2_CONF": c.hsm["conf"]},
    ),
    Case("tpm handle not hex", lambda c: c.cp("cert", "handle:0xZZ"), "not a hexadecimal number"),
    Case(
        "tpm simulator not running",
        lambda c: c.cp(
            "cert", "handle:0x81000001", "--no-tpm-key-password", "--tcti", f"swtpm:host=127.0.0.1,port={free_port()}"
        ),
        "cannot connect to the TPM simulator",
    ),
    Case(
        "tpm unknown TCTI",
        lambda c: c.cp("cert", "handle:0x81000001", "--no-tpm-key-password", "--tcti", "bogus:x"),
        "unknown TCTI 'bogus'",
    ),
    Case("tpm TSS2 file damaged", lambda c: c.cp("cert", "bad_tss2"), "is damaged"),
    Case("version with an argument", lambda c: ["version", "--frobnicate"], "unrecognized arguments", code=2),
    Case("unknown command", lambda c: ["sign-everything"], "invalid choice", code=2),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(ctx: Ctx, case: Case) -> None:
    args = case.args(ctx)
    env = {**(case.env or {}), **(case.env_of(ctx) if case.env_of else {})}
    # ``within`` is a hard bound (the run is killed and the case fails after it), generous on
    # purpose: it tells "ends by itself" from "hangs", not fast from slow
    proc = run_cli(args, env=env, input=case.stdin, timeout=case.within)
    assert_one_line_error(proc, case.phrase, case.code)


def test_matrix_covers_every_command() -> None:
    assert len(CASES) >= 40
    dummy_hsm = {"module": "/x.so", "conf": "/x", "pin": "/x", "bad_pin": "/x"}
    ctx = Ctx({}, None, ExitStack(), Path("/nonexistent"), dummy_hsm)  # type: ignore[arg-type]
    ctx.f = _AnyPath()  # type: ignore[assignment]
    ctx.pki = _AnyPki()  # type: ignore[assignment]
    used = set()
    for case in CASES:
        try:
            used.add(case.args(ctx)[0])
        except Exception:
            used.add("credential-process")
    assert {
        "credential-process",
        "sign-string",
        "read-certificate-data",
        "local-endpoint",
        "version",
        "serve",
        "update",
        "generate-key",
        "csr",
        "doctor",
    } <= used


class _AnyPath(dict):  # type: ignore[type-arg]
    def __getitem__(self, key: str) -> Path:
        return Path("/x") / key

    def get(self, key: str, default: object = None) -> Path:  # type: ignore[override]
        return Path("/x") / key


class _AnyPki:
    root_path = Path("/x/root.pem")


# ---------------------------------------------------------------------------------------------
# cases that do not fit one row


def test_key_in_use_port_for_local_endpoint(ctx: Ctx) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = run_cli(["local-endpoint", "--trust-anchor", str(ctx.pki.root_path), "--port", str(port)], timeout=20)
    assert_one_line_error(proc, f"cannot listen on 127.0.0.1:{port}", 2)


def test_encrypted_key_wrong_password_is_not_retried(ctx: Ctx) -> None:
    """A wrong password fails once and quickly; the endpoint is never contacted."""
    ep = ctx.endpoint()
    proc = run_cli(ctx.cp("cert", "enc_key", "--pkcs8-password", "wrong", endpoint=ep.url))
    assert_one_line_error(proc, "wrong password")
    assert ep.state.requests_seen == 0


def test_unreadable_key_as_an_unprivileged_user(ctx: Ctx) -> None:
    """Root reads any file, so the permission case runs as ``nobody`` via setpriv.

    The directory and the certificate are readable by everyone; only the key is 0600 root, so
    the message must name the key, proving it was the key's permissions that stopped us.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop to an unprivileged user")
    work = Path(tempfile.mkdtemp(prefix="rass-perm-", dir="/tmp"))
    try:
        work.chmod(0o755)
        cert = work / "leaf.crt"
        key = work / "leaf.key"
        shutil.copyfile(ctx.f["cert"], cert)
        shutil.copyfile(ctx.f["key"], key)
        cert.chmod(0o644)
        key.chmod(0o600)
        proc = run_cli_as_nobody(ctx.cp(str(cert), str(key)))
        assert_one_line_error(proc, f"{key} is not readable by this user")
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize(
    "first",
    [
        aws_error(429, "ThrottlingException", "Rate exceeded", delay=1.1),
        aws_error(500, "InternalServerException", "oops", delay=1.1),
        aws_error(503, "ServiceUnavailableException", "busy", delay=1.1),
        dataclasses.replace(html_page(502), delay=1.1),
    ],
    ids=["429", "500", "503", "502-html"],
)
def test_retried_then_success_and_signed_again(ctx: Ctx, first: Reply) -> None:
    """A throttled or failed attempt is retried with a fresh X-Amz-Date and a new signature.

    RSA PKCS#1 v1.5 signatures are deterministic, so an unchanged ``Authorization`` would mean a
    replayed request; the one-second delay on the failure guarantees the next date differs. The
    last attempt is forwarded to the verifying endpoint, which accepts only a valid signature.
    """
    leaf = ctx.pki.leaf("rsa2048")
    cert, key = ctx.pki.leaf_files("retry-rsa", leaf)
    srv = ctx.scripted(first, FORWARD, forward=True)
    proc = run_cli(ctx.cp(str(cert), str(key), endpoint=srv.url))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert '"AccessKeyId":"ASIA' in proc.stdout  # compact, as aws_signing_helper prints it
    seen = srv.seen
    assert len(seen) == 2
    dates = [s.headers["x-amz-date"] for s in seen]
    auths = [s.headers["authorization"] for s in seen]
    assert dates[0] != dates[1]
    assert auths[0] != auths[1]
    upstream = ctx.servers[0]
    assert isinstance(upstream, LocalEndpoint)
    assert upstream.state.sessions_created == 1


def test_never_answering_endpoint_is_bounded_by_timeout(ctx: Ctx) -> None:
    """With --timeout 1 every attempt gives up after a second; total time stays bounded."""
    srv = ctx.hang()
    started = time.monotonic()
    proc = run_cli(ctx.cp("cert", "key", "--timeout", "1", endpoint=srv.url), timeout=60)
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, "did not answer within 1s")
    assert elapsed >= 1.0  # it really waited for the timeout, then gave up by itself
    assert 1 <= srv.accepted <= 4  # bounded attempts, each bounded by --timeout
