"""PKCS#11 backend (HSMs, smartcards, YubiKey PIV): the key stays on the token, the token signs.

Certificates are searched without login first (log in only if the token hides them). The key is
found by the URI's id/label, else the certificate's CKA_ID, else by its public key (modulus or
EC point) — never by trial signatures, which cost a PIN entry and a touch on a YubiKey.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import BackendError, InputError, NoCertificateError, NotSupportedError, SignerError, UsageError
from ..keytypes import KEY_TYPES as ALL_KEY_TYPES
from ..keytypes import DigestName, KeyType, key_type_named, rsa_key_type
from ..options import IdentityOptions
from ..pkcs11_uri import Pkcs11Uri, format_uri, is_pkcs11_uri, parse_uri
from ..secret import Secret
from ..signer import KeySigner
from .pkcs11_token import (
    CKF_HW_SLOT,
    TokenSession,
    describe_tokens,
    is_recoverable,
    load_library,
    locked_error,
    matching_tokens,
    pin_source,
    pinentry_choice,
    resolve_module,
    token_id,
)

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurve
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from cryptography.hazmat.primitives.hashes import HashAlgorithm
    from pkcs11 import Attribute, Object, ObjectClass, PublicKey
    from pkcs11 import SignMixin as SigningKey  # a private-key object: python-pkcs11 mixes in sign()

    from ..checks import Check

#: a sign slower than this shows "touch your security key" (hardware slots only)
TOUCH_DELAY = 0.6
YUBICO_ATTESTATION_OID_PREFIX = "1.3.6.1.4.1.41482.3."
#: what ``generate-key --pkcs11`` makes
KEY_TYPES = ("rsa2048", "rsa3072", "ec-p256", "ec-p384")
# ykcs11 2.2 gives explicit curve parameters (SEC 1 ECParameters): known by their field prime
_CURVE_PRIMES = {
    bytes.fromhex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"): "1.2.840.10045.3.1.7",
    bytes.fromhex("ff" * 28 + "fffffffeffffffff0000000000000000ffffffff"): "1.3.132.0.34",
    bytes.fromhex("01" + "ff" * 65): "1.3.132.0.35",
}


# ---------------------------------------------------------------- what the user named


@dataclass(frozen=True)
class Request:
    """The certificate and key URIs after applying the reference's defaults."""

    cert_uri: Pkcs11Uri | None  # None: the certificate comes from a file
    key_uri: Pkcs11Uri
    key_explicit: bool  # the key URI names the key itself (separate --private-key)


def _parse(value: str, flag: str) -> Pkcs11Uri:
    from ..pkcs11_uri import UriError

    try:
        return parse_uri(value)
    except UriError as e:
        raise UriError(f"{flag}: {e.message}", hint=e.hint) from None


def _request(opts: IdentityOptions) -> Request:
    if opts.pkcs11_uri:
        if is_pkcs11_uri(opts.certificate) or is_pkcs11_uri(opts.private_key):
            raise UsageError("--pkcs11-uri replaces --certificate pkcs11:… and --private-key pkcs11:…; give one way")
        uri = _parse(opts.pkcs11_uri, "--pkcs11-uri")
        if opts.certificate:  # a certificate file and the key on the token
            return Request(None, uri, True)
        return Request(uri, uri, False)
    cert = _parse(str(opts.certificate), "--certificate") if is_pkcs11_uri(opts.certificate) else None
    if is_pkcs11_uri(opts.private_key):
        assert opts.private_key
        return Request(cert, _parse(opts.private_key, "--private-key"), True)
    if cert is None:
        raise UsageError("no pkcs11: URI given", hint="use --pkcs11-uri or --certificate pkcs11:…")
    if opts.private_key:
        raise UsageError(
            "--certificate is a pkcs11: URI but --private-key is a file", hint="put both on the token, or both in files"
        )
    return Request(cert, cert, False)


def _uris(req: Request) -> list[Pkcs11Uri]:
    return [u for u in (req.key_uri, req.cert_uri) if u is not None]


def _open_tokens(
    opts_lib: str | None, uris: list[Pkcs11Uri], first: Pkcs11Uri, *, rw: bool = False
) -> list[TokenSession]:
    module = resolve_module(opts_lib, uris)
    lib = load_library(module)
    tokens = matching_tokens(lib, first)
    if not tokens:
        raise BackendError(
            f"no token matches {first} in PKCS#11 module {module} (present: {describe_tokens(lib)})",
            hint="check token=/serial= in the URI and that the token is inserted",
        )
    program = pinentry_choice(uris)
    return [
        TokenSession(module, lib, t, pin_source(uris, f"token {t.label.strip()!r}"), rw=rw, pinentry=program)
        for t in tokens
    ]


def _close_all(sessions: Sequence[TokenSession], keep: TokenSession | None = None) -> None:
    for ts in sessions:
        if ts is not keep:
            ts.close()


# ---------------------------------------------------------------- objects on the token


@dataclass(frozen=True)
class CertObject:
    ts: TokenSession
    label: str
    id: bytes
    cert: x509.Certificate

    def uri(self) -> Pkcs11Uri:
        return Pkcs11Uri(
            token=self.ts.id.label,
            serial=self.ts.id.serial or None,
            object=self.label or None,
            id=self.id or None,
            type="cert",
        )

    def summary(self) -> str:
        return (
            f"{format_uri(self.uri())} (subject {self.cert.subject.rfc4514_string()}, "
            f"notAfter {self.cert.not_valid_after_utc:%Y-%m-%d})"
        )


