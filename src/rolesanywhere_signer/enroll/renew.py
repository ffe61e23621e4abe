"""Renewing the certificate with the key that already holds it (or a fresh key in the same backend).

One renewal: decide whether it is due, make a CSR signed by the backend's key with the current
subject and SANs, have the issuer sign it, check the answer strictly, install certificate and chain
together, and, with ``new_key``, switch the key and prove the new pair with a CreateSession before
the old key is removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..errors import CertificateError, InputError, NotSupportedError, SignerError, UsageError
from ..logs import get_logger
from ..options import IdentityOptions, RequestOptions
from .install import identity_with

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..credentials import Credentials
    from ..keytypes import DigestName
    from ..signer import KeyHandle, Signer
    from .issuer import Issuer

log = get_logger("rolesanywhere_signer.renew")

Clock = Callable[[], datetime]
CREDENTIAL_SOURCES = ("roles-anywhere", "ambient")
DEFAULT_FRACTION = 1 / 3
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Before:
    """Renew when less than this is left: a duration or a fraction of the certificate's lifetime."""

    seconds: float | None = None
    fraction: float | None = None

    def margin(self, cert: x509.Certificate) -> timedelta:
        if self.seconds is not None:
            return timedelta(seconds=self.seconds)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        return life * (self.fraction if self.fraction is not None else DEFAULT_FRACTION)

    def describe(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds / 86400:g} days" if self.seconds >= 86400 else f"{self.seconds:g} s"
        return f"{(self.fraction if self.fraction is not None else DEFAULT_FRACTION) * 100:.0f}% of the lifetime"


DEFAULT_BEFORE = Before()


