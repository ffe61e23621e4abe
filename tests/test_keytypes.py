"""The key-type table: every row signs, verifies and is found the way the rest of the code relies on."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from rolesanywhere_signer import keytypes
from rolesanywhere_signer.enroll.issuer import IssuedCertificate, Issuer
from rolesanywhere_signer.errors import NotSupportedError
from rolesanywhere_signer.keytypes import DIGESTS, KEY_TYPES, key_type_named, key_type_of
from support.pki import KEY_TYPES as PKI_KEY_TYPES
from support.pki import PKI, new_key


def test_one_row_per_key_type_roles_anywhere_takes() -> None:
    assert [kt.name for kt in KEY_TYPES] == ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521"]
    assert [kt.cli_name for kt in KEY_TYPES] == list(PKI_KEY_TYPES)
    assert len({kt.name for kt in KEY_TYPES}) == len(KEY_TYPES)
    assert {"AWS4-X509-RSA-SHA256", "AWS4-X509-ECDSA-SHA256"} == keytypes.ALGORITHMS
    for kt in KEY_TYPES:
        assert kt.prehash == "sha256"  # the ALGORITHM's hash, for every size and curve
        assert key_type_named(kt.name) is kt and key_type_named(kt.cli_name) is kt
        assert key_type_named(kt.name.lower()) is kt


@pytest.mark.parametrize("kind", PKI_KEY_TYPES)
def test_row_of_a_key_signs_and_verifies_every_digest(kind: str) -> None:
    key = new_key(kind)
    kt = key_type_of(key.public_key())
    assert kt.cli_name == kind
    assert kt.algorithm == ("AWS4-X509-RSA-SHA256" if kind.startswith("rsa") else "AWS4-X509-ECDSA-SHA256")
    sign = kt.software_signer(key)
    for digest in DIGESTS:
        signature = sign(b"message", digest)
        assert kt.verify(key.public_key(), signature, b"message", digest)
        assert not kt.verify(key.public_key(), signature, b"messagE", digest)
        assert not kt.verify(new_key(kind).public_key(), signature, b"message", digest)


def test_host_input_is_what_a_raw_token_mechanism_signs() -> None:
    """RSA: the block fed to raw PKCS#1 v1.5 (CKM_RSA_PKCS) is the DigestInfo a hashing signature holds."""
    key = new_key("rsa2048")
    kt = key_type_of(key.public_key())
    numbers = key.public_key().public_numbers()
    for digest in DIGESTS:
        block = kt.host_input(b"data", digest)
        assert block.endswith(hashlib.new(digest, b"data").digest())
        signature = key.sign(b"data", padding.PKCS1v15(), keytypes.hash_algorithm(digest))
        encoded = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
        assert encoded.startswith(b"\x00\x01\xff") and encoded.endswith(b"\x00" + block)
    assert keytypes.EC_P384.host_input(b"data", "sha256") == hashlib.sha256(b"data").digest()


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "ec-p521"])
def test_raw_ecdsa_from_a_token_becomes_der(kind: str) -> None:
    key = new_key(kind)
    kt = key_type_of(key.public_key())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    width = (key.curve.key_size + 7) // 8
    raw = r.to_bytes(width, "big") + s.to_bytes(width, "big")
    assert kt.encode_raw(raw) == der
    assert kt.verify(key.public_key(), kt.encode_raw(raw), b"m")
    with pytest.raises(ValueError, match="odd length"):
        kt.encode_raw(raw[:-1])
    assert keytypes.RSA_2048.encode_raw(b"\x01\x02\x03") == b"\x01\x02\x03"  # PKCS#1 v1.5 is already wire form


def test_rsa_sizes_between_rows_sign_as_rsa_and_short_ones_are_refused() -> None:
    odd = key_type_of(rsa.generate_private_key(public_exponent=65537, key_size=2560).public_key())
    assert (odd.name, odd.family, odd.algorithm, odd.title) == ("RSA-2560", "rsa", "AWS4-X509-RSA-SHA256", "RSA 2560")
    with pytest.raises(NotSupportedError, match="RSA key has 1024 bits; use 2048 or more") as e:
        key_type_of(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    assert e.value.hint and "2048" in e.value.hint


def test_anything_else_is_refused_with_a_hint() -> None:
    with pytest.raises(NotSupportedError, match="key is a Ed25519 key; Roles Anywhere takes RSA or EC keys") as e:
        key_type_of(ed25519.Ed25519PrivateKey.generate().public_key())
    assert e.value.hint and "P-256" in e.value.hint
    with pytest.raises(NotSupportedError, match=r"EC key k\.pem is on curve secp256k1; use P-256, P-384 or P-521"):
        key_type_of(ec.generate_private_key(ec.SECP256K1()).public_key(), "k.pem")
    with pytest.raises(NotSupportedError, match="unknown key type 'dsa1024'") as e:
        key_type_named("dsa1024")
    assert e.value.hint and "ec-p256" in e.value.hint
    assert not keytypes.RSA_2048.verify(new_key("ec-p256").public_key(), b"sig", b"data")


# RSA 4096 generation is slow and adds nothing over 3072
@pytest.mark.parametrize("kt", [kt for kt in KEY_TYPES if kt.name != "RSA-4096"], ids=lambda kt: kt.name)
def test_generated_software_keys_are_of_their_row(kt: keytypes.KeyType) -> None:
    key = kt.generate_private_key()
    assert key_type_of(key.public_key()) == kt


def test_csr_signature_identifiers_match_what_cryptography_writes(pki: PKI) -> None:
    """The DER AlgorithmIdentifier of each row equals the one in a certificate signed by such a key."""
    from cryptography.hazmat.primitives.serialization import Encoding

    for kind in ("rsa2048", "ec-p384"):
        key = new_key(kind)
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
        der = csr.public_bytes(Encoding.DER)
        assert key_type_of(key.public_key()).signature_algorithm_der() in der
        assert csr.signature_algorithm_oid.dotted_string == key_type_of(key.public_key()).signature_oid


def test_an_issuer_is_anything_with_issue(pki: PKI) -> None:
    """The CA-integration interface: a CSR in, the certificate and its chain out (structural typing)."""

    class TestCA:
        def issue(self, csr_pem: bytes) -> IssuedCertificate:
            csr = x509.load_pem_x509_csr(csr_pem)
            leaf = pki.leaf(public_key=csr.public_key(), via_intermediate=True)
            return IssuedCertificate(leaf.cert, (pki.intermediate.cert,))

    from cryptography.hazmat.primitives.serialization import Encoding

    key = new_key("ec-p256")
    csr_pem = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    issuer: Issuer = TestCA()
    issued = issuer.issue(csr_pem.public_bytes(Encoding.PEM))
    assert issued.certificate.public_key() == key.public_key()
    assert issued.chain == (pki.intermediate.cert,)
    with pytest.raises(AttributeError):
        issued.chain = ()  # type: ignore[misc]  # frozen
