"""``serve`` for fleets: start before the network, several identities, systemd, metrics, JSON logs."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.errors import InputError
from rolesanywhere_signer.serve_config import KEYS, load_config
from support.pki import PKI
from support.servers import FlappingEndpoint
from support.util import (
    ARN_ARGS,
    PROFILE_ARN,
    ROLE_ARN,
    SRC,
    TRUST_ANCHOR_ARN,
    assert_one_line_error,
    clean_env,
    free_port,
    run_cli,
)

OTHER_ROLE_ARN = ROLE_ARN.rsplit("/", 1)[0] + "/other-role"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body[:1] == b"{" else {"text": body.decode()}
    except OSError:
        return 0, {}
    finally:
        conn.close()


def imds(port: int) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        r = conn.getresponse()
        tok = r.read().decode()
    except OSError:
        return 0, {}  # not listening (yet)
    finally:
        conn.close()
    return get(
        port,
        "/latest/meta-data/iam/security-credentials/" + ROLE_ARN.rsplit("/", 1)[-1],
        {"X-aws-ec2-metadata-token": tok},
    )


def spawn(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *args],
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def leaf_files(pki: PKI, tmp_path: Path) -> tuple[Path, Path]:
    leaf = pki.leaf()
    return pki.leaf_files(f"leaf-{tmp_path.name}", leaf)


def stop(proc: subprocess.Popen[str], tmp_path: Path) -> str:
    proc.terminate()
    assert proc.wait(10) == 0
    return (tmp_path / "serve.log").read_text()


# ---- start before the network ---------------------------------------------------------------------


def test_endpoint_down_answers_503_then_200_without_restart(
    pki: PKI, leaf_files: tuple[Path, Path], tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    flapping = FlappingEndpoint([pki.root.cert])  # down: nothing listens on its port yet
    port = free_port()
    token_file = tmp_path / "token"
    args = ["serve", "--certificate", str(leaf_files[0]), "--private-key", str(leaf_files[1]), *ARN_ARGS]
    proc = spawn(
        [*args, "--endpoint", flapping.url, "--port", str(port), "--container-token-file", str(token_file)], tmp_path
    )
    procs.append(proc)
    assert wait_until(lambda: get(port, "/credentials")[0] != 0), "serve did not listen at once"
    assert wait_until(lambda: "refreshing credentials failed" in (tmp_path / "serve.log").read_text())
    status, doc = get(port, "/credentials", {"Authorization": token_file.read_text()})
    assert status == 503
    assert doc["Message"].startswith("no credentials yet: ") and "connect" in doc["Message"], doc
    assert imds(port)[0] == 503
    flapping.up()
    try:
        assert wait_until(lambda: imds(port)[0] == 200, timeout=30)
        status, doc = get(port, "/credentials", {"Authorization": token_file.read_text()})
        assert status == 200 and doc["AccessKeyId"].startswith("ASIA")
        assert proc.poll() is None  # the same process: no restart
        log = stop(proc, tmp_path)
    finally:
        flapping.down()
    assert doc["SecretAccessKey"] not in log and doc["Token"] not in log


def test_a_bad_key_still_exits_at_once(pki: PKI, tmp_path: Path, endpoint: LocalEndpoint) -> None:
    cert, _ = pki.leaf_files("mismatch", pki.leaf())
    _, other_key = pki.leaf_files("mismatch-other", pki.leaf())
    proc = run_cli(
        [
            "serve",
            "--certificate",
            str(cert),
            "--private-key",
            str(other_key),
            *ARN_ARGS,
            "--endpoint",
            endpoint.url,
            "--port",
            str(free_port()),
        ]
    )
    assert_one_line_error(proc, "does not match")
    assert endpoint.state.sessions_created == 0


# ---- several identities, systemd notify, metrics ---------------------------------------------------


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_two_identities_a_broken_one_sd_notify_and_metrics(
    pki: PKI, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    web_cert, web_key = pki.leaf_files("web", pki.leaf(cn="web"))
    api_cert, api_key = pki.leaf_files("api", pki.leaf(cn="api"))
    with LocalEndpoint([pki.root.cert]) as ep:
        config = write_config(
            tmp_path / "serve.toml",
            f"""
