"""ML-DSA-44/65/87 keys in files: every PKCS#8 form, every command, and the local endpoint's verification.

Each accepted request is verified a second time here, independently: the string to sign is rebuilt
from what the endpoint received (with hashlib and urllib only) and checked with ``cryptography``'s
ML-DSA verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer import mldsa
from rolesanywhere_signer.endpoint_server import LocalEndpoint, ReceivedRequest
from rolesanywhere_signer.pkcs8 import pem_body
from support.mldsa import expanded_of, key_file, pem, pkcs8, seed_of
from support.pki import PKI, issue, new_key
from support.util import ARN_ARGS, assert_one_line_error, clean_env, run_cli


def cli(args: list[Any], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli([str(a) for a in args], env=env)


KEY_TYPES = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
PASSWORD = "correct horse battery staple"
#: (form inside the file, key derivation when encrypted)
VARIANTS = [
    ("seed", None),
    ("both", None),
    ("both", "pbkdf2-sha1"),
    ("both", "pbkdf2-sha256"),
    ("seed", "scrypt"),
    ("both", "scrypt"),
]


def string_to_sign(req: ReceivedRequest) -> tuple[str, bytes, bytes, bytes]:
    """(algorithm, string to sign, signature, certificate DER), rebuilt from the request as received."""
    split = urlsplit(req.raw_path)
    headers: dict[str, list[str]] = {}
    for k, v in req.headers:
        headers.setdefault(k.lower(), []).append(v)
    algorithm, _, rest = headers["authorization"][0].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    signed = fields["SignedHeaders"].split(";")
    scope = fields["Credential"].split("/", 1)[1]
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(split.query))
    canonical = "\n".join(
        [
            "POST",
            split.path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{h}:{' '.join(','.join(headers[h]).split())}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(req.body).hexdigest(),
        ]
    )
    sts = "\n".join([algorithm, headers["x-amz-date"][0], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    return algorithm, sts.encode(), bytes.fromhex(fields["Signature"]), base64.b64decode(headers["x-amz-x509"][0])


def verify_independently(req: ReceivedRequest, cert: x509.Certificate, key_type: str) -> None:
    algorithm, sts, signature, cert_der = string_to_sign(req)
    assert algorithm == "AWS4-X509-MLDSA"
    assert cert_der == cert.public_bytes(serialization.Encoding.DER)
    assert len(signature) == mldsa.BY_KEY_TYPE[key_type].signature_bytes
    public: Any = cert.public_key()
    public.verify(signature, sts)  # raises InvalidSignature: pure ML-DSA over the bytes, empty context
    with pytest.raises(InvalidSignature):
        public.verify(signature, hashlib.sha256(sts).digest())  # not over a pre-hash


def mldsa_identity(pki: PKI, tmp_path: Path, key_type: str, form: str = "both", kdf: str | None = None) -> Any:
    key = new_key(key_type)
    leaf = pki.leaf(key=key, cn=f"leaf {key_type}")
    cert = pki.write(f"{tmp_path.name}-{key_type}.crt", leaf.pem)
    key_path = tmp_path / f"{key_type}-{form}-{kdf}.key"
    key_path.write_bytes(key_file(key, key_type, form, PASSWORD.encode() if kdf else None, kdf or "pbkdf2-sha256"))
    key_path.chmod(0o600)
    return key, leaf, cert, key_path


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize(("form", "kdf"), VARIANTS)
def test_credential_process_with_every_form(
    pki: PKI, endpoint: LocalEndpoint, tmp_path: Path, key_type: str, form: str, kdf: str | None
) -> None:
    _, leaf, cert, key_path = mldsa_identity(pki, tmp_path, key_type, form, kdf)
    env = {"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": PASSWORD} if kdf else None
    args = ["credential-process", "--certificate", cert, "--private-key", key_path, "--endpoint", endpoint.url]
    proc = cli([*args, *ARN_ARGS], env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["Version"] == 1 and str(doc["AccessKeyId"]).startswith("ASIA")
    assert endpoint.state.sessions_created == 1
    verify_independently(endpoint.state.accepted[0], leaf.cert, key_type)


def test_library_api_and_update(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    from rolesanywhere_signer import IdentityOptions, RequestOptions, get_credentials
    from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

    _, leaf, cert, key_path = mldsa_identity(pki, tmp_path, "ml-dsa-65")
    creds = get_credentials(
        IdentityOptions(certificate=str(cert), private_key=str(key_path)),
        RequestOptions(
            trust_anchor_arn=TRUST_ANCHOR_ARN, profile_arn=PROFILE_ARN, role_arn=ROLE_ARN, endpoint=endpoint.url
        ),
    )
    assert creds.access_key_id.startswith("ASIA")
    credfile = tmp_path / "credentials"
    proc = cli(
        ["update", "--once", "--certificate", cert, "--private-key", key_path, "--endpoint", endpoint.url, *ARN_ARGS],
        env={"AWS_SHARED_CREDENTIALS_FILE": str(credfile)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "aws_session_token" in credfile.read_text()
    assert endpoint.state.sessions_created == 2
    for req in endpoint.state.accepted:
        verify_independently(req, leaf.cert, "ml-dsa-65")


def test_serve_answers_with_mldsa_credentials(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    import time
    import urllib.error
    import urllib.request

    from support.util import free_port

    _, leaf, cert, key_path = mldsa_identity(pki, tmp_path, "ml-dsa-44")
    port = free_port()
    args = ["serve", "--port", str(port), "--certificate", str(cert), "--private-key", str(key_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolesanywhere_signer", *args, "--endpoint", endpoint.url, *ARN_ARGS],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                put = urllib.request.Request(
                    f"http://127.0.0.1:{port}/latest/api/token",
                    method="PUT",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                )
                token = urllib.request.urlopen(put, timeout=2).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/latest/meta-data/iam/security-credentials/"
        get = urllib.request.Request(base, headers={"X-aws-ec2-metadata-token": token})
        role = urllib.request.urlopen(get, timeout=2).read().decode().strip()
        get = urllib.request.Request(base + role, headers={"X-aws-ec2-metadata-token": token})
        while True:  # serve listens at once and answers 503 until its first CreateSession is done
            try:
                doc = json.loads(urllib.request.urlopen(get, timeout=2).read())
                break
            except urllib.error.HTTPError as e:
                if e.code != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert doc["Code"] == "Success" and doc["AccessKeyId"].startswith("ASIA")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    verify_independently(endpoint.state.accepted[0], leaf.cert, "ml-dsa-44")


# ---------------------------------------------------------------- bad input, one line each


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mldsa-bad")
    key = new_key("ml-dsa-65")
    seed = seed_of(key)
    other = seed_of(new_key("ml-dsa-65"))
    files = {
        "expanded": pem(pkcs8("ml-dsa-65", seed, "expanded"), "PRIVATE KEY"),
        "mismatch": pem(pkcs8("ml-dsa-65", seed, "both", expanded=expanded_of("ml-dsa-65", other)[1]), "PRIVATE KEY"),
        "encrypted": key_file(key, "ml-dsa-65", "both", PASSWORD.encode(), "scrypt"),
        "encrypted-seed": key_file(key, "ml-dsa-65", "seed", PASSWORD.encode(), "pbkdf2-sha256"),
        "good": key_file(key, "ml-dsa-65", "both"),
    }
    out = {}
    for name, data in files.items():
        p = base / f"{name}.key"
        p.write_bytes(data)
        p.chmod(0o600)
        out[name] = p
    return out


def _cp(pki: PKI, cert: Path, key: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    args = ["credential-process", "--certificate", cert, "--private-key", key, "--endpoint", "http://127.0.0.1:9"]
    return cli([*args, *extra, *ARN_ARGS], env=env)


def test_expanded_only_key_is_refused(pki: PKI, bad_files: dict[str, Path]) -> None:
    cert = pki.write("any-ec.crt", pki.leaf().pem)
    proc = _cp(pki, cert, bad_files["expanded"])
    assert_one_line_error(proc, "holds only the expanded ML-DSA-65 key")
    assert "re-export the key with the seed" in proc.stderr


def test_seed_whose_expanded_key_does_not_match(pki: PKI, bad_files: dict[str, Path]) -> None:
    cert = pki.write("any-ec2.crt", pki.leaf().pem)
    assert_one_line_error(_cp(pki, cert, bad_files["mismatch"]), "expanded ML-DSA-65 key does not belong to its seed")


@pytest.mark.parametrize("which", ["encrypted", "encrypted-seed"])
def test_wrong_password(pki: PKI, bad_files: dict[str, Path], which: str) -> None:
    cert = pki.write("any-ec3.crt", pki.leaf().pem)
    proc = _cp(pki, cert, bad_files[which], env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "not the password"})
    assert_one_line_error(proc, "wrong password")
    assert "not the password" not in proc.stderr


def test_mldsa_key_with_ec_certificate(pki: PKI, bad_files: dict[str, Path]) -> None:
    cert = pki.write("ec-for-mldsa.crt", pki.leaf().pem)
    assert_one_line_error(_cp(pki, cert, bad_files["good"]), "does not match certificate")


def test_ec_key_with_mldsa_certificate(pki: PKI, tmp_path: Path) -> None:
    ec_leaf = pki.leaf()
    _, _, cert, _ = mldsa_identity(pki, tmp_path, "ml-dsa-65")
    key = pki.write("ec-alone.key", ec_leaf.key_pem())
    assert_one_line_error(_cp(pki, cert, key), "does not match certificate")


def test_hostile_key_derivation_parameters_are_refused(pki: PKI, tmp_path: Path) -> None:
    from rolesanywhere_signer.der import der_int, der_octets, der_oid, der_seq

    def pbes2(kdf: bytes) -> Path:
        scheme = der_seq(
            der_oid("1.2.840.113549.1.5.13"),
            der_seq(kdf, der_seq(der_oid("2.16.840.1.101.3.4.1.42"), der_octets(b"\0" * 16))),
        )
        p = tmp_path / f"hostile{len(list(tmp_path.iterdir()))}.key"
        p.write_bytes(pem(der_seq(scheme, der_octets(b"\0" * 64)), "ENCRYPTED PRIVATE KEY"))
        return p

    pbkdf2 = der_seq(der_oid("1.2.840.113549.1.5.12"), der_seq(der_octets(b"s" * 16), der_int(2**40)))
    scrypt = der_seq(
        der_oid("1.3.6.1.4.1.11591.4.11"), der_seq(der_octets(b"s" * 16), der_int(2**30), der_int(8), der_int(1))
    )
    cert = pki.write("any-ec4.crt", pki.leaf().pem)
    env = {"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": PASSWORD}
    assert_one_line_error(_cp(pki, cert, pbes2(pbkdf2), env=env), "PBKDF2 iterations; refused")
    assert_one_line_error(_cp(pki, cert, pbes2(scrypt), env=env), "scrypt N=1073741824")


def test_old_cryptography_gets_an_upgrade_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa as crypto_mldsa

    from rolesanywhere_signer.errors import NotSupportedError

    monkeypatch.delattr(crypto_mldsa, "MLDSA65PrivateKey")
    with pytest.raises(NotSupportedError, match="upgrade cryptography"):
        mldsa.generate("ml-dsa-65")


def test_expanded_key_check_matches_fips204() -> None:
    key = new_key("ml-dsa-87")
    pk, sk = expanded_of("ml-dsa-87", seed_of(key))
    assert pk == key.public_key().public_bytes_raw()
    assert mldsa.expanded_key_matches(pk, sk)
    tampered = sk[:70] + bytes([sk[70] ^ 1]) + sk[71:]
    assert not mldsa.expanded_key_matches(pk, tampered)


# ---------------------------------------------------------------- the other commands


def test_generate_key_writes_the_seed_form(tmp_path: Path) -> None:
    for key_type in KEY_TYPES:
        out = tmp_path / f"{key_type}.key"
        proc = cli(["generate-key", "--key-type", key_type, "--output", out])
        assert proc.returncode == 0, proc.stderr
        assert f"created a new {key_type.upper()} key" in proc.stderr
        der = pem_body(out.read_bytes(), "PRIVATE KEY")
        assert der is not None and mldsa.sniff(der) == mldsa.BY_KEY_TYPE[key_type]
        assert der.endswith(b"\x04\x22\x80\x20" + der[-32:])  # privateKey OCTET STRING { [0] seed }
        key: Any = serialization.load_pem_private_key(out.read_bytes(), None)
        assert key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode() == (proc.stdout)
        assert out.stat().st_mode & 0o777 == 0o600


def test_generate_key_encrypted_then_csr_verifies(tmp_path: Path) -> None:
    out = tmp_path / "enc.key"
    env = {"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": PASSWORD}
    proc = cli(["generate-key", "--key-type", "ml-dsa-65", "--output", out, "--encrypt"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    proc = cli(["csr", "--private-key", out, "--subject", "CN=pq.example.com"], env=env)
    assert proc.returncode == 0, proc.stderr
    csr = x509.load_pem_x509_csr(proc.stdout.encode())
    assert csr.is_signature_valid
    assert csr.signature_algorithm_oid.dotted_string == "2.16.840.1.101.3.4.3.18"
    assert type(csr.public_key()).__name__ == "MLDSA65PublicKey"


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_csr_signature_algorithm_has_absent_parameters(tmp_path: Path, key_type: str) -> None:
    from rolesanywhere_signer.der import der_oid, der_seq

    key = new_key(key_type)
    path = tmp_path / "k.key"
    path.write_bytes(key_file(key, key_type, "both"))
    proc = cli(["csr", "--private-key", path, "--subject", "CN=pq"])
    assert proc.returncode == 0, proc.stderr
    csr = x509.load_pem_x509_csr(proc.stdout.encode())
    assert csr.is_signature_valid
    key.public_key().verify(csr.signature, csr.tbs_certrequest_bytes)
    der = csr.public_bytes(serialization.Encoding.DER)
    oid = mldsa.BY_KEY_TYPE[key_type].oid
    # Certificate­Request ::= SEQUENCE { info, AlgorithmIdentifier { id-ml-dsa-* } (no parameters), BIT STRING }
    assert der_seq(der_oid(oid)) + b"\x03" in der[len(csr.tbs_certrequest_bytes) :]


def test_read_certificate_data_names_the_key_type(pki: PKI, tmp_path: Path) -> None:
    for key_type in KEY_TYPES:
        _, _, cert, _ = mldsa_identity(pki, tmp_path, key_type)
        proc = cli(["read-certificate-data", "--certificate", cert])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[0])["keyType"] == key_type.upper()


def test_sign_string_signs_the_message_itself(pki: PKI, tmp_path: Path) -> None:
    key, _, cert, key_path = mldsa_identity(pki, tmp_path, "ml-dsa-87")
    message = b"AWS4-X509-MLDSA\n20260101T000000Z\nscope\nabc"
    args = [sys.executable, "-m", "rolesanywhere_signer", "sign-string", "--certificate", str(cert)]
    args += ["--private-key", str(key_path), "--format", "bin", "--stdin"]  # --stdin: sign these bytes
    proc = subprocess.run(
        args,
        input=message,
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    key.public_key().verify(proc.stdout, message)


def test_doctor_passes_every_check_with_an_mldsa_ca(tmp_path: Path) -> None:
    ca_key = new_key("ml-dsa-87")
    ca = issue("ML-DSA Root CA", key=ca_key, ca=True, days=365)
    key = new_key("ml-dsa-65")
    leaf = issue("pq host", issuer=ca, key=key)
    for name, data in (("ca.pem", ca.pem), ("leaf.crt", leaf.pem), ("leaf.key", key_file(key, "ml-dsa-65", "both"))):
        (tmp_path / name).write_bytes(data)
    args = ["doctor", "--certificate", tmp_path / "leaf.crt", "--private-key", tmp_path / "leaf.key"]
    proc = cli([*args, "--trust-anchor-certificate", tmp_path / "ca.pem", *ARN_ARGS, "--json"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert all(c["status"] == "pass" for c in checks.values()), checks
    assert "ML-DSA-65 key" in checks["key-match"]["detail"]
    assert checks["signature-hash"]["detail"] == "signed with ML-DSA-87"


def test_doctor_fails_key_match_for_the_wrong_mldsa_key(pki: PKI, tmp_path: Path, bad_files: dict[str, Path]) -> None:
    _, _, cert, _ = mldsa_identity(pki, tmp_path, "ml-dsa-65")
    proc = cli(["doctor", "--certificate", cert, "--private-key", bad_files["good"], "--json"])
    assert proc.returncode != 0
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["key-match"]["status"] == "fail"


# ---------------------------------------------------------------- the local endpoint's verification


def test_endpoint_accepts_an_mldsa_ca_and_refuses_forgeries(tmp_path: Path) -> None:
    import datetime as dt

    from rolesanywhere_signer import protocol
    from rolesanywhere_signer.endpoint_server import EndpointState, Refusal, verify_request
    from support.util import PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN

    ca = issue("ML-DSA Root CA", key=new_key("ml-dsa-44"), ca=True, days=365)
    key = new_key("ml-dsa-65")
    leaf = issue("pq host", issuer=ca, key=key)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    state = EndpointState(anchors=[ca.cert], clock=lambda: now)
    ident = protocol.Identity(leaf.der, leaf.cert.serial_number, protocol.ALGORITHM_MLDSA)
    request = protocol.SessionRequest(TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN)

    def received(sign: Any, identity: protocol.Identity = ident) -> ReceivedRequest:
        signed = protocol.sign_create_session(
            identity=identity, sign=sign, request=request, endpoint="https://ra.test", region="us-east-2", when=now
        )
        path = signed.url.split("ra.test", 1)[1]
        return ReceivedRequest("POST", path, list(signed.headers.items()), signed.body)

    assert verify_request(received(key.sign), state)["credentialSet"]
    with pytest.raises(Refusal, match="Invalid signature"):
        verify_request(received(lambda data: key.sign(hashlib.sha256(data).digest())), state)
    with pytest.raises(Refusal, match="Invalid signature"):
        verify_request(received(lambda data: key.sign(data, b"context")), state)
    wrong_name = protocol.Identity(leaf.der, leaf.cert.serial_number, protocol.ALGORITHM_ECDSA)
    with pytest.raises(Refusal, match="does not match the certificate's key type"):
        verify_request(received(key.sign, wrong_name), state)


# ---------------------------------------------------------------- TPM: no ML-DSA


def test_tpm_refuses_mldsa(pki: PKI, tmp_path: Path) -> None:
    proc = cli(["generate-key", "--tpm", "--key-type", "ml-dsa-65", "--output", tmp_path / "k.tss"])
    assert_one_line_error(proc, "TPM 2.0 has no ML-DSA")
    assert not (tmp_path / "k.tss").exists()
    _, _, cert, _ = mldsa_identity(pki, tmp_path, "ml-dsa-65")
    proc = cli(["credential-process", "--certificate", cert, "--private-key", "handle:0x81000001", *ARN_ARGS])
    assert_one_line_error(proc, "which a TPM 2.0 cannot hold")


# ---------------------------------------------------------------- cold path


def test_ec_credential_process_never_imports_mldsa(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    cert, key = pki.leaf_files("cold-ec", pki.leaf())
    args = ["credential-process", "--certificate", str(cert), "--private-key", str(key), "--endpoint", endpoint.url]
    probe = (
        "import json, sys\n"
        "from rolesanywhere_signer.cli import main\n"
        f"rc = main({[*args, *ARN_ARGS]!r})\n"
        # cryptography's own key-type unions import its ML-DSA classes; ours must stay out
        "seen = sorted(m for m in sys.modules if m in ('rolesanywhere_signer.mldsa', 'rolesanywhere_signer.pkcs8') "
        "or m.startswith('dilithium'))\n"
        "print()\n"  # credential-process prints its JSON without a newline, as the reference
        "print(json.dumps({'rc': rc, 'seen': seen}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"rc": 0, "seen": []}
    assert endpoint.state.sessions_created == 1


# ---------------------------------------------------------------- hostile bytes


def _mutations() -> Any:
    from hypothesis import strategies as st

    key = new_key("ml-dsa-44")
    seeds = [
        pkcs8("ml-dsa-44", seed_of(key), "seed"),
        pkcs8("ml-dsa-44", seed_of(key), "both"),
        key_file(key, "ml-dsa-44", "both", b"pw", "pbkdf2-sha256"),
    ]
    return st.tuples(st.sampled_from(seeds), st.integers(0, 5000), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + len(t[2]) :]
    )


def test_damaged_files_raise_only_our_errors() -> None:
    from hypothesis import HealthCheck, given, settings

    from rolesanywhere_signer.errors import SignerError

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=_mutations())
    def check(data: bytes) -> None:
        for password in (None, b"pw"):
            try:
                mldsa.load_pkcs8(data, password, "fuzz.key")
            except SignerError:
                pass

    check()


@pytest.mark.parametrize("encrypted", [False, True])
def test_der_key_files_load_too(tmp_path: Path, encrypted: bool) -> None:
    from rolesanywhere_signer.backends.pem import parse_private_key
    from rolesanywhere_signer.options import IdentityOptions
    from rolesanywhere_signer.secret import Secret
    from support.mldsa import encrypt

    key = new_key("ml-dsa-87")
    der = pkcs8("ml-dsa-87", seed_of(key), "both")
    if encrypted:
        der = encrypt(der, PASSWORD.encode(), "scrypt", key_bytes=16)
    opts = IdentityOptions(pkcs8_password=Secret(PASSWORD)) if encrypted else IdentityOptions()
    loaded: Any = parse_private_key(der, "k.der", opts)
    assert loaded.public_key() == key.public_key()