def _A() -> type[Attribute]:
    import pkcs11

    return pkcs11.Attribute


def _attr(obj: Object, name: str, default: Any = None) -> Any:  # attribute values are of many types
    import pkcs11

    try:
        return obj[getattr(pkcs11.Attribute, name)]
    except (pkcs11.PKCS11Error, KeyError):
        return default


def _template(uri: Pkcs11Uri, cls: ObjectClass) -> dict[Attribute, Any]:
    A = _A()
    t: dict[Attribute, Any] = {A.CLASS: cls}
    if uri.id is not None:
        t[A.ID] = uri.id
    if uri.object is not None:
        t[A.LABEL] = uri.object
    return t


def _certs_on(ts: TokenSession, uri: Pkcs11Uri | None) -> list[CertObject]:
    import pkcs11
    from cryptography import x509

    A = _A()
    template = _template(uri or Pkcs11Uri(), pkcs11.ObjectClass.CERTIFICATE)
    template[A.CERTIFICATE_TYPE] = pkcs11.CertificateType.X_509
    out = []
    for obj in ts.objects(template):
        der = _attr(obj, "VALUE", b"")
        try:
            cert = x509.load_der_x509_certificate(bytes(der))
        except ValueError:
            continue  # not parseable: not ours to use
        out.append(CertObject(ts, str(_attr(obj, "LABEL", "") or ""), bytes(_attr(obj, "ID", b"") or b""), cert))
    return out


def _search_certs(sessions: Sequence[TokenSession], uri: Pkcs11Uri) -> list[CertObject]:
    """Without login first; log in only on tokens that hide their certificates."""
    found = [c for ts in sessions for c in _certs_on(ts, uri)]
    if found:
        return found
    for ts in sessions:
        if ts.login_required and not ts.logged_in:
            ts.login()
            found += _certs_on(ts, uri)
    return found


def is_attestation(c: CertObject) -> bool:
    """A YubiKey PIV attestation certificate (same id as the slot's key and certificate)."""
    if "attestation" in c.label.lower():
        return True
    return any(ext.oid.dotted_string.startswith(YUBICO_ATTESTATION_OID_PREFIX) for ext in c.cert.extensions)


def _is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509 as _x509

    try:
        return bool(cert.extensions.get_extension_for_class(_x509.BasicConstraints).value.ca)
    except _x509.ExtensionNotFound:
        return False


def _pick_leaf(cands: list[CertObject], uri: Pkcs11Uri) -> CertObject:
    # attestation and CA certificates share ids/tokens with the leaf; they are never the identity
    usable = [c for c in cands if not is_attestation(c)] or cands
    usable = [c for c in usable if not _is_ca(c.cert)] or usable
    unique = {(c.ts.id, c.cert.fingerprint(_sha256())): c for c in usable}
    if len(unique) == 1:
        return next(iter(unique.values()))
    listed = "; ".join(c.summary() for c in unique.values())
    raise InputError(
        f"{len(unique)} certificates match {uri}: {listed}",
        hint="copy one URI (add token=, id= or object=)",
    )


