"""``serve`` in-process: real botocore providers, every refusal, load, slow and failing endpoints."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.imds import CredentialServer, ServeConfig, TokenStore, host_of, is_loopback
from rolesanywhere_signer.options import IdentityOptions, RequestOptions
from rolesanywhere_signer.refresher import Refresher, RefreshPolicy
from rolesanywhere_signer.retry import NO_RETRY
from support.clock import FakeClock
from support.pki import PKI
from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

ROLE = "rolesanywhere-test"
CREDS = f"/latest/meta-data/iam/security-credentials/{ROLE}"
POLICY = RefreshPolicy(min_interval=0.2, backoff_base=1.0, backoff_max=5.0, attempt_retry=NO_RETRY)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(__import__("os").environ):
        if var.startswith("AWS_") or var.lower() in ("http_proxy", "https_proxy"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def request(ep: LocalEndpoint, duration: int = 3600) -> RequestOptions:
    return RequestOptions(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, session_duration=duration, endpoint=ep.url)


@pytest.fixture
def serve(identity: IdentityOptions, endpoint: LocalEndpoint) -> Iterator[CredentialServer]:
    r = Refresher(identity, request(endpoint), policy=POLICY)
    r.refresh()
    server = CredentialServer(r, ServeConfig(ROLE, port=0, container_token="container-secret-token"))
    with server:
        yield server
    r.close()


def call(
    server: CredentialServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def token(server: CredentialServer, ttl: str = "60") -> str:
    status, body = call(server, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    assert status == 200
    return body


# ---- real botocore clients ------------------------------------------------------------------------


def test_botocore_instance_metadata_provider(serve: CredentialServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.session

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{serve.port}")
    creds = botocore.session.Session().get_credentials()
    assert creds is not None and creds.method == "iam-role"
    mine = serve.refresher.current()
    assert mine is not None
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        mine.access_key_id,
        mine.secret_access_key,
        mine.session_token,
    )


def test_botocore_instance_metadata_provider_over_ipv6(
    serve: CredentialServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.session

    if "::1" not in serve.addresses:
        pytest.skip("no IPv6 loopback here")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://[::1]:{serve.port}")
    creds = botocore.session.Session().get_credentials()
    assert creds is not None and creds.method == "iam-role"


def test_botocore_container_provider(serve: CredentialServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import botocore.session

    token_file = tmp_path / "token"
    token_file.write_text("container-secret-token")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{serve.port}/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
    creds = botocore.session.Session().get_credentials()
    assert creds is not None and creds.method == "container-role"
    mine = serve.refresher.current()
    assert mine is not None
    assert creds.get_frozen_credentials().access_key == mine.access_key_id


def test_imds_document_shape(serve: CredentialServer) -> None:
    tok = token(serve)
    status, role = call(serve, "GET", "/latest/meta-data/iam/security-credentials/", {"X-aws-ec2-metadata-token": tok})
    assert (status, role) == (200, ROLE)
    status, body = call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok})
    doc = json.loads(body)
    assert status == 200 and doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC"
    dt.datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    dt.datetime.strptime(doc["LastUpdated"], "%Y-%m-%dT%H:%M:%SZ")
    assert set(doc) == {"Code", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration", "LastUpdated"}


# ---- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", ["0", "21601", "-1", "abc", "", "1.5"])
def test_bad_ttl_is_400(serve: CredentialServer, ttl: str) -> None:
    status, _ = call(serve, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    assert status == 400


def test_missing_ttl_is_400_and_limits_accepted(serve: CredentialServer) -> None:
    assert call(serve, "PUT", "/latest/api/token")[0] == 400
    token(serve, "1")
    token(serve, "21600")


def test_x_forwarded_for_is_400(serve: CredentialServer) -> None:
    status, _ = call(
        serve,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "203.0.113.9"},
    )
    assert status == 400
    tok = token(serve)
    assert call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok, "X-Forwarded-For": "1.2.3.4"})[0] == 400


def test_missing_or_unknown_token_is_401(serve: CredentialServer) -> None:
    assert call(serve, "GET", CREDS)[0] == 401  # IMDSv1 is not served
    assert call(serve, "GET", "/latest/meta-data/iam/security-credentials/")[0] == 401
    assert call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": "made-up"})[0] == 401


def test_expired_token_is_401() -> None:
    now = [1000.0]
    store = TokenStore(monotonic=lambda: now[0])
    t = store.issue(5)
    assert store.valid(t)
    now[0] += 5
    assert not store.valid(t)
    assert "t" not in repr(store).replace("TokenStore", "").replace("tokens", "")


def test_expired_token_is_401_over_http(serve: CredentialServer) -> None:
    tok = token(serve, "1")
    assert call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok})[0] == 200
    time.sleep(1.1)
    assert call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok})[0] == 401


def test_token_store_is_bounded() -> None:
    store = TokenStore(limit=10)
    tokens = [store.issue(60) for _ in range(25)]
    assert len(store) == 10
    assert not store.valid(tokens[0]) and store.valid(tokens[-1])
    assert len(set(tokens)) == 25 and all(len(t) >= 40 for t in tokens)


def test_unknown_paths_are_404(serve: CredentialServer) -> None:
    tok = {"X-aws-ec2-metadata-token": token(serve)}
    for path in ("/", "/latest/meta-data/", "/latest/meta-data/iam/security-credentials/other-role", "/nope"):
        assert call(serve, "GET", path, tok)[0] == 404, path
    assert call(serve, "PUT", "/latest/api/other", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})[0] == 404


def test_wrong_host_header_is_refused(serve: CredentialServer) -> None:
    tok = token(serve)
    for host in ("evil.example", "evil.example:80", "rebind.attacker.test"):
        status, _ = call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok, "Host": host})
        assert status == 403, host
    assert (
        call(serve, "PUT", "/latest/api/token", {"Host": "evil.example", "X-aws-ec2-metadata-token-ttl-seconds": "9"})[
            0
        ]
        == 403
    )
    for host in ("169.254.169.254", f"127.0.0.1:{serve.port}", "localhost"):
        assert call(serve, "GET", CREDS, {"X-aws-ec2-metadata-token": tok, "Host": host})[0] == 200, host


def test_container_token_checked(serve: CredentialServer) -> None:
    assert call(serve, "GET", "/credentials")[0] == 401
    assert call(serve, "GET", "/credentials", {"Authorization": "wrong"})[0] == 401
    assert call(serve, "GET", "/credentials", {"Authorization": "container-secret-token-and-more"})[0] == 401
    status, body = call(serve, "GET", "/credentials", {"Authorization": "container-secret-token"})
    assert status == 200
    assert set(json.loads(body)) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}


def test_container_endpoint_off_without_token(identity: IdentityOptions, endpoint: LocalEndpoint) -> None:
    r = Refresher(identity, request(endpoint), policy=POLICY)
    r.refresh()
    with CredentialServer(r, ServeConfig(ROLE, binds=("127.0.0.1",), port=0)) as server:
        assert call(server, "GET", "/credentials", {"Authorization": ""})[0] == 404


def _external_ip() -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        ip = str(s.getsockname()[0])
    except OSError:
        return None
    finally:
        s.close()
    return None if is_loopback(ip) else ip


def test_non_loopback_peer_is_refused(identity: IdentityOptions, endpoint: LocalEndpoint) -> None:
    ip = _external_ip()
    if ip is None:
        pytest.skip("no non-loopback address on this machine")
    r = Refresher(identity, request(endpoint), policy=POLICY)
    r.refresh()
    with CredentialServer(r, ServeConfig(ROLE, binds=(ip,), port=0)) as server:
        status, _ = call(server, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "9"}, host=ip)
        assert status == 403
    with CredentialServer(r, ServeConfig(ROLE, binds=(ip,), port=0, allow_remote=True)) as server:
        status, _ = call(server, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "9"}, host=ip)
        assert status == 200


def test_helpers() -> None:
    assert host_of("[::1]:9911") == "::1"
    assert host_of("127.0.0.1:80") == "127.0.0.1"
    assert host_of("LocalHost") == "localhost"
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("::1") and not is_loopback("10.0.0.1")


# ---- binding --------------------------------------------------------------------------------------


def test_hop_limit_default_one_and_configurable(identity: IdentityOptions, endpoint: LocalEndpoint) -> None:
    r = Refresher(identity, request(endpoint), policy=POLICY)
    r.refresh()
    for limit in (1, 7):
        with CredentialServer(r, ServeConfig(ROLE, port=0, hop_limit=limit)) as server:
            assert server.addresses[0] == "127.0.0.1"
            for s in server._servers:
                if s.address_family == socket.AF_INET6:
                    assert s.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == limit
                else:
                    assert s.socket.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == limit
            assert call(server, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "9"})[0] == 200


# ---- never sign on the request path ---------------------------------------------------------------


def test_nothing_yet_is_503_never_200(identity: IdentityOptions, endpoint: LocalEndpoint) -> None:
    r = Refresher(identity, request(endpoint), policy=POLICY)  # never refreshed
    with CredentialServer(r, ServeConfig(ROLE, port=0, container_token="t")) as server:
        status, body = call(server, "GET", CREDS, {"X-aws-ec2-metadata-token": token(server)})
        assert status == 503
        assert json.loads(body) == {
            "Code": "Error",
            "Message": "no credentials yet: the first CreateSession is under way",
        }
        assert call(server, "GET", "/credentials", {"Authorization": "t"})[0] == 503
    assert endpoint.state.sessions_created == 0  # the request path did not sign


def test_responses_stay_fast_while_the_endpoint_is_slow(identity: IdentityOptions, pki: PKI) -> None:
    with LocalEndpoint([pki.root.cert]) as slow:
        r = Refresher(identity, request(slow), policy=POLICY)
        r.refresh()
        slow.state.delay = 3  # from now on every CreateSession takes 3 seconds
        time.sleep(POLICY.min_interval)
        with CredentialServer(r, ServeConfig(ROLE, port=0)) as server:
            tok = token(server)
            refreshing = threading.Thread(target=r.refresh, kwargs={"force": True})
            refreshing.start()
            time.sleep(0.2)
            latencies = []
            for _ in range(20):
                t0 = time.perf_counter()
                status, _ = call(server, "GET", CREDS, {"X-aws-ec2-metadata-token": tok})
                latencies.append(time.perf_counter() - t0)
                assert status == 200
            assert refreshing.is_alive()  # all of that happened while CreateSession was in flight
            refreshing.join(10)
            assert max(latencies) < 0.9, latencies  # botocore gives IMDS one second
            assert slow.state.sessions_created == 2


def test_endpoint_down_mid_run(identity: IdentityOptions, pki: PKI) -> None:
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    ep = LocalEndpoint([pki.root.cert], clock=clock).start()
    port = ep.port
    r = Refresher(identity, request(ep, 900), clock=clock, wait=lambda s: None, policy=POLICY)
    r.refresh()
    with CredentialServer(r, ServeConfig(ROLE, port=0)) as server:
        tok = token(server)

        def key() -> tuple[int, str | None]:
            status, body = call(server, "GET", CREDS, {"X-aws-ec2-metadata-token": tok})
            return status, json.loads(body).get("AccessKeyId")

        status, first = key()
        assert status == 200
        ep.stop()  # the endpoint goes down
        clock.advance(650)
        r.tick()
        assert r.last_error is not None
        assert key() == (200, first)  # last good credentials still served
        clock.advance(260)  # past expiry
        r.tick()
        status, _ = key()
        assert status == 500
        ep = LocalEndpoint([pki.root.cert], clock=clock, port=port).start()  # it comes back
        try:
            clock.advance(r.seconds_until_next())
            r.tick()
            status, again = key()
            assert status == 200 and again not in (None, first)
        finally:
            ep.stop()


# ---- load -----------------------------------------------------------------------------------------


def test_load_64_clients(
    identity: IdentityOptions, endpoint: LocalEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Refresher(identity, request(endpoint), policy=POLICY)
    r.refresh()
    with CredentialServer(r, ServeConfig(ROLE, port=0)) as server:
        stop = time.monotonic() + 3.0
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            mine: list[float] = []
            try:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
                    resp = conn.getresponse()
                    tok = resp.read().decode()
                    conn.request("GET", CREDS, headers={"X-aws-ec2-metadata-token": tok})
                    resp = conn.getresponse()
                    body = resp.read()
                    mine.append(time.perf_counter() - t0)
                    if resp.status != 200 or b"AccessKeyId" not in body:
                        errors.append(f"{resp.status}")
            except Exception as e:
                errors.append(repr(e))
            finally:
                conn.close()
            with lock:
                latencies.extend(mine)

        def refresher_loop() -> None:
            while time.monotonic() < stop:
                r.refresh(force=True)
                time.sleep(0.5)

        threads = [threading.Thread(target=client) for _ in range(64)]
        threads.append(threading.Thread(target=refresher_loop))
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors[:5]
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        with capsys.disabled():  # always shown: the issue asks for the p99 to be reported
            print(
                f"\nserve load: {len(latencies)} token+credential round trips by 64 clients, "
                f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
            )
        assert len(latencies) > 64
        assert endpoint.state.sessions_created == r.generation  # exactly one CreateSession per refresh
        assert r.generation >= 2  # refreshes really happened under load


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` whole answers (status, body) from a keep-alive connection."""
    data = b""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(data) < length:
            data += sock.recv(65536)
        answers.append((int(head.split(b" ", 2)[1]), data[:length]))
        data = data[length:]
    return answers


