"""`doctor`: one failing test per check (the detail names the cause), warnings, and an all-pass run."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from rolesanywhere_signer.doctor import DoctorOptions, render_table, run_checks
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions
from support.pki import PKI, Issued, issue, name, new_key, now, weak_hash_chain
from support.util import ARN_ARGS, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN, assert_one_line_error, free_port, run_cli


def server_cert(pki: PKI) -> Issued:
    """A TLS server certificate for 127.0.0.1 from the test root."""
    key = new_key("ec-p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(pki.root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=5))
        .not_valid_after(now() + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(pki.root.key, hashes.SHA256())
    )
    return Issued(cert, key)


@pytest.fixture(scope="module")
def tls_endpoint(pki: PKI) -> Iterator[LocalEndpoint]:
    srv = server_cert(pki)
    cert = pki.write("tls-server.crt", srv.pem)
    key = pki.write("tls-server.key", srv.key_pem())
    ep = LocalEndpoint([pki.root.cert], tls=(str(cert), str(key))).start()
    try:
        yield ep
    finally:
        ep.stop()


def doctor(*args: object, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, str]]]:
    proc = run_cli(["doctor", "--json", *map(str, args)], env=env)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] == (proc.returncode == 0)
    assert doc["ok"] == all(c["status"] != "fail" for c in checks.values())
    return proc.returncode, checks


def leaf_args(pki: PKI, stem: str, leaf: Issued, *extra: object) -> list[object]:
    cert, key = pki.leaf_files(stem, leaf)
    return ["--certificate", cert, "--private-key", key, *extra]


def assert_fails(checks: dict[str, dict[str, str]], check: str, phrase: str) -> None:
    assert check in checks, list(checks)
    assert checks[check]["status"] == "fail", checks[check]
    assert phrase.lower() in checks[check]["detail"].lower(), checks[check]
    # only the checks about this cause fail
    assert [n for n, c in checks.items() if c["status"] == "fail"] == [check], checks


# --- the all-pass run -------------------------------------------------------------------------------


def test_everything_passes_table_and_json(pki: PKI, tls_endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf("ec-p256", via_intermediate=True, cn="doctor-ok")
    args = [
        *leaf_args(pki, "ok", leaf),
        "--intermediates",
        pki.intermediates_path,
        "--trust-anchor-certificate",
        pki.root_path,
        *ARN_ARGS,
        "--check-endpoint",
        "--endpoint",
        tls_endpoint.url,
    ]
    env = {"AWS_CA_BUNDLE": str(pki.root_path)}
    rc, checks = doctor(*args, env=env)
    assert rc == 0
    assert {n: c["status"] for n, c in checks.items()} == dict.fromkeys(
        [
            "certificate",
            "validity",
            "ca-false",
            "key-usage",
            "signature-hash",
            "key-match",
            "chain",
            "trust-anchor",
            "arns",
            "region",
            "session-duration",
            "renewal",
            "endpoint-dns",
            "endpoint-tls",
            "clock-skew",
        ],
        "pass",
    )
    assert "TLS handshake with 127.0.0.1" in checks["endpoint-tls"]["detail"]
    assert "1 intermediate(s)" in checks["chain"]["detail"]
    table = run_cli(["doctor", *map(str, args)], env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert all(ln.startswith("PASS ") for ln in lines[1:-1])
    assert lines[-1] == "checks: 15 pass, 0 warn, 0 fail"
    assert endpoint_sessions(tls_endpoint) == 0  # doctor never calls CreateSession


def endpoint_sessions(ep: LocalEndpoint) -> int:
    return ep.state.sessions_created


def test_rsa_key_and_certificate_only(pki: PKI) -> None:
    rc, checks = doctor(*leaf_args(pki, "rsa-only", pki.leaf("rsa2048")))
    assert rc == 0
    assert "RSA 2048 key" in checks["key-match"]["detail"]
    assert "arns" not in checks and "trust-anchor" not in checks


def test_key_alone_before_the_certificate_exists(tmp_path: Path) -> None:
    key = tmp_path / "fresh.key"
    assert run_cli(["generate-key", "--output", key]).returncode == 0
    rc, checks = doctor("--private-key", key)
    assert rc == 0
    assert checks["certificate"]["status"] == "warn"
    assert checks["key"]["status"] == "pass"


# --- one failing test per check ----------------------------------------------------------------


def test_certificate_missing_or_garbage(pki: PKI, tmp_path: Path) -> None:
    key = pki.leaf_files("garbage", pki.leaf())[1]
    rc, checks = doctor("--certificate", tmp_path / "nope.pem", "--private-key", key)
    assert rc == 1
    assert checks["certificate"]["status"] == "fail" and "does not exist" in checks["certificate"]["detail"]
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x01\x02 not a certificate")
    rc, checks = doctor("--certificate", junk, "--private-key", key)
    assert checks["certificate"]["status"] == "fail"
    assert "neither a PEM nor a DER certificate" in checks["certificate"]["detail"]


def test_certificate_v1(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.leaf()
    (tmp_path / "ca.key").write_bytes(pki.root.key_pem())
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem())
    env = {"OPENSSL_CONF": "/dev/null", "PATH": "/usr/bin:/bin"}
    csr = subprocess.run(
        ["openssl", "req", "-new", "-key", tmp_path / "leaf.key", "-subj", "/CN=v1 leaf"],
        capture_output=True,
        check=True,
        env=env,
    ).stdout
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-CA",
            pki.root_path,
            "-CAkey",
            tmp_path / "ca.key",
            "-days",
            "5",
            "-set_serial",
            "7",
            "-out",
            tmp_path / "v1.pem",
        ],
        input=csr,
        capture_output=True,
        check=True,
        env=env,
    )
    assert x509.load_pem_x509_certificate((tmp_path / "v1.pem").read_bytes()).version == x509.Version.v1
    rc, checks = doctor("--certificate", tmp_path / "v1.pem", "--private-key", tmp_path / "leaf.key")
    assert rc == 1
    assert checks["certificate"]["status"] == "fail" and "needs v3" in checks["certificate"]["detail"]
    assert checks["key-usage"]["status"] == "fail"  # a v1 certificate has no extensions at all


def test_expired(pki: PKI) -> None:
    leaf = pki.leaf(not_before=now() - dt.timedelta(days=40), days=30)
    assert_fails(doctor(*leaf_args(pki, "expired", leaf))[1], "validity", "expired on")


def test_not_yet_valid(pki: PKI) -> None:
    leaf = pki.leaf(not_before=now() + dt.timedelta(days=1))
    assert_fails(doctor(*leaf_args(pki, "future", leaf))[1], "validity", "not valid until")


def test_ca_true(pki: PKI) -> None:
    leaf = pki.leaf(ca=True)
    assert_fails(doctor(*leaf_args(pki, "ca", leaf))[1], "ca-false", "CA=true")


def test_key_usage_without_digital_signature(pki: PKI) -> None:
    leaf = pki.leaf(digital_signature=False)
    assert_fails(doctor(*leaf_args(pki, "noku", leaf))[1], "key-usage", "lacks digitalSignature")


def test_no_key_usage_extension(pki: PKI) -> None:
    leaf = pki.leaf(extensions=False)
    assert_fails(doctor(*leaf_args(pki, "noext", leaf))[1], "key-usage", "no keyUsage extension")


@pytest.mark.parametrize("digest", ["sha1", "md5"])
def test_weak_signature_hash(tmp_path: Path, digest: str) -> None:
    _ca, _leaf = weak_hash_chain(tmp_path / digest, digest)
    _rc, checks = doctor(
        "--certificate", tmp_path / digest / "leaf.pem", "--private-key", tmp_path / digest / "leaf.key"
    )
    assert_fails(checks, "signature-hash", f"signed with {digest.upper()}")


def test_key_does_not_match(pki: PKI) -> None:
    cert, _ = pki.leaf_files("mismatch-a", pki.leaf())
    _, other_key = pki.leaf_files("mismatch-b", pki.leaf())
    assert_fails(doctor("--certificate", cert, "--private-key", other_key)[1], "key-match", "does not belong")


def test_no_private_key(pki: PKI) -> None:
    cert, _ = pki.leaf_files("nokey", pki.leaf())
    assert_fails(doctor("--certificate", cert)[1], "key-match", "no --private-key given")


def test_encrypted_key_with_wrong_password(pki: PKI) -> None:
    leaf = pki.leaf()
    cert = pki.write("enc.crt", leaf.pem)
    key = pki.write("enc.key", leaf.key_pem(password=b"right"))
    rc, checks = doctor(
        "--certificate", cert, "--private-key", key, env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "wrong"}
    )
    assert_fails(checks, "key-match", "wrong password")
    rc, checks = doctor(
        "--certificate", cert, "--private-key", key, env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "right"}
    )
    assert rc == 0


def _ca_chain(pki: PKI, depth: int) -> list[Issued]:
    """root -> ca1 -> ... -> ca{depth}; returned nearest-the-leaf first."""
    cas: list[Issued] = []
    parent = pki.root
    for i in range(depth):
        parent = issue(f"Chain CA {i + 1}", issuer=parent, ca=True, days=60)
        cas.append(parent)
    return list(reversed(cas))


def test_chain_out_of_order(pki: PKI) -> None:
    cas = _ca_chain(pki, 2)
    leaf = issue("ordered leaf", issuer=cas[0])
    bundle = pki.write("reversed.pem", b"".join(c.pem for c in reversed(cas)))
    rc, checks = doctor(*leaf_args(pki, "order", leaf), "--intermediates", bundle)
    assert_fails(checks, "chain", "did not issue")
    assert "nearest issuer first" in checks["chain"]["detail"]
    good = pki.write("ordered.pem", b"".join(c.pem for c in cas))
    rc, checks = doctor(
        *leaf_args(pki, "order", leaf), "--intermediates", good, "--trust-anchor-certificate", pki.root_path
    )
    assert rc == 0


def test_chain_with_unrelated_certificate(pki: PKI) -> None:
    leaf = pki.leaf(via_intermediate=True)
    stranger = issue("Stranger CA", ca=True)
    bundle = pki.write("stranger.pem", stranger.pem)
    assert_fails(doctor(*leaf_args(pki, "stranger", leaf), "--intermediates", bundle)[1], "chain", "did not issue")


def test_chain_too_deep(pki: PKI) -> None:
    cas = _ca_chain(pki, 6)
    leaf = issue("deep leaf", issuer=cas[0])
    bundle = pki.write("deep.pem", b"".join(c.pem for c in cas))
    assert_fails(doctor(*leaf_args(pki, "deep", leaf), "--intermediates", bundle)[1], "chain", "at most 5")


def test_intermediate_that_is_not_a_ca(pki: PKI) -> None:
    not_ca = issue("Not a CA", issuer=pki.root)
    leaf = issue("child of a non-CA", issuer=not_ca)
    bundle = pki.write("notca.pem", not_ca.pem)
    assert_fails(doctor(*leaf_args(pki, "notca", leaf), "--intermediates", bundle)[1], "chain", "is not a CA")


def test_trust_anchor_is_another_ca(pki: PKI) -> None:
    other = pki.write("other-root.pem", issue("Other Root", ca=True).pem)
    _rc, checks = doctor(*leaf_args(pki, "other", pki.leaf()), "--trust-anchor-certificate", other)
    assert_fails(checks, "trust-anchor", "does not reach CN=Other Root")


def test_trust_anchor_but_intermediates_missing(pki: PKI) -> None:
    leaf = pki.leaf(via_intermediate=True)
    _rc, checks = doctor(*leaf_args(pki, "missing-int", leaf), "--trust-anchor-certificate", pki.root_path)
    assert_fails(checks, "trust-anchor", "neither in --intermediates nor the trust anchor")
    assert "Test Intermediate CA" in checks["trust-anchor"]["detail"]


def test_trust_anchor_file_missing(pki: PKI, tmp_path: Path) -> None:
    _rc, checks = doctor(*leaf_args(pki, "ta-missing", pki.leaf()), "--trust-anchor-certificate", tmp_path / "no.pem")
    assert_fails(checks, "trust-anchor", "does not exist")


def test_trust_anchor_that_is_not_a_ca(pki: PKI) -> None:
    not_ca = issue("Leafy Anchor", issuer=pki.root)
    leaf = issue("under a leafy anchor", issuer=not_ca)
    anchor = pki.write("leafy-anchor.pem", not_ca.pem)
    _rc, checks = doctor(*leaf_args(pki, "leafy", leaf), "--trust-anchor-certificate", anchor)
    assert_fails(checks, "trust-anchor", "the trust anchor is not a CA")


@pytest.mark.parametrize(
    ("arns", "check", "phrase"),
    [
        (
            ["--trust-anchor-arn", "nonsense", "--profile-arn", PROFILE_ARN, "--role-arn", ROLE_ARN],
            "arns",
            "--trust-anchor-arn 'nonsense' is not an ARN",
        ),
        (["--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN], "arns", "--role-arn is missing"),
        (
            ["--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN, "--role-arn", PROFILE_ARN],
            "arns",
            "it must be a iam ARN",
        ),
        (
            [
                "--trust-anchor-arn",
                TRUST_ANCHOR_ARN,
                "--profile-arn",
                PROFILE_ARN.replace("us-east-2", "eu-west-1"),
                "--role-arn",
                ROLE_ARN,
            ],
            "region",
            "trust anchor is in us-east-2 but the profile is in eu-west-1",
        ),
    ],
)
def test_arns(pki: PKI, arns: list[str], check: str, phrase: str) -> None:
    assert_fails(doctor(*leaf_args(pki, "arns", pki.leaf()), *arns)[1], check, phrase)


@pytest.mark.parametrize("seconds", ["100", "899", "43201"])
def test_session_duration_out_of_range(pki: PKI, seconds: str) -> None:
    _rc, checks = doctor(*leaf_args(pki, "dur", pki.leaf()), "--session-duration", seconds)
    assert_fails(checks, "session-duration", "outside 900..43200")


def test_region_and_role_session_name(pki: PKI) -> None:
    _rc, checks = doctor(*leaf_args(pki, "region", pki.leaf()), "--region", "Mars-1")
    assert_fails(checks, "region", "'Mars-1' is not a region name")
    _rc, checks = doctor(*leaf_args(pki, "rsn", pki.leaf()), "--role-session-name", "bad name!")
    assert_fails(checks, "role-session-name", "'bad name!' is invalid")
    rc, checks = doctor(*leaf_args(pki, "rsn", pki.leaf()), "--role-session-name", "web-01@example")
    assert rc == 0 and checks["role-session-name"]["status"] == "pass"


def test_endpoint_tls_not_trusted(pki: PKI, tls_endpoint: LocalEndpoint) -> None:
    _rc, checks = doctor(*leaf_args(pki, "untrusted", pki.leaf()), "--check-endpoint", "--endpoint", tls_endpoint.url)
    assert_fails(checks, "endpoint-tls", "not trusted")
    assert "AWS_CA_BUNDLE" in checks["endpoint-tls"]["detail"]


def test_endpoint_does_not_resolve(pki: PKI) -> None:
    _rc, checks = doctor(
        *leaf_args(pki, "dns", pki.leaf()),
        "--check-endpoint",
        "--endpoint",
        "https://rolesanywhere.does-not-exist.invalid",
    )
    assert_fails(checks, "endpoint-dns", "does not resolve")


def test_endpoint_refuses_connections(pki: PKI) -> None:
    _rc, checks = doctor(
        *leaf_args(pki, "refused", pki.leaf()), "--check-endpoint", "--endpoint", f"https://127.0.0.1:{free_port()}"
    )
    assert_fails(checks, "endpoint-tls", "cannot connect to 127.0.0.1")


def test_endpoint_that_does_not_speak_tls(pki: PKI, endpoint: LocalEndpoint) -> None:
    url = endpoint.url.replace("http://", "https://")
    _rc, checks = doctor(*leaf_args(pki, "plain", pki.leaf()), "--check-endpoint", "--endpoint", url)
    assert_fails(checks, "endpoint-tls", "TLS handshake with 127.0.0.1")


def test_endpoint_unknown(pki: PKI) -> None:
    _rc, checks = doctor(*leaf_args(pki, "noep", pki.leaf()), "--check-endpoint")
    assert_fails(checks, "endpoint", "cannot tell which endpoint")


def _in_process(pki: PKI, ep: LocalEndpoint, offset: dt.timedelta) -> dict[str, Any]:
    leaf = pki.leaf()
    cert, key = pki.leaf_files("skew", leaf)
    opts = DoctorOptions(
        IdentityOptions(certificate=str(cert), private_key=str(key)),
        endpoint=ep.url,
        verify=str(pki.root_path),
        check_endpoint=True,
    )
    checks = run_checks(opts, clock=lambda: dt.datetime.now(dt.timezone.utc) + offset)
    assert render_table(checks).splitlines()[-1].startswith("checks: ")
    return {c.name: c for c in checks}


def test_clock_skew_fails_beyond_five_minutes(pki: PKI, tls_endpoint: LocalEndpoint) -> None:
    checks = _in_process(pki, tls_endpoint, dt.timedelta(minutes=7))
    assert checks["clock-skew"].status == "fail"
    assert "ahead of 127.0.0.1" in checks["clock-skew"].detail
    behind = _in_process(pki, tls_endpoint, -dt.timedelta(minutes=9))["clock-skew"]
    assert behind.status == "fail" and "behind 127.0.0.1" in behind.detail


def test_clock_skew_warns_over_a_minute(pki: PKI, tls_endpoint: LocalEndpoint) -> None:
    checks = _in_process(pki, tls_endpoint, dt.timedelta(minutes=2))
    assert checks["clock-skew"].status == "warn" and "close to the 5 minute limit" in checks["clock-skew"].detail
    assert checks["endpoint-tls"].status == "pass"


# --- warnings (exit 0) -------------------------------------------------------------------------------


def test_warnings_do_not_fail(pki: PKI, endpoint: LocalEndpoint) -> None:
    near = pki.leaf(not_before=now() - dt.timedelta(days=25), days=30)
    rc, checks = doctor(
        *leaf_args(pki, "near", near),
        "--session-duration",
        "7200",
        *ARN_ARGS,
        "--region",
        "eu-west-1",
        "--check-endpoint",
        "--endpoint",
        endpoint.url,
    )
    assert rc == 0
    assert checks["validity"]["status"] == "warn" and "renew it soon" in checks["validity"]["detail"]
    assert checks["session-duration"]["status"] == "warn"
    assert checks["region"]["status"] == "warn"
    assert checks["endpoint-tls"]["status"] == "warn" and "plain http" in checks["endpoint-tls"]["detail"]
    assert checks["clock-skew"]["status"] == "pass"


def test_validity_warns_under_twenty_percent_of_a_long_life(pki: PKI) -> None:
    leaf = pki.leaf(not_before=now() - dt.timedelta(days=300), days=365)  # 65 days left of 365
    rc, checks = doctor(*leaf_args(pki, "long", leaf))
    assert rc == 0 and checks["validity"]["status"] == "warn"


def test_no_verify_ssl_is_a_warning(pki: PKI, tls_endpoint: LocalEndpoint) -> None:
    rc, checks = doctor(
        *leaf_args(pki, "noverify", pki.leaf()), "--check-endpoint", "--no-verify-ssl", "--endpoint", tls_endpoint.url
    )
    assert rc == 0
    assert checks["endpoint-tls"]["status"] == "warn" and "NOT verified" in checks["endpoint-tls"]["detail"]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase", "code"),
    [
        ([], "nothing to check", 2),
        (["--certificate", "c.pem", "--session-duration", "abc"], "invalid int value", 2),
        (["--certificate", "c.pem", "--timeout", "0"], "must be between 0 and 600", 2),
        (["--certificate", "c.pem", "--trust-anchor-certificate"], "expected one argument", 2),
        (["--certificate", "c.pem", "--json=yes"], "ignored explicit argument", 2),
        (["--certificate", "c.pem", "--check-endpoint=1"], "ignored explicit argument", 2),
    ],
)
def test_bad_input(args: list[str], phrase: str, code: int) -> None:
    assert_one_line_error(run_cli(["doctor", *args]), phrase, code=code)