def _sha256() -> HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _ec_point(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING in the standard; some modules give the raw point."""
    if len(value) > 2 and value[0] == 0x04:
        if value[1] < 0x80 and len(value) == 2 + value[1]:
            return value[2:]
        if value[1] == 0x81 and len(value) == 3 + value[2]:
            return value[3:]
    return value


def _curve_row(params: bytes | None) -> KeyType:
    """The EC row for CKA_EC_PARAMS (a DER namedCurve OID)."""
    from ..der import der_oid

    explicit = None
    if params is not None and bytes(params[:1]) == b"\x30":
        explicit = next((oid for prime, oid in _CURVE_PRIMES.items() if prime in bytes(params)), None)
    for row in ALL_KEY_TYPES:
        if (
            row.curve_oid is not None
            and params is not None
            and (der_oid(row.curve_oid) == bytes(params) or row.curve_oid == explicit)
        ):
            return row
    raise NotSupportedError("the token's EC key is on a curve Roles Anywhere does not take; use P-256 or P-384")


def _curve(params: bytes) -> EllipticCurve:
    return _curve_row(params).curve_object()


def _cert_point(cert: x509.Certificate) -> bytes | None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return None


def _key_public(ts: TokenSession, key: SigningKey) -> PublicKeyTypes | None:
    """The public key of a private key object: RSA from its modulus, EC from its public twin."""
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    A = _A()
    kt = _attr(key, "KEY_TYPE")
    if kt == pkcs11.KeyType.RSA:
        n, e = _attr(key, "MODULUS"), _attr(key, "PUBLIC_EXPONENT")
        if n is None or e is None:
            return None
        return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
    if kt == pkcs11.KeyType.EC:
        params = _attr(key, "EC_PARAMS")
        kid = _attr(key, "ID", b"")
        pubs = list(ts.objects({A.CLASS: pkcs11.ObjectClass.PUBLIC_KEY, A.ID: kid})) if kid else []
        for pub in pubs:
            point = _attr(pub, "EC_POINT")
            if point is not None:
                return ec.EllipticCurvePublicKey.from_encoded_point(
                    _curve(params or _attr(pub, "EC_PARAMS")), _ec_point(bytes(point))
                )
    return None


def _check_key_type(ts: TokenSession, key: SigningKey, what: str) -> KeyType:
    """The key-type row of a private key object (RSA of unknown size signs as any RSA row does)."""
    import pkcs11

    kt = _attr(key, "KEY_TYPE")
    family = next(
        (row.family for row in ALL_KEY_TYPES if row.pkcs11_key_type and kt == pkcs11.KeyType[row.pkcs11_key_type]), None
    )
    if family == "rsa":
        bits = len(_attr(key, "MODULUS", b"") or b"") * 8
        row = rsa_key_type(bits or 2048)
        if row is None:
            raise NotSupportedError(f"RSA key {what} on {ts.id.describe()} has {bits} bits; use 2048 or more")
        return row
    if family == "ec":
        params = _attr(key, "EC_PARAMS")
        if params is not None:
            return _curve_row(params)
        return key_type_named("ec-p256")  # no CKA_EC_PARAMS: every EC row signs alike (CKM_ECDSA, host hash)
    name = getattr(kt, "name", str(kt))
    raise NotSupportedError(
        f"private key {what} on {ts.id.describe()} is a {name} key; Roles Anywhere takes RSA or EC keys",
        hint="use an RSA 2048+ or EC P-256/P-384 key",
    )


def _agrees(key: SigningKey, cert: x509.Certificate) -> bool | None:
    """Whether a private key object can be the certificate's key, from the object's own attributes:
    the key type, then the RSA modulus or the EC curve. None when the object says too little.

    An EC private object (a YubiKey slot, the reference's ``*-always-auth`` objects) often has no
    public twin; its type and curve still tell an RSA certificate's key from it.
    """
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pub = cert.public_key()
    kt = _attr(key, "KEY_TYPE")
    if kt == pkcs11.KeyType.RSA:
        if not isinstance(pub, rsa.RSAPublicKey):
            return False
        n = _attr(key, "MODULUS")
        return None if n is None else int.from_bytes(bytes(n), "big") == pub.public_numbers().n
    if kt == pkcs11.KeyType.EC:
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            return False
        params = _attr(key, "EC_PARAMS")
        if params is None:
            return None
        try:
            return _curve_row(bytes(params)).curve == pub.curve.name
        except NotSupportedError:
            return False
    return False


def _check_agrees(ts: TokenSession, key: SigningKey, cert: x509.Certificate) -> None:
    from ..certs import describe
    from ..errors import KeyMismatchError

    if _agrees(key, cert) is False:
        raise KeyMismatchError(
            f"private key {_key_name(key)} on {ts.id.describe()} does not match certificate {describe(cert)} "
            "(another key type, curve or modulus)",
            hint="fix id=/object= in the key URI",
        )


def _same_key(ts: TokenSession, keys: list[SigningKey]) -> bool:
    """Several objects holding one key (the same key imported twice): either will do."""
    from ..certs import public_keys_equal

    publics = [_key_public(ts, k) for k in keys]
    first = publics[0]
    return first is not None and all(p is not None and public_keys_equal(first, p) for p in publics[1:])


def _private_keys(objects: Iterator[Object]) -> list[SigningKey]:
    """Objects found with CKA_CLASS=CKO_PRIVATE_KEY: python-pkcs11 gives them ``sign``."""
    return cast("list[SigningKey]", list(objects))


def _key_name(key: SigningKey) -> str:
    label = _attr(key, "LABEL", "") or ""
    kid = bytes(_attr(key, "ID", b"") or b"")
    return f"{label!r} (id {kid.hex() or 'none'})"


def _find_key(ts: TokenSession, req: Request, cert: CertObject | None, cert_obj: x509.Certificate | None) -> SigningKey:
    import pkcs11

    A = _A()
    ts.login()
    named = req.key_uri.id is not None or req.key_uri.object is not None
    keys = _private_keys(ts.objects(_template(req.key_uri, pkcs11.ObjectClass.PRIVATE_KEY))) if named else []
    if named and not keys and req.key_explicit:
        raise InputError(
            f"no private key matches {req.key_uri} on {ts.id.describe()}",
            hint="list the token with pkcs11-tool -O --login and fix id=/object=",
        )
    if not keys:
        if cert is not None and cert.id:
            keys = _private_keys(ts.objects({A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY, A.ID: cert.id}))
        if not keys and cert_obj is not None:
            keys = _keys_by_public(ts, cert_obj)
        if not keys and cert_obj is None and not named:
            keys = _private_keys(ts.objects({A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}))
        if not keys:
            what = f"certificate {cert_obj.subject.rfc4514_string()}" if cert_obj is not None else str(req.key_uri)
            idtext = f" (id {cert.id.hex()})" if cert is not None and cert.id else ""
            raise InputError(
                f"no private key on {ts.id.describe()} for {what}{idtext}",
                hint="the key must share the certificate's id or public key; import it or fix the URI",
            )
    if len(keys) > 1 and cert_obj is not None:
        matching = [k for k in keys if _matches(ts, k, cert_obj) is not False and _agrees(k, cert_obj) is not False]
        keys = matching or keys
    if len(keys) > 1 and _same_key(ts, keys):
        # one key stored twice: prefer the object that does not ask for a PIN on every use
        keys.sort(key=lambda k: bool(_attr(k, "ALWAYS_AUTHENTICATE", False)))
        return keys[0]
    if len(keys) > 1:
        listed = "; ".join(_key_name(k) for k in keys[:5])
        raise InputError(
            f"{len(keys)} private keys match on {ts.id.describe()}: {listed}", hint="add id= or object= to the URI"
        )
    return keys[0]


def _matches(ts: TokenSession, key: SigningKey, cert: x509.Certificate) -> bool | None:
    from ..certs import public_keys_equal

    pub = _key_public(ts, key)
    return None if pub is None else public_keys_equal(pub, cert.public_key())


def _keys_by_public(ts: TokenSession, cert: x509.Certificate) -> list[SigningKey]:
    """The private key(s) whose modulus or EC point equals the certificate's."""
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric import rsa

    A = _A()
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers().n.to_bytes((pub.key_size + 7) // 8, "big")
        return _private_keys(ts.objects({A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY, A.MODULUS: n}))
    point = _cert_point(cert)
    out = []
    for p in ts.objects({A.CLASS: pkcs11.ObjectClass.PUBLIC_KEY, A.KEY_TYPE: pkcs11.KeyType.EC}):
        if point is not None and _ec_point(bytes(_attr(p, "EC_POINT", b"") or b"")) == point:
            kid = _attr(p, "ID", b"")
            if kid:
                out += _private_keys(ts.objects({A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY, A.ID: kid}))
    return out


# ---------------------------------------------------------------- signing


class TokenKey:
    """A private key on a token, with one logged-in session reused for every signature.

    ``sign`` is thread-safe (``serve`` signs from a background thread) and re-opens the
    session and logs in again from memory after the token was removed and put back.
    """

    def __init__(
        self,
        ts: TokenSession,
        key: SigningKey,
        kind: KeyType,
        *,
        reuse_pin: bool,
        public: PublicKeyTypes | None,
        verify_first: PublicKeyTypes | None = None,
    ) -> None:
        import pkcs11

        # the certificate's key when the token could not show the key's public half: the first
        # signature is checked against it before anything leaves this process
        self._verify_first = verify_first
        self._ts = ts
        self._key = key
        self._kind = kind
        self._public = public
        self._lock = threading.Lock()
        A = _A()
        self._refind: dict[Attribute, Any] = {A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}
        for name in ("ID", "LABEL"):
            value = _attr(key, name)
            if value not in (None, b"", ""):
                self._refind[getattr(A, name)] = value
        mechs = ts.mechanisms()
        M = pkcs11.Mechanism
        assert kind.pkcs11_raw_mechanism is not None, kind  # rows without PKCS#11 support are refused above
        #: mechanisms that hash on the token, by digest; the others get the host's hash (plus DigestInfo)
        self._hashing: dict[str, pkcs11.Mechanism] = {
            d: M[name] for d, name in kind.pkcs11_hashing_mechanisms if M[name] in mechs
        }
        self._raw = M[kind.pkcs11_raw_mechanism]
        if not self._hashing and self._raw not in mechs:
            wanted = [f"CKM_{name}" for _, name in kind.pkcs11_hashing_mechanisms[:1]] + [f"CKM_{self._raw.name}"]
            raise NotSupportedError(
                f"{ts.id.describe()} offers neither {' nor '.join(wanted)}"
                if len(wanted) > 1
                else f"{ts.id.describe()} does not offer {wanted[0]}"
            )
        self._host_input = kind.host_input
        self._encode = kind.raw_encoder()
        self._ctx_pin: str | None = None
        if _attr(key, "ALWAYS_AUTHENTICATE", False):
            if reuse_pin and ts.pin is not None:
                self._ctx_pin = ts.pin.reveal()
            else:
                from ..secret import ask

                self._ctx_pin = ask(
                    f"PIN to sign with key {_key_name(key)}: ",
                    what=f"the signing PIN for key {_key_name(key)} (it needs a PIN for each use)",
                    hint="pass --reuse-pin to use the token's user PIN for it",
                    pinentry=ts.pinentry,
                ).reveal()
        self._touch = ts.hw_slot
        self._closed = False
        # the common case (sha256 on a mechanism fed the host's hash, as CKM_ECDSA is), inlined in sign()
        self._sha256_raw = "sha256" not in self._hashing and kind.prehash == "sha256"

    def __repr__(self) -> str:
        return f"TokenKey({self._ts.id.describe()}, {self._kind.family})"

    def public_key(self) -> PublicKeyTypes:
        if self._public is None:
            raise NotSupportedError(
                f"cannot read the public key of the key on {self._ts.id.describe()}",
                hint="write its public key or certificate to the token with the same id",
            )
        return self._public

    def _raw_sign(self, data: bytes, digest: DigestName) -> bytes:
        # the hot path: no imports or lookups beyond what python-pkcs11 itself needs
        mech = self._hashing.get(digest)
        if mech is not None:
            return bytes(self._key.sign(data, mechanism=mech, pin=self._ctx_pin))
        return self._encode(
            bytes(self._key.sign(self._host_input(data, digest), mechanism=self._raw, pin=self._ctx_pin))
        )

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        if self._verify_first is not None:
            return self._sign_verified(data, digest)
        return self._sign(data, digest)

    def _sign_verified(self, data: bytes, digest: DigestName) -> bytes:
        from ..errors import KeyMismatchError

        signature = self._sign(data, digest)
        expected = self._verify_first
        if expected is not None:
            if not self._kind.verify(expected, signature, data, digest):
                raise KeyMismatchError(
                    f"the key on {self._ts.id.describe()} made a signature the certificate's public key "
                    "does not verify: it is not the certificate's key",
                    hint="fix id=/object= in the key URI, or write the key's public object to the token",
                )
            self._verify_first = None
        return signature

    def _sign(self, data: bytes, digest: DigestName) -> bytes:
        with self._lock:
            if self._closed:
                raise BackendError(f"the key on {self._ts.id.describe()} was closed")
            timer = self._touch_timer() if self._touch else None
            try:
                if self._sha256_raw and digest == "sha256":  # the common case, inlined
                    h = self._host_input(data, "sha256")
                    return self._encode(bytes(self._key.sign(h, mechanism=self._raw, pin=self._ctx_pin)))
                return self._raw_sign(data, digest)
            except Exception as e:  # noqa: BLE001 - sorted below
                if not is_recoverable(e):
                    raise self._error(e) from None
            finally:
                if timer is not None:
                    timer.cancel()
            self._recover()
            try:
                return self._raw_sign(data, digest)
            except Exception as e:  # noqa: BLE001
                raise self._error(e) from None

    def _touch_timer(self) -> threading.Timer:
        from ..secret import tty_message

        t = threading.Timer(TOUCH_DELAY, tty_message, args=("touch your security key",))
        t.daemon = True
        t.start()
        return t

    def _recover(self) -> None:
        import pkcs11

        for reinitialize in (False, True):
            self._ts.reopen(reinitialize=reinitialize)
            try:
                keys = _private_keys(self._ts.objects(self._refind))
            except pkcs11.PKCS11Error as e:
                raise BackendError(f"{self._ts.id.describe()} failed after re-opening ({type(e).__name__})") from None
            if len(keys) == 1:
                self._key = keys[0]
                return
        raise BackendError(
            f"{self._ts.id.describe()} is not present or no longer holds the key",
            hint="insert the token (or restore it) and try again",
        )

    def _error(self, e: BaseException) -> BaseException:
        import pkcs11

        if isinstance(e, pkcs11.PinIncorrect):  # the signing PIN of an always-authenticate key
            self._ctx_pin = None  # never offered again
            return self._ts.wrong_pin_error()
        if isinstance(e, pkcs11.PinLocked):
            self._ctx_pin = None
            return locked_error(self._ts.id)
        if isinstance(e, pkcs11.PKCS11Error):
            return BackendError(f"{self._ts.id.describe()} refused to sign ({type(e).__name__})")
        return e

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._ctx_pin = None
                self._ts.close()


class Pkcs11Signer(KeySigner):
    """A ``Signer``: the certificate (token or file), its chain and the ``TokenKey``."""


# ---------------------------------------------------------------- public functions


def load(opts: IdentityOptions) -> Pkcs11Signer:
    """Find the certificate and its key on the token; log in once; check they belong together."""
    from ..certs import (
        chain_from_pool,
        check_chain,
        check_key_matches,
        check_leaf,
        load_certificate_file,
        load_intermediates,
    )

    req = _request(opts)
    if req.cert_uri is None and not opts.certificate:
        # a key URI alone: look for its certificate beside it on the token, as the reference does
        req = Request(req.key_uri, req.key_uri, True)
    file_certs = load_certificate_file(opts.certificate) if req.cert_uri is None and opts.certificate else []
    file_cert = file_certs[0] if file_certs else None
    sessions = _open_tokens(opts.pkcs11_lib, _uris(req), req.cert_uri or req.key_uri)
    chosen: TokenSession | None = None
    try:
        cert_obj: CertObject | None = None
        if req.cert_uri is not None:
            cands = _search_certs(sessions, req.cert_uri)
            if not cands:
                raise _no_certificate(sessions, req)
            cert_obj = _pick_leaf(cands, req.cert_uri)
            leaf = cert_obj.cert
            chosen = cert_obj.ts
        else:
            if file_cert is None:
                raise UsageError("no certificate given", hint="pass --certificate FILE or a pkcs11: URI")
            leaf = file_cert
            chosen = _token_for_key(sessions, req.key_uri, leaf)
        check_leaf(leaf)
        key = _find_key(chosen, req, cert_obj, leaf)
        kind = _check_key_type(chosen, key, _key_name(key))
        _check_agrees(chosen, key, leaf)
        public = _key_public(chosen, key)
        if public is not None:
            check_key_matches(leaf, public, f"{_key_name(key)} on {chosen.id.describe()}")
        if file_cert is not None and chain_from_pool(leaf, file_certs[1:]):
            chain = chain_from_pool(leaf, file_certs[1:])  # a renewed pair, installed as one file
        elif opts.intermediates:
            chain = load_intermediates(opts.intermediates)
        else:
            chain = chain_from_pool(leaf, [c.cert for c in _certs_on(chosen, None)])
        check_chain(leaf, chain)
        token_key = TokenKey(
            chosen,
            key,
            kind,
            reuse_pin=opts.reuse_pin,
            public=public or leaf.public_key(),
            verify_first=None if public is not None else leaf.public_key(),
        )
    except BaseException:
        _close_all(sessions)
        raise
    _close_all(sessions, keep=chosen)
    return Pkcs11Signer(token_key, leaf, chain)


def _no_certificate(sessions: Sequence[TokenSession], req: Request) -> SignerError:
    """No certificate: say whether a key by that name exists, so "key without certificate" is clear."""
    import pkcs11

    assert req.cert_uri is not None
    for ts in sessions:
        try:
            keys = list(ts.objects(_template(req.cert_uri, pkcs11.ObjectClass.PRIVATE_KEY)))
            keys += list(ts.objects(_template(req.cert_uri, pkcs11.ObjectClass.PUBLIC_KEY)))
        except pkcs11.PKCS11Error:
            keys = []
        if keys and (req.cert_uri.id is not None or req.cert_uri.object is not None or req.key_explicit):
            # sign-string can do with the key alone; the others report it
            return NoCertificateError(
                f"{ts.id.describe()} has a key matching {req.cert_uri} but no certificate for it",
                hint="write the certificate to the token with the key's id, or pass --certificate FILE",
                exit_code=1,
            )
    where = ", ".join(ts.id.describe() for ts in sessions)
    return InputError(f"no certificate matches {req.cert_uri} on {where}", hint="list them with read-certificate-data")


def _token_for_key(sessions: list[TokenSession], uri: Pkcs11Uri, cert: x509.Certificate) -> TokenSession:
    if len(sessions) == 1:
        return sessions[0]
    import pkcs11

    A = _A()
    point = _cert_point(cert)
    for ts in sessions:  # public objects first: no PIN needed to find the right token
        for p in ts.objects(_template(uri, pkcs11.ObjectClass.PUBLIC_KEY)):
            if point is not None and _ec_point(bytes(_attr(p, "EC_POINT", b"") or b"")) == point:
                return ts
            n = _attr(p, A.MODULUS.name)
            if n is not None and point is None and int.from_bytes(n, "big") == cert.public_key().public_numbers().n:  # type: ignore[union-attr]
                return ts
    raise InputError(
        f"{len(sessions)} tokens match {uri}: {', '.join(ts.id.describe() for ts in sessions)}",
        hint="add token= or serial= to the URI",
    )


def open_key(opts: IdentityOptions) -> TokenKey:
    """The key alone (for ``csr``): the URI's id/label, else the only private key on the token."""
    if opts.pkcs11_uri:
        uri = _parse(opts.pkcs11_uri, "--pkcs11-uri")
    elif is_pkcs11_uri(opts.private_key):
        uri = _parse(str(opts.private_key), "--private-key")
    elif is_pkcs11_uri(opts.certificate):
        uri = _parse(str(opts.certificate), "--certificate")
    else:
        raise UsageError("no pkcs11: URI given", hint="use --pkcs11-uri")
    sessions = _open_tokens(opts.pkcs11_lib, [uri], uri)
    if len(sessions) > 1:
        _close_all(sessions)
        raise InputError(
            f"{len(sessions)} tokens match {uri}: {', '.join(ts.id.describe() for ts in sessions)}",
            hint="add token= or serial= to the URI",
        )
    ts = sessions[0]
    try:
        req = Request(None, uri, True)
        key = _find_key(ts, req, None, None)
        kind = _check_key_type(ts, key, _key_name(key))
        public = _key_public(ts, key)
        if public is None:
            kid = bytes(_attr(key, "ID", b"") or b"")
            certs = [c for c in _certs_on(ts, Pkcs11Uri(id=kid))] if kid else []
            public = certs[0].cert.public_key() if certs else None
        return TokenKey(ts, key, kind, reuse_pin=opts.reuse_pin, public=public)
    except BaseException:
        ts.close()
        raise


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate found on a token, as ``read-certificate-data`` lists it."""

    uri: str  # the full URI that names it alone
    label: str
    id: bytes
    certificate: x509.Certificate
    attestation: bool  # a YubiKey PIV attestation certificate, never an identity


def list_certificates(uri: str, module: str | None) -> list[TokenCertificate]:
    """Every certificate matching ``uri``, with the URI that names it (read-certificate-data)."""
    parsed = _parse(uri, "--pkcs11-uri" if not uri else "URI")
    sessions = _open_tokens(module, [parsed], parsed)
    try:
        cands = _search_certs(sessions, parsed.replace(type=None))
        return [TokenCertificate(format_uri(c.uri()), c.label, c.id, c.cert, is_attestation(c)) for c in cands]
    finally:
        _close_all(sessions)


def generate_key(opts: IdentityOptions, key_type: str) -> PublicKeyTypes:
    """Make a key pair on the token: sensitive, never extractable, persistent. Refuses to overwrite."""
    import os

    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    if key_type not in KEY_TYPES:
        raise UsageError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    if not opts.pkcs11_uri:
        raise UsageError("--pkcs11-uri is required to make a key on a token")
    uri = _parse(opts.pkcs11_uri, "--pkcs11-uri")
    if uri.id is None and uri.object is None:
        raise UsageError("--pkcs11-uri must name the new key with object= and/or id=")
    sessions = _open_tokens(opts.pkcs11_lib, [uri], uri, rw=True)
    try:
        if len(sessions) > 1:
            raise InputError(
                f"{len(sessions)} tokens match {uri}: {', '.join(ts.id.describe() for ts in sessions)}",
                hint="add token= or serial= to the URI",
            )
        ts = sessions[0]
        _login_to_make_keys(ts)
        A = _A()
        for name, value in (("id", uri.id), ("object", uri.object)):
            if value is None:
                continue
            attr = A.ID if name == "id" else A.LABEL
            if list(ts.objects({attr: value})):
                shown = value.hex() if isinstance(value, bytes) else repr(value)
                raise InputError(
                    f"{ts.id.describe()} already has an object with {name} {shown}",
                    hint="choose another id=/object=, or delete the old one first",
                )
        kid = uri.id if uri.id is not None else os.urandom(8)
        label = uri.object if uri.object is not None else kid.hex()
        private = {A.TOKEN: True, A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False, A.SIGN: True}
        if _is_ykcs11(ts):
            del private[A.EXTRACTABLE]  # refused as an attribute: a PIV key can never leave the card
        public = {A.TOKEN: True, A.VERIFY: True}
        row = key_type_named(key_type)
        assert row.pkcs11_key_type is not None
        try:
            if row.family == "rsa":
                pub, _ = ts.open_session().generate_keypair(
                    pkcs11.KeyType[row.pkcs11_key_type],
                    row.bits,
                    id=kid,
                    label=label,
                    store=True,
                    public_template=public,
                    private_template=private,
                )
            else:
                assert row.curve_oid is not None
                params = ts.open_session().create_domain_parameters(
                    pkcs11.KeyType[row.pkcs11_key_type],
                    {A.EC_PARAMS: encode_named_curve_parameters(row.curve_oid)},
                    local=True,
                )
                pub, _ = params.generate_keypair(
                    id=kid, label=label, store=True, public_template=public, private_template=private
                )
        except pkcs11.PKCS11Error as e:
            piv = ts.hw_slot and type(e).__name__ in (
                "FunctionNotSupported",
                "MechanismInvalid",
                "TemplateInconsistent",
            )
            raise BackendError(
                f"{ts.id.describe()} could not make a {key_type} key ({type(e).__name__})",
                hint="this module cannot make keys on this card: use Yubico's libykcs11.so, or ykman piv keys generate"
                if piv
                else None,
            ) from None
        return _public_from_object(pub)
    finally:
        _close_all(sessions)


SO_PIN_ENV = "ROLESANYWHERE_SIGNER_PKCS11_SO_PIN"


def _is_ykcs11(ts: TokenSession) -> bool:
    return "yubico" in str(ts.lib.manufacturer_id).lower()


def _login_to_make_keys(ts: TokenSession) -> None:
    """ykcs11 makes and writes PIV keys only for the security officer: the card's management
    key (48 hex digits). Other modules take the user PIN."""
    import pkcs11

    from ..errors import AuthenticationError
    from ..secret import ask

    if not _is_ykcs11(ts):
        ts.login()
        return
    env = os.environ.get(SO_PIN_ENV)
    key = (
        Secret(env)
        if env
        else ask(
            f"Management key (48 hex digits) for {ts.id.describe()}: ",
            what=f"the PIV management key of {ts.id.describe()}",
            hint=f"set {SO_PIN_ENV}",
            pinentry=ts.pinentry,
        )
    )
    try:
        new = ts.token.open(rw=True, so_pin=key.reveal())
    except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
        raise AuthenticationError(
            f"{ts.id.describe()} refused the management key", hint="give the card's 48-hex-digit management key"
        ) from None
    except pkcs11.PKCS11Error as e:
        raise BackendError(f"security-officer login to {ts.id.describe()} failed ({type(e).__name__})") from None
    if ts.session is not None:
        ts.session.close()
    ts.session = new
    ts.logged_in = True


def _public_from_object(pub: PublicKey) -> PublicKeyTypes:
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if _attr(pub, "KEY_TYPE") == pkcs11.KeyType.RSA:
        n, e = _attr(pub, "MODULUS"), _attr(pub, "PUBLIC_EXPONENT")
        return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
    return ec.EllipticCurvePublicKey.from_encoded_point(
        _curve(_attr(pub, "EC_PARAMS")), _ec_point(bytes(_attr(pub, "EC_POINT")))
    )


def health(opts: IdentityOptions) -> list[Check]:
    """For ``doctor``: the module loads, a token matches, and it signs with our mechanisms. No PIN."""
    import pkcs11

    from ..checks import Check
    from ..errors import SignerError

    checks: list[Check] = []
    try:
        req = _request(opts)
        uris = _uris(req)
        module = resolve_module(opts.pkcs11_lib, uris)
        lib = load_library(module)
    except SignerError as e:
        return [Check("PKCS#11 module", "fail", e.diagnostics())]
    checks.append(Check("PKCS#11 module", "pass", f"{module} ({lib.manufacturer_id.strip()})"))
    first = req.cert_uri or req.key_uri
    try:
        tokens = matching_tokens(lib, first)
    except SignerError as e:
        return [*checks, Check("PKCS#11 token", "fail", e.diagnostics())]
    if not tokens:
        checks.append(Check("PKCS#11 token", "fail", f"no token matches {first} (present: {describe_tokens(lib)})"))
        return checks
    names = ", ".join(f"{t.label.strip()!r}" for t in tokens)
    checks.append(Check("PKCS#11 token", "pass" if len(tokens) == 1 else "warn", f"{len(tokens)} matching: {names}"))
    try:
        mechs = set(tokens[0].slot.get_mechanisms())
    except pkcs11.PKCS11Error as e:
        checks.append(Check("PKCS#11 mechanisms", "fail", f"cannot list mechanisms ({type(e).__name__})"))
        return checks
    M = pkcs11.Mechanism
    # per key type: the SHA-256 mechanism that hashes on the token, then the one fed the host's hash
    wanted = dict.fromkeys(
        name
        for row in ALL_KEY_TYPES
        for name in (*(m for d, m in row.pkcs11_hashing_mechanisms if d == "sha256"), row.pkcs11_raw_mechanism)
        if name is not None
    )
    have = [name for name in wanted if M[name] in mechs]
    status: Literal["pass", "fail"] = "pass" if have else "fail"
    checks.append(Check("PKCS#11 mechanisms", status, ", ".join(f"CKM_{h}" for h in have) or "no RSA/ECDSA signing"))
    if len(tokens) == 1 and tokens[0].slot.flags & CKF_HW_SLOT:
        checks += _piv_checks(module, lib, tokens[0], first)
    return checks


#: PIV key references by the CKA_ID both OpenSC and ykcs11 give them
PIV_SLOTS = {1: 0x9A, 2: 0x9C, 3: 0x9D, 4: 0x9E, **{5 + i: 0x82 + i for i in range(20)}, 25: 0xF9}
PIV_SLOT_NAMES = {
    0x9A: "PIV Authentication",
    0x9C: "Digital Signature",
    0x9D: "Key Management",
    0x9E: "Card Authentication",
}


def _piv_checks(module: str, lib: Any, token: Any, uri: Pkcs11Uri) -> list[Check]:
    """For a PIV card (YubiKey): slot, PIN tries left, PIN/touch policy, attestation. No PIN.

    The counters and policies come from the card over PC/SC: PKCS#11 has no field for them."""
    import pkcs11

    from .. import pcsc
    from ..checks import Check
    from ..errors import SignerError

    status = pcsc.pin_status(token_id(token).serial or None)
    if status is None:
        return []  # not a PIV card, or no PC/SC to ask
    checks: list[Check] = []
    try:
        ts = TokenSession(module, lib, token, lambda: Secret(""))
    except SignerError:
        return []
    try:
        certs = _certs_on(ts, uri.replace(type=None))
        leaf = [c for c in certs if not is_attestation(c)]
        kid = leaf[0].id if leaf else (uri.id or b"")
        slot = PIV_SLOTS.get(int.from_bytes(kid, "big")) if kid and len(kid) == 1 else None
        always = None
        if kid:
            try:
                keys = list(ts.objects({_A().CLASS: pkcs11.ObjectClass.PRIVATE_KEY, _A().ID: kid}))
            except pkcs11.PKCS11Error:
                keys = []
            if keys:
                always = bool(_attr(keys[0], "ALWAYS_AUTHENTICATE", False))
        attested = any(is_attestation(c) for c in _certs_on(ts, None))
    finally:
        ts.close()
    if slot is not None:
        checks.append(Check("PIV slot", "pass", f"{slot:02x} ({PIV_SLOT_NAMES.get(slot, 'retired key management')})"))
    if status.verified:
        checks.append(Check("PIV PIN", "pass", "verified"))
    elif status.tries_left == 0:
        checks.append(Check("PIV PIN", "fail", "locked (unblock it with the PUK: ykman piv access unblock-pin)"))
    else:
        left = status.tries_left
        checks.append(
            Check("PIV PIN", "pass" if (left or 0) > 1 else "warn", f"{left} {'try' if left == 1 else 'tries'} left")
        )
    policy = pcsc.slot_policy(slot, token_id(token).serial or None) if slot is not None else None
    if always is None and slot is not None:  # OpenSC hides key objects before login: the card says
        always = (
            policy.pin_policy == "always" if policy is not None and policy.pin_policy != "default" else slot == 0x9C
        )
    parts = []
    if always is not None:
        parts.append(
            "always-authenticate: a PIN for each signature (use --reuse-pin)" if always else "PIN once per session"
        )
    if policy is not None:
        parts.append(f"PIN policy {policy.pin_policy}, touch policy {policy.touch_policy}")
    if parts:
        touch = policy is not None and policy.touch_policy in ("always", "cached")
        checks.append(Check("PIV key policy", "warn" if touch else "pass", "; ".join(parts)))
    attest = attested or pcsc.has_object(0x5FFF01, token_id(token).serial or None)
    checks.append(
        Check(
            "PIV attestation",
            "pass" if attest else "warn",
            "attestation certificate present (slot f9)" if attest else "no attestation certificate in slot f9",
        )
    )
    return checks