def parse_before(text: str, flag: str = "--before") -> Before:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` or ``25%``."""
    t = text.strip().lower()
    hint = "e.g. 10d, 36h, 90m or 33%"
    if t.endswith("%"):
        try:
            pct = float(t[:-1])
        except ValueError:
            raise UsageError(f"{flag} {text!r} is not a percentage", hint=hint) from None
        if not 0 < pct < 100:
            raise UsageError(f"{flag} {text!r} must be between 0% and 100%", hint=hint)
        return Before(fraction=pct / 100)
    m = _DURATION.match(t)
    if not m:
        raise UsageError(f"{flag} {text!r} is not a duration or a percentage", hint=hint)
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0 or seconds > 10 * 366 * 86400:
        raise UsageError(f"{flag} {text!r} is out of range", hint=hint)
    return Before(seconds=seconds)


@dataclass(frozen=True)
class RenewOptions:
    """How to renew: which issuer, when, and with which credentials."""

    ca_arn: str | None = None
    command: str | None = None
    command_timeout: float = 60.0
    template_arn: str | None = None
    validity_days: int | None = None
    signing_algorithm: str | None = None
    before: Before = DEFAULT_BEFORE
    force: bool = False
    new_key: bool = False
    credentials: str = "roles-anywhere"
    role_arn: str | None = None
    trust_anchor_certificate: str | None = None

    def describe(self) -> str:
        return f"ACM Private CA {self.ca_arn}" if self.ca_arn else f"command {self.command}"


@dataclass(frozen=True)
class RenewResult:
    renewed: bool
    message: str
    serial: int | None = None
    not_after: datetime | None = None


def due_at(cert: x509.Certificate, before: Before) -> datetime:
    return cert.not_valid_after_utc - before.margin(cert)


def current_certificate(identity: IdentityOptions) -> list[x509.Certificate]:
    """The certificate file being renewed (leaf first)."""
    path = identity.certificate
    if not path or path.startswith("pkcs11:"):
        raise NotSupportedError(
            "renewal needs the certificate in a file (--certificate PATH)",
            hint="export it from the token once; renew then keeps that file current",
        )
    from ..certs import load_certificate_file

    return load_certificate_file(path)


def _key_type(public_key: PublicKeyTypes) -> str:
    """The ``generate-key --key-type`` of a key like this one (for ``--new-key``)."""
    from ..keys import KEY_TYPES
    from ..keytypes import key_type_of

    kt = key_type_of(public_key)
    if kt.cli_name not in KEY_TYPES:
        raise NotSupportedError(f"--new-key cannot make {kt.title} keys yet", hint=f"it makes {', '.join(KEY_TYPES)}")
    return kt.cli_name


def make_issuer(
    options: RenewOptions, credentials: Callable[[], Credentials] | None, timeout: float, default_days: int
) -> Issuer:
    """The issuer for ``options``; ACM Private CA is asked for ``default_days`` unless --validity-days."""
    if options.ca_arn:
        from .acmpca import DEFAULT_TEMPLATE, AcmPcaIssuer

        return AcmPcaIssuer(
            options.ca_arn,
            options.template_arn or DEFAULT_TEMPLATE,
            options.validity_days or default_days,
            options.signing_algorithm,
            credentials if options.credentials == "roles-anywhere" else None,
            timeout,
        )
    if options.command:
        from .command import CommandIssuer

        return CommandIssuer(options.command, options.command_timeout)
    raise UsageError("say which CA renews the certificate: --ca-arn or --renew-command")


def _anchors(options: RenewOptions, issuer: Issuer, current_chain: list[x509.Certificate]) -> list[x509.Certificate]:
    if options.trust_anchor_certificate:
        from ..certs import parse_certificates
        from ..files import read_input_file

        path = options.trust_anchor_certificate
        return parse_certificates(read_input_file(path, "trust anchor certificate file"), path)
    from .acmpca import AcmPcaIssuer

    if isinstance(issuer, AcmPcaIssuer):
        return issuer.ca_certificates()[:1]
    if current_chain:
        return current_chain
    raise _no_anchor()


class _SignerKey:
    """An open ``Signer`` used as a ``KeyHandle`` (its key was already matched to the certificate)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def public_key(self) -> PublicKeyTypes:
        return self._signer.certificate.public_key()

    def sign(self, data: bytes, digest: DigestName = "sha256") -> bytes:
        return self._signer.sign(data, digest)

    def close(self) -> None:
        pass  # the renewal closes the signer itself


def _no_anchor() -> UsageError:
    return UsageError(
        "--renew-command needs --trust-anchor-certificate to check what the command returns",
        hint="give the CA certificate that signs the renewed certificate",
    )


class Renewer:
    """Renews one identity's certificate; ``serve`` and ``update`` keep one and call ``renew``."""

    def __init__(
        self,
        identity: IdentityOptions,
        request: RequestOptions | None,
        options: RenewOptions,
        *,
        clock: Clock | None = None,
        timeout: float = 10.0,
        credentials: Callable[[], Credentials] | None = None,
        issuer: Issuer | None = None,
    ) -> None:
        from ..certs import now_utc

        self.identity = identity
        self.request = request
        self.options = options
        self._clock = clock or now_utc
        self._timeout = timeout
        self._credentials = credentials
        self._issuer = issuer
        self._signer: Signer | None = None

    # ---- credentials for ACM Private CA ----------------------------------------------------------

    def _role_request(self) -> RequestOptions:
        if self.request is None:
            raise UsageError(
                "self-renewal needs the Roles Anywhere ARNs (--trust-anchor-arn, --profile-arn, --role-arn)",
                hint="give them, or use --renew-credentials ambient",
            )
        if not self.options.role_arn:
            return self.request
        r = self.request
        return RequestOptions(
            r.trust_anchor_arn,
            r.profile_arn,
            self.options.role_arn,
            r.session_duration,
            r.role_session_name,
            r.region,
            r.endpoint,
            r.verify,
            r.with_proxy,
        )

    def self_credentials(self) -> Credentials:
        """Temporary credentials from Roles Anywhere with the current (still valid) certificate."""
        if self._credentials is not None and not self.options.role_arn:
            return self._credentials()
        from ..client import create_session

        return create_session(self._current_signer(), self._role_request(), timeout=self._timeout, clock=self._clock)

    def _current_signer(self) -> Signer:
        """The current pair, opened once per renewal: one PIN or password for credentials and CSR."""
        if self._signer is None:
            from ..backends import load_signer

            self._signer = load_signer(self.identity)
        return self._signer

    def _open_key(self, identity: IdentityOptions, old: x509.Certificate, now: datetime) -> KeyHandle:
        if identity is self.identity and old.not_valid_before_utc <= now <= old.not_valid_after_utc:
            try:
                return _SignerKey(self._current_signer())
            except CertificateError as e:  # e.g. a stale intermediates file: the key still signs a CSR
                log.warning("renewing with the key alone: %s", e.diagnostics())
        # a new key, an expired or unusable certificate (a machine that was off): the key alone
        from ..backends import backend_for

        return backend_for(identity).open_key(identity)

    # ---- one renewal ------------------------------------------------------------------------------

    def check_ready(self) -> None:
        """Settings that could never renew fail now (start of serve/update), not at the first attempt."""
        certs = current_certificate(self.identity)
        if self.options.command and not self.options.trust_anchor_certificate:
            from ..certs import choose_chain

            if not choose_chain(certs[0], certs[1:], self.identity.intermediates):
                raise _no_anchor()
        if self.options.new_key and self.request is None:
            raise UsageError("--new-key needs the Roles Anywhere ARNs")

    def due_at(self) -> datetime:
        certs = current_certificate(self.identity)
        return due_at(certs[0], self.options.before)

    def renew(self, *, force: bool | None = None) -> RenewResult:
        try:
            return self._renew(force)
        finally:
            signer, self._signer = self._signer, None
            if signer is not None:
                signer.close()

    def _renew(self, force: bool | None) -> RenewResult:
        from .install import repair

        fixed = repair(self.identity)
        if fixed:
            log.warning("%s", fixed)
        certs = current_certificate(self.identity)
        old = certs[0]
        now = self._clock()
        when = due_at(old, self.options.before)
        if not (self.options.force if force is None else force) and now < when:
            return RenewResult(
                False,
                f"not due: renewal starts {when:%Y-%m-%d %H:%M} UTC ({self.options.before.describe()} before expiry)",
            )
        from ..certs import chain_from_pool, choose_chain

        current_chain = choose_chain(old, certs[1:], self.identity.intermediates)
        if self.options.ca_arn and self.options.credentials == "roles-anywhere" and self._issuer is None:
            self._role_request()  # fail on missing ARNs before any key is opened
        old_life = old.not_valid_after_utc - old.not_valid_before_utc
        # IssueCertificate needs a validity: the current lifetime unless --validity-days says otherwise
        default_days = max(1, round(old_life.total_seconds() / 86400))
        issuer = self._issuer or make_issuer(self.options, self.self_credentials, self._timeout, default_days)
        new_identity = self.identity
        rotation: _Rotation | None = None
        if self.options.new_key:
            if self.request is None:
                raise UsageError(
                    "--new-key needs the Roles Anywhere ARNs: the new pair must pass a CreateSession first",
                    hint="give --trust-anchor-arn, --profile-arn and --role-arn",
                )
            rotation = self._new_key(old)
            new_identity = rotation.identity
        try:
            key = self._open_key(new_identity, old, now)
            try:
                from ..certs import check_key_matches

                if rotation is None:
                    check_key_matches(old, key.public_key(), self.identity.key_source())
                csr_pem = self._csr(old, key)
                public_key = key.public_key()
                anchors = _anchors(self.options, issuer, [*current_chain, *chain_from_pool(old, certs[1:])])
                issued = issuer.issue(csr_pem)
                from .validate import check_issued

                asked = timedelta(days=self.options.validity_days) if self.options.validity_days else old_life
                chain = check_issued(issued, public_key=public_key, anchors=anchors, old=old, asked=asked, now=now)
                if rotation is not None:
                    self._prove(key, issued.certificate, chain)
            finally:
                key.close()
        except BaseException:
            if rotation is not None:
                rotation.discard()
            raise
        from .install import install_certificate

        assert self.identity.certificate
        install_certificate(self.identity.certificate, self.identity.intermediates, issued.certificate, chain)
        cert = issued.certificate
        log.info(
            "installed a renewed certificate in %s: serial %x, valid until %s UTC",
            self.identity.certificate,
            cert.serial_number,
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}",
        )
        message = f"renewed: serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        if rotation is not None:
            message += "; CreateSession with the new key succeeded; " + rotation.commit(old)
        return RenewResult(True, message, cert.serial_number, cert.not_valid_after_utc)

    def _prove(self, key: KeyHandle, cert: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> None:
        """A CreateSession with the new key and certificate, before anything is switched."""
        from ..client import create_session
        from ..signer import KeySigner

        assert self.request is not None
        try:
            create_session(KeySigner(key, cert, chain), self.request, timeout=self._timeout, clock=self._clock)
        except SignerError as e:
            # same class and exit status, with a message that says what was kept
            e.message = f"CreateSession with the new key and certificate failed, so nothing was switched: {e.message}"
            e.hint = "the old key and certificate are kept"
            raise

    def _csr(self, old: x509.Certificate, key: KeyHandle) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        from ..csrgen import build_csr, spec_from_args

        return build_csr(spec_from_args(None, (), old), key).public_bytes(Encoding.PEM)

    def _new_key(self, old: x509.Certificate) -> _Rotation:
        """A new key beside the current one, in the same backend (not yet in use)."""
        import os

        from ..backends import backend_for
        from ..tss2_sniff import is_tpm_handle

        path = self.identity.private_key
        kind = backend_for(self.identity).name
        key_type = _key_type(old.public_key())
        from .. import keys

        if kind == "pkcs11":
            from ..backends import pkcs11, pkcs11_rotate

            uri = pkcs11_rotate.next_uri(self.identity)
            pkcs11.generate_key(
                identity_with(self.identity, pkcs11_uri=uri, private_key=None, certificate=None), key_type
            )
            log.warning("made a new %s key pair on the token", key_type)
            new = identity_with(self.identity, pkcs11_uri=None, private_key=uri)
            return _Rotation(new, self.identity, "pkcs11", uri)
        from .install import NEXT

        if path and is_tpm_handle(path):
            assert self.identity.certificate
            blob = self.identity.certificate + NEXT + "-key.tss2"
            if os.path.lexists(blob):
                os.unlink(blob)  # a leftover from an attempt that never got its certificate
            from ..backends import tpm

            tpm.generate_key(identity_with(self.identity, private_key=None), key_type, output=blob)
            log.warning("made a new %s key in the TPM (%s until it moves to %s)", key_type, blob, path)
            return _Rotation(identity_with(self.identity, private_key=blob), self.identity, "tpm-handle", blob)
        if not path:
            raise UsageError("--new-key needs --private-key (the key to replace)")

        nxt = path + NEXT
        if os.path.lexists(nxt):
            os.unlink(nxt)  # a leftover that never got its certificate (repair ran first)
        if kind == "tpm":
            from ..backends import tpm

            tpm.generate_key(self.identity, key_type, output=nxt)
        else:
            password = keys.new_password(self.identity, ask=False, what=f"key file {path}")
            keys.generate_pem(nxt, key_type, password)
        log.warning("made a new %s key in %s", key_type, nxt)
        return _Rotation(identity_with(self.identity, private_key=nxt), self.identity, "file", nxt)


@dataclass(frozen=True)
class _Rotation:
    """A new key made for ``--new-key``: where it is, and how to drop it or switch to it."""

    identity: IdentityOptions
    old_identity: IdentityOptions
    kind: str  # "file" (PEM or TSS2 key file), "pkcs11" or "tpm-handle"
    where: str  # the <key>.next path, the new pair's URI, or the new TSS2 key file for a handle

    def discard(self) -> None:
        import os

        try:
            if self.kind == "pkcs11":
                from ..backends import pkcs11_rotate

                pkcs11_rotate.discard(self.old_identity, self.where)
            else:
                os.unlink(self.where)
        except (OSError, SignerError) as e:
            log.warning("could not remove the unused new key %s: %s", self.where, e)

    def commit(self, old: x509.Certificate) -> str:
        if self.kind == "pkcs11":
            from ..backends import pkcs11_rotate

            return pkcs11_rotate.take_over(self.old_identity, self.where, old)
        if self.kind == "tpm-handle":
            from ..backends import tpm, tpm_rotate

            assert self.old_identity.private_key
            return tpm_rotate.move_to_handle(
                self.old_identity, self.where, tpm.parse_handle(self.old_identity.private_key)
            )
        from .install import PREV, commit_key

        assert self.old_identity.private_key
        commit_key(self.old_identity.private_key)
        return f"the old key is kept as {self.old_identity.private_key + PREV}"


def check_options(options: RenewOptions) -> None:
    """Refuse contradictory or out-of-range settings before anything is opened."""
    if options.ca_arn and options.command:
        raise UsageError("--ca-arn and --renew-command exclude each other", hint="choose one issuer")
    if not options.ca_arn and not options.command:
        raise UsageError("say which CA renews the certificate: --ca-arn or --renew-command")
    if options.ca_arn:
        from .acmpca import SIGNING_ALGORITHMS, check_ca_arn, check_template_arn

        check_ca_arn(options.ca_arn)
        if options.template_arn:
            check_template_arn(options.template_arn)
        if options.signing_algorithm and options.signing_algorithm not in SIGNING_ALGORITHMS:
            raise UsageError(
                f"--signing-algorithm {options.signing_algorithm!r} is not one of {', '.join(SIGNING_ALGORITHMS)}"
            )
    elif options.template_arn or options.signing_algorithm or options.validity_days:
        raise UsageError("--template-arn, --signing-algorithm and --validity-days apply to --ca-arn only")
    if options.command:
        from .command import parse_command

        parse_command(options.command)
        if not 0 < options.command_timeout <= 3600:
            raise UsageError("--renew-command-timeout must be between 0 and 3600 seconds")
    if options.validity_days is not None and not 1 <= options.validity_days <= 3650:
        raise UsageError(f"--validity-days {options.validity_days} is out of range", hint="use 1..3650")
    if options.credentials not in CREDENTIAL_SOURCES:
        raise UsageError(f"--renew-credentials must be one of {', '.join(CREDENTIAL_SOURCES)}")
    if options.role_arn:
        from ..arn import parse_arn

        parse_arn(options.role_arn, "--renew-role-arn", "iam", "role")

    if options.trust_anchor_certificate is not None and not options.trust_anchor_certificate:
        raise InputError("--trust-anchor-certificate is empty")