def test_requests_whole_split_and_pipelined_on_one_connection(serve: CredentialServer) -> None:
    """One connection: a head in one packet (answered straight from the packet), a head whose
    body comes in a later packet, a head split mid-line, two pipelined in one write: every one
    answered, in order."""
    put = b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
    with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(put + b"\r\n")
        ((status, first),) = _read_answers(sock, 1)
        assert status == 200 and first
        sock.sendall(put + b"Content-Length: 4\r\n\r\n")
        time.sleep(0.05)  # the body in a packet of its own
        sock.sendall(b"body")
        ((status, second),) = _read_answers(sock, 1)
        assert status == 200 and second != first
        get = f"GET {CREDS} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: {second.decode()}\r\n\r\n".encode()
        sock.sendall(get[:20])
        time.sleep(0.05)  # a head split in the middle of its request line
        sock.sendall(get[20:])
        ((status, doc),) = _read_answers(sock, 1)
        assert status == 200 and json.loads(doc)["Code"] == "Success"
        sock.sendall(put + b"\r\n" + get)  # two in one write
        answers = _read_answers(sock, 2)
        assert [a[0] for a in answers] == [200, 200]
        assert json.loads(answers[1][1])["AccessKeyId"] == serve.refresher.current().access_key_id  # type: ignore[union-attr]
