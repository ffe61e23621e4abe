"""Opt-in credential cache for ``credential-process --cache``.

A hit must cost about as much as ``python -c "import json"``: no ``cryptography``, no
``requests``, no key access (for a YubiKey: no PIN, no touch), and not even argparse, logging or
dataclasses: ``cli.main`` calls ``fast_hit(argv)`` first, which reads a plain argv whitelist and
this module's stdlib-only top. The cache key is computed from cheap facts only: the certificate
file's bytes (or the PKCS#11 URI text), the key's path, the ARNs, region, duration, session name
and endpoint. Files that are not ours, not private, damaged or for another key are ignored and
replaced, never trusted; anything unusual falls back to the full path.
"""

from __future__ import annotations

import json
import os
import stat

from .credcheck import bad_field

try:  # the built-in module: hashlib would load OpenSSL (about 2 ms) just to hash one certificate
    from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python >= 3.12
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment,unused-ignore]

TYPE_CHECKING = False  # typing costs milliseconds at start-up; mypy still reads this block
if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping, Sequence

    from .credentials import Credentials
    from .files import Target
    from .options import IdentityOptions, RequestOptions

FORMAT = "rolesanywhere-signer-cache/1"
MAX_FILE = 64 * 1024
#: botocore refreshes process credentials 15 minutes before expiry: hand out ones that outlive that
BOTOCORE_ADVISORY = 15 * 60
_PROCESS_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("rolesanywhere_signer.cache")


def cache_margin(duration_seconds: int) -> float:
    """Reuse cached credentials only while more than this many seconds remain."""
    return min(BOTOCORE_ADVISORY + 60.0, duration_seconds / 2)


def cache_dir(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        # the XDG spec: the directory MUST be owned by the user. After `su` it often names the
        # other user's: then ~/.cache, never a directory (and a lock) that someone else controls
        try:
            st = os.stat(runtime)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            return os.path.join(runtime, "rolesanywhere-signer")
    return os.path.join(os.path.expanduser("~"), ".cache", "rolesanywhere-signer")


def _file_part(value: str, *, with_bytes: bool, env: Mapping[str, str] | None = None) -> str:
    """Text for one identity input: URIs and handles as they are, files by content or by path.

    The key file is never opened on a hit: its path is enough, because a new key always comes
    with a new certificate, whose bytes are part of the cache key. ``env:NAME`` inputs count by
    their value's hash (another certificate in the variable is another identity).
    """
    if value.startswith("pkcs11:") or value.lower().startswith("handle:"):
        return value
    if value.startswith("env:"):
        text = (os.environ if env is None else env).get(value[4:], "")
        return value + ":sha256:" + str(sha256(text.encode("utf-8", "surrogateescape")).hexdigest())
    if not with_bytes:
        return os.path.abspath(value)
    data = _read_regular(value, 4 * 1024 * 1024)
    return f"{value}:unreadable" if data is None else "sha256:" + str(sha256(data).hexdigest())


def _read_regular(path: str, limit: int, *, nofollow: bool = False) -> bytes | None:
    """files.open_input's rule (non-blocking open, regular files only: a FIFO cannot hang a hit),
    restated with ``os`` alone: importing files.py, errors and the logger costs a hit about 1 ms."""
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (os.O_NOFOLLOW if nofollow else 0)
        )
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (nofollow and (st.st_uid != os.geteuid() or st.st_mode & 0o077)):
            return None
        os.set_blocking(fd, True)
        return os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def _key(v: Mapping[str, object], env: Mapping[str, str]) -> str:
    def part(name: str, with_bytes: bool) -> str | None:
        value = v.get(name)
        return _file_part(value, with_bytes=with_bytes, env=env) if isinstance(value, str) and value else None

    parts = {
        "format": FORMAT,
        "certificate": part("certificate", True),
        "private_key": part("private_key", False),
        "intermediates": part("intermediates", True),
        "pkcs11_uri": v.get("pkcs11_uri"),
        "pkcs11_lib": v.get("pkcs11_lib"),
        "tcti": v.get("tcti"),
        "trust_anchor_arn": v.get("trust_anchor_arn"),
        "profile_arn": v.get("profile_arn"),
        "role_arn": v.get("role_arn"),
        "duration": v.get("duration"),
        "session_name": v.get("session_name"),
        "region": v.get("region"),
        "endpoint": v.get("endpoint")
        or env.get("AWS_ENDPOINT_URL_ROLESANYWHERE")
        or env.get("AWS_ENDPOINT_URL")
        or env.get("AWS_USE_FIPS_ENDPOINT"),
        # what else picks the endpoint (endpoints.py): dual-stack, and the config file's profile
        "endpoint_switches": [env.get(k) for k in ("AWS_USE_DUALSTACK_ENDPOINT", "AWS_PROFILE", "AWS_CONFIG_FILE")],
        "verify": v.get("verify", True),
    }
    return str(sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest())


