"""Through a real proxy on loopback: plain and TLS to the proxy, with and without Basic auth.

Each end-to-end case runs ``credential-process`` with ``HTTPS_PROXY``/``HTTP_PROXY`` pointing at a
``Tap`` in front of a ``ConnectProxy`` (tests/support/proxy.py). The proxy shows what it was
asked (CONNECT or an absolute-form POST, and the credentials it checked); the tap shows what
crossed the wire: the AWS credentials never in clear, and with TLS to the proxy neither the
proxy password nor even the CONNECT line.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.errors import InputError
from rolesanywhere_signer.transport import AnswerTooLarge, DeadlineError, HttpTransport, proxy_for
from support.hostile import HostileEndpoint
from support.pki import PKI
from support.proxy import ConnectProxy, Tap, TlsMaterial, tls_material
from support.servers import HangServer
from support.util import ARN_ARGS, assert_one_line_error, run_cli

USER, PASSWORD = "proxyuser", "pr0xy-s3cret-pw"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return tls_material(tmp_path_factory.mktemp("proxy-tls"))


@pytest.fixture
def https_endpoint(pki: PKI, tls: TlsMaterial) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint([pki.root.cert], tls=(str(tls.cert), str(tls.key))).start()
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture
def leaf_args(pki: PKI) -> list[str]:
    cert, key = pki.leaf_files("proxied", pki.leaf())
    return ["--certificate", str(cert), "--private-key", str(key), *ARN_ARGS]


def proxy_env(tls: TlsMaterial, var: str, url: str, no_proxy: str = "") -> dict[str, str]:
    return {var: url, "NO_PROXY": no_proxy, "AWS_CA_BUNDLE": str(tls.ca_pem)}


def secrets_of(stdout: str) -> list[bytes]:
    doc = json.loads(stdout)
    return [doc["SecretAccessKey"].encode(), doc["SessionToken"].encode()]


BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode())


@pytest.mark.parametrize(
    ("endpoint_tls", "proxy_tls", "auth"),
    [
        (True, False, False),
        (True, False, True),
        (True, True, False),
        (True, True, True),
        (False, True, True),
        (False, False, False),
    ],
    ids=[
        "https-endpoint/plain-proxy",
        "https-endpoint/plain-proxy/auth",
        "https-endpoint/tls-proxy",
        "https-endpoint/tls-proxy/auth",
        "http-endpoint/tls-proxy/auth",
        "http-endpoint/plain-proxy",
    ],
)
def test_credential_process_through_a_proxy(
    pki: PKI,
    tls: TlsMaterial,
    https_endpoint: LocalEndpoint,
    endpoint: LocalEndpoint,
    leaf_args: list[str],
    endpoint_tls: bool,
    proxy_tls: bool,
    auth: bool,
) -> None:
    ep = https_endpoint if endpoint_tls else endpoint
    proxy = ConnectProxy(tls=tls if proxy_tls else None, auth=(USER, PASSWORD) if auth else None)
    with proxy, Tap(proxy.port) as tap:
        creds = f"{USER}:{PASSWORD}@" if auth else ""
        url = f"{'https' if proxy_tls else 'http'}://{creds}127.0.0.1:{tap.port}"
        var = "HTTPS_PROXY" if endpoint_tls else "HTTP_PROXY"
        proc = run_cli(["credential-process", *leaf_args, "--endpoint", ep.url], env=proxy_env(tls, var, url))
        raw = tap.raw
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert ep.state.sessions_created == 1
    # what the proxy was asked
    assert len(proxy.seen) == 1
    seen = proxy.seen[0]
    host = ep.url.split("://", 1)[1]
    if endpoint_tls:
        assert (seen.method, seen.target) == ("CONNECT", host)
    else:
        assert seen.method == "POST" and seen.target.startswith(f"{ep.url}/sessions?")
        assert "authorization" in seen.headers  # the SigV4 request itself, forwarded
    assert (seen.headers.get("proxy-authorization") == f"Basic {BASIC.decode()}") is auth
    # what crossed the wire between us and the proxy
    assert raw, "nothing went through the tap"
    if endpoint_tls or proxy_tls:
        for secret in secrets_of(proc.stdout):
            assert secret not in raw, "AWS credentials crossed in clear"
    if proxy_tls:
        assert PASSWORD.encode() not in raw and BASIC not in raw, "the proxy password crossed in clear"
        assert b"CONNECT" not in raw and b"POST" not in raw  # all of it inside TLS to the proxy
    elif endpoint_tls:
        assert raw.startswith(b"CONNECT " + host.encode())  # the tunnel request is the only clear text


def test_wrong_proxy_password_is_one_line_without_the_password(
    tls: TlsMaterial, https_endpoint: LocalEndpoint, leaf_args: list[str]
) -> None:
    with ConnectProxy(tls=tls, auth=(USER, PASSWORD)) as proxy:
        url = f"https://{USER}:wrong-pw-123@127.0.0.1:{proxy.port}"
        proc = run_cli(
            ["credential-process", *leaf_args, "--endpoint", https_endpoint.url],
            env=proxy_env(tls, "HTTPS_PROXY", url),
        )
    assert_one_line_error(proc, "refused or failed the connection")
    assert "wrong-pw-123" not in proc.stderr and USER not in proc.stderr
    assert proxy.seen and all(s.refused for s in proxy.seen)
    assert https_endpoint.state.sessions_created == 0


def test_no_proxy_cidr_goes_direct(tls: TlsMaterial, https_endpoint: LocalEndpoint, leaf_args: list[str]) -> None:
    with ConnectProxy() as proxy:
        env = proxy_env(tls, "HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}", no_proxy="10.0.0.0/8,127.0.0.0/8")
        proc = run_cli(["credential-process", *leaf_args, "--endpoint", https_endpoint.url], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proxy.seen == []


# ---- which requests take the proxy (NO_PROXY in its forms) -------------------------------------------


@pytest.mark.parametrize(
    ("url", "no_proxy", "proxied"),
    [
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "", True),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "*", False),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "amazonaws.com", False),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", ".amazonaws.com", False),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "example.com, .amazonaws.com", False),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "AMAZONAWS.COM", False),
        ("https://rolesanywhere.eu-west-1.amazonaws.com", "other.amazonaws.com", True),
        ("https://ra.internal:8443", "ra.internal:8443", False),
        ("https://ra.internal:8443", "ra.internal:9443", True),
        ("https://10.1.2.3", "10.0.0.0/8", False),
        ("https://10.1.2.3", "10.1.2.3", False),
        ("https://10.1.2.3", "192.168.0.0/16", True),
        ("https://[fd00::5]", "fd00::/8", False),
        ("https://[fd00::5]", "fe80::/10", True),
        ("https://[::1]:8443", "::1", False),
    ],
)
def test_no_proxy_forms(monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str, proxied: bool) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (proxy_for(url) == "http://proxy.corp:3128") is proxied


def test_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALL_PROXY", "proxy.corp:3128")  # no scheme: http:// as curl assumes
    assert proxy_for("https://ra.example") == "http://proxy.corp:3128"
    monkeypatch.setenv("HTTP_PROXY", "http://plain.corp:80")
    assert proxy_for("http://ra.example") == "http://plain.corp:80"
    assert proxy_for("https://ra.example") == "http://proxy.corp:3128"
    monkeypatch.setenv("https_proxy", "socks5://socks.corp:1080")
    with pytest.raises(InputError, match="socks5:// is not supported"):
        proxy_for("https://ra.example")


def test_no_proxy_variable_means_no_requests_import(tmp_path: Path) -> None:
    import subprocess
    import sys

    from support.util import clean_env

    code = (
        "import sys; from rolesanywhere_signer.transport import proxy_for; "
        "assert proxy_for('https://ra.example') is None; print('requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the bounds hold through the proxy too ----------------------------------------------------------


def _proxied_transport(monkeypatch: pytest.MonkeyPatch, proxy_port: int, timeout: float) -> HttpTransport:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
    monkeypatch.setenv("NO_PROXY", "")
    return HttpTransport(timeout=timeout)


def test_trickling_endpoint_through_the_proxy_meets_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileEndpoint("trickle", interval=0.2) as ep, ConnectProxy() as proxy:
        t = _proxied_transport(monkeypatch, proxy.port, 1.0)
        started = time.monotonic()
        with pytest.raises(DeadlineError, match="did not answer within 1s"):
            t.send("POST", f"{ep.url}/sessions", {"Content-Type": "application/json"}, b"{}")
        assert time.monotonic() - started < 1.8
        assert proxy.seen and proxy.seen[0].method == "POST"


def test_endless_endpoint_through_the_proxy_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileEndpoint("endless-chunked") as ep, ConnectProxy() as proxy:
        t = _proxied_transport(monkeypatch, proxy.port, 5.0)
        with pytest.raises(AnswerTooLarge, match="larger than 1048576"):
            t.send("POST", f"{ep.url}/sessions", {}, b"{}")


def test_a_proxy_that_never_answers_the_connect_meets_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    with HangServer() as hang:
        t = _proxied_transport(monkeypatch, int(hang.url.rsplit(":", 1)[1]), 1.0)
        started = time.monotonic()
        with pytest.raises(DeadlineError):
            t.send("POST", "https://127.0.0.1:9/sessions", {}, b"{}")
        assert time.monotonic() - started < 1.8


def test_debug_output_through_an_authenticated_proxy_has_no_secret(
    tls: TlsMaterial, https_endpoint: LocalEndpoint, leaf_args: list[str]
) -> None:
    with ConnectProxy(tls=tls, auth=(USER, PASSWORD)) as proxy:
        url = f"https://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"
        proc = run_cli(
            ["credential-process", *leaf_args, "--endpoint", https_endpoint.url, "--debug"],
            env=proxy_env(tls, "HTTPS_PROXY", url),
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr  # --debug said something
    for secret in (PASSWORD, BASIC.decode(), *(s.decode() for s in secrets_of(proc.stdout))):
        assert secret not in proc.stderr
