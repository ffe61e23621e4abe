"""TPM 2.0 backend: the key was made in the TPM and never leaves it; the TPM signs.

Keys come from ``TSS2 PRIVATE KEY`` files (loaded under their parent) or persistent handles
(``handle:0x81000010``). The key is loaded once and kept; a ``TpmKey`` reconnects and reloads by
itself when the TPM restarts or a resource manager flushed the object, and flushes it on
``close()`` (swtpm has only three object slots). A refused password is never retried.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AuthenticationError, BackendError, InputError, NotSupportedError, SecretError, UsageError
from ..keytypes import DIGESTS, DigestName
from ..options import IdentityOptions
from ..secret import Secret
from ..signer import KeySigner, ecdsa_der_from_rs
from ..tss2 import RH_OWNER, Tss2Key
from .tpm_tcti import Tcti, connect, resolve

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..checks import Check
    from .tpm_objects import KeyInfo

log = logging.getLogger("rolesanywhere_signer.tpm")

PASSWORD_ENV = "ROLESANYWHERE_SIGNER_TPM_KEY_PASSWORD"
PASSWORD_HINT = f"pass --tpm-key-password-file, set {PASSWORD_ENV}, or run it from a terminal"
PERSISTENT_FIRST, PERSISTENT_LAST = 0x81000000, 0x81FFFFFF
OWNER_PERSISTENT_LAST = 0x817FFFFF

# TPM response codes, format-independent (see rc_code)
RC_INITIALIZE = 0x100
RC_OBJECT_MEMORY = 0x902
RC_REFERENCE_H0 = 0x910
RC_LOCKOUT = 0x921
RC_AUTH_FAIL = 0x08E
RC_BAD_AUTH = 0x0A2
RC_HANDLE = 0x08B
RC_INTEGRITY = 0x09F
RC_VALUE = 0x084
RC_KEY = 0x09C
RC_HIERARCHY = 0x085
RC_NV_DEFINED = 0x14C


def rc_code(rc: int) -> int:
    """The bare TPM error (handle/parameter/session numbers removed); TSS layers kept."""
    layer = rc & 0xFF0000
    base = rc & 0xFFFF
    if layer == 0 and base & 0x80:  # format 1: the low 6 bits plus the format bit
        return 0x80 | (base & 0x3F)
    return layer | base


def _is_connection_error(rc: int) -> bool:
    # TCTI layer (socket/device gone) and ESAPI-layer sequencing errors after a broken exchange
    return rc & 0xFF0000 in (0x0A0000, 0x070000, 0x080000)


# ---------------------------------------------------------------- what the user named


@dataclass(frozen=True)
class KeyRef:
    """A TPM key: a persistent handle, or a key file's contents."""

    source: str  # printable: the file path or "handle:0x81000010"
    handle: int | None = None
    file: Tss2Key | None = None


def parse_handle(value: str) -> int:
    """``handle:0x81000010`` or ``handle:81000010`` (always hexadecimal)."""
    text = value.split(":", 1)[1].strip() if ":" in value else value.strip()
    digits = text[2:] if text.lower().startswith("0x") else text
    try:
        handle = int(digits, 16)
    except ValueError:
        raise InputError(f"TPM handle {value!r} is not a hexadecimal number", hint="e.g. handle:0x81000010") from None
    if not PERSISTENT_FIRST <= handle <= PERSISTENT_LAST:
        raise InputError(
            f"TPM handle 0x{handle:08x} is not a persistent handle",
            hint="persistent keys live at 0x81000000-0x81ffffff (see tpm2_getcap handles-persistent)",
        )
    return handle


def key_ref(opts: IdentityOptions) -> KeyRef:
    from ..inputs import label, read_input
    from ..tss2 import parse_pem
    from ..tss2_sniff import is_tpm_handle

    # a combo file (TSS2 key and its certificate) may come as --certificate alone, as in the reference
    value = opts.private_key or opts.certificate
    if not value:
        raise UsageError("--private-key is required for a TPM key", hint="a TSS2 key file or handle:0x81…")
    if is_tpm_handle(value):
        handle = parse_handle(value)
        return KeyRef(f"handle:0x{handle:08x}", handle=handle)
    flag = "--private-key" if opts.private_key else "--certificate"
    return KeyRef(label(value), file=parse_pem(read_input(value, "TPM key", flag=flag), label(value)))


