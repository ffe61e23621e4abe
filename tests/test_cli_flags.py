"""Every credential-process flag, given badly: one clear line on stderr, nothing on stdout, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.util import (
    PROFILE_ARN,
    ROLE_ARN,
    TRUST_ANCHOR_ARN,
    assert_one_line_error,
    free_port,
    run_cli,
)


@pytest.fixture(scope="module")
def files(pki: PKI) -> dict[str, Path]:
    leaf = pki.leaf()
    cert, key = pki.leaf_files("flags", leaf)
    d = pki.base / "flags-dir"
    d.mkdir(exist_ok=True)
    return {"cert": cert, "key": key, "dir": d, "missing": pki.base / "nope.pem"}


def base(files: dict[str, Path], **over: object) -> list[str]:
    opts: dict[str, object] = {
        "--certificate": files["cert"],
        "--private-key": files["key"],
        "--trust-anchor-arn": TRUST_ANCHOR_ARN,
        "--profile-arn": PROFILE_ARN,
        "--role-arn": ROLE_ARN,
        "--endpoint": f"http://127.0.0.1:{free_port()}",
    }
    for k, v in over.items():
        flag = "--" + k.replace("_", "-")
        if v is None:
            opts.pop(flag, None)
        else:
            opts[flag] = v
    args = ["credential-process"]
    for k, v in opts.items():
        args += [k] if v is True else [k, str(v)]
    return args


CASES: list[tuple[str, dict[str, object], str, int]] = [
    ("certificate missing flag", {"certificate": None}, "--certificate is required", 2),
    ("certificate missing file", {"certificate": "MISSING"}, "does not exist", 1),
    ("certificate is a directory", {"certificate": "DIR"}, "is a directory", 1),
    ("certificate is the key", {"certificate": "KEY"}, "holds a private key", 1),
    ("private-key missing file", {"private_key": "MISSING"}, "does not exist", 1),
    ("private-key is the cert", {"private_key": "CERT"}, "holds a certificate, not a private key", 1),
    ("private-key is a directory", {"private_key": "DIR"}, "is a directory", 1),
    ("intermediates missing", {"intermediates": "MISSING"}, "does not exist", 1),
    ("intermediates unrelated", {"intermediates": "CERT"}, "did not issue", 1),
    ("trust-anchor-arn missing", {"trust_anchor_arn": None}, "--trust-anchor-arn", 2),
    ("trust-anchor-arn malformed", {"trust_anchor_arn": "not-an-arn"}, "is not an ARN", 1),
    (
        "trust-anchor-arn wrong service",
        {"trust_anchor_arn": TRUST_ANCHOR_ARN.replace("rolesanywhere", "iam", 1)},
        "must be a rolesanywhere ARN",
        1,
    ),
    ("trust-anchor-arn is a profile", {"trust_anchor_arn": PROFILE_ARN}, "must name a trust-anchor", 1),
    (
        "profile-arn other region",
        {"profile_arn": PROFILE_ARN.replace("us-east-2", "eu-west-1")},
        "but the profile is in eu-west-1",
        1,
    ),
    ("profile-arn missing", {"profile_arn": None}, "--profile-arn", 2),
    ("role-arn wrong service", {"role_arn": ROLE_ARN.replace(":iam:", ":sts:")}, "must be a iam ARN", 1),
    ("role-arn missing", {"role_arn": None}, "--role-arn", 2),
    ("session-duration not a number", {"session_duration": "1h"}, "invalid int value", 2),
    ("session-duration too short", {"session_duration": 899}, "out of range", 2),
    ("session-duration too long", {"session_duration": 43201}, "out of range", 2),
    ("role-session-name too short", {"role_session_name": "x"}, "--role-session-name", 2),
    ("role-session-name bad chars", {"role_session_name": "a b/c"}, "--role-session-name", 2),
    ("region malformed", {"region": "Mars"}, "is not a region name", 2),
    ("endpoint bad scheme", {"endpoint": "ftp://127.0.0.1/"}, "has scheme 'ftp'", 2),
    ("endpoint no host", {"endpoint": "http://"}, "has no host", 2),
    ("endpoint bad port", {"endpoint": "http://127.0.0.1:99999"}, "not a valid URL", 2),
    ("endpoint closed port", {}, "connection refused", 1),
    ("timeout negative", {"timeout": "-1"}, "--timeout", 2),
    ("unknown flag", {"frobnicate": "1"}, "unrecognized arguments", 2),
]


@pytest.mark.parametrize(("over", "phrase", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_flag(files: dict[str, Path], over: dict[str, object], phrase: str, code: int) -> None:
    subst = {"MISSING": files["missing"], "DIR": files["dir"], "KEY": files["key"], "CERT": files["cert"]}
    resolved = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in over.items()}
    assert_one_line_error(run_cli(base(files, **resolved), timeout=60), phrase, code)


def test_no_command_and_unknown_command() -> None:
    proc = run_cli([])
    assert proc.returncode == 2 and proc.stdout == "" and "COMMAND" in proc.stderr
    assert_one_line_error(run_cli(["frobnicate"]), "invalid choice", 2)


def test_ca_bundle_that_does_not_exist(files: dict[str, Path], pki: PKI) -> None:
    with LocalEndpoint([pki.root.cert]) as ep:
        proc = run_cli(
            base(files, endpoint=ep.url.replace("http:", "https:")), env={"AWS_CA_BUNDLE": str(files["missing"])}
        )
    assert_one_line_error(proc, "AWS_CA_BUNDLE")


def test_endpoint_from_environment(files: dict[str, Path], pki: PKI) -> None:
    with LocalEndpoint([pki.root.cert]) as ep:
        for var in ("AWS_ENDPOINT_URL_ROLESANYWHERE", "AWS_ENDPOINT_URL"):
            proc = run_cli(base(files, endpoint=None), env={var: ep.url})
            assert proc.returncode == 0, proc.stderr
        assert ep.state.sessions_created == 2


def test_debug_shows_traceback_only_with_debug(files: dict[str, Path]) -> None:
    args = base(files, certificate=str(files["missing"]))
    assert "Traceback" not in run_cli(args).stderr
    assert "Traceback" in run_cli([*args, "--debug"]).stderr


@pytest.mark.parametrize("flag", ["--cert-selector", "--system-store-name", "--use-latest-expiring-certificate"])
def test_certificate_store_flags_are_refused_clearly(files: dict[str, Path], flag: str) -> None:
    args = [*base(files), flag] + (["Key=x509Subject,Value=CN=x"] if flag == "--cert-selector" else [])
    assert_one_line_error(run_cli(args), "Windows/macOS certificate stores")
