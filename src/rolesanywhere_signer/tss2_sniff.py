"""Is a key argument a TPM key? Answered without importing the TSS2 parser (tss2.py).

Every start asks the backend registry who claims the key; a PEM run must not pay for the TSS2
module (its ASN.1 records) just to learn that the answer is no.
"""

from __future__ import annotations

#: ``--private-key handle:0x81000010``: a persistent key inside the TPM instead of a file
HANDLE_PREFIX = "handle:"
TSS2_BEGIN = b"-----BEGIN TSS2 PRIVATE KEY-----"


def is_tpm_handle(value: str) -> bool:
    return value.lower().startswith(HANDLE_PREFIX)


def is_tss2_file(path: str) -> bool:
    """The file begins a ``TSS2 PRIVATE KEY`` block in its first 4 KiB (a cheap sniff, no parsing)."""
    from .files import read_head  # non-blocking, regular files only: a FIFO must not hang the sniff

    head = read_head(path, 4096)
    return head is not None and TSS2_BEGIN in head  # else whoever opens it for real reports the error