def _given_password(opts: IdentityOptions) -> Secret | None:
    """A password from the flag, the file or the environment; None when none of them is set."""
    from ..secret import first_secret, from_env, from_file, from_value

    return first_secret(
        from_value(opts.tpm_key_password),
        from_file(opts.tpm_key_password_file, what="TPM key password"),
        from_env(PASSWORD_ENV),
    )


def key_password(opts: IdentityOptions, ref: KeyRef) -> Secret | None:
    """The key's auth value; None for an empty one. Prompts on /dev/tty only when it is needed."""
    from ..secret import prompt_secret

    if opts.no_tpm_key_password:
        return None
    given = _given_password(opts)
    if ref.file is not None and ref.file.empty_auth:
        if given:
            log.warning("TPM key %s has no password (emptyAuth); ignoring the password given", ref.source)
        return None
    if given is not None:
        return given or None
    hint = PASSWORD_HINT + (" (or --no-tpm-key-password if the key has none)" if ref.handle is not None else "")
    return prompt_secret(
        f"Password for TPM key {ref.source}: ", what=f"the password for TPM key {ref.source}", hint=hint
    )


# ---------------------------------------------------------------- the loaded key


class TpmKey:
    """A key loaded in the TPM, kept loaded, reloaded on demand. ``sign`` is thread-safe."""

    def __init__(self, tcti: Tcti, ref: KeyRef) -> None:
        self.tcti = tcti
        self.ref = ref
        self._lock = threading.Lock()
        self._esapi: Any = None
        self._handle: Any = None
        self._auth: Secret | None = None
        self._auth_error: AuthenticationError | None = None
        self._closed = False
        self.info: KeyInfo = self._open()
        from tpm2_pytss import TPM2_RH, TPM2_ST, TPMT_TK_HASHCHECK

        from .tpm_objects import sig_scheme

        self._ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
        self._schemes = {d: sig_scheme(self.info.key_type, d) for d in DIGESTS}
        self._rsa = self.info.key_type.encoding == "pkcs1v15"  # else ECDSA: r and s, made DER below

    def __repr__(self) -> str:
        return f"TpmKey({self.ref.source!r}, {self.tcti.spec!r})"

    # -- loading

    def _open(self) -> KeyInfo:
        """Connect, load the key and read what it is; on failure nothing stays loaded."""
        from .tpm_objects import check_signing_key

        esapi = connect(self.tcti)
        handle = None
        try:
            handle = self._load(esapi)
            info = check_signing_key(esapi.read_public(handle)[0].publicArea, self.ref.source)
        except BaseException:
            self._discard(esapi, handle)
            raise
        self._esapi, self._handle = esapi, handle
        if self._auth is not None:
            esapi.tr_set_auth(handle, self._auth.reveal())
        return info

    def _load(self, esapi: Any) -> Any:
        from tpm2_pytss import TSS2_Exception

        try:
            return self._load_once(esapi)
        except TSS2_Exception as e:
            if rc_code(int(e.rc)) != RC_INITIALIZE:
                raise self._load_error(esapi, int(e.rc)) from None
        from tpm2_pytss import TPM2_SU

        esapi.startup(TPM2_SU.CLEAR)  # a TPM just powered on (no firmware sent Startup)
        try:
            return self._load_once(esapi)
        except TSS2_Exception as e:
            raise self._load_error(esapi, int(e.rc)) from None

    def _load_once(self, esapi: Any) -> Any:
        from tpm2_pytss import ESYS_TR, TPM2B_PRIVATE, TPM2B_PUBLIC

        if self.ref.handle is not None:
            return esapi.tr_from_tpmpublic(self.ref.handle)
        key = self.ref.file
        assert key is not None
        public, _ = TPM2B_PUBLIC.unmarshal(key.public)
        private, _ = TPM2B_PRIVATE.unmarshal(key.private)
        if key.parent == RH_OWNER:
            from .tpm_objects import storage_primary

            parent = esapi.create_primary(None, storage_primary(rsa=key.rsa_parent), ESYS_TR.OWNER)[0]
            try:
                return esapi.load(parent, private, public)
            finally:
                esapi.flush_context(parent)  # the key stays loaded without it; keep the slot free
        if PERSISTENT_FIRST <= key.parent <= PERSISTENT_LAST:
            parent = esapi.tr_from_tpmpublic(key.parent)
            try:
                return esapi.load(parent, private, public)
            finally:
                esapi.tr_close(parent)
        raise NotSupportedError(
            f"TPM key {self.ref.source} has parent 0x{key.parent:08x}, which is neither the owner hierarchy "
            "nor a persistent key",
            hint="create the key under the owner hierarchy (0x40000001) or a persistent parent",
        )

    def _load_error(self, esapi: Any, rc: int) -> BackendError:
        code = rc_code(rc)
        where = self.tcti.describe()
        if rc & 0xFF0000 == 0x0A0000:
            return BackendError(
                f"lost the connection to the TPM while loading {self.ref.source} ({where})",
                hint="is the TPM (or simulator) still running?",
            )
        if self.ref.handle is not None and (code in (RC_HANDLE, RC_VALUE, RC_REFERENCE_H0) or rc & 0xFF0000):
            return BackendError(
                f"no key at persistent handle 0x{self.ref.handle:08x} in the TPM ({where})",
                hint="list them with tpm2_getcap handles-persistent",
            )
        file = self.ref.file
        if file is not None and file.parent != RH_OWNER and (code in (RC_HANDLE, RC_VALUE) or rc & 0xFF0000):
            return BackendError(
                f"the parent key 0x{file.parent:08x} of TPM key {self.ref.source} is not in the TPM ({where})",
                hint="was it evicted? keys only load under the parent they were made under",
            )
        if code in (RC_INTEGRITY, RC_KEY, 0x095, 0x09A):  # integrity, key, size, bad object: not ours
            return BackendError(
                f"TPM key {self.ref.source} cannot be loaded by this TPM: it was made by another TPM "
                f"or under another parent ({where})",
                hint="a TPM key never moves between TPMs; create a new key on this machine",
            )
        if code == RC_OBJECT_MEMORY:
            return BackendError(
                f"the TPM has no free object slot to load {self.ref.source} ({where})",
                hint="other programs hold transient objects: use the resource manager (/dev/tpmrm0 or tabrmd) "
                "or flush them with tpm2_flushcontext -t",
            )
        if code in (RC_AUTH_FAIL, RC_BAD_AUTH, RC_HIERARCHY):
            return BackendError(
                f"the TPM refused to create the storage primary for {self.ref.source}: the owner hierarchy "
                f"has a password or is disabled ({where})",
                hint="use a key whose parent is a persistent storage key",
            )
        return BackendError(f"the TPM refused to load key {self.ref.source} (TPM error 0x{rc:x}, {where})")

    @staticmethod
    def _discard(esapi: Any, handle: Any) -> None:
        from tpm2_pytss import TSS2_Exception

        try:
            if handle is not None:
                esapi.flush_context(handle)
        except (TSS2_Exception, TypeError):
            pass  # a persistent handle (not flushable) or a dead connection
        try:
            esapi.close()
        except TSS2_Exception:
            pass

    def set_password(self, password: Secret | None) -> None:
        with self._lock:
            self._auth = password
            if self._handle is not None:
                self._esapi.tr_set_auth(self._handle, password.reveal() if password else b"")

    # -- use

    def public_key(self) -> PublicKeyTypes:
        return self.info.public_key

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        from tpm2_pytss import TSS2_Exception

        with self._lock:
            if self._closed:
                raise BackendError(f"TPM key {self.ref.source} was closed")
            if self._auth_error is not None:
                raise self._auth_error  # a refused password is never sent again
            if self.info.fixed_hash and digest != self.info.fixed_hash:
                raise NotSupportedError(f"TPM key {self.ref.source} only signs {self.info.fixed_hash} digests")
            h = hashlib.sha256(data).digest() if digest == "sha256" else hashlib.new(digest, data).digest()
            if self._esapi is None:  # an earlier recovery failed (TPM was down): try again now
                self._recover()
            try:
                sig = self._esapi.sign(self._handle, h, self._schemes[digest], self._ticket)
            except TSS2_Exception as e:
                rc = int(e.rc)
                if not self._recoverable(rc):
                    raise self._sign_error(rc) from None
                self._recover()
                try:
                    sig = self._esapi.sign(self._handle, h, self._schemes[digest], self._ticket)
                except TSS2_Exception as e2:
                    raise self._sign_error(int(e2.rc)) from None
            # one marshal call is ~10x faster than reading the cffi fields of TPMT_SIGNATURE
            raw = sig.marshal()  # sigAlg(2) hashAlg(2) then TPM2B sig (RSA) or TPM2B r, TPM2B s (ECDSA)
            n = int.from_bytes(raw[4:6], "big")
            if self._rsa:
                return bytes(raw[6 : 6 + n])
            m = int.from_bytes(raw[6 + n : 8 + n], "big")
            return ecdsa_der_from_rs(
                int.from_bytes(raw[6 : 6 + n], "big"), int.from_bytes(raw[8 + n : 8 + n + m], "big")
            )

    @staticmethod
    def _recoverable(rc: int) -> bool:
        return _is_connection_error(rc) or rc_code(rc) in (RC_HANDLE, RC_REFERENCE_H0, RC_INITIALIZE, RC_VALUE)

    def _recover(self) -> None:
        """New connection, key loaded again. The old object is gone (TPM restart, flushed): not flushed."""
        from tpm2_pytss import TSS2_Exception

        old, self._esapi, self._handle = self._esapi, None, None
        if old is not None:
            try:
                old.close()
            except TSS2_Exception:
                pass
        log.info("TPM key %s: reconnecting and loading it again", self.ref.source)
        info = self._open()
        if not _same_key(info.public_key, self.info.public_key):
            self.close_locked()
            raise BackendError(f"TPM key {self.ref.source} changed while in use (a different key is there now)")

    def _sign_error(self, rc: int) -> BackendError:
        code = rc_code(rc)
        if code == RC_LOCKOUT:
            return AuthenticationError(
                f"the TPM is in dictionary-attack lockout and refuses passwords for {self.ref.source}"
                f"{self._lockout_detail()}",
                hint="wait for the lockout to expire, or clear it with tpm2_dictionarylockout --clear-lockout",
            )
        if code in (RC_AUTH_FAIL, RC_BAD_AUTH):
            counted = code == RC_AUTH_FAIL
            detail = self._lockout_detail() if counted else ""
            self._auth_error = AuthenticationError(
                f"wrong password for TPM key {self.ref.source}"
                + (f"; the TPM counted it toward dictionary-attack lockout{detail}" if counted else ""),
                hint="it was not retried; check the password before trying again",
            )
            return self._auth_error
        if _is_connection_error(rc):
            return BackendError(
                f"lost the connection to the TPM while signing with {self.ref.source} ({self.tcti.describe()})",
                hint="is the TPM (or simulator) running?",
            )
        return BackendError(f"the TPM refused to sign with {self.ref.source} (TPM error 0x{rc:x})")

    def _lockout_detail(self) -> str:
        """ " (2 of 3 failures)" from the TPM's own counters; empty when it cannot be read."""
        try:
            props = tpm_properties(self._esapi, ("LOCKOUT_COUNTER", "MAX_AUTH_FAIL"))
        except Exception:  # noqa: BLE001 - only for a message
            return ""
        if "LOCKOUT_COUNTER" not in props or "MAX_AUTH_FAIL" not in props:
            return ""
        return f" ({props['LOCKOUT_COUNTER']} of {props['MAX_AUTH_FAIL']} failures)"

    def close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        esapi, handle = self._esapi, self._handle
        self._esapi = self._handle = None
        self._auth = None
        if esapi is None:
            return
        if self.ref.handle is not None:
            from tpm2_pytss import TSS2_Exception

            try:
                esapi.tr_close(handle)  # a persistent key stays in the TPM
            except TSS2_Exception:
                pass
            handle = None
        self._discard(esapi, handle)

    def close(self) -> None:
        with self._lock:
            self.close_locked()


