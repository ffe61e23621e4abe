"""Choosing a key backend from the key argument.

- ``pkcs11:`` (``--certificate``/``--private-key``/``--pkcs11-uri``) -> PKCS#11
- ``handle:0x…`` or a file holding ``-----BEGIN TSS2 PRIVATE KEY-----`` -> TPM 2.0
- any other path -> PEM/DER/PKCS#12 file
"""

from __future__ import annotations

from ..errors import NoCertificateError, SignerError
from ..options import IdentityOptions
from ..signer import Signer

TSS2_MARKER = b"-----BEGIN TSS2 PRIVATE KEY-----"


def backend_name(opts: IdentityOptions) -> str:
    """``pkcs11``, ``tpm`` or ``pem`` — decided without opening anything heavy."""
    if opts.pkcs11_uri or any(v and v.startswith("pkcs11:") for v in (opts.certificate, opts.private_key)):
        return "pkcs11"
    key = opts.private_key
    if key and is_tpm_handle(key):
        return "tpm"
    # a TSS2 key file, or a combo file with the TSS2 key and its certificate as --certificate alone
    if (key or opts.certificate) and _file_starts_with_tss2(key or opts.certificate or ""):
        return "tpm"
    return "pem"


def is_tpm_handle(value: str) -> bool:
    return value.lower().startswith("handle:")


def _file_starts_with_tss2(path: str) -> bool:
    from ..inputs import is_inline, read_input

    if is_inline(path):
        try:
            return TSS2_MARKER in read_input(path, "key")
        except SignerError:
            return False  # the backend reads it again and reports the precise error
    try:
        with open(path, "rb") as f:
            return TSS2_MARKER in f.read(16384)
    except OSError:
        return False  # the PEM backend reports the precise file error


def load_signer(opts: IdentityOptions) -> Signer:
    """Open the key and certificate named by ``opts``; the caller must ``close()`` the signer."""
    name = backend_name(opts)
    if name == "pkcs11":
        from . import pkcs11

        return pkcs11.load(opts)
    if name == "tpm":
        from . import tpm

        return tpm.load(opts)
    if not opts.certificate:
        from ..inputs import is_inline

        if is_inline(opts.private_key):
            # --private-key - (or env:NAME) alone: one bundle with the certificate and the key
            from . import pem

            return pem.load(opts)
        raise NoCertificateError("--certificate is required", hint="see --help")
    from . import pem

    return pem.load(opts)
