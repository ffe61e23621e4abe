"""PKCS#10 certificate signing requests signed by any backend's key.

``cryptography``'s CSR builder needs a private key object, which a token or TPM never hands out,
so the CertificationRequestInfo is encoded here (RFC 2986) and its bytes are signed through
``KeyHandle.sign``. The subject name and extension values are encoded by ``cryptography``; only
the outer structure is written by the small DER writer below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .der import der_bits, der_bool, der_int, der_octets, der_oid, der_seq, der_set, der_tlv
from .errors import InputError, UsageError
from .keytypes import KeyType, key_type_of
from .signer import KeyHandle

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"

# --- subject names (RFC 4514 strings) ----------------------------------------------------------

#: short names users write, to the attribute OIDs (upper-cased keys)
_ATTRIBUTES: dict[str, str] = {
    "CN": "2.5.4.3",
    "SN": "2.5.4.4",
    "SERIALNUMBER": "2.5.4.5",
    "C": "2.5.4.6",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "STREET": "2.5.4.9",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "TITLE": "2.5.4.12",
    "GN": "2.5.4.42",
    "GIVENNAME": "2.5.4.42",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
    "E": "1.2.840.113549.1.9.1",
}
_OID_TEXT = re.compile(r"^(?:OID\.)?([0-2](?:\.(?:0|[1-9][0-9]*))+)$", re.IGNORECASE)
_HEX = "0123456789abcdefABCDEF"
#: characters that RFC 4514 lets a backslash escape as themselves
_ESCAPABLE = ' "#+,;<=>\\'
_SUBJECT_HINT = 'write it as "CN=name,O=organisation", escaping , + " \\ < > ; with a backslash'


def _subject_error(text: str, problem: str) -> InputError:
    return InputError(f"--subject {text!r}: {problem}", hint=_SUBJECT_HINT)


def _read_value(text: str, i: int) -> tuple[str, int]:
    """Read one attribute value from ``text[i:]``; stop at an unescaped ``,`` or ``+``."""
    out = bytearray()
    # trailing unescaped blanks are dropped; escaped ones must survive, so remember where they end
    kept = 0
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i < n and text[i] == "#":
        raise _subject_error(text, "hex-encoded (#...) values are not supported")
    while i < n:
        ch = text[i]
        if ch in ",+":
            break
        if ch == "\\":
            if i + 1 >= n:
                raise _subject_error(text, "it ends with a lone backslash")
            nxt = text[i + 1]
            if nxt in _HEX and i + 2 < n and text[i + 2] in _HEX:
                out.append(int(text[i + 1 : i + 3], 16))
                i += 3
            elif nxt in _ESCAPABLE:
                out += nxt.encode()
                i += 2
            else:
                raise _subject_error(text, f"\\{nxt} is not a valid escape")
            kept = len(out)
            continue
        if ch in '";<>':
            raise _subject_error(text, f"an unescaped {ch} at position {i + 1}")
        if ord(ch) < 0x20 or ch == "\x7f":
            raise _subject_error(text, f"a control character at position {i + 1}")
        out += ch.encode()
        if ch != " ":
            kept = len(out)
        i += 1
    try:
        value = bytes(out[:kept]).decode("utf-8")
    except UnicodeDecodeError:
        raise _subject_error(text, "its \\XX escapes are not valid UTF-8") from None
    return value, i


def parse_subject(text: str) -> x509.Name:
    """Parse ``CN=host,O=Org`` (RFC 4514; the first RDN written is the most specific, as openssl -nameopt)."""
    from cryptography import x509
    from cryptography.x509.oid import ObjectIdentifier

    if not text.strip():
        raise _subject_error(text, "it is empty")
    rdns: list[list[x509.NameAttribute[str]]] = [[]]
    i, n = 0, len(text)
    while True:
        eq = text.find("=", i)
        if eq < 0:
            raise _subject_error(text, f"{text[i:].strip()!r} has no '=' (expected TYPE=value)")
        key = text[i:eq].strip()
        m = _OID_TEXT.match(key)
        oid = m.group(1) if m else _ATTRIBUTES.get(key.upper())
        if oid is None:
            known = ", ".join(k for k in _ATTRIBUTES if k not in ("E", "GIVENNAME"))
            raise _subject_error(text, f"unknown attribute type {key!r} (use one of {known}, or a dotted OID)")
        value, i = _read_value(text, eq + 1)
        if not value:
            raise _subject_error(text, f"{key} has an empty value")
        try:
            rdns[-1].append(x509.NameAttribute(ObjectIdentifier(oid), value))
        except ValueError as e:
            raise _subject_error(text, f"{key}={value!r} is not allowed: {e}") from None
        if i >= n:
            break
        sep = text[i]
        i += 1
        if sep == ",":
            rdns.append([])
        if i >= n or not text[i:].strip():
            raise _subject_error(text, f"it ends with a dangling {sep!r}")
    try:
        # RFC 4514 writes the most specific RDN first; the DER sequence holds it last
        return x509.Name([x509.RelativeDistinguishedName(r) for r in reversed(rdns)])
    except ValueError as e:
        raise _subject_error(text, str(e)) from None


# --- subject alternative names -----------------------------------------------------------------

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SAN_HINT = "use DNS:host.example.com, IP:192.0.2.10, URI:spiffe://example.org/host or email:user@example.com"


def _san_error(text: str, problem: str) -> InputError:
    return InputError(f"--san {text!r}: {problem}", hint=_SAN_HINT)


def _valid_dns(name: str, *, wildcard: bool) -> bool:
    if not name or len(name) > 253:
        return False
    labels = name.rstrip(".").split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return all(_DNS_LABEL.match(lb) for lb in labels)


def parse_san(text: str) -> x509.GeneralName:
    """``DNS:name``, ``IP:addr``, ``URI:uri`` or ``email:addr`` as a GeneralName."""
    import ipaddress
    from urllib.parse import urlsplit

    from cryptography import x509

    kind, sep, value = text.partition(":")
    kind = kind.strip().upper()
    if not sep or not value:
        raise _san_error(text, "expected TYPE:value")
    if value != value.strip() or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise _san_error(text, "the value has spaces, control or non-ASCII characters")
    if kind == "DNS":
        if not _valid_dns(value, wildcard=True):
            raise _san_error(text, f"{value!r} is not a DNS name")
        return x509.DNSName(value)
    if kind in ("IP", "IP ADDRESS"):
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise _san_error(text, f"{value!r} is not an IPv4 or IPv6 address") from None
    if kind == "URI":
        parts = urlsplit(value)
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", parts.scheme or "") or not (parts.netloc or parts.path):
            raise _san_error(text, f"{value!r} is not an absolute URI")
        return x509.UniformResourceIdentifier(value)
    if kind in ("EMAIL", "RFC822"):
        local, at, domain = value.rpartition("@")
        if not at or not local or not _valid_dns(domain, wildcard=False):
            raise _san_error(text, f"{value!r} is not an email address")
        return x509.RFC822Name(value)
    raise _san_error(text, f"unknown type {kind!r}")


# --- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsrSpec:
    subject: x509.Name
    sans: Sequence[x509.GeneralName] = ()


def _extension(oid: str, value: bytes, critical: bool) -> bytes:
    return der_seq(der_oid(oid), *([der_bool(True)] if critical else []), der_octets(value))


def _extensions(spec: CsrSpec) -> bytes:
    from cryptography import x509

    ku = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    exts = [
        _extension(ku.oid.dotted_string, ku.public_bytes(), True),
        _extension(eku.oid.dotted_string, eku.public_bytes(), False),
    ]
    if spec.sans:
        san = x509.SubjectAlternativeName(list(spec.sans))
        # RFC 5280 §4.2.1.6: the SAN extension is critical when the subject is empty
        exts.append(_extension(san.oid.dotted_string, san.public_bytes(), not list(spec.subject)))
    return der_seq(*exts)


def request_info(spec: CsrSpec, public_key: PublicKeyTypes) -> bytes:
    """DER CertificationRequestInfo: version 0, subject, SPKI, [0] { extensionRequest }."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    attribute = der_seq(der_oid(OID_EXTENSION_REQUEST), der_set(_extensions(spec)))
    attributes = der_tlv(0xA0, attribute)  # [0] IMPLICIT SET OF Attribute (one member)
    return der_seq(der_int(0), spec.subject.public_bytes(), spki, attributes)