def _same_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    from ..certs import public_keys_equal

    return public_keys_equal(a, b)


def tpm_properties(esapi: Any, names: Sequence[str]) -> dict[str, int]:
    """Selected ``TPM2_PT`` properties by name."""
    from tpm2_pytss import TPM2_CAP, TPM2_PT

    wanted = {int(getattr(TPM2_PT, n)): n for n in names}
    out: dict[str, int] = {}
    first = min(wanted)
    _, data = esapi.get_capability(TPM2_CAP.TPM_PROPERTIES, first, max(wanted) - first + 1)
    props = data.data.tpmProperties
    for i in range(props.count):
        p = props.tpmProperty[i]
        if int(p.property) in wanted:
            out[wanted[int(p.property)]] = int(p.value)
    return out


class TpmSigner(KeySigner):
    """A ``Signer``: the certificate, its chain and the ``TpmKey``."""


# ---------------------------------------------------------------- public functions


def open_key(opts: IdentityOptions) -> TpmKey:
    """The key alone (``csr``, enrollment, doctor): loaded, checked, password resolved."""
    ref = key_ref(opts)
    key = TpmKey(resolve(opts.tcti), ref)
    try:
        key.set_password(key_password(opts, ref))
    except BaseException:
        key.close()
        raise
    return key


