"""Key rotation on a PKCS#11 token (``renew --new-key``).

The new pair is made beside the old one under a new id and label. Once a CreateSession with the
new pair has succeeded and its certificate is installed, the old pair is destroyed and the new
pair takes over the old id and label, so the URI in the configuration keeps naming the key.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, UsageError
from ..options import IdentityOptions
from ..pkcs11_uri import Pkcs11Uri, format_uri, is_pkcs11_uri
from .pkcs11 import _A, _keys_by_public, _open_tokens, _parse

if TYPE_CHECKING:
    from cryptography import x509

    from .pkcs11_token import TokenSession


def key_uri(opts: IdentityOptions) -> Pkcs11Uri:
    if opts.pkcs11_uri:
        return _parse(opts.pkcs11_uri, "--pkcs11-uri")
    if is_pkcs11_uri(opts.private_key):
        return _parse(str(opts.private_key), "--private-key")
    raise UsageError("no pkcs11: URI names the key")


def next_uri(opts: IdentityOptions) -> str:
    """A URI for the new pair: same token and PIN source, a fresh random id and a derived label."""
    old = key_uri(opts)
    kid = os.urandom(8)
    return format_uri(old.replace(id=kid, object=f"{old.object or 'key'}.next-{kid.hex()[:8]}", type=None))


def _session(opts: IdentityOptions, uri: Pkcs11Uri) -> TokenSession:
    sessions = _open_tokens(opts.pkcs11_lib, [uri], uri, rw=True)
    for extra in sessions[1:]:
        extra.close()
    ts = sessions[0]
    ts.login()
    return ts


def _pair(ts: TokenSession, kid: bytes) -> list[Any]:
    import pkcs11

    A = _A()
    found: list[Any] = []
    for cls in (pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.ObjectClass.PUBLIC_KEY):
        found += list(ts.objects({A.CLASS: cls, A.ID: kid}))
    return found


def discard(opts: IdentityOptions, new_uri: str) -> None:
    """Destroy a new pair that will not be used (its certificate was refused)."""
    uri = _parse(new_uri, "new key")
    assert uri.id is not None
    ts = _session(opts, uri)
    try:
        for obj in _pair(ts, uri.id):
            obj.destroy()
    finally:
        ts.close()


def take_over(opts: IdentityOptions, new_uri: str, old_cert: x509.Certificate) -> str:
    """Destroy the old pair (the key of ``old_cert``) and give its id and label to the new pair."""
    import pkcs11

    A = _A()
    uri = _parse(new_uri, "new key")
    assert uri.id is not None
    ts = _session(opts, uri)
    try:
        old_keys = _keys_by_public(ts, old_cert)
        if len(old_keys) != 1:
            raise BackendError(f"found {len(old_keys)} old private keys for the previous certificate; none was removed")
        old_id = bytes(old_keys[0][A.ID] or b"")
        old_label = str(old_keys[0][A.LABEL] or "")
        if not old_id:
            raise BackendError("the old private key has no CKA_ID; it was kept")
        try:
            for obj in _pair(ts, old_id):
                obj.destroy()
            for obj in _pair(ts, uri.id):
                obj[A.ID] = old_id
                obj[A.LABEL] = old_label
        except pkcs11.PKCS11Error as e:
            raise BackendError(f"could not switch the key objects on the token ({type(e).__name__})") from None
        return f"the old key pair was removed and the new one now has id {old_id.hex()} and label {old_label!r}"
    finally:
        ts.close()
