"""What the AWS SDKs speak to ``serve``: IMDSv2 and container-endpoint paths, headers and limits,
and the address helpers both the configuration (imds) and the HTTP layer (imds_server) use.
"""

from __future__ import annotations

import ipaddress

TOKEN_PATH = "/latest/api/token"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/"
CONTAINER_PATH = "/credentials"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
IMDS_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254"})


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def host_of(header: str) -> str:
    """The host part of a Host header (``[::1]:9911`` -> ``::1``), lowercased."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h
