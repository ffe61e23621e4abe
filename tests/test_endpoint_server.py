"""The local Roles Anywhere endpoint refuses what AWS refuses. A server that accepts anything proves nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from rolesanywhere_signer import protocol
from rolesanywhere_signer.backends.pem import PemSigner
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.signer import DigestName, Signer, algorithm_for_key, identity_of
from support.pki import PKI, Issued, issue, weak_hash_chain
from support.util import PROFILE_ARN, REGION, ROLE_ARN, TRUST_ANCHOR_ARN

REQ = protocol.SessionRequest(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, 3600)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def signer_for(leaf: Issued, chain: tuple[Any, ...] = (), key: Any = None) -> PemSigner:
    k = key or leaf.key
    return PemSigner(k, leaf.cert, chain, algorithm_for_key(leaf.cert.public_key()), "test")


def send(
    ep: LocalEndpoint,
    signer: Signer,
    *,
    when: dt.datetime | None = None,
    request: protocol.SessionRequest = REQ,
    region: str = REGION,
    mutate: Any = None,
) -> requests.Response:
    signed = protocol.sign_create_session(
        identity=identity_of(signer),
        sign=signer.sign,
        request=request,
        endpoint=ep.url,
        region=region,
        when=when or now(),
    )
    headers, body, url = dict(signed.headers), signed.body, signed.url
    if mutate:
        headers, body, url = mutate(headers, body, url)
    return requests.post(url, headers=headers, data=body, timeout=10)


def assert_refused(resp: requests.Response, status: int, error_type: str, phrase: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["x-amzn-ErrorType"] == error_type
    assert phrase.lower() in resp.json()["message"].lower(), resp.json()


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ec-p521", "rsa2048", "rsa3072"])
def test_accepts_a_correct_request(pki: PKI, endpoint: LocalEndpoint, key_type: str) -> None:
    leaf = pki.leaf(key_type, via_intermediate=True)
    resp = send(endpoint, signer_for(leaf, (pki.intermediate.cert,)))
    assert resp.status_code == 201, resp.text
    cset = resp.json()["credentialSet"][0]
    assert cset["credentials"]["accessKeyId"].startswith("ASIA")
    assert cset["roleArn"] == ROLE_ARN
    exp = dt.datetime.strptime(cset["credentials"]["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert 3500 < (exp - now()).total_seconds() <= 3600
    assert endpoint.state.sessions_created == 1


def test_rejects_tampered_body(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    resp = send(endpoint, signer_for(leaf), mutate=lambda h, b, u: (h, b.replace(b"3600", b"4600"), u))
    assert_refused(resp, 403, "AccessDeniedException", "Invalid signature")


def test_rejects_tampered_query(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    resp = send(endpoint, signer_for(leaf), mutate=lambda h, b, u: (h, b, u.replace("rolesanywhere-test", "admin")))
    assert_refused(resp, 403, "AccessDeniedException", "Invalid signature")


def test_rejects_wrong_key(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    other = pki.leaf()
    assert_refused(send(endpoint, signer_for(leaf, key=other.key)), 403, "AccessDeniedException", "Invalid signature")


def test_rejects_expired_certificate(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(not_before=now() - dt.timedelta(days=10), not_after=now() - dt.timedelta(days=1))
    assert_refused(send(endpoint, signer_for(leaf)), 403, "AccessDeniedException", "validity")


def test_rejects_not_yet_valid_certificate(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(not_before=now() + dt.timedelta(days=1))
    assert_refused(send(endpoint, signer_for(leaf)), 403, "AccessDeniedException", "validity")


def test_rejects_unknown_ca(pki: PKI, endpoint: LocalEndpoint) -> None:
    rogue_ca = issue("Rogue CA", key_type="ec-p256", ca=True)
    # same subject name as the real root, different key: the name alone must not be trusted
    lookalike = issue("Test Root CA", key_type="ec-p384", ca=True)
    for ca in (rogue_ca, lookalike):
        leaf = issue("leaf", issuer=ca)
        assert_refused(send(endpoint, signer_for(leaf)), 403, "AccessDeniedException", "Untrusted signing certificate")


def test_rejects_stale_and_future_dates(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    for skew in (dt.timedelta(minutes=-6), dt.timedelta(minutes=6)):
        assert_refused(send(endpoint, signer_for(leaf), when=now() + skew), 403, "AccessDeniedException", "expired")
    # within the 5 minutes: accepted
    assert send(endpoint, signer_for(leaf), when=now() - dt.timedelta(minutes=4)).status_code == 201


def test_rejects_missing_intermediate(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(via_intermediate=True)
    assert_refused(send(endpoint, signer_for(leaf)), 403, "AccessDeniedException", "Untrusted signing certificate")


def test_rejects_chain_longer_than_five(pki: PKI, endpoint: LocalEndpoint) -> None:
    cas = [pki.root]
    for i in range(6):
        cas.append(issue(f"Level {i} CA", issuer=cas[-1], ca=True))
    leaf = issue("deep leaf", issuer=cas[-1])
    chain = tuple(c.cert for c in reversed(cas[1:]))
    assert len(chain) == 6
    assert_refused(send(endpoint, signer_for(leaf, chain[:5])), 403, "AccessDeniedException", "Untrusted")
    # five intermediates is the limit and is accepted
    leaf5 = issue("leaf5", issuer=cas[5])
    assert send(endpoint, signer_for(leaf5, tuple(c.cert for c in reversed(cas[1:6])))).status_code == 201


def test_rejects_ca_leaf_and_missing_digital_signature(pki: PKI, endpoint: LocalEndpoint) -> None:
    ca_leaf = issue("sub CA", issuer=pki.root, ca=True)
    assert_refused(send(endpoint, signer_for(ca_leaf)), 403, "AccessDeniedException", "is a CA")
    no_ds = pki.leaf(digital_signature=False)
    assert_refused(send(endpoint, signer_for(no_ds)), 403, "AccessDeniedException", "digitalSignature")


def test_rejects_serial_mismatch(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()

    def wrong_serial(h: dict[str, str], b: bytes, u: str) -> tuple[dict[str, str], bytes, str]:
        alg, rest = h["Authorization"].split(" Credential=", 1)
        serial, scope = rest.split("/", 1)
        h["Authorization"] = f"{alg} Credential={int(serial) + 1}/{scope}"
        return h, b, u

    assert_refused(send(endpoint, signer_for(leaf), mutate=wrong_serial), 403, "AccessDeniedException", "serial")


def test_rejects_hex_serial(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(serial=0xABCDEF)

    def hex_serial(h: dict[str, str], b: bytes, u: str) -> tuple[dict[str, str], bytes, str]:
        h["Authorization"] = h["Authorization"].replace(f"Credential={0xABCDEF}/", "Credential=abcdef/")
        return h, b, u

    assert_refused(send(endpoint, signer_for(leaf), mutate=hex_serial), 403, "AccessDeniedException", "serial")


def test_rejects_unsigned_required_headers(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf(via_intermediate=True)

    def unsign_chain(h: dict[str, str], b: bytes, u: str) -> tuple[dict[str, str], bytes, str]:
        h["Authorization"] = h["Authorization"].replace(";x-amz-x509-chain", "")
        return h, b, u

    resp = send(endpoint, signer_for(leaf, (pki.intermediate.cert,)), mutate=unsign_chain)
    assert_refused(resp, 403, "AccessDeniedException", "x-amz-x509-chain must be signed")


def test_rejects_wrong_algorithm_for_key(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf("ec-p256")
    s = signer_for(leaf)
    s.algorithm = protocol.ALGORITHM_RSA  # an EC key claiming the RSA algorithm
    assert_refused(send(endpoint, s), 403, "AccessDeniedException", "does not match")


@dataclasses.dataclass
class UncheckedSigner:
    """Signs with any EC key, as a client that skips the local key-type check would."""

    key: Any
    certificate: Any
    chain: tuple[Any, ...] = ()
    algorithm: str = protocol.ALGORITHM_ECDSA

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        signature: bytes = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return signature

    def close(self) -> None:
        pass


def test_rejects_a_key_outside_the_key_type_table(pki: PKI, endpoint: LocalEndpoint) -> None:
    """secp256k1 signs ECDSA just as well, but Roles Anywhere takes P-256, P-384 and P-521 only."""
    key = ec.generate_private_key(ec.SECP256K1())
    leaf = pki.leaf(key=key)
    assert_refused(send(endpoint, UncheckedSigner(key, leaf.cert)), 403, "AccessDeniedException", "curve secp256k1")
    assert endpoint.state.sessions_created == 0


def test_rejects_wrong_scope_region(pki: PKI, endpoint: LocalEndpoint) -> None:
    assert_refused(send(endpoint, signer_for(pki.leaf()), region="us-west-1"), 403, "AccessDeniedException", "scope")


def test_validates_duration(pki: PKI, endpoint: LocalEndpoint) -> None:
    for bad in (899, 43201):
        r = send(endpoint, signer_for(pki.leaf()), request=REQ.with_changes(duration_seconds=bad))
        assert_refused(r, 400, "ValidationException", "durationSeconds")


@pytest.mark.parametrize("digest", ["sha1", "md5"])
def test_rejects_weak_hash_signed_certificate(tmp_path: Any, digest: str) -> None:
    ca, leaf = weak_hash_chain(tmp_path, digest)
    hash_algorithm = leaf.cert.signature_hash_algorithm
    assert hash_algorithm is not None and hash_algorithm.name == digest
    with LocalEndpoint([ca.cert]) as ep:
        assert_refused(send(ep, signer_for(leaf)), 403, "AccessDeniedException", f"signed with {digest}")


def test_unknown_path_and_method(endpoint: LocalEndpoint) -> None:
    r = requests.post(endpoint.url + "/other", timeout=5)
    assert r.status_code == 404
    r = requests.get(endpoint.url + "/sessions", timeout=5)
    assert r.status_code == 405 or r.status_code == 403


def test_counts_only_accepted_sessions(pki: PKI, endpoint: LocalEndpoint) -> None:
    leaf = pki.leaf()
    send(endpoint, signer_for(leaf, key=pki.leaf().key))
    send(endpoint, signer_for(leaf))
    assert endpoint.state.sessions_created == 1
    assert endpoint.state.refusals == ["AccessDeniedException: Invalid signature"]