def cache_key(identity: IdentityOptions, request: RequestOptions, env: Mapping[str, str] | None = None) -> str:
    values = {
        "certificate": identity.certificate,
        "private_key": identity.private_key,
        "intermediates": identity.intermediates,
        "pkcs11_uri": identity.pkcs11_uri,
        "pkcs11_lib": identity.pkcs11_lib,
        "tcti": identity.tcti,
        "trust_anchor_arn": request.trust_anchor_arn,
        "profile_arn": request.profile_arn,
        "role_arn": request.role_arn,
        "duration": request.session_duration,
        "session_name": request.role_session_name,
        "region": request.region,
        "endpoint": request.endpoint,
        "verify": request.verify,
    }
    return _key(values, os.environ if env is None else env)


def cache_path(key: str, env: Mapping[str, str] | None = None) -> str:
    return os.path.join(cache_dir(env), key[:40] + ".json")


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _expiration_epoch(text: str) -> float:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SSZ``; ValueError otherwise.

    Done by hand: ``datetime``/``_strptime`` cost more at start-up than the whole rest of a hit.
    """
    if len(text) != 20 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[19] != "Z":
        raise ValueError("unexpected expiration format")
    if text[13] != ":" or text[16] != ":" or not (text[:4] + text[5:7] + text[8:10]).isdigit():
        raise ValueError("unexpected expiration format")
    fields = (text[11:13], text[14:16], text[17:19])
    if not all(f.isdigit() for f in fields):
        raise ValueError("unexpected expiration format")
    y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    h, mi, sec = (int(f) for f in fields)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and sec < 61):
        raise ValueError("expiration out of range")
    return float(_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec)


def private_dir(directory: str) -> str | None:
    """None when ``directory`` is ours and 0700; else what is wrong with it (or "missing")."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"cannot be inspected ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"is mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    return None


def read_entry(path: str, key: str, margin: float, now: float) -> dict[str, object] | None:
    """The cached credential_process document, or None for a miss, a foreign, loose, damaged or
    nearly expired file, or one in a directory that is not ours and 0700. ``now`` is seconds since
    the epoch. Opened non-blocking without following a symlink: a planted FIFO cannot hang us."""
    if private_dir(os.path.dirname(path)) is not None:
        return None
    data = _read_regular(path, MAX_FILE, nofollow=True)  # ours, 0600, regular, never a link
    if data is None or len(data) > MAX_FILE:
        return None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("key") != key:
            return None
        body = doc.get("credentials")
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k] for k in _PROCESS_KEYS):
            return None
        if bad_field(body["AccessKeyId"], body["SecretAccessKey"], body["SessionToken"]) is not None:
            return None  # never hand on what could not have come from AWS
        if _expiration_epoch(body["Expiration"]) - now <= margin:
            return None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    # the same bytes `Credentials.to_process_json()` prints on a miss
    return {"Version": 1, **{k: body[k] for k in _PROCESS_KEYS}}


# ---- the fast path, before argparse --------------------------------------------------------------

_VALUE_FLAGS = {
    "--certificate": "certificate",
    "--private-key": "private_key",
    "--intermediates": "intermediates",
    "--pkcs11-uri": "pkcs11_uri",
    "--pkcs11-lib": "pkcs11_lib",
    "--tcti": "tcti",
    "--trust-anchor-arn": "trust_anchor_arn",
    "--profile-arn": "profile_arn",
    "--role-arn": "role_arn",
    "--session-duration": "duration",
    "--role-session-name": "session_name",
    "--region": "region",
    "--endpoint": "endpoint",
    "--timeout": "timeout",
    "--tpm-key-password-file": "tpm_key_password_file",
}
_BOOL_FLAGS = {"--cache", "--no-verify-ssl", "--with-proxy", "--reuse-pin", "--no-tpm-key-password"}


