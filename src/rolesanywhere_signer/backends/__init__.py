"""Key backends: the ``Backend`` protocol and the registry that picks one from the key arguments.

- ``pkcs11:`` (``--certificate``/``--private-key``/``--pkcs11-uri``) -> PKCS#11
- ``handle:0x…`` or a file holding ``-----BEGIN TSS2 PRIVATE KEY-----`` -> TPM 2.0
- any other path -> PEM/DER/PKCS#12 file

A backend is one module here (``load``, ``open_key``, optionally ``health`` and ``generate_key``)
plus one line in ``REGISTRY``. The registry line decides whether the backend claims the key
arguments without importing its module: every credential-process start runs the claims, and a
PEM key must not pay for importing the PKCS#11 and TPM code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import SignerError, UsageError
from ..options import IdentityOptions
from ..records import Record

if TYPE_CHECKING:
    from types import ModuleType

    from ..checks import Check
    from ..signer import KeyHandle, Signer


class Backend(Protocol):
    """A place where private keys live (key files, a PKCS#11 token, a TPM...)."""

    @property
    def name(self) -> str:
        """Short identifier: ``pem``, ``pkcs11``, ``tpm``."""
        ...

    @property
    def title(self) -> str:
        """For people: "key files", "PKCS#11", "TPM 2.0"."""
        ...

    @property
    def certificate_in_store(self) -> bool:
        """The certificate may live in the store beside the key (a token), not only in a file."""
        ...

    @property
    def key_in_certificate_file(self) -> bool:
        """Without ``--private-key`` the key is read from the certificate file (combo PEM, PKCS#12)."""
        ...

    def claims(self, opts: IdentityOptions) -> bool:
        """These key arguments are ours (by URI scheme, prefix or a sniff of the file). Cheap."""
        ...

    def load(self, opts: IdentityOptions) -> Signer:
        """Open the key and its certificate, checked; the caller must ``close()`` it."""
        ...

    def open_key(self, opts: IdentityOptions) -> KeyHandle:
        """Open the private key alone (CSRs, doctor); the caller must ``close()`` it."""
        ...

    def health(self, opts: IdentityOptions) -> list[Check]:
        """The store's own checks for ``doctor`` (module, token, TPM reachable); no PIN asked."""
        ...


class LazyBackend(Record):
    """A registry line: claims are decided here; the backend's module is imported only when used.

    A ``Record``, not a dataclass: this module is on every cold start (records.py says why).
    """

    __slots__ = ("certificate_in_store", "claim", "key_in_certificate_file", "module", "name", "title")
    _fields = _shown = ("name", "title", "claim", "module", "certificate_in_store", "key_in_certificate_file")

    name: str
    title: str
    claim: Callable[[IdentityOptions], bool]
    module: Callable[[], ModuleType]  # imports the backend module (a function, so imports stay visible)
    certificate_in_store: bool
    key_in_certificate_file: bool

    def __init__(
        self,
        name: str,
        title: str,
        claim: Callable[[IdentityOptions], bool],
        module: Callable[[], ModuleType],
        *,
        certificate_in_store: bool = False,
        key_in_certificate_file: bool = False,
    ) -> None:
        self._init(
            name=name,
            title=title,
            claim=claim,
            module=module,
            certificate_in_store=certificate_in_store,
            key_in_certificate_file=key_in_certificate_file,
        )

    def claims(self, opts: IdentityOptions) -> bool:
        return self.claim(opts)

    def load(self, opts: IdentityOptions) -> Signer:
        signer: Signer = self.module().load(opts)
        return signer

    def open_key(self, opts: IdentityOptions) -> KeyHandle:
        key: KeyHandle = self.module().open_key(opts)
        return key

    def health(self, opts: IdentityOptions) -> list[Check]:
        fn = getattr(self.module(), "health", None)
        if fn is None:
            from ..checks import Check

            return [Check("backend", "warn", f"the {self.title} backend has no health checks yet")]
        checks: list[Check] = fn(opts)
        return checks


# ---------------------------------------------------------------- the built-in backends


def _claims_pkcs11(opts: IdentityOptions) -> bool:
    # a plain prefix test: importing the URI parser would cost every PEM start
    return bool(opts.pkcs11_uri) or any(v and v.startswith("pkcs11:") for v in (opts.certificate, opts.private_key))


def _claims_tpm(opts: IdentityOptions) -> bool:
    from ..tss2_sniff import is_tpm_handle

    key = opts.private_key
    if key and is_tpm_handle(key):
        return True
    # a TSS2 key file, or a TSS2 key and its certificate in one file given as --certificate alone
    source = key or opts.certificate
    return bool(source) and _holds_tss2(source or "")


def _claims_any(opts: IdentityOptions) -> bool:
    return True  # key files: whatever no other backend claimed; the file's own checks say what is wrong


def _holds_tss2(source: str) -> bool:
    from ..inputs import is_inline, read_input
    from ..tss2_sniff import is_tss2_file

    if is_inline(source):  # env:NAME or - (standard input, read once and kept)
        try:
            return b"-----BEGIN TSS2 PRIVATE KEY-----" in read_input(source, "key")
        except SignerError:
            return False  # the backend reads it again and reports the precise error
    return is_tss2_file(source)


def _pkcs11() -> ModuleType:
    from . import pkcs11

    return pkcs11


def _tpm() -> ModuleType:
    from . import tpm

    return tpm


def _pem() -> ModuleType:
    from . import pem

    return pem


#: in order: the first backend that claims the arguments gets them; the last one claims anything
REGISTRY: tuple[Backend, ...] = (
    LazyBackend("pkcs11", "PKCS#11", _claims_pkcs11, _pkcs11, certificate_in_store=True),
    LazyBackend("tpm", "TPM 2.0", _claims_tpm, _tpm),
    LazyBackend("pem", "key files", _claims_any, _pem, key_in_certificate_file=True),
)


def backend_for(opts: IdentityOptions) -> Backend:
    """The backend the key arguments name — decided without opening anything heavy."""
    for backend in REGISTRY:
        if backend.claims(opts):
            return backend
    raise UsageError("no key given", hint="pass --private-key, --certificate or --pkcs11-uri")  # pragma: no cover


def load_signer(opts: IdentityOptions) -> Signer:
    """Open the key and certificate named by ``opts``; the caller must ``close()`` the signer."""
    return backend_for(opts).load(opts)
