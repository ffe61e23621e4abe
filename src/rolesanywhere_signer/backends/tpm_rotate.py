"""Key rotation for a key at a persistent TPM handle (``renew --new-key``).

The new key is made as a TSS2 key file (under the owner hierarchy's standard storage primary) and
used from that file for the CSR and the proving CreateSession. Only then is the old key evicted
from the handle and the new one persisted at the same handle, so ``handle:0x81…`` in the
configuration keeps naming the key; the file is removed afterwards.
"""

from __future__ import annotations

import os

from ..errors import BackendError
from ..options import IdentityOptions
from .tpm_tcti import connect, resolve


def move_to_handle(opts: IdentityOptions, key_file: str, handle: int) -> str:
    """Evict the key at ``handle`` and persist the key of ``key_file`` there; remove the file."""
    from tpm2_pytss import ESYS_TR, TPM2B_PRIVATE, TPM2B_PUBLIC, TSS2_Exception

    from ..files import read_input_file
    from ..tss2 import parse_pem
    from .tpm_objects import storage_primary

    key = parse_pem(read_input_file(key_file, "new TPM key file"), key_file)
    public, _ = TPM2B_PUBLIC.unmarshal(key.public)
    private, _ = TPM2B_PRIVATE.unmarshal(key.private)
    tcti = resolve(opts.tcti)
    esapi = connect(tcti)
    try:
        try:
            old = esapi.tr_from_tpmpublic(handle)
            esapi.evict_control(ESYS_TR.OWNER, old, handle)  # removes the persistent object
            parent = esapi.create_primary(None, storage_primary(rsa=key.rsa_parent), ESYS_TR.OWNER)[0]
            try:
                obj = esapi.load(parent, private, public)
                try:
                    esapi.tr_close(esapi.evict_control(ESYS_TR.OWNER, obj, handle))
                finally:
                    esapi.flush_context(obj)
            finally:
                esapi.flush_context(parent)
        except TSS2_Exception as e:
            raise BackendError(
                f"could not move the new key to TPM handle 0x{handle:08x} (TPM error 0x{int(e.rc):x})",
                hint=f"the new key is still in {key_file}; persist it with tpm2_evictcontrol",
            ) from None
    finally:
        try:
            esapi.close()
        except TSS2_Exception:
            pass
    os.unlink(key_file)
    return f"the old key was evicted and the new one persisted at 0x{handle:08x}"
