"""PKCS#11 plumbing: finding the module, matching tokens, one session per token, PIN and login.

A ``TokenSession`` owns one session on one token. It logs in at most once, keeps the PIN only
in memory (``Secret``) and can re-open and re-login after the token was removed and put back,
the library was re-initialised, or the session handle died. A refused PIN is never retried.
"""

from __future__ import annotations

import logging
import os
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AuthenticationError, BackendError, InputError, SecretError
from ..pkcs11_uri import Pkcs11Uri
from ..secret import Secret, first_secret, from_env, from_file, from_pinentry, from_terminal, from_value

if TYPE_CHECKING:
    # python-pkcs11 ships type information: its objects are typed here, imported lazily at run time
    from pkcs11 import Attribute, Mechanism, Object, Session, Token
    from pkcs11._pkcs11 import lib as Pkcs11Lib

log = logging.getLogger("rolesanywhere_signer.pkcs11")

PIN_ENV = "ROLESANYWHERE_SIGNER_PKCS11_PIN"
PIN_HINT = f"use pin-source=file:PATH in the URI, set {PIN_ENV}, or run it from a terminal"

# CK_TOKEN_INFO / CK_SLOT_INFO flags (PKCS#11 2.40 §5.2)
CKF_HW_SLOT = 0x4
CKF_LOGIN_REQUIRED = 0x4
CKF_PROTECTED_AUTHENTICATION_PATH = 0x100
CKF_TOKEN_INITIALIZED = 0x400
CKF_USER_PIN_COUNT_LOW = 0x10000
CKF_USER_PIN_FINAL_TRY = 0x20000
CKF_USER_PIN_LOCKED = 0x40000


