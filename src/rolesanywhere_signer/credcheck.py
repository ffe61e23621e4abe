"""The shape AWS temporary credentials must have before they go anywhere (file, cache, serve, stdout).

A value from the endpoint is written into ``~/.aws/credentials``, a JSON cache and HTTP answers: a
line break in it would let a hostile endpoint (or anyone in the middle with ``--no-verify-ssl``)
add lines, such as a ``credential_process`` that botocore then runs. So the fields are held to
their real alphabets. String methods only: this runs on the ``--cache`` hit path, which must not
pay for compiling a regular expression.
"""

from __future__ import annotations

_UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_BASE64 = _UPPER_DIGITS + "abcdefghijklmnopqrstuvwxyz+/="
_DIGITS = "0123456789"

#: the one-line error text for every malformed answer
MALFORMED = "the endpoint returned malformed credentials"


def _only(value: object, alphabet: str) -> bool:
    # str.strip(chars) removes every leading and trailing char in the set: "" means all were in it
    return isinstance(value, str) and bool(value) and value.isascii() and not value.strip(alphabet)


def bad_field(access_key_id: object, secret_access_key: object, session_token: object) -> str | None:
    """The name of the first field with the wrong shape, or None when all three are well formed."""
    if not (_only(access_key_id, _UPPER_DIGITS) and 16 <= len(str(access_key_id)) <= 128):
        return "accessKeyId"
    if not _only(secret_access_key, _BASE64):
        return "secretAccessKey"
    if not _only(session_token, _BASE64):
        return "sessionToken"
    return None


def is_rfc3339_utc(text: object) -> bool:
    """``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)``."""
    if not isinstance(text, str) or not text.isascii():
        return False
    if text.endswith("Z"):
        body = text[:-1]
    elif text.endswith("+00:00"):
        body = text[:-6]
    else:
        return False
    head, dot, fraction = body.partition(".")
    if dot and not (fraction and not fraction.strip(_DIGITS)):
        return False
    return (
        len(head) == 19
        and head[4] == "-"
        and head[7] == "-"
        and head[10] == "T"
        and head[13] == ":"
        and head[16] == ":"
        and not (head[0:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:19]).strip(_DIGITS)
    )