def _key_type(public_key: PublicKeyTypes) -> KeyType:
    from .errors import NotSupportedError

    try:
        return key_type_of(public_key)
    except NotSupportedError as e:
        raise NotSupportedError(f"cannot make a CSR: {e.message}", hint=e.hint) from None


def build_csr(spec: CsrSpec, key: KeyHandle) -> x509.CertificateSigningRequest:
    """Sign the request with ``key`` (SHA-256) and check the result before handing it out."""
    from cryptography import x509

    from .errors import BackendError

    public_key = key.public_key()
    key_type = _key_type(public_key)
    info = request_info(spec, public_key)
    digest = key_type.prehash or "sha256"  # a key that signs the message itself ignores the digest
    signature = key.sign(info, digest)
    if not key_type.verify(public_key, signature, info, digest):
        raise BackendError("the key's signature over the CSR does not verify with its own public key")
    der = der_seq(info, key_type.signature_algorithm_der(), der_bits(signature))
    csr = x509.load_der_x509_csr(der)
    if not csr.is_signature_valid:  # pragma: no cover - guarded by the check above
        raise BackendError("the CSR signature does not verify")
    return csr


def spec_from_args(subject: str | None, sans: Sequence[str], certificate: x509.Certificate | None = None) -> CsrSpec:
    """The subject and SANs asked for; a certificate (renewal) supplies whichever is missing."""
    from cryptography import x509

    if subject is not None:
        name = parse_subject(subject)
    elif certificate is not None:
        name = certificate.subject
    else:
        raise UsageError("--subject is required", hint='e.g. --subject "CN=host.example.com,O=Example"')
    names = [parse_san(s) for s in sans]
    if not names and certificate is not None:
        try:
            names = list(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            pass
    return CsrSpec(name, tuple(names))