def load(opts: IdentityOptions) -> TpmSigner:
    """Certificate checks first (no TPM needed), then the key; they must belong together."""
    from ..certs import check_chain, check_key_matches, check_leaf, choose_chain, load_certificate_file

    if not opts.certificate:
        from ..errors import NoCertificateError

        raise NoCertificateError("--certificate is required", hint="see --help")
    certs = load_certificate_file(opts.certificate)
    leaf = certs[0]
    check_leaf(leaf)
    _refuse_mldsa_certificate(leaf)
    chain = choose_chain(leaf, certs[1:], opts.intermediates)
    check_chain(leaf, chain)
    ref = key_ref(opts)
    key = TpmKey(resolve(opts.tcti), ref)
    try:
        check_key_matches(leaf, key.public_key(), f"{ref.source} (in the TPM)")
        key.set_password(key_password(opts, ref))
    except BaseException:
        key.close()
        raise
    return TpmSigner(key, leaf, chain)


def _refuse_mldsa_certificate(leaf: x509.Certificate) -> None:
    """TPM 2.0 has no ML-DSA: a certificate for an ML-DSA key cannot name a TPM key. Said before the TPM is opened."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(leaf.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return
    from .. import mldsa

    p = mldsa.parameter_set(leaf.public_key())
    if p is not None:
        raise NotSupportedError(
            f"certificate {leaf.subject.rfc4514_string()} is for an {p.name} key, which a TPM 2.0 cannot hold",
            hint="TPM 2.0 has no ML-DSA; keep ML-DSA keys in a file",
        )


def new_key_password(opts: IdentityOptions) -> Secret | None:
    """The password for a new key: flag, file or environment; none unless one of them is set."""
    if opts.no_tpm_key_password:
        return None
    given = _given_password(opts)
    return given or None


def generate_key(
    opts: IdentityOptions, key_type: str, *, output: str | None = None, persistent_handle: int | None = None
) -> PublicKeyTypes:
    """A new signing key inside the TPM, under the owner hierarchy's standard storage primary.

    ``output`` gets a TSS2 PRIVATE KEY file (0600) that openssl's tpm2 provider loads;
    ``persistent_handle`` makes the key persistent there (refused when the handle is in use).
    """
    from ..keytypes import KEY_TYPES as ALL_KEY_TYPES

    row = next((kt for kt in ALL_KEY_TYPES if kt.cli_name == key_type), None)
    if row is not None and row.tpm_scheme is None:  # ML-DSA: said before tpm2-pytss or the TPM is touched
        raise NotSupportedError(
            f"a TPM 2.0 cannot hold {row.title} keys (TPM 2.0 has no {row.family.upper()})",
            hint=f"keep them in a file: generate-key --output FILE --key-type {row.cli_name}",
        )
    from .tpm_tcti import require_pytss

    require_pytss()
    from tpm2_pytss import ESYS_TR, TPM2B_SENSITIVE_CREATE, TSS2_Exception

    from ..keys import write_new_file
    from ..tss2 import to_pem
    from .tpm_objects import KEY_TYPES, check_signing_key, signing_template, storage_primary

    if key_type not in KEY_TYPES:
        raise UsageError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    if output is None and persistent_handle is None:
        raise UsageError("say where the new TPM key goes: an output file or a persistent handle")
    if persistent_handle is not None and not PERSISTENT_FIRST <= persistent_handle <= OWNER_PERSISTENT_LAST:
        raise InputError(
            f"0x{persistent_handle:08x} is not an owner-hierarchy persistent handle",
            hint="use 0x81000000-0x817fffff, e.g. 0x81000010",
        )
    if output is not None and os.path.lexists(output):
        raise InputError(f"key file {output} already exists; refusing to overwrite it", hint="choose a new path")
    password = new_key_password(opts)
    if password is not None and not password:
        raise SecretError("the TPM key password is empty", hint="use --no-tpm-key-password for a key without one")
    tcti = resolve(opts.tcti)
    esapi = connect(tcti)
    try:
        if persistent_handle is not None and persistent_handle in _persistent_handles(esapi):
            raise InputError(
                f"TPM persistent handle 0x{persistent_handle:08x} is already in use",
                hint="choose a free handle (tpm2_getcap handles-persistent lists the used ones)",
            )
        sensitive = TPM2B_SENSITIVE_CREATE()
        if password is not None:
            sensitive.sensitive.userAuth = password.reveal()
        try:
            parent = esapi.create_primary(None, storage_primary(), ESYS_TR.OWNER)[0]
            try:
                private, public = esapi.create(parent, sensitive, signing_template(key_type, with_auth=bool(password)))[
                    :2
                ]
                if persistent_handle is not None:
                    obj = esapi.load(parent, private, public)
                    try:
                        persisted = esapi.evict_control(ESYS_TR.OWNER, obj, persistent_handle)
                        esapi.tr_close(persisted)
                    finally:
                        esapi.flush_context(obj)
            finally:
                esapi.flush_context(parent)
        except TSS2_Exception as e:
            raise BackendError(
                f"the TPM could not create a {key_type} key (TPM error 0x{int(e.rc):x}, {tcti.describe()})",
                hint="does the TPM support this key type? is the owner hierarchy free of a password?",
            ) from None
        info = check_signing_key(public.publicArea, "new key")
        if output is not None:
            pem = to_pem(Tss2Key(public.marshal(), private.marshal(), RH_OWNER, empty_auth=password is None))
            write_new_file(output, pem, what="key file")
        return info.public_key
    finally:
        try:
            esapi.close()
        except TSS2_Exception:
            pass


def _persistent_handles(esapi: Any) -> set[int]:
    from tpm2_pytss import TPM2_CAP

    found: set[int] = set()
    more, start = True, PERSISTENT_FIRST
    while more:
        more, data = esapi.get_capability(TPM2_CAP.HANDLES, start, 64)
        handles = data.data.handles
        batch = [int(handles.handle[i]) for i in range(handles.count)]
        found.update(batch)
        if not batch:
            break
        start = max(batch) + 1
    return {h for h in found if PERSISTENT_FIRST <= h <= PERSISTENT_LAST}


def health(opts: IdentityOptions) -> list[Check]:
    """For ``doctor``: which TCTI reaches the TPM, its lockout state, and whether the key loads. No password."""
    from ..checks import Check
    from ..errors import SignerError

    checks: list[Check] = []
    try:
        tcti = resolve(opts.tcti)
        esapi = connect(tcti)
    except SignerError as e:
        return [Check("TPM", "fail", e.diagnostics())]
    try:
        props = tpm_properties(esapi, ("MANUFACTURER",))
        maker = props.get("MANUFACTURER", 0).to_bytes(4, "big").decode("ascii", "replace").strip("\x00 ")
        checks.append(Check("TPM", "pass", f"reachable through {tcti.describe()}, manufacturer {maker or '?'}"))
        da = tpm_properties(esapi, ("PERMANENT", "LOCKOUT_COUNTER", "MAX_AUTH_FAIL", "LOCKOUT_INTERVAL"))
        in_lockout = bool(da.get("PERMANENT", 0) & 0x4)  # TPMA_PERMANENT.inLockout
        detail = f"{da.get('LOCKOUT_COUNTER', '?')} of {da.get('MAX_AUTH_FAIL', '?')} password failures counted"
        if in_lockout:
            checks.append(Check("TPM lockout", "fail", f"in dictionary-attack lockout ({detail}); passwords refused"))
        else:
            checks.append(Check("TPM lockout", "pass", detail))
    except Exception as e:  # noqa: BLE001 - a TPM that answers oddly is reported, not raised
        checks.append(Check("TPM", "warn", f"reachable through {tcti.describe()}, properties unreadable ({e})"))
    finally:
        try:
            esapi.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection
            pass
    try:
        key = TpmKey(tcti, key_ref(opts))
    except SignerError as e:
        checks.append(Check("TPM key", "fail", e.diagnostics()))
        return checks
    try:
        checks.append(Check("TPM key", "pass", f"{key.ref.source} loads: {key.info.label}, can sign"))
    finally:
        key.close()
    return checks
