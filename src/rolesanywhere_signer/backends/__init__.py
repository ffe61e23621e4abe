"""Choosing a key backend from the key argument.

- ``pkcs11:`` (``--certificate``/``--private-key``/``--pkcs11-uri``) -> PKCS#11
- ``handle:0x…`` or a file holding ``-----BEGIN TSS2 PRIVATE KEY-----`` -> TPM 2.0
- any other path -> PEM/DER/PKCS#12 file
"""

from __future__ import annotations

from ..errors import UsageError
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
    if key and _file_starts_with_tss2(key):
        return "tpm"
    return "pem"


def is_tpm_handle(value: str) -> bool:
    return value.lower().startswith("handle:")


def _file_starts_with_tss2(path: str) -> bool:
    from ..files import read_head  # non-blocking: a FIFO must not hang the sniffing

    head = read_head(path, 4096)
    return head is not None and TSS2_MARKER in head  # else the PEM backend reports the file error


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
        raise UsageError("--certificate is required", hint="see --help")
    from . import pem

    return pem.load(opts)
