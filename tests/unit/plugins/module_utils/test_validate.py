"""Bad input named before any change (module_utils/validate.py)."""

import pytest
from plan_helpers import KEY, plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    inventory,
    naming,
    validate,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning

BAD_INPUTS = [
    ({"name": "EC2 Protect"}, "'EC2 Protect'"),
    ({"name": "EC2Protect\n"}, "'EC2Protect\\\\n'"),
    ({"name": "x" * 53}, "53 characters"),
    ({"name": "a.b"}, "'a.b'"),
    ({"mode": "tags"}, "'tags'"),
    ({"mode": "tag", "tag_key": ""}, "stop_protection_tag_key"),
    ({"mode": "tag", "tag_key": "aws:owner", "tag_value": "x"}, "'aws:owner'"),
    ({"mode": "tag", "tag_key": "k" * 129, "tag_value": "x"}, "longer than 128"),
    ({"bypass_tag_key": ""}, "stop_protection_bypass_tag_key"),
    ({"notification_topic_arn": "arn:aws:sqs:eu-west-1:123456789012:q"}, "is a sqs ARN"),
    ({"failure_destination_arn": "arn:aws:lambda:eu-west-1:123456789012:function:f"}, "is a lambda ARN"),
    (
        {"failure_destination_arn": "not-an-arn"},
        "'not-an-arn' is not an ARN; it must be the ARN of one of: sqs, sns",
    ),
    (
        {"failure_destination_arn": "arn:aws:s3:::my-bucket"},
        "'arn:aws:s3:::my-bucket' is a s3 ARN; it must be one of: sqs, sns",
    ),
    ({"notification_topic_arn": "arn:aws:sns:::ops"}, "'arn:aws:sns:::ops' names no region or account"),
    ({"instances": []}, "no instances selected: the inventory group 'stop_protected'"),
    ({"instances": [], "inventory_group": "web"}, "no instances selected: the inventory group 'web'"),
    ({"regions": ["moon-1"]}, "'moon-1'"),
    ({"kms_key_arns": ["arn:aws:kms:eu-west-1:123456789012:alias/ebs"]}, "alias/ebs' names an alias"),
    ({"kms_key_arns": ["1234abcd-12ab-34cd-56ef-1234567890ab"]}, "\\[0\\] '1234abcd-12ab"),
    ({"kms_key_arns": ["arn:aws:s3:::bucket"]}, "is not a KMS key ARN"),
    ({"kms_key_arns": "arn:aws:kms:eu-west-1:123456789012:key/k"}, "must be a list"),
    ({"kms_key_arns": [KEY, KEY]}, "more than once"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_build_plan_rejects_bad_input_naming_the_value(overrides, message):
    kwargs = {
        "name": "EC2Protect",
        "instances": [("i-0123456789abcdef0", "eu-west-1", "host a")],
        "bypass_tag_key": "StopProtectionBypass",
        "tag_key": "StopProtection",
        "tag_value": "enabled",
    } | overrides
    with pytest.raises(validate.ProtectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        planning.build_plan(**kwargs)


def test_unknown_region_rejected_when_the_known_list_is_given():
    with pytest.raises(validate.ProtectionError, match="not a region AWS knows"):
        inventory.collect_instances([], ["i-0000000000000000a"], "xx-nowhere-9", known_regions={"eu-west-1"})


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "us-isob-east-1", "eusc-de-east-1"])
def test_every_partitions_region_names_are_accepted(region):
    """naming.partition_of knows these partitions; validation accepts their regions too."""
    assert validate.validate_region(region) == region
    assert naming.partition_of(region) != "aws" or region == "eu-west-1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"restart_limit": 0}, "stop_protection_restart_limit must be 1-20, got 0"),
        ({"restart_limit": 21}, "got 21"),
        ({"restart_limit": True}, "got True"),
        ({"restart_window_seconds": 59}, "stop_protection_restart_window_seconds must be 60-604800, got 59"),
        ({"history_tag_key": "aws:x"}, "stop_protection_restart_history_tag_key 'aws:x'"),
        ({"suspended_tag_key": ""}, "stop_protection_suspended_tag_key must be a non-empty tag key"),
        ({"suspended_tag_key": "StopProtectionBypass"}, "'StopProtectionBypass' must differ"),
        ({"history_tag_key": "Same", "suspended_tag_key": "Same"}, "both 'Same'"),
        ({"skip_auto_scaling": "yes"}, "stop_protection_skip_auto_scaling must be true or false, got 'yes'"),
        ({"retry_attempts": 3}, "stop_protection_retry_attempts must be 0, 1 or 2, got 3"),
    ],
)
def test_bad_restart_settings_name_the_value(settings, message):
    with pytest.raises(validate.ProtectionError) as error:
        validate.validate_restart_policy(settings, bypass_tag_key="StopProtectionBypass")
    assert message in str(error.value)


@pytest.mark.parametrize("minutes", [-1, 1441, True, "5"])
def test_bad_sweep_minutes_name_the_value(minutes):
    with pytest.raises(
        validate.ProtectionError,
        match=f"stop_protection_sweep_minutes must be 0 \\(no sweep\\) to 1440, got {minutes!r}",
    ):
        validate.validate_restart_policy({"sweep_minutes": minutes})


@pytest.mark.parametrize("period", [5, 45, 90, 86460, -60, True])
def test_bad_alarm_period_names_the_value(period):
    with pytest.raises(
        validate.ProtectionError, match=f"stop_protection_alarm_period_seconds must be .* got {period!r}"
    ):
        validate.validate_restart_policy({"alarm_period_seconds": period})


def test_resource_tags_always_carry_the_owner_tag():
    assert validate.validate_resource_tags({"Team": "platform"}) == {
        "Team": "platform",
        "ManagedBy": "guardrails.ec2",
    }
    assert validate.validate_resource_tags(None) == {"ManagedBy": "guardrails.ec2"}
    assert plan_for(["i-0000000000000000a"], resource_tags={"CostCenter": "42"})["tags"] == {
        "CostCenter": "42",
        "ManagedBy": "guardrails.ec2",
    }


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"ManagedBy": "terraform"}, r"stop_protection_resource_tags\['ManagedBy'\] is 'terraform'"),
        ({"Team": 7}, r"stop_protection_resource_tags\['Team'\] must be a string, got 7"),
        ({"aws:x": "y"}, "reserved prefix"),
        (["ManagedBy"], "must be a mapping"),
    ],
)
def test_bad_resource_tags_are_named(tags, message):
    with pytest.raises(validate.ProtectionError, match=message):
        validate.validate_resource_tags(tags)


@pytest.mark.parametrize(
    ("principals", "message"),
    [
        ("arn:aws:iam::*:role/x", "must be a list of ARN patterns"),
        (["deployer"], "entry 'deployer' is not an ARN pattern"),
        (["arn:aws:iam::**:role/x"], "never \\*\\*"),
    ],
)
def test_bad_automation_principals_are_named(principals, message):
    with pytest.raises(validate.ProtectionError, match=message):
        plan_for(["i-0123456789abcdef0"], automation_principals=principals)