def _multiarch() -> str:
    import platform

    return str(sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu")


def _lib_dirs() -> list[str]:
    ma = _multiarch()
    return [
        f"/usr/lib/{ma}/pkcs11",
        f"/usr/lib/{ma}",
        "/usr/lib64/pkcs11",
        "/usr/lib64",
        "/usr/lib/pkcs11",
        "/usr/lib",
        "/usr/local/lib/pkcs11",
        "/usr/local/lib",
        f"/usr/lib/{ma}/softhsm",
        "/usr/lib/softhsm",
        "/usr/lib64/softhsm",
        "/usr/local/lib/softhsm",
    ]


def proxy_candidates() -> list[str]:
    """Where p11-kit-proxy usually lives (it gives every registered module, like a browser sees)."""
    ma = _multiarch()
    return [
        f"/usr/lib/{ma}/p11-kit-proxy.so",
        "/usr/lib64/p11-kit-proxy.so",
        "/usr/lib/p11-kit-proxy.so",
        "/usr/local/lib/p11-kit-proxy.so",
        f"/usr/lib/{ma}/pkcs11/p11-kit-client.so",
    ]


def _p11kit_module(name: str) -> str | None:
    from ..files import read_head

    for conf_dir in (
        "/etc/pkcs11/modules",
        "/usr/share/p11-kit/modules",
        os.path.expanduser("~/.config/pkcs11/modules"),
    ):
        raw = read_head(os.path.join(conf_dir, f"{name}.module"), 65536)  # non-blocking, regular only
        for line in (raw or b"").decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "module" and value.strip():
                path = value.strip()
                return path if os.path.isabs(path) else os.path.join(f"/usr/lib/{_multiarch()}/pkcs11", path)
    return None


def resolve_module(lib: str | None, uris: list[Pkcs11Uri]) -> str:
    """``--pkcs11-lib``, else the URI's module-path/module-name, else p11-kit-proxy; name what was tried."""
    if lib:
        if not os.path.isfile(lib):
            raise InputError(f"PKCS#11 module {lib} (--pkcs11-lib) does not exist", hint="give the path of the .so")
        return lib
    for uri in uris:
        if uri.module_path:
            if not os.path.isfile(uri.module_path):
                raise InputError(f"PKCS#11 module {uri.module_path} (module-path in the URI) does not exist")
            return uri.module_path
    for uri in uris:
        if uri.module_name:
            name = uri.module_name
            tried: list[str] = []
            conf = _p11kit_module(name)
            if conf:
                tried.append(conf)
                if os.path.isfile(conf):
                    return conf
            for d in _lib_dirs():
                for fname in (name, f"{name}.so", f"lib{name}.so"):
                    path = os.path.join(d, fname)
                    if os.path.isfile(path):
                        return path
            raise InputError(
                f"PKCS#11 module-name={name} was not found (looked for {name}.so and lib{name}.so in "
                f"{', '.join(_lib_dirs()[:4])} and others)",
                hint="give the full path with --pkcs11-lib or module-path=",
            )
    tried = proxy_candidates()
    for path in tried:
        if os.path.isfile(path):
            return path
    raise InputError(
        f"no PKCS#11 module given and p11-kit-proxy was not found (tried {', '.join(tried[:4])})",
        hint="pass --pkcs11-lib /path/to/module.so or add module-path= to the URI",
    )


def load_library(path: str) -> Pkcs11Lib:
    """Load and initialise a module once per process (python-pkcs11 caches by path)."""
    import pkcs11

    try:
        return pkcs11.lib(path)
    except pkcs11.PKCS11Error as e:
        detail = str(e).split(":", 1)[-1].strip() or type(e).__name__
        raise BackendError(
            f"cannot load PKCS#11 module {path}: {detail[:160]}", hint="is it a PKCS#11 module for this CPU?"
        ) from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip(" \x00")
    return str(value).rstrip(" \x00")


@dataclass(frozen=True)
class TokenId:
    """Enough to find the same token again after it was removed, and to print it."""

    label: str
    serial: str
    manufacturer: str
    model: str

    def describe(self) -> str:
        return f"token {self.label!r} (serial {self.serial})" if self.serial else f"token {self.label!r}"

    def uri(self) -> Pkcs11Uri:
        return Pkcs11Uri(token=self.label, serial=self.serial or None)


def token_id(token: Token) -> TokenId:
    return TokenId(_text(token.label), _text(token.serial), _text(token.manufacturer_id), _text(token.model))


def matching_tokens(lib: Pkcs11Lib, uri: Pkcs11Uri) -> list[Token]:
    """Every present token the URI's token/slot/library attributes match."""
    import pkcs11

    if uri.library_manufacturer is not None and _text(lib.manufacturer_id) != uri.library_manufacturer:
        return []
    if uri.library_description is not None and _text(lib.library_description) != uri.library_description:
        return []
    if uri.library_version is not None:
        major, _, minor = uri.library_version.partition(".")
        if lib.library_version != (int(major), int(minor or 0)):
            return []
    out = []
    try:
        slots = lib.get_slots(token_present=True)
    except pkcs11.PKCS11Error as e:
        raise BackendError(f"the PKCS#11 module failed to list its slots ({type(e).__name__})") from None
    for slot in slots:
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        if uri.slot_description is not None and _text(slot.slot_description) != uri.slot_description:
            continue
        if uri.slot_manufacturer is not None and _text(slot.manufacturer_id) != uri.slot_manufacturer:
            continue
        try:
            token = slot.get_token()
        except pkcs11.PKCS11Error:
            continue  # removed meanwhile, or not recognised
        if not token.flags & CKF_TOKEN_INITIALIZED:
            continue  # an empty slot (SoftHSM keeps one free), nothing to find there
        tid = token_id(token)
        if uri.token is not None and tid.label != uri.token:
            continue
        if uri.serial is not None and tid.serial != uri.serial:
            continue
        if uri.manufacturer is not None and tid.manufacturer != uri.manufacturer:
            continue
        if uri.model is not None and tid.model != uri.model:
            continue
        out.append(token)
    return out


def describe_tokens(lib: Pkcs11Lib) -> str:
    try:
        names = [token_id(s.get_token()).describe() for s in lib.get_slots(token_present=True)]
    except Exception:  # noqa: BLE001 - only for a message
        names = []
    return ", ".join(names[:6]) or "none"


def pin_source(uris: list[Pkcs11Uri], what: str) -> Callable[[], Secret]:
    """PIN sources in order: pin-value (warned), pin-source, the environment, the terminal."""

    def warn() -> None:
        log.warning(
            "pin-value in a PKCS#11 URI is visible to other local users; prefer pin-source=file:PATH or %s", PIN_ENV
        )

    def get() -> Secret:
        # the first URI naming a PIN (pin-value or pin-source) decides; then environment, terminal
        named = next((u for u in uris if u.pin_value is not None or u.pin_source is not None), None)
        value = named.pin_value if named else None
        program = pinentry_choice([named]) if named and value is None else None
        path = (
            pin_source_path(named.pin_source)
            if named and value is None and named.pin_source and program is None
            else None
        )
        pin = first_secret(
            from_value(value, warn=warn),
            from_file(path, what="PKCS#11 PIN"),
            from_pinentry(program, f"PIN for {what}", what=f"the PIN for {what}"),
            from_env(PIN_ENV),
            from_terminal(f"PIN for {what}: ", what=f"the PIN for {what}", hint=PIN_HINT),
        )
        assert pin is not None  # the terminal source answers or raises
        return pin

    return get


PINENTRY_SCHEME = "pinentry:"


def pinentry_choice(uris: list[Pkcs11Uri]) -> str | None:
    """``pin-source=pinentry:[PROGRAM]``: the program ("" = the default), else None."""
    for uri in uris:
        if uri.pin_source is not None and uri.pin_source.startswith(PINENTRY_SCHEME):
            return uri.pin_source[len(PINENTRY_SCHEME) :]
    return None


def pin_source_path(value: str) -> str:
    if value.startswith("file://"):
        rest = value[len("file://") :]
        if not rest.startswith("/"):
            raise InputError(f"pin-source {value!r} names a remote host", hint="use file:/absolute/path")
        return rest
    if value.startswith("file:"):
        return value[len("file:") :]
    if ":" in value.split("/", 1)[0]:
        raise InputError(f"pin-source {value!r} is not a file: URI", hint="use pin-source=file:/path/to/pin")
    return value


def pin_state(flags: int) -> str | None:
    """What the token says about its PIN counter, for the message after a refused PIN."""
    if flags & CKF_USER_PIN_LOCKED:
        return "the PIN is now locked"
    if flags & CKF_USER_PIN_FINAL_TRY:
        return "the next wrong PIN locks it"
    if flags & CKF_USER_PIN_COUNT_LOW:
        return "few tries are left"
    return None


#: python-pkcs11 exception names after which a new session (and login) may help
RECOVERABLE = frozenset(
    {
        "SessionHandleInvalid",
        "SessionClosed",
        "DeviceRemoved",
        "TokenNotPresent",
        "TokenNotRecognised",
        "ObjectHandleInvalid",
        "KeyHandleInvalid",
        "UserNotLoggedIn",
        "DeviceError",
        "GeneralError",
    }
)


def is_recoverable(exc: BaseException) -> bool:
    import pkcs11

    if not isinstance(exc, pkcs11.PKCS11Error):
        return False
    return type(exc).__name__ in RECOVERABLE or "not initialized" in str(exc)


class TokenSession:
    """One session on one token; login once; re-open on demand. Not thread-safe: callers lock."""

    def __init__(
        self,
        module: str,
        lib: Pkcs11Lib,
        token: Token,
        get_pin: Callable[[], Secret],
        *,
        rw: bool = False,
        pinentry: str | None = None,
    ) -> None:
        self.module = module
        self.pinentry = pinentry  # pin-source=pinentry:[PROGRAM] chosen in the URI
        self.lib = lib
        self.token = token
        self.id = token_id(token)
        self._get_pin = get_pin
        self._pin: Secret | None = None
        self.logged_in = False
        self._wants_login = False  # survives a failed re-open, so the next one logs in again
        self.session: Session | None = None
        self.hw_slot = bool(token.slot.flags & CKF_HW_SLOT)
        self.rw = rw
        self.session = self._open(rw=rw)

    def __repr__(self) -> str:
        return f"TokenSession({self.id.describe()}, logged_in={self.logged_in})"

    @property
    def flags(self) -> int:
        """Fresh token flags (the PIN counter bits change after each login attempt)."""
        return int(self.token.slot.get_token().flags)

    @property
    def login_required(self) -> bool:
        return bool(self.token.flags & CKF_LOGIN_REQUIRED)

    @property
    def pin(self) -> Secret | None:
        return self._pin

    def _open(self, *, rw: bool) -> Session:
        import pkcs11

        try:
            return self.token.open(rw=rw)
        except pkcs11.PKCS11Error as e:
            raise BackendError(f"cannot open a session on {self.id.describe()} ({type(e).__name__})") from None

    def mechanisms(self) -> set[Mechanism]:
        return set(self.token.slot.get_mechanisms())

    def open_session(self) -> Session:
        """The session, which an earlier failed re-open may have left closed."""
        if self.session is None:
            raise BackendError(f"{self.id.describe()} has no open session", hint="insert the token and try again")
        return self.session

    def objects(self, template: dict[Attribute, Any]) -> Iterator[Object]:
        return iter(list(self.open_session().get_objects(template)))

    def login(self) -> None:
        """Log in once (user PIN, or the PIN pad on protected-path readers). Never retried."""
        import pkcs11

        if self.logged_in:
            return
        flags = self.flags
        # ykcs11 keeps the counter it read at connect time: a card unblocked since then still says
        # "locked"; the card itself is asked before refusing
        if flags & CKF_USER_PIN_LOCKED and not (self.hw_slot and (self.pin_tries_left() or 0) > 0):
            raise locked_error(self.id)
        protected = bool(flags & CKF_PROTECTED_AUTHENTICATION_PATH)
        pin = None if protected else (self._pin or self._get_pin())
        if pin is not None and not pin:
            raise SecretError(f"the PIN for {self.id.describe()} is empty")
        if protected:
            from ..secret import tty_message

            tty_message(f"Enter the PIN for {self.id.describe()} on the reader's PIN pad")
        rw = self.rw
        try:
            new = self.token.open(rw=rw, user_pin=pkcs11.PROTECTED_AUTH if protected else pin.reveal())  # type: ignore[union-attr]
        except pkcs11.UserAlreadyLoggedIn:
            new = self.token.open(rw=rw)  # another session of ours is logged in: the token is unlocked
        except pkcs11.PinIncorrect:
            self._pin = None
            raise self.wrong_pin_error() from None
        except pkcs11.PinLocked:
            raise locked_error(self.id) from None
        except (pkcs11.PinExpired, pkcs11.PinInvalid, pkcs11.PinLenRange) as e:
            self._pin = None
            raise AuthenticationError(
                f"the token refused the PIN for {self.id.describe()} ({type(e).__name__})"
            ) from None
        except pkcs11.PKCS11Error as e:
            raise BackendError(f"login to {self.id.describe()} failed ({type(e).__name__})") from None
        _close_quietly(self.session, logout=False)
        self.session = new
        self._pin = pin
        self.logged_in = True
        self._wants_login = True

    def wrong_pin_error(self) -> AuthenticationError:
        """After a refused PIN: how many tries are left, from the card when the module cannot say."""
        tries = self.pin_tries_left() if self.hw_slot else None
        if tries == 0:
            return locked_error(self.id, now=True)
        if tries is not None:
            state = f"{tries} {'try' if tries == 1 else 'tries'} left before the PIN locks"
        else:
            flag_state = pin_state(self.flags)
            state = f"the token reports that {flag_state}" if flag_state else ""
        return AuthenticationError(
            f"wrong PIN for {self.id.describe()}" + (f"; {state}" if state else ""),
            hint="it was not retried; check the PIN before trying again",
        )

    def pin_tries_left(self) -> int | None:
        """The PIV PIN counter, asked of the card over PC/SC (PKCS#11 has only "low"/"final" flags)."""
        from ..pcsc import pin_status

        status = pin_status(self.id.serial or None)
        return None if status is None else status.tries_left

    def reopen(self, *, reinitialize: bool = False) -> None:
        """After removal/re-insertion or a dead handle: new session, and login again from memory."""
        import pkcs11

        was_logged_in = self.logged_in or self._wants_login
        _close_quietly(self.session, logout=False)
        self.session = None
        self.logged_in = False
        for attempt in range(1 if reinitialize else 0, 2):
            if attempt:
                try:
                    self.lib.reinitialize()  # some modules only rescan their tokens at C_Initialize
                except pkcs11.PKCS11Error:
                    pass
            try:
                found = [t for t in matching_tokens(self.lib, self.id.uri()) if token_id(t) == self.id]
            except BackendError:
                found = []
            if not found:
                continue
            self.token = found[0]
            try:
                self.session = self.token.open(rw=self.rw)
            except pkcs11.PKCS11Error:
                continue
            break
        if self.session is None:
            raise BackendError(
                f"{self.id.describe()} is not present", hint="insert the token (or restore it) and try again"
            )
        if was_logged_in:
            if self._pin is None and not (self.flags & CKF_PROTECTED_AUTHENTICATION_PATH):
                raise AuthenticationError(f"{self.id.describe()} needs the PIN again but none is kept")
            self.login()

    def close(self) -> None:
        if self.session is not None:
            _close_quietly(self.session, logout=self.logged_in)
            self.session = None
        self.logged_in = False
        self._pin = None


def locked_error(tid: TokenId, *, now: bool = False) -> AuthenticationError:
    return AuthenticationError(
        f"the user PIN of {tid.describe()} is {'now ' if now else ''}locked",
        hint="unblock it with the PUK: ykman piv access unblock-pin, or yubico-piv-tool -a unblock-pin",
    )


def _close_quietly(session: Session | None, *, logout: bool) -> None:
    """Close a session; ``logout`` only matters for documentation: python-pkcs11 logs out
    sessions that it logged in itself, and ours that were opened without a PIN are not."""
    if session is None:
        return
    try:
        session.close()
    except Exception as e:  # noqa: BLE001 - the token may already be gone
        log.debug("closing a PKCS#11 session failed: %s", type(e).__name__)
