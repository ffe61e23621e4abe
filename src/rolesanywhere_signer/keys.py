"""Software keys and new key files: generation, the 0600 file writer, new passwords, descriptions.

Keys in a store (token, TPM) are opened, generated and health-checked by their backend
(``backends.backend_for(opts)``); nothing here picks a backend.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import InputError, SecretError
from .keytypes import (
    EC_P256,
    EC_P384,
    ML_DSA_44,
    ML_DSA_65,
    ML_DSA_87,
    RSA_2048,
    RSA_3072,
    describe_key,
    key_type_named,
)
from .options import IdentityOptions
from .secret import Secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes


#: ML-DSA keys: key files only (TPM 2.0 has no ML-DSA; tokens are refused without CKM_ML_DSA)
MLDSA_KEY_TYPES = tuple(kt.cli_name for kt in (ML_DSA_44, ML_DSA_65, ML_DSA_87))
#: what ``generate-key`` makes (``keytypes`` rows by their CLI spelling)
KEY_TYPES = (*(kt.cli_name for kt in (RSA_2048, RSA_3072, EC_P256, EC_P384)), *MLDSA_KEY_TYPES)


def new_software_key(key_type: str) -> PrivateKeyTypes:
    if key_type not in KEY_TYPES:
        raise InputError(f"unknown key type {key_type!r}", hint=f"use one of {', '.join(KEY_TYPES)}")
    return key_type_named(key_type).generate_private_key()  # ML-DSA: written in the seed form (PKCS#8)


def write_new_file(path: str, data: bytes, *, mode: int = 0o600, what: str = "key file") -> None:
    """Create ``path`` with ``mode``; never overwrite, and leave nothing half-written behind.

    The directory must pass files.py's StrictModes checks: never into a directory (or through a
    symlink) that another user controls.
    """
    from .files import prepare_target

    if not os.path.lexists(path):  # an existing name is refused below, as "already exists"
        prepare_target(path, what, create_dirs=False, follow=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    except FileExistsError:
        raise InputError(f"{what} {path} already exists; refusing to overwrite it", hint="choose a new path") from None
    except FileNotFoundError:
        raise InputError(f"cannot create {what} {path}: its directory does not exist") from None
    except NotADirectoryError:
        raise InputError(f"cannot create {what} {path}: a part of the path is not a directory") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise InputError(f"cannot create {what} {path}: the directory is not writable by this user") from None
    except OSError as e:
        raise InputError(f"cannot create {what} {path}: {e.strerror or type(e).__name__}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widen beyond ``mode``
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(path)
        raise InputError(f"cannot write {what} {path}: {e.strerror or type(e).__name__}") from None
    os.close(fd)


def generate_pem(path: str, key_type: str, password: Secret | None) -> PublicKeyTypes:
    """A software key in a PEM PKCS#8 file (0600), encrypted when a password is given."""
    from cryptography.hazmat.primitives import serialization

    key = new_software_key(key_type)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_new_file(path, pem)
    return key.public_key()


def new_password(opts: IdentityOptions, *, ask: bool, what: str) -> Secret | None:
    """The password for a new encrypted key: flag, environment, or (when ``ask``) the terminal, twice."""
    from .backends.pem import PASSWORD_ENV
    from .secret import first_secret, from_env, from_value, prompt_secret

    if opts.pkcs8_password is not None and not opts.pkcs8_password:
        raise SecretError("--pkcs8-password is empty")
    given = first_secret(from_value(opts.pkcs8_password), from_env(PASSWORD_ENV))
    if given is not None or not ask:
        return given
    hint = f"pass --pkcs8-password or set {PASSWORD_ENV}"
    first = prompt_secret(f"New password for {what}: ", what=f"a password for {what}", hint=hint)
    if not first:
        raise SecretError(f"the password for {what} is empty")
    again = prompt_secret(f"Repeat the password for {what}: ", what=f"a password for {what}", hint=hint)
    if again != first:
        raise SecretError("the two passwords differ; nothing was written")
    return first


def describe_public_key(public_key: PublicKeyTypes) -> str:
    """ "RSA 2048", "EC P-256", "ML-DSA-65", ... (the key-type table's titles)."""
    return describe_key(public_key)
