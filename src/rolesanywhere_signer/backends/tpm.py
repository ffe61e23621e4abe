"""TPM 2.0 backend. Not yet implemented."""

from __future__ import annotations

from ..errors import NotSupportedError
from ..options import IdentityOptions
from ..signer import Signer


def load(opts: IdentityOptions) -> Signer:
    raise NotSupportedError(
        "TPM 2.0 keys (handle: or TSS2 PRIVATE KEY files) are not yet supported by this version",
        hint="use a PEM key file for now",
    )
