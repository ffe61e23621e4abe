"""The tests' own view of the reader, through the product's PC/SC helper."""

from __future__ import annotations

from rolesanywhere_signer import pcsc


def card_present(socket_path: str) -> bool:
    """A card answers SCardConnect in our reader (``socket_path`` is PCSCLITE_CSOCK_NAME, already set)."""
    del socket_path  # libpcsclite reads it from the environment once per process
    try:
        with pcsc._context() as (lib, ctx):
            names = pcsc._readers(lib, ctx)
            if not names:
                return False
            with pcsc._connect(lib, ctx, names[0]):
                return True
    except OSError:
        return False
