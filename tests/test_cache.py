"""``credential-process --cache``: hits without key, network or heavy imports; bad files never trusted."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rolesanywhere_signer.cache import cache_key, cache_margin, cache_path
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from support.pki import PKI
from support.util import ARN_ARGS, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN, clean_env, run_cli


@pytest.fixture
def files(pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    leaf = pki.leaf()
    cert, key = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    return cert, key


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    d = tmp_path / "run-user"
    d.mkdir(mode=0o700)
    return d


def args(files: tuple[Path, Path], url: str, *extra: str) -> list[str]:
    return [
        "credential-process",
        "--cache",
        "--certificate",
        str(files[0]),
        "--private-key",
        str(files[1]),
        *ARN_ARGS,
        "--endpoint",
        url,
        *extra,
    ]


def run(files: tuple[Path, Path], url: str, runtime: Path, *extra: str) -> dict[str, object]:
    proc = run_cli(args(files, url, *extra), env={"XDG_RUNTIME_DIR": str(runtime)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def the_cache_file(runtime: Path) -> Path:
    found = list((runtime / "rolesanywhere-signer").glob("*.json"))
    assert len(found) == 1, found
    return found[0]


def test_miss_then_hit(files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path) -> None:
    miss = run_cli(args(files, endpoint.url), env={"XDG_RUNTIME_DIR": str(runtime)})
    hit = run_cli(args(files, endpoint.url), env={"XDG_RUNTIME_DIR": str(runtime)})
    assert hit.stdout == miss.stdout and hit.stderr == miss.stderr == ""  # byte for byte
    first = run(files, endpoint.url, runtime)
    assert first["Version"] == 1 and set(first) == {
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    }
    assert run(files, endpoint.url, runtime) == first
    assert endpoint.state.sessions_created == 1
    f = the_cache_file(runtime)
    assert f.stat().st_mode & 0o777 == 0o600
    assert f.parent.stat().st_mode & 0o777 == 0o700


def test_hit_without_key_network_or_heavy_imports(
    files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path
) -> None:
    first = run(files, endpoint.url, runtime)
    endpoint.stop()  # no network
    files[1].unlink()  # no key (a YubiKey would need no PIN or touch)
    probe = (
        "import json, sys\n"
        "from rolesanywhere_signer.cli import main\n"
        f"rc = main({args(files, endpoint.url)!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cryptography', 'requests', 'urllib3', 'botocore', 'pkcs11', 'tpm2_pytss', 'argparse', 'logging', "
        "'dataclasses', '_hashlib', 'rolesanywhere_signer.options', 'rolesanywhere_signer.credentials'))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env=clean_env({"XDG_RUNTIME_DIR": str(runtime)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # the credentials carry no newline (as aws_signing_helper prints them); the probe's report follows
    printed, end = json.JSONDecoder().raw_decode(proc.stdout)
    report = proc.stdout[end:]
    assert printed == first
    assert json.loads(report) == {"rc": 0, "heavy": []}


def test_corrupt_file_is_replaced(files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path) -> None:
    run(files, endpoint.url, runtime)
    f = the_cache_file(runtime)
    for garbage in (b"{not json", b"[]", b'{"format": "rolesanywhere-signer-cache/1"}', b"\x00\xff" * 10):
        f.write_bytes(garbage)
        run(files, endpoint.url, runtime)
        assert json.loads(f.read_bytes())["format"] == "rolesanywhere-signer-cache/1"
    assert endpoint.state.sessions_created == 5


def test_foreign_or_loose_file_is_not_trusted(files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path) -> None:
    run(files, endpoint.url, runtime)
    f = the_cache_file(runtime)
    doc = json.loads(f.read_bytes())
    # a planted file (readable by others) with attacker credentials
    doc["credentials"]["AccessKeyId"] = "ASIAPLANTED"
    f.write_text(json.dumps(doc))
    f.chmod(0o644)
    out = run(files, endpoint.url, runtime)
    assert out["AccessKeyId"] != "ASIAPLANTED"
    assert f.stat().st_mode & 0o777 == 0o600
    # a private file written for another identity (wrong key inside)
    doc["key"] = "0" * 64
    f.write_text(json.dumps(doc))
    f.chmod(0o600)
    assert run(files, endpoint.url, runtime)["AccessKeyId"] != "ASIAPLANTED"
    # a file owned by someone else
    doc = json.loads(f.read_bytes())
    os.chown(f, 12345, 12345)
    assert run(files, endpoint.url, runtime)["AccessKeyId"] != doc["credentials"]["AccessKeyId"]
    assert f.stat().st_uid == os.geteuid()
    assert endpoint.state.sessions_created == 4


def test_planted_symlink_is_not_followed(
    files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path, tmp_path: Path
) -> None:
    run(files, endpoint.url, runtime)
    f = the_cache_file(runtime)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    f.unlink()
    f.symlink_to(victim)
    run(files, endpoint.url, runtime)
    assert victim.read_text() == "precious"
    assert not f.is_symlink() and f.stat().st_mode & 0o777 == 0o600


def test_nearly_expired_entry_is_a_miss(files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path) -> None:
    run(files, endpoint.url, runtime, "--session-duration", "3600")
    f = the_cache_file(runtime)
    doc = json.loads(f.read_bytes())
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=cache_margin(3600) - 30)
    doc["credentials"]["Expiration"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    f.write_text(json.dumps(doc))
    run(files, endpoint.url, runtime, "--session-duration", "3600")
    assert endpoint.state.sessions_created == 2
    assert cache_margin(3600) == 960 and cache_margin(900) == 450


def test_key_covers_the_request(files: tuple[Path, Path], endpoint: LocalEndpoint, runtime: Path) -> None:
    run(files, endpoint.url, runtime)
    run(files, endpoint.url, runtime, "--session-duration", "1800")
    run(files, endpoint.url, runtime, "--role-session-name", "other")
    assert endpoint.state.sessions_created == 3
    assert len(list((runtime / "rolesanywhere-signer").glob("*.json"))) == 3


def test_key_changes_with_the_certificate(files: tuple[Path, Path], pki: PKI) -> None:
    ident = IdentityOptions(certificate=str(files[0]), private_key=str(files[1]))
    req = RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN)
    env: dict[str, str] = {}
    before = cache_key(ident, req, env)
    assert before == cache_key(ident, req, env)
    files[0].write_bytes(pki.leaf(cn="renewed").pem)
    assert cache_key(ident, req, env) != before
    assert cache_key(IdentityOptions(pkcs11_uri="pkcs11:token=a;object=b"), req, env) != cache_key(
        IdentityOptions(pkcs11_uri="pkcs11:token=a;object=c"), req, env
    )
    assert cache_path(before, {"XDG_RUNTIME_DIR": "/nonexistent"}).startswith(os.path.expanduser("~/.cache/"))


def test_home_cache_without_runtime_dir(files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = run_cli(args(files, endpoint.url), env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    d = home / ".cache" / "rolesanywhere-signer"
    assert d.stat().st_mode & 0o777 == 0o700
    assert len(list(d.glob("*.json"))) == 1


def test_fast_path_agrees_with_the_full_path(files: tuple[Path, Path]) -> None:
    from rolesanywhere_signer.cache import _key, _parse_plain

    argv = args(files, "http://127.0.0.1:9", "--session-duration", "1800", "--role-session-name", "me")
    values = _parse_plain(argv)
    assert values is not None
    ident = IdentityOptions(certificate=str(files[0]), private_key=str(files[1]))
    req = RequestOptions(
        TRUST_ANCHOR_ARN,
        PROFILE_ARN,
        ROLE_ARN,
        session_duration=1800,
        role_session_name="me",
        endpoint="http://127.0.0.1:9",
    )
    assert _key(values, {}) == cache_key(ident, req, {})
    no_verify = _parse_plain([*argv, "--no-verify-ssl"])
    assert no_verify is not None
    assert _key(no_verify, {}) == cache_key(ident, RequestOptions(**{**req.__dict__, "verify": False}), {})


@pytest.mark.parametrize(
    "extra",
    [
        ["--debug"],
        ["--cert", "x"],  # an abbreviation argparse would accept
        ["--region=us-east-2"],
        ["--cache"],  # repeated
        ["--pkcs8-password", "pw"],  # deserves its warning on every run
        ["--session-duration", "abc"],
        ["--role-session-name", "-x"],
        ["--unknown"],
    ],
)
def test_fast_path_declines_what_it_does_not_plainly_understand(files: tuple[Path, Path], extra: list[str]) -> None:
    from rolesanywhere_signer.cache import _parse_plain

    assert _parse_plain(args(files, "http://127.0.0.1:9", *extra)) is None


def test_expiration_parser_matches_datetime() -> None:
    import random

    from rolesanywhere_signer.cache import _expiration_epoch

    rng = random.Random(5)
    for _ in range(2000):
        t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=rng.randrange(0, 10**10))
        assert _expiration_epoch(t.strftime("%Y-%m-%dT%H:%M:%SZ")) == t.timestamp()
    for bad in ("2026-11-29T08:00:00", "2026-13-29T08:00:00Z", "2026-11-29 08:00:00Z", "2026-11-29T0a:00:00Z", ""):
        with pytest.raises(ValueError):
            _expiration_epoch(bad)
