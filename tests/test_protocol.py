"""The pure protocol module, cross-checked against botocore's SigV4 (an independent implementation)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from rolesanywhere_signer import protocol
from rolesanywhere_signer.backends.pem import PemSigner
from rolesanywhere_signer.signer import (
    DIGEST_INFO_PREFIX,
    algorithm_for_key,
    digest_info,
    ecdsa_der_from_raw,
    ecdsa_der_from_rs,
    identity_of,
    verify_signature,
)
from support.pki import PKI

WHEN = datetime(2026, 11, 29, 7, 59, 3, tzinfo=timezone.utc)
REQ = protocol.SessionRequest(
    trust_anchor_arn="arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/ta id",
    profile_arn="arn:aws:rolesanywhere:eu-west-1:123456789012:profile/p~1",
    role_arn="arn:aws:iam::123456789012:role/path/Role+Name",
    duration_seconds=900,
    role_session_name="me@host",
)


def _botocore_view(signed: protocol.SignedRequest, region: str) -> tuple[str, str]:
    """Canonical request and string to sign as botocore computes them for the same request."""
    headers = {k: v for k, v in signed.headers.items() if k != "Authorization"}
    req = AWSRequest(method=signed.method, url=signed.url, headers=headers, data=signed.body)
    auth = SigV4Auth(BotoCredentials("AKIDEXAMPLE", "secret"), "rolesanywhere", region)
    req.context["timestamp"] = headers["X-Amz-Date"]
    creq = auth.canonical_request(req)
    sts = auth.string_to_sign(req, creq)
    return creq, sts


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa2048", "ec-p384"])
@pytest.mark.parametrize("endpoint", ["https://rolesanywhere.eu-west-1.amazonaws.com", "http://127.0.0.1:8443"])
def test_canonical_request_and_string_to_sign_match_botocore(pki: PKI, key_type: str, endpoint: str) -> None:
    leaf = pki.leaf(key_type, via_intermediate=True)
    signer = PemSigner(leaf.key, leaf.cert, (pki.intermediate.cert,), algorithm_for_key(leaf.key.public_key()), "k")
    signed = protocol.sign_create_session(
        identity=identity_of(signer), sign=signer.sign, request=REQ, endpoint=endpoint, region="eu-west-1", when=WHEN
    )
    b_creq, b_sts = _botocore_view(signed, "eu-west-1")
    assert signed.canonical_request == b_creq
    # botocore names its HMAC algorithm on the first line; everything after it must be identical
    assert signed.string_to_sign.split("\n")[1:] == b_sts.split("\n")[1:]
    assert signed.string_to_sign.split("\n")[0] == signer.algorithm
    # the signature verifies with the certificate's key over exactly that string
    sig_hex = signed.headers["Authorization"].rsplit("Signature=", 1)[1]
    assert verify_signature(leaf.cert.public_key(), bytes.fromhex(sig_hex), signed.string_to_sign.encode())


def test_wire_facts(pki: PKI) -> None:
    leaf = pki.leaf("ec-p256", via_intermediate=True, serial=0x1234567890ABCDEF)
    signer = PemSigner(leaf.key, leaf.cert, (pki.intermediate.cert,), protocol.ALGORITHM_ECDSA, "k")
    signed = protocol.sign_create_session(
        identity=identity_of(signer),
        sign=signer.sign,
        request=REQ,
        endpoint="https://h.example",
        region="eu-west-1",
        when=WHEN,
    )
    h = signed.headers
    assert h["X-Amz-Date"] == "20261129T075903Z"
    assert h["Host"] == "h.example"
    assert h["Content-Type"] == "application/json"
    assert base64.b64decode(h["X-Amz-X509"]) == leaf.der
    assert base64.b64decode(h["X-Amz-X509-Chain"]) == pki.intermediate.der
    # decimal serial, the scope, the minimal signed-header set
    assert h["Authorization"].startswith(
        f"AWS4-X509-ECDSA-SHA256 Credential={0x1234567890ABCDEF}/20261129/eu-west-1/rolesanywhere/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain, Signature="
    )
    # ARNs in the query string, fully encoded (":" -> %3A, "/" -> %2F, " " -> %20, "+" -> %2B), sorted
    assert signed.url == (
        "https://h.example/sessions?profileArn=arn%3Aaws%3Arolesanywhere%3Aeu-west-1%3A123456789012%3Aprofile%2Fp~1"
        "&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2FRole%2BName"
        "&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aeu-west-1%3A123456789012%3Atrust-anchor%2Fta%20id"
    )
    assert signed.body == b'{"durationSeconds":900,"roleSessionName":"me@host"}'
    lines = signed.canonical_request.split("\n")
    assert lines[0] == "POST" and lines[1] == "/sessions"
    assert lines[-1] == hashlib.sha256(signed.body).hexdigest()
    assert lines[-3] == ""  # the header block ends with a newline, so an empty line follows


def test_algorithm_comes_from_key_type_not_certificate_hash(pki: PKI) -> None:
    from cryptography.hazmat.primitives import hashes

    from support.pki import issue

    # an EC P-384 key in a certificate signed with SHA-384 is still AWS4-X509-ECDSA-SHA256, signed over SHA-256
    leaf = issue("p384", issuer=pki.root, key_type="ec-p384", hash_alg=hashes.SHA384())
    assert algorithm_for_key(leaf.cert.public_key()) == "AWS4-X509-ECDSA-SHA256"
    rsa_leaf = issue("rsa", issuer=pki.root, key_type="rsa3072", hash_alg=hashes.SHA512())
    assert algorithm_for_key(rsa_leaf.cert.public_key()) == "AWS4-X509-RSA-SHA256"


def test_canonical_headers_trim_and_collapse_and_skip_unsigned() -> None:
    block, signed = protocol.canonical_headers(
        {"X-Amz-Date": "  a   b  ", "User-Agent": "x", "Authorization": "y", "X-Amzn-Trace-Id": "z", "Host": "h"}
    )
    assert block == "host:h\nx-amz-date:a b\n"
    assert signed == "host;x-amz-date"


def test_uri_encode_leaves_only_unreserved_bare() -> None:
    assert protocol.uri_encode("aZ09-_.~") == "aZ09-_.~"
    assert protocol.uri_encode(":/ +=&?#é") == "%3A%2F%20%2B%3D%26%3F%23%C3%A9"


def test_ecdsa_raw_and_rs_to_der_roundtrip() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    der = key.sign(b"msg", ec.ECDSA(__import__("cryptography").hazmat.primitives.hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    assert ecdsa_der_from_rs(r, s) == der
    raw = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    assert ecdsa_der_from_raw(raw) == der
    with pytest.raises(ValueError, match="odd length"):
        ecdsa_der_from_raw(b"\x01\x02\x03")
    # small integers with the high bit set get a leading zero
    assert ecdsa_der_from_rs(0x80, 1) == bytes.fromhex("3007020200800201 01".replace(" ", ""))


def test_digest_info_prefix_is_pkcs1_sha256() -> None:
    di = digest_info(b"abc")
    assert di.startswith(DIGEST_INFO_PREFIX["sha256"])
    assert di[len(DIGEST_INFO_PREFIX["sha256"]) :] == hashlib.sha256(b"abc").digest()
    assert len(di) == 51


def test_parse_authorization_roundtrip_and_refusals() -> None:
    value = protocol.authorization_header(
        "AWS4-X509-RSA-SHA256", 42, "20260101/r/rolesanywhere/aws4_request", "host;x-amz-date", b"\x01\x02"
    )
    parsed = protocol.parse_authorization(value)
    assert parsed.serial == "42" and parsed.signature == b"\x01\x02"
    assert parsed.signed_headers == ("host", "x-amz-date")
    for bad in [
        "AWS4-X509-RSA-SHA256 Credential=1",
        "X Credential=1/s, SignedHeaders=h, Signature=zz",
        "X Credential=1/s, Credential=2/s, SignedHeaders=h, Signature=00",
    ]:
        with pytest.raises(ValueError):
            protocol.parse_authorization(bad)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        protocol.amz_date(datetime(2026, 1, 1))


@settings(max_examples=300, deadline=None)
@given(r=st.integers(min_value=0, max_value=2**521 - 1), s=st.integers(min_value=0, max_value=2**521 - 1))
def test_ecdsa_der_agrees_with_cryptography(r: int, s: int) -> None:
    expected = utils.encode_dss_signature(r, s)
    assert ecdsa_der_from_rs(r, s) == expected
    width = max(66, (max(r, s).bit_length() + 7) // 8)
    assert ecdsa_der_from_raw(r.to_bytes(width, "big") + s.to_bytes(width, "big")) == expected
