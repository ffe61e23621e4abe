"""Property tests: our canonical request agrees with botocore's SigV4 canonicalization.

botocore's ``SigV4Auth`` is an independent implementation used by every AWS SDK call; on random
header names, values (with runs of spaces and tabs, repeated names in different case) and query
strings of arbitrary Unicode, both must produce the same canonical request and the same string
to sign (after the algorithm line, which names HMAC for botocore).
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolesanywhere_signer import protocol

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: never signed by one side or the other, and never sent by us
_SKIP = {*SIGNED_HEADERS_BLACKLIST, *protocol.UNSIGNED_HEADERS, "host", "x-amz-content-sha256"}

header_names = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=20).filter(lambda n: n.lower() not in _SKIP)
# visible ASCII plus spaces and tabs: what a header value can carry on the wire
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=40)
headers_strategy = st.lists(st.tuples(header_names, header_values), max_size=8)
query_text = st.text(max_size=30)
query_strategy = st.lists(st.tuples(query_text, query_text), max_size=6)


@lru_cache(maxsize=1)
def _auth() -> SigV4Auth:
    return SigV4Auth(BotoCredentials("AKIDEXAMPLE", "secret"), protocol.SERVICE, "us-east-2")


def _ordered_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """A dict of headers; a repeated name (any case) keeps one key per spelling, as a Mapping would."""
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = value
    return out


@_FUZZ
@given(headers=headers_strategy, query=query_strategy, body=st.binary(max_size=64))
def test_canonical_request_matches_botocore(
    headers: list[tuple[str, str]], query: list[tuple[str, str]], body: bytes
) -> None:
    hdrs = _ordered_headers(headers)
    hdrs["Host"] = "rolesanywhere.us-east-2.amazonaws.com"
    ours, signed = protocol.canonical_request("POST", "/sessions", query, hdrs, body)
    req = AWSRequest(
        method="POST", url="https://rolesanywhere.us-east-2.amazonaws.com/sessions", headers=hdrs, data=body
    )
    req.params = list(query)  # type: ignore[assignment]
    theirs = _auth().canonical_request(req)
    assert ours == theirs
    assert signed == theirs.split("\n")[-2]


@_FUZZ
@given(
    anchor=st.text(min_size=1, max_size=40),
    profile=st.text(min_size=1, max_size=40),
    role=st.text(min_size=1, max_size=40),
    name=st.none() | st.text(min_size=1, max_size=20),
    duration=st.integers(min_value=900, max_value=43200),
    chain=st.lists(st.binary(min_size=1, max_size=40), max_size=5),
    base=st.sampled_from(["", "/", "/prefix", "/a/b/"]),
    second=st.integers(min_value=0, max_value=10**9),
)
def test_signed_request_as_sent_matches_botocore(
    anchor: str,
    profile: str,
    role: str,
    name: str | None,
    duration: int,
    chain: list[bytes],
    base: str,
    second: int,
) -> None:
    """The request we put on the wire (URL, headers, body) is what we signed, by botocore's reading.

    botocore re-derives the canonical query from the URL we send, so this also proves the URL's
    query string is the canonical one that was signed.
    """
    when = datetime.fromtimestamp(1_700_000_000 + second, tz=timezone.utc)
    signed = protocol.sign_create_session(
        identity=protocol.Identity(b"\x30\x03cert", 12345, protocol.ALGORITHM_ECDSA, tuple(chain)),
        sign=lambda data: b"\x01\x02",
        request=protocol.SessionRequest(anchor, profile, role, duration, name),
        endpoint=f"https://rolesanywhere.eu-west-1.amazonaws.com{base}",
        region="eu-west-1",
        when=when,
    )
    unsigned = {k: v for k, v in signed.headers.items() if k != "Authorization"}
    req = AWSRequest(method=signed.method, url=signed.url, headers=unsigned, data=signed.body)
    auth = SigV4Auth(BotoCredentials("AKIDEXAMPLE", "secret"), protocol.SERVICE, "eu-west-1")
    theirs = auth.canonical_request(req)
    assert signed.canonical_request == theirs
    req.context["timestamp"] = signed.headers["X-Amz-Date"]
    b_sts = auth.string_to_sign(req, theirs)
    assert signed.string_to_sign.split("\n")[1:] == b_sts.split("\n")[1:]
    parsed = protocol.parse_authorization(signed.headers["Authorization"])
    assert parsed.signed_headers == tuple(theirs.split("\n")[-2].split(";"))


@_FUZZ
@given(value=st.text(max_size=50))
def test_uri_encode_leaves_only_unreserved_characters(value: str) -> None:
    encoded = protocol.uri_encode(value)
    assert all(c.isascii() and (c.isalnum() or c in "-_.~%") for c in encoded)
    from urllib.parse import unquote

    assert unquote(encoded) == value


@_FUZZ
@given(value=st.text(max_size=200))
def test_parse_authorization_raises_only_value_error(value: str) -> None:
    try:
        parsed = protocol.parse_authorization(value)
    except ValueError:
        return
    assert isinstance(parsed.signature, bytes)