def _parse_plain(argv: Sequence[str]) -> dict[str, object] | None:
    """``credential-process`` flags read without argparse; None for anything not plainly understood
    (abbreviations, ``--flag=value``, repeats, --debug, argv secrets that deserve a warning...)."""
    if not argv or argv[0] != "credential-process":
        return None
    values: dict[str, object] = {"verify": True}
    seen: set[str] = set()
    i = 1
    while i < len(argv):
        flag = argv[i]
        if flag in seen:
            return None
        seen.add(flag)
        if flag in _BOOL_FLAGS:
            if flag == "--no-verify-ssl":
                values["verify"] = False
            i += 1
            continue
        name = _VALUE_FLAGS.get(flag)
        if name is None or i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            return None
        values[name] = argv[i + 1]
        i += 2
    if "--cache" not in seen or not all(values.get(k) for k in ("trust_anchor_arn", "profile_arn", "role_arn")):
        return None
    try:
        values["duration"] = int(str(values.get("duration", 3600)))
    except ValueError:
        return None
    return values


def fast_hit(argv: Sequence[str], env: Mapping[str, str] | None = None, now: float | None = None) -> str | None:
    """credential_process JSON straight from the cache, or None (then the normal path runs)."""
    values = _parse_plain(argv)
    if values is None:
        return None
    env = os.environ if env is None else env
    key = _key(values, env)
    duration = values["duration"]
    assert isinstance(duration, int)
    if now is None:
        import time

        now = time.time()
    entry = read_entry(cache_path(key, env), key, cache_margin(duration), now)
    return json.dumps(entry, separators=(",", ":")) if entry is not None else None


# ---- the full path -------------------------------------------------------------------------------


def write_cache(target: Target, key: str, creds: Credentials) -> None:
    """Store atomically with mode 0600 (the caller holds the lock); failures only warn."""
    from .errors import SignerError
    from .files import sweep_temps, write_atomic

    doc = {"format": FORMAT, "key": key, "credentials": creds.to_process_dict()}
    try:
        sweep_temps(target)
        write_atomic(target, json.dumps(doc).encode())
    except (SignerError, OSError) as e:
        _log().warning("could not write the credential cache: %s", e)


def cached_credential_process(identity: IdentityOptions, request: RequestOptions, *, timeout: float) -> str:
    """credential_process JSON from the cache, or fetched (once, under a lock) and cached.

    The cache directory must be ours and 0700 (checked before the lock is taken), and the lock is
    waited on for at most the request's own timeout: otherwise the cache is bypassed with one
    warning and the credentials are fetched directly. A neighbour can never stall us.
    """
    import time

    from .api import fetch_credentials
    from .errors import SignerError
    from .files import LockBusy, locked, prepare_target

    if "-" in (identity.certificate, identity.private_key, identity.intermediates):
        # what standard input holds cannot be known without reading it: no cache for it
        _log().info("not using the credential cache: the identity is read from standard input")
        return fetch_credentials(identity, request, timeout=timeout).to_process_json()
    key = cache_key(identity, request)
    path = cache_path(key)
    margin = cache_margin(request.session_duration)
    entry = read_entry(path, key, margin, time.time())
    if entry is not None:
        return json.dumps(entry, separators=(",", ":"))
    directory = os.path.dirname(path)
    try:
        target = prepare_target(path, "credential cache file", follow=False)
        problem = private_dir(directory)
        if problem is not None:
            raise SignerError(f"{directory} {problem}")
        lock = locked(target, timeout, what="credential cache")
        lock.__enter__()
    except LockBusy as e:
        _log().warning("not using the credential cache: %s", e.diagnostics())
    except SignerError as e:
        _log().warning("not using the credential cache: %s", e.diagnostics())
    else:
        try:
            # two `aws` commands at once: the second waits, then reads what the first stored (one PIN/touch)
            entry = read_entry(path, key, margin, time.time())
            if entry is not None:
                return json.dumps(entry, separators=(",", ":"))
            if os.path.lexists(path):
                _log().info("replacing a stale, damaged or foreign cache file %s", path)
            creds = fetch_credentials(identity, request, timeout=timeout)
            write_cache(target, key, creds)
            return creds.to_process_json()
        finally:
            lock.__exit__(None, None, None)
    return fetch_credentials(identity, request, timeout=timeout).to_process_json()
