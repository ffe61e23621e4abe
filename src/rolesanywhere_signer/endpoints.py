"""The one Roles Anywhere endpoint resolver, following the AWS SDKs' endpoint rules.

Order, as the SDKs (and so ``aws_signing_helper``) apply it:

1. ``--endpoint``, else ``AWS_ENDPOINT_URL_ROLESANYWHERE``, else ``AWS_ENDPOINT_URL`` (both ignored
   when ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` is true). A custom endpoint with FIPS or dual-stack
   switched on is an error, as in the ``rolesanywhere`` rule set.
2. Otherwise ``https://rolesanywhere[-fips].{region}.{suffix}``: the partition comes from the
   region (``PARTITIONS``, from botocore's ``partitions.json``); the suffix is its DNS suffix, or
   its dual-stack suffix when dual-stack is on.

FIPS and dual-stack are switched on by ``AWS_USE_FIPS_ENDPOINT`` / ``AWS_USE_DUALSTACK_ENDPOINT``,
else by ``use_fips_endpoint`` / ``use_dualstack_endpoint`` in the profile ``AWS_PROFILE`` names of
the AWS config file (``AWS_CONFIG_FILE``, default ``~/.aws/config``). That file is read by a small
parser here: importing botocore would cost every credential-process start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .errors import UsageError
from .records import Record


class Partition(Record):
    """One AWS partition's endpoint facts (a ``Record``: ``typing`` stays off the cold path)."""

    __slots__ = ("dns_suffix", "dualstack_dns_suffix", "name", "region_regex")
    _fields = _shown = ("name", "region_regex", "dns_suffix", "dualstack_dns_suffix")

    name: str
    region_regex: str
    dns_suffix: str
    dualstack_dns_suffix: str

    def __init__(self, name: str, region_regex: str, dns_suffix: str, dualstack_dns_suffix: str) -> None:
        self._init(
            name=name, region_regex=region_regex, dns_suffix=dns_suffix, dualstack_dns_suffix=dualstack_dns_suffix
        )


#: from botocore/data/partitions.json (every partition supports FIPS and dual-stack there); the
#: first whose pattern matches wins, "aws" otherwise
PARTITIONS: tuple[Partition, ...] = (
    Partition("aws", r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$", "amazonaws.com", "api.aws"),
    Partition("aws-cn", r"^cn\-\w+\-\d+$", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    Partition("aws-eusc", r"^eusc\-(de)\-\w+\-\d+$", "amazonaws.eu", "api.amazonwebservices.eu"),
    Partition("aws-iso", r"^us\-iso\-\w+\-\d+$", "c2s.ic.gov", "api.aws.ic.gov"),
    Partition("aws-iso-b", r"^us\-isob\-\w+\-\d+$", "sc2s.sgov.gov", "api.aws.scloud"),
    Partition("aws-iso-e", r"^eu\-isoe\-\w+\-\d+$", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    Partition("aws-iso-f", r"^us\-isof\-\w+\-\d+$", "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
    Partition("aws-us-gov", r"^us\-gov\-\w+\-\d+$", "amazonaws.com", "api.aws"),
)
SERVICE = "rolesanywhere"
#: the AWS config file is small; anything larger is not read
MAX_CONFIG_BYTES = 1024 * 1024


def partition_for(region: str) -> Partition:
    for p in PARTITIONS:
        if re.match(p.region_regex, region):
            return p
    return PARTITIONS[0]  # as the SDKs: an unknown region is taken to be in "aws"


def _true(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v == "true":
        return True
    if v in ("false", ""):
        return False
    raise UsageError(f"{name} is {value.strip()!r}", hint="use true or false")


def config_profile_values(env: Mapping[str, str]) -> dict[str, str]:
    """``key = value`` pairs of the profile ``AWS_PROFILE`` names in the AWS config file."""
    path = env.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "config")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return {}
    if len(data) > MAX_CONFIG_BYTES:
        return {}
    wanted = ("default", "profile default") if profile == "default" else (f"profile {profile}",)
    values: dict[str, str] = {}
    inside = False
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = " ".join(line[1:-1].split()) in wanted
            continue
        if inside and "=" in line and not raw[:1].isspace():  # indented lines belong to a sub-section
            key, _, value = line.partition("=")
            values[key.strip().lower()] = value.split(" #", 1)[0].split(" ;", 1)[0].strip()
    return values


def endpoint_switches(env: Mapping[str, str] | None = None) -> tuple[bool, bool]:
    """(FIPS, dual-stack): the environment first, then the config file's profile."""
    env = os.environ if env is None else env
    fips = _true(env.get("AWS_USE_FIPS_ENDPOINT"), "AWS_USE_FIPS_ENDPOINT")
    dual = _true(env.get("AWS_USE_DUALSTACK_ENDPOINT"), "AWS_USE_DUALSTACK_ENDPOINT")
    if fips is None or dual is None:
        config = config_profile_values(env)
        where = f"use_{{}}_endpoint in the AWS config file (profile {env.get('AWS_PROFILE') or 'default'})"
        if fips is None:
            fips = _true(config.get("use_fips_endpoint"), where.format("fips"))
        if dual is None:
            dual = _true(config.get("use_dualstack_endpoint"), where.format("dualstack"))
    return bool(fips), bool(dual)


def configured_endpoint(flag: str | None, env: Mapping[str, str]) -> str | None:
    """The custom endpoint, if any: the flag, then the service's and the global variable."""
    if flag:
        return flag
    if _true(env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        return None
    return env.get("AWS_ENDPOINT_URL_ROLESANYWHERE") or env.get("AWS_ENDPOINT_URL") or None


def resolve_endpoint(region: str | None, *, endpoint: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The endpoint URL (no trailing slash) for CreateSession in ``region``."""
    env = os.environ if env is None else env
    fips, dual = endpoint_switches(env)
    explicit = configured_endpoint(endpoint, env)
    if explicit:
        if fips:
            raise UsageError("FIPS and a custom endpoint cannot be combined", hint="unset AWS_USE_FIPS_ENDPOINT")
        if dual:
            raise UsageError(
                "dual-stack and a custom endpoint cannot be combined", hint="unset AWS_USE_DUALSTACK_ENDPOINT"
            )
        return check_endpoint_url(explicit)
    if not region:
        raise UsageError(
            "cannot tell which endpoint to use: no region", hint="pass --trust-anchor-arn, --region or --endpoint"
        )
    p = partition_for(region)
    suffix = p.dualstack_dns_suffix if dual else p.dns_suffix
    return f"https://{SERVICE}{'-fips' if fips else ''}.{region}.{suffix}"


def check_endpoint_url(url: str) -> str:
    from urllib.parse import urlsplit

    if "://" not in url:
        # the reference helper accepts a bare host name and assumes https
        url = "https://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UsageError(f"endpoint {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"endpoint {url!r} has scheme {parts.scheme!r}", hint="use http:// or https://")
    if not parts.hostname:
        raise UsageError(f"endpoint {url!r} has no host name")
    if parts.query or parts.fragment:
        raise UsageError(f"endpoint {url!r} must not carry a query or fragment")
    del port
    return url.rstrip("/")
