"""The one endpoint resolver against botocore's own resolution of the ``rolesanywhere`` rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rolesanywhere_signer.endpoints import PARTITIONS, partition_for, resolve_endpoint
from rolesanywhere_signer.errors import UsageError
from support.util import ARN_ARGS, assert_one_line_error, run_cli

#: one region per partition (botocore's partitions.json)
REGIONS = {
    "aws": "eu-west-1",
    "aws-cn": "cn-northwest-1",
    "aws-eusc": "eusc-de-east-1",
    "aws-iso": "us-iso-east-1",
    "aws-iso-b": "us-isob-east-1",
    "aws-iso-e": "eu-isoe-west-1",
    "aws-iso-f": "us-isof-south-1",
    "aws-us-gov": "us-gov-west-1",
}
NO_CONFIG = {"AWS_CONFIG_FILE": "/nonexistent/config"}


def botocore_url(region: str, fips: bool, dualstack: bool) -> str:
    """botocore's own answer: its rule-set engine over its rolesanywhere rules and partitions."""
    import botocore.session
    from botocore.endpoint_provider import EndpointProvider

    loader = botocore.session.Session().get_component("data_loader")
    provider = EndpointProvider(
        loader.load_service_model("rolesanywhere", "endpoint-rule-set-1"), loader.load_data("partitions")
    )
    endpoint = provider.resolve_endpoint(Region=region, UseFIPS=fips, UseDualStack=dualstack)
    return str(endpoint.url)


def test_every_partition_is_in_the_table() -> None:
    assert {p.name for p in PARTITIONS} == set(REGIONS)


@pytest.mark.parametrize("partition", sorted(REGIONS))
@pytest.mark.parametrize(("fips", "dualstack"), [(False, False), (True, False), (False, True), (True, True)])
def test_partition_fips_dualstack_as_botocore(partition: str, fips: bool, dualstack: bool) -> None:
    region = REGIONS[partition]
    assert partition_for(region).name == partition
    env = {
        **NO_CONFIG,
        "AWS_USE_FIPS_ENDPOINT": str(fips).lower(),
        "AWS_USE_DUALSTACK_ENDPOINT": str(dualstack).lower(),
    }
    assert resolve_endpoint(region, env=env) == botocore_url(region, fips, dualstack)


def test_unknown_region_is_in_aws() -> None:
    assert resolve_endpoint("xx-north-9", env=NO_CONFIG) == "https://rolesanywhere.xx-north-9.amazonaws.com"


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config"
    path.write_text(text)
    return str(path)


def test_config_file_keys_of_the_named_profile(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        "[default]\nuse_fips_endpoint = false\n\n"
        "[profile ci]\nregion = eu-west-1\nuse_fips_endpoint = true\nuse_dualstack_endpoint = true\n"
        "s3 =\n  use_dualstack_endpoint = false\n\n"
        "[profile ds]\nuse_dualstack_endpoint = true\n",
    )
    base = {"AWS_CONFIG_FILE": cfg}
    assert resolve_endpoint("eu-west-1", env=base) == "https://rolesanywhere.eu-west-1.amazonaws.com"
    ci = {**base, "AWS_PROFILE": "ci"}
    assert resolve_endpoint("eu-west-1", env=ci) == "https://rolesanywhere-fips.eu-west-1.api.aws"
    ds = {**base, "AWS_PROFILE": "ds"}
    assert resolve_endpoint("cn-north-1", env=ds) == "https://rolesanywhere.cn-north-1.api.amazonwebservices.com.cn"
    # the environment wins over the config file
    off = {**ci, "AWS_USE_FIPS_ENDPOINT": "false", "AWS_USE_DUALSTACK_ENDPOINT": "false"}
    assert resolve_endpoint("eu-west-1", env=off) == "https://rolesanywhere.eu-west-1.amazonaws.com"


def test_config_file_default_profile(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[profile other]\nuse_fips_endpoint = false\n[default]\nuse_fips_endpoint = true\n")
    url = resolve_endpoint("us-gov-east-1", env={"AWS_CONFIG_FILE": cfg})
    assert url == "https://rolesanywhere-fips.us-gov-east-1.amazonaws.com"


def test_overrides_in_order() -> None:
    env = {
        **NO_CONFIG,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL_ROLESANYWHERE": "http://127.0.0.1:2",
    }
    assert resolve_endpoint("eu-west-1", env=env) == "http://127.0.0.1:2"
    assert resolve_endpoint("eu-west-1", env=env, endpoint="http://127.0.0.1:3/") == "http://127.0.0.1:3"
    del env["AWS_ENDPOINT_URL_ROLESANYWHERE"]
    assert resolve_endpoint("eu-west-1", env=env) == "http://127.0.0.1:1"
    ignored = {**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
    assert resolve_endpoint("eu-west-1", env=ignored) == "https://rolesanywhere.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("switch", ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"])
def test_custom_endpoint_with_fips_or_dualstack_is_refused(switch: str) -> None:
    with pytest.raises(UsageError, match="custom endpoint"):
        resolve_endpoint("eu-west-1", env={**NO_CONFIG, switch: "true"}, endpoint="https://ra.example")


def test_bad_switch_value(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="AWS_USE_FIPS_ENDPOINT"):
        resolve_endpoint("eu-west-1", env={**NO_CONFIG, "AWS_USE_FIPS_ENDPOINT": "yes"})
    cfg = _config(tmp_path, "[default]\nuse_dualstack_endpoint = maybe\n")
    with pytest.raises(UsageError, match="use_dualstack_endpoint"):
        resolve_endpoint("eu-west-1", env={"AWS_CONFIG_FILE": cfg})


def test_cli_reports_a_bad_switch_in_one_line(identity: Any) -> None:
    proc = run_cli(
        ["credential-process", "--certificate", identity.certificate, "--private-key", identity.private_key, *ARN_ARGS],
        env={**NO_CONFIG, "AWS_USE_DUALSTACK_ENDPOINT": "sometimes"},
    )
    assert_one_line_error(proc, "AWS_USE_DUALSTACK_ENDPOINT", 2)