trust-anchor-arn = "{TRUST_ANCHOR_ARN}"
profile-arn = "{PROFILE_ARN}"

[identities.web]
default = true
certificate = "{web_cert}"
private-key = "{web_key}"
role-arn = "{ROLE_ARN}"
session-duration = 900
endpoint = "{ep.url}"
container-token-file = "{tmp_path}/web.token"

[identities.api]
certificate = "{api_cert}"
private-key = "{api_key}"
role-arn = "{OTHER_ROLE_ARN}"
session-duration = 7200
endpoint = "{ep.url}"
container-token-file = "{tmp_path}/api.token"

[identities.broken]
certificate = "{tmp_path}/missing.crt"
private-key = "{tmp_path}/missing.key"
role-arn = "{ROLE_ARN}"
endpoint = "{ep.url}"
container-token-file = "{tmp_path}/broken.token"
""",
        )
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(10)
        port, metrics_port = free_port(), free_port()
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
        proc = spawn(
            [
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--metrics-listen",
                f"127.0.0.1:{metrics_port}",
                "--log-format",
                "json",
            ],
            tmp_path,
            env,
        )
        procs.append(proc)
        messages: list[str] = []

        def received(prefix: str) -> bool:
            notify.settimeout(0.05)
            try:
                for _ in range(200):  # the watchdog pings every 0.1 s: read what is there, not forever
                    messages.append(notify.recv(4096).decode())
            except TimeoutError:
                pass
            return any(m.startswith(prefix) for m in messages)

        assert wait_until(lambda: received("READY=1"))
        assert wait_until(lambda: ep.state.sessions_created == 2)
        now = dt.datetime.now(dt.timezone.utc)
        web = get(port, "/credentials/web", {"Authorization": (tmp_path / "web.token").read_text()})
        api = get(port, "/credentials/api", {"Authorization": (tmp_path / "api.token").read_text()})
        assert web[0] == 200 and api[0] == 200
        # each path returns its own role's credentials (the endpoint recorded which role it issued them for)
        assert ep.state.issued[web[1]["AccessKeyId"]] == ROLE_ARN
        assert ep.state.issued[api[1]["AccessKeyId"]] == OTHER_ROLE_ARN

        def left(doc: dict[str, Any]) -> float:
            exp = dt.datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
            return (exp - now).total_seconds()

        assert 800 < left(web[1]) <= 900 and 7100 < left(api[1]) <= 7200  # each its own session
        # one identity's token does not open another's path
        assert get(port, "/credentials/api", {"Authorization": (tmp_path / "web.token").read_text()})[0] == 401
        # IMDS and /credentials serve the default identity
        assert imds(port)[1]["AccessKeyId"] == web[1]["AccessKeyId"]
        assert get(port, "/credentials", {"Authorization": (tmp_path / "web.token").read_text()})[1] == web[1]
        # the broken identity: 503 on its own path with the reason, the others unaffected
        status, doc = get(port, "/credentials/broken", {"Authorization": (tmp_path / "broken.token").read_text()})
        assert status == 503 and doc["Message"].startswith("no credentials yet: ") and "missing.crt" in doc["Message"]
        assert wait_until(lambda: received("WATCHDOG=1"))
        # STATUS= is sent when it changes (at most once a second): wait for the one with both credentials

        def status_with_credentials() -> str | None:
            received("STATUS=")
            return next((m for m in reversed(messages) if m.startswith("STATUS=web: credentials valid until")), None)

        assert wait_until(lambda: status_with_credentials() is not None)
        status_line = status_with_credentials() or ""
        assert "certificate expires in 30.0 d" in status_line and "api: credentials valid until" in status_line
        assert "broken: no credentials yet" in status_line
        assert "last error" in status_line
        # metrics, parsed by prometheus_client's own parser
        conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(web_cert.read_bytes())
        assert samples[("rolesanywhere_signer_certificate_not_after_seconds", (("identity", "web"),))] == (
            cert.not_valid_after_utc.timestamp()
        )
        web_exp = dt.datetime.strptime(web[1]["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        assert (
            samples[("rolesanywhere_signer_credentials_expiry_seconds", (("identity", "web"),))] == web_exp.timestamp()
        )
        assert (
            samples[("rolesanywhere_signer_refresh_attempts_total", (("identity", "web"), ("result", "success")))] == 1
        )
        assert (
            samples[("rolesanywhere_signer_refresh_attempts_total", (("identity", "broken"), ("result", "failure")))]
            >= 1
        )
        assert samples[("rolesanywhere_signer_credentials_ready", (("identity", "broken"),))] == 0
        assert ("rolesanywhere_signer_last_success_seconds", (("identity", "api"),)) in samples
        assert samples[("rolesanywhere_signer_renewal_state", (("identity", "api"), ("state", "off")))] == 1
        assert web[1]["SecretAccessKey"] not in text
        log = stop(proc, tmp_path)
        notify.close()
    records = [json.loads(line) for line in log.splitlines()]
    broken = [r for r in records if r.get("identity") == "broken"]
    assert broken and all(r["level"] == "warning" for r in broken)
    assert any("refreshing credentials failed" in r["message"] for r in broken)
    assert not any(r.get("identity") in ("web", "api") and r["level"] == "warning" for r in records)
    for secret in (web[1]["SecretAccessKey"], web[1]["Token"], api[1]["SecretAccessKey"], api[1]["Token"]):
        assert secret not in log and all(secret not in m for m in messages)


def test_no_loadable_identity_exits(pki: PKI, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "serve.toml",
        f"""
