"""`csr`: PKCS#10 requests signed through the KeyHandle protocol, checked by openssl and cryptography."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from rolesanywhere_signer import csrgen, der
from rolesanywhere_signer.endpoint_server import LocalEndpoint
from rolesanywhere_signer.errors import InputError
from support.pki import PKI, Issued, issue, new_key
from support.util import ARN_ARGS, assert_one_line_error, run_cli


def write_key(tmp_path: Path, kind: str, name: str = "key.pem", password: bytes | None = None) -> tuple[Path, object]:
    key = new_key(kind)
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path = tmp_path / name
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    path.chmod(0o600)
    return path, key


def openssl_verify(csr_pem: bytes) -> str:
    proc = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-text"], input=csr_pem, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert b"verify OK" in proc.stderr or b"verify OK" in proc.stdout, proc.stderr
    return proc.stdout.decode()


def ext(csr: x509.CertificateSigningRequest, cls: type) -> x509.Extension:  # type: ignore[type-arg]
    return csr.extensions.get_extension_for_class(cls)


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa2048", "rsa3072"])
def test_csr_from_key_file_verifies_and_asks_for_what_roles_anywhere_needs(tmp_path: Path, kind: str) -> None:
    key_path, key = write_key(tmp_path, kind)
    proc = run_cli(
        [
            "csr",
            "--private-key",
            key_path,
            "--subject",
            "CN=host.example.com,OU=Ops,O=Example,C=US",
            "--san",
            "DNS:host.example.com",
            "--san",
            "IP:192.0.2.10",
            "--san",
            "IP:2001:db8::1",
            "--san",
            "URI:spiffe://example.org/host",
            "--san",
            "email:ops@example.com",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    text = openssl_verify(proc.stdout.encode())
    csr = x509.load_pem_x509_csr(proc.stdout.encode())
    assert csr.is_signature_valid
    assert csr.signature_hash_algorithm is not None and csr.signature_hash_algorithm.name == "sha256"
    assert csr.public_key() == key.public_key()  # type: ignore[attr-defined]
    assert csr.subject.rfc4514_string() == "CN=host.example.com,OU=Ops,O=Example,C=US"
    # DER order: C first, CN last, as openssl shows it
    assert [a.oid for a in csr.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    ku = ext(csr, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext(csr, x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext(csr, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host.example.com"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10", "2001:db8::1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/host"]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.com"]
    assert "TLS Web Client Authentication" in text
    assert "sha256With" in text or "ecdsa-with-SHA256" in text


def test_csr_to_certificate_to_credentials(pki: PKI, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    """The whole enrollment on a key file: key -> CSR -> certificate from the CA -> CreateSession."""
    key_path = tmp_path / "new.key"
    assert run_cli(["generate-key", "--key-type", "ec-p256", "--output", key_path]).returncode == 0
    csr_path = tmp_path / "new.csr"
    proc = run_cli(["csr", "--private-key", key_path, "--subject", "CN=enrolled.example", "--output", csr_path])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    cert = issue("enrolled.example", issuer=pki.root, public_key=csr.public_key())
    cert_path = tmp_path / "new.crt"
    cert_path.write_bytes(cert.pem)
    proc = run_cli(
        [
            "credential-process",
            "--certificate",
            cert_path,
            "--private-key",
            key_path,
            "--endpoint",
            endpoint.url,
            *ARN_ARGS,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"].startswith("ASIA")
    assert endpoint.state.sessions_created == 1


def test_csr_with_encrypted_key_uses_the_password_from_the_environment(tmp_path: Path) -> None:
    key_path, _ = write_key(tmp_path, "ec-p256", password=b"correct horse")
    proc = run_cli(
        ["csr", "--private-key", key_path, "--subject", "CN=x"],
        env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "correct horse"},
    )
    assert proc.returncode == 0, proc.stderr
    openssl_verify(proc.stdout.encode())
    wrong = run_cli(
        ["csr", "--private-key", key_path, "--subject", "CN=x"], env={"ROLESANYWHERE_SIGNER_PKCS8_PASSWORD": "wrong"}
    )
    assert_one_line_error(wrong, "wrong password")
    assert "wrong" not in wrong.stderr.replace("wrong password", "")


def test_renewal_takes_subject_and_sans_from_the_certificate(pki: PKI, tmp_path: Path) -> None:
    key = new_key("ec-p256")
    cert = issue("renew.example", issuer=pki.root, key=key)
    cert_path, key_path = pki.leaf_files("renew", Issued(cert.cert, key))
    proc = run_cli(["csr", "--certificate", cert_path, "--private-key", key_path])
    assert proc.returncode == 0, proc.stderr
    csr = x509.load_pem_x509_csr(proc.stdout.encode())
    assert csr.subject == cert.cert.subject
    other_key, _ = write_key(tmp_path, "ec-p256", "other.key")
    assert_one_line_error(
        run_cli(["csr", "--certificate", cert_path, "--private-key", other_key]), "does not match certificate"
    )


def test_subject_parser_escapes() -> None:
    name = csrgen.parse_subject(r"CN=Smith\, J.\+x \"Q\" \\ \C3\A9+UID=jsmith, O= Example\ ,C=US")
    rdns = list(name.rdns)
    assert len(rdns) == 3
    cn_rdn = rdns[-1]  # written first, stored last
    values = {a.oid: a.value for a in cn_rdn}
    assert values[NameOID.COMMON_NAME] == 'Smith, J.+x "Q" \\ é'
    assert values[NameOID.USER_ID] == "jsmith"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example "  # escaped blank kept
    assert csrgen.parse_subject("2.5.4.3=by-oid").get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "by-oid"
    assert csrgen.parse_subject("emailAddress=a@b.example,DC=example").rfc4514_string() == (
        "1.2.840.113549.1.9.1=a@b.example,DC=example"
    )


_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), min_size=1, max_size=40
).filter(lambda v: len(v.encode()) <= 64)  # X.520 upper bound, counted in UTF-8 bytes by cryptography


@settings(max_examples=200, deadline=None)
@given(cn=_values, org=_values, ou=_values)
def test_subject_parser_reads_back_what_cryptography_writes(cn: str, org: str, ou: str) -> None:
    original = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
            ),
        ]
    )
    # surrounding blanks in an RDN value are escaped by cryptography and must survive our parser
    assert csrgen.parse_subject(original.rfc4514_string()) == original


@pytest.mark.parametrize(
    ("subject", "phrase"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("host.example.com", "has no '='"),
        ("CN=a,XYZ=b", "unknown attribute type 'XYZ'"),
        ("CN=", "CN has an empty value"),
        ("CN=a,", "dangling ','"),
        ("CN=a+", "dangling '+'"),
        ("CN=a\\", "lone backslash"),
        ("CN=a\\q", "\\q is not a valid escape"),
        ('CN=say "hi"', 'unescaped "'),
        ("CN=a;O=b", "unescaped ;"),
        ("C=USA", "C='USA' is not allowed"),
        ("CN=#04024869", "hex-encoded"),
        ("CN=\\ff\\fe", "not valid UTF-8"),
        ("CN=a\tb", "control character"),
    ],
)
def test_bad_subject_is_refused_clearly(tmp_path: Path, subject: str, phrase: str) -> None:
    key_path, _ = write_key(tmp_path, "ec-p256")
    proc = run_cli(["csr", "--private-key", key_path, "--subject", subject])
    assert_one_line_error(proc, phrase)
    assert "--subject" in proc.stderr


@pytest.mark.parametrize(
    ("san", "phrase"),
    [
        ("host.example.com", "expected TYPE:value"),
        ("DNS:", "expected TYPE:value"),
        ("DNS:bad_name!", "is not a DNS name"),
        ("DNS:-lead.example", "is not a DNS name"),
        ("DNS:a b.example", "spaces"),
        ("DNS:héllo.example", "non-ASCII"),
        ("IP:999.1.1.1", "not an IPv4 or IPv6 address"),
        ("IP:host.example", "not an IPv4 or IPv6 address"),
        ("URI:no-scheme", "not an absolute URI"),
        ("email:nobody", "not an email address"),
        ("email:a@bad_domain", "not an email address"),
        ("XYZ:a", "unknown type 'XYZ'"),
    ],
)
def test_bad_san_is_refused_clearly(tmp_path: Path, san: str, phrase: str) -> None:
    key_path, _ = write_key(tmp_path, "ec-p256")
    proc = run_cli(["csr", "--private-key", key_path, "--subject", "CN=x", "--san", san])
    assert_one_line_error(proc, phrase)
    assert "--san" in proc.stderr


def test_csr_bad_inputs(pki: PKI, tmp_path: Path) -> None:
    key_path, _ = write_key(tmp_path, "ec-p256")
    assert_one_line_error(run_cli(["csr", "--subject", "CN=x"]), "--private-key is required", code=2)
    assert_one_line_error(run_cli(["csr", "--private-key", key_path]), "--subject is required", code=2)
    assert_one_line_error(
        run_cli(["csr", "--private-key", tmp_path / "nope.key", "--subject", "CN=x"]), "does not exist"
    )
    assert_one_line_error(
        run_cli(["csr", "--private-key", pki.root_path, "--subject", "CN=x"]), "holds a certificate, not a private key"
    )
    existing = tmp_path / "exists.csr"
    existing.write_text("keep me")
    assert_one_line_error(
        run_cli(["csr", "--private-key", key_path, "--subject", "CN=x", "--output", existing]), "already exists", code=2
    )
    assert existing.read_text() == "keep me"
    assert_one_line_error(
        run_cli(["csr", "--private-key", key_path, "--subject", "CN=x", "--output", "/sys/rolesanywhere-test.csr"]),
        "not writable",
    )
    assert_one_line_error(
        run_cli(["csr", "--private-key", key_path, "--subject", "CN=x", "--output", tmp_path / "missing" / "x.csr"]),
        "directory does not exist",
    )


def test_der_writer_matches_known_encodings() -> None:
    assert der.der_oid("1.2.840.113549.1.1.11") == bytes.fromhex("06092a864886f70d01010b")
    assert der.der_oid("1.2.840.10045.4.3.2") == bytes.fromhex("06082a8648ce3d040302")
    assert der.der_int(0) == b"\x02\x01\x00"
    assert der.der_int(128) == b"\x02\x02\x00\x80"
    assert der.der_len(0x7F) == b"\x7f" and der.der_len(0x80) == b"\x81\x80"
    assert der.der_len(0x1234) == b"\x82\x12\x34"
    assert der.der_set(b"\x04\x01\x02", b"\x04\x01\x01") == b"\x31\x06\x04\x01\x01\x04\x01\x02"
    with pytest.raises(InputError, match="unknown type"):
        csrgen.parse_san("FOO:bar")