trust-anchor-arn = "{TRUST_ANCHOR_ARN}"
profile-arn = "{PROFILE_ARN}"
role-arn = "{ROLE_ARN}"
endpoint = "http://127.0.0.1:9"
[identities.a]
certificate = "{tmp_path}/missing-a.crt"
[identities.b]
certificate = "{tmp_path}/missing-b.crt"
""",
    )
    proc = run_cli(["serve", "--config", str(config), "--port", str(free_port())])
    assert_one_line_error(proc, "no identity in the config file could be loaded")
    assert proc.stderr.count("cannot be loaded") == 2  # each reported on its own line


# ---- config file: every key's bad input is one line ------------------------------------------------

GOOD = {
    "trust-anchor-arn": TRUST_ANCHOR_ARN,
    "profile-arn": PROFILE_ARN,
    "role-arn": ROLE_ARN,
    "certificate": "/etc/cert.pem",
}

BAD_VALUES: dict[str, tuple[str, str]] = {
    "certificate": ("1", "certificate must be a non-empty string"),
    "private-key": ('""', "private-key must be a non-empty string"),
    "intermediates": ("[]", "intermediates must be a non-empty string"),
    "pkcs11-uri": ("true", "pkcs11-uri must be a non-empty string"),
    "pkcs11-lib": ("2", "pkcs11-lib must be a non-empty string"),
    "reuse-pin": ('"yes"', "reuse-pin must be true or false"),
    "tpm-key-password-file": ("{}", "tpm-key-password-file must be a non-empty string"),
    "no-tpm-key-password": ("1", "no-tpm-key-password must be true or false"),
    "tcti": ("3", "tcti must be a non-empty string"),
    "trust-anchor-arn": ('"arn:aws:iam::1:role/x"', "trust-anchor-arn names service 'iam'"),
    "profile-arn": ("7", "profile-arn must be a non-empty string"),
    "role-arn": ('"not-an-arn"', "role-arn"),
    "session-duration": ("60", "session-duration 60 is out of range"),
    "role-session-name": ("false", "role-session-name must be a non-empty string"),
    "region": ("[1]", "region must be a non-empty string"),
    "endpoint": ('"ftp://x"', "is not an http or https URL"),
    "no-verify-ssl": ('"no"', "no-verify-ssl must be true or false"),
    "container-token-file": ("0", "container-token-file must be a non-empty string"),
    "default": ('"yes"', "default must be true or false"),
}


def test_every_key_has_a_bad_input_case() -> None:
    assert set(BAD_VALUES) == set(KEYS) | {"default"}


def _toml(values: dict[str, str]) -> str:
    return "".join(f"{k} = {v}\n" for k, v in values.items())


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_bad_value_of_each_key_is_one_line(key: str, tmp_path: Path) -> None:
    bad, phrase = BAD_VALUES[key]
    table = {k: json.dumps(v) for k, v in GOOD.items() if k != key}
    table[key] = bad
    path = write_config(tmp_path / "c.toml", "[identities.one]\n" + _toml(table))
    with pytest.raises(InputError) as e:
        load_config(str(path))
    text = e.value.diagnostics()
    assert "\n" not in text and phrase.lower() in text.lower() and str(path) in text, text
    assert "[identities.one]" in text, text


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("", "no [identities.NAME] table"),
        ("[identities]\n", "no [identities.NAME] table"),
        ("identities = 3\n", "no [identities.NAME] table"),
        ("[identities.one\n", "is not valid TOML"),
        ("colour = 1\n[identities.one]\n", "unknown key 'colour'"),
        ("default = true\n[identities.one]\n", "unknown key 'default'"),
        ("[identities.one]\nprivate_key = 'x'\n", "unknown key 'private_key'"),
        ('[identities."a/b"]\n', "not usable in a URL path"),
        ("[identities]\none = 1\n", "must be a table"),
        ("[identities.one]\ncertificate = 'c'\n", "trust-anchor-arn is missing"),
        (
            _toml({k: json.dumps(v) for k, v in GOOD.items() if k != "certificate"}) + "[identities.one]\n",
            "certificate is missing",
        ),
        (
            _toml({k: json.dumps(v) for k, v in GOOD.items()})
            + "[identities.a]\ndefault = true\n[identities.b]\ndefault = true\n",
            "more than one identity has default = true",
        ),
        (
            _toml({k: json.dumps(v) for k, v in GOOD.items()})
            + "container-token-file = '/run/t'\n[identities.a]\n[identities.b]\n",
            "is used by two identities",
        ),
    ],
)
def test_bad_config_files(body: str, phrase: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", body)
    with pytest.raises(InputError) as e:
        load_config(str(path))
    assert phrase.lower() in e.value.diagnostics().lower() and "\n" not in e.value.diagnostics()


def test_top_level_defaults_and_the_only_identity_is_the_default(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.toml",
        _toml({k: json.dumps(v) for k, v in GOOD.items()}) + "session-duration = 900\n[identities.x]\n",
    )
    (spec,) = load_config(str(path))
    assert spec.default and spec.request.session_duration == 900 and spec.identity.certificate == "/etc/cert.pem"


@pytest.mark.parametrize(
    ("args", "phrase", "code"),
    [
        (["--config", "/nonexistent/serve.toml"], "cannot read config file /nonexistent/serve.toml", 1),
        (["--config", "CONFIG", "--certificate", "c.pem"], "--certificate cannot be used with --config", 2),
        (["--config", "CONFIG", "--metrics-listen", "localhost:9"], "is not an IP address", 1),
        (["--config", "CONFIG", "--metrics-listen", "127.0.0.1:0"], "the port must be 1..65535", 1),
        (["--config", "CONFIG", "--metrics-listen", "192.0.2.1:9912"], "not a loopback address", 1),
        (["--config", "CONFIG", "--log-format", "xml"], "invalid choice", 2),
        (["--certificate", "c.pem"], "the following arguments are required", 2),
    ],
)
def test_bad_serve_flags(args: list[str], phrase: str, code: int, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", "[identities.one]\n" + _toml({k: json.dumps(v) for k, v in GOOD.items()})
    )
    args = [str(config) if a == "CONFIG" else a for a in args]
    assert_one_line_error(run_cli(["serve", *args, "--port", str(free_port())]), phrase, code)


# ---- socket activation -----------------------------------------------------------------------------


def test_socket_activation_serves_on_the_listener_handed_over(
    leaf_files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    unused = free_port()
    # as systemd does: the listener as descriptor 3, LISTEN_PID the service's own pid ($$ survives exec)
    cmd = f'exec 3<&{fd}; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m rolesanywhere_signer serve "$@"'
    args = ["--certificate", str(leaf_files[0]), "--private-key", str(leaf_files[1]), *ARN_ARGS]
    proc = subprocess.Popen(
        ["bash", "-c", cmd, sys.executable, *args, "--endpoint", endpoint.url, "--port", str(unused)],
        env=clean_env({"PYTHONPATH": SRC}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
        text=True,
        pass_fds=(fd,),
        start_new_session=True,
    )
    procs.append(proc)
    listener.close()  # only the service holds it now
    assert wait_until(lambda: imds(port)[0] == 200)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", unused)) != 0  # --port was not bound
    stop(proc, tmp_path)


# ---- JSON logs -------------------------------------------------------------------------------------


def test_json_logs_one_object_per_line_and_no_secrets(
    leaf_files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    token_file = tmp_path / "token"
    args = ["serve", "--certificate", str(leaf_files[0]), "--private-key", str(leaf_files[1]), *ARN_ARGS]
    proc = spawn(
        [
            *args,
            "--endpoint",
            endpoint.url,
            "--port",
            str(port),
            "--container-token-file",
            str(token_file),
            "--log-format",
            "json",
            "--debug",
        ],
        tmp_path,
    )
    procs.append(proc)
    assert wait_until(lambda: imds(port)[0] == 200)
    status, doc = get(port, "/credentials", {"Authorization": token_file.read_text()})
    assert status == 200
    log = stop(proc, tmp_path)
    lines = log.splitlines()
    assert len(lines) >= 3
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("new credentials" in r["message"] for r in records)
    assert any(r["message"].startswith("serving credentials on") for r in records)
    for secret in (doc["SecretAccessKey"], doc["Token"], doc["AccessKeyId"], token_file.read_text()):
        assert secret not in log


# ---- systemd units in docs -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_example_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = sorted((DOCS / "systemd").glob("*.service")) + sorted((DOCS / "systemd").glob("*.socket"))
    assert {u.name for u in units} >= {
        "rolesanywhere-serve.service",
        "rolesanywhere-serve.socket",
        "rolesanywhere-update.service",
    }
    exe = shutil.which("rolesanywhere-signer") or str(Path(sys.executable).parent / "rolesanywhere-signer")
    for unit in units:
        text = unit.read_text()
        for directive in ("ProtectSystem=strict", "NoNewPrivileges=yes") if unit.suffix == ".service" else ():
            assert directive in text, (unit.name, directive)
        # verify checks that ExecStart= exists: point it at this installation's script
        (tmp_path / unit.name).write_text(text.replace("/usr/local/bin/rolesanywhere-signer", exe))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(tmp_path / u.name) for u in units]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert proc.returncode == 0, proc.stderr
    # systemd-analyze exits 0 on a directive it cannot parse ("…: Failed to parse …, ignoring"): any
    # line about our files is a problem
    problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line]
    assert not problems, proc.stderr


def test_update_json_logs(leaf_files: tuple[Path, Path], endpoint: LocalEndpoint, tmp_path: Path) -> None:
    creds_file = tmp_path / "credentials"
    args = ["update", "--once", "--certificate", str(leaf_files[0]), "--private-key", str(leaf_files[1]), *ARN_ARGS]
    proc = run_cli(
        [*args, "--endpoint", endpoint.url, "--log-format", "json", "--debug"],
        env={"AWS_SHARED_CREDENTIALS_FILE": str(creds_file)},
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any(r["message"].startswith("wrote profile default") for r in records)
    secret = next(ln for ln in creds_file.read_text().splitlines() if ln.startswith("aws_secret_access_key"))
    assert secret.split("=", 1)[1].strip() not in proc.stderr


def test_served_identity_repr_hides_the_container_token() -> None:
    from rolesanywhere_signer.imds import ServedIdentity

    ident = ServedIdentity("web", None, "role", "very-secret-container-token", True)  # type: ignore[arg-type]
    assert "very-secret-container-token" not in repr(ident)


def test_listen_sockets_only_for_this_process() -> None:
    from rolesanywhere_signer.systemd import Notifier, listen_sockets

    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert listen_sockets(env) == [] and env == {}  # another process's sockets; the variables are gone
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"}
    with pytest.raises(InputError):
        listen_sockets(env)
    assert not Notifier({}).enabled and not Notifier({"NOTIFY_SOCKET": "relative"}).enabled
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).enabled
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_interval == 1.5
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
