"""The plan: per region its rules and IAM names, every setting validated (module_utils/plan.py)."""

import pytest
from plan_helpers import ids, plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    validate,
)


def test_plan_groups_by_region_and_shards_each():
    instances = [(i, "eu-west-1", "x") for i in ids(200)] + [("i-0123456789abcdef0", "us-east-1", "y")]
    plan = planning.build_plan("EC2Protect", instances=instances, bypass_tag_key="B", attribution=True)
    regions = {entry["region"]: entry for entry in plan["regions"]}
    assert [r["name"] for r in regions["eu-west-1"]["rules"]] == [
        "EC2Protect.1", "EC2Protect.2", "EC2Protect.3", "EC2Protect.attribution", "EC2Protect.sweep",
    ]  # fmt: skip
    assert [r["name"] for r in regions["us-east-1"]["rules"]] == [
        "EC2Protect.1",
        "EC2Protect.attribution",
        "EC2Protect.sweep",
    ]
    sweep = regions["us-east-1"]["rules"][-1]
    assert (sweep["kind"], sweep["schedule"], sweep["pattern"]) == ("sweep", "rate(5 minutes)", None)


def test_tag_mode_has_one_rule_per_region_without_ids():
    plan = planning.build_plan(
        "EC2Protect",
        mode="tag",
        regions=["eu-west-1", "us-east-1"],
        tag_key="K",
        tag_value="V",
        bypass_tag_key="B",
    )
    assert [[rule["kind"] for rule in entry["rules"]] for entry in plan["regions"]] == [
        ["tagged instances", "sweep"]
    ] * 2
    assert "instance-id" not in plan["regions"][0]["rules"][0]["pattern"]


@pytest.mark.parametrize(
    ("minutes", "schedule"), [(1, "rate(1 minute)"), (5, "rate(5 minutes)"), (1440, "rate(1440 minutes)")]
)
def test_sweep_rule_follows_the_setting(minutes, schedule):
    plan = plan_for(["i-0123456789abcdef0"], restart_policy={"sweep_minutes": minutes})
    (sweep,) = [rule for rule in plan["regions"][0]["rules"] if rule["kind"] == "sweep"]
    assert (sweep["name"], sweep["schedule"]) == ("EC2Protect.sweep", schedule)


@pytest.mark.parametrize(
    ("variable", "arn"),
    [
        ("notification_topic_arn", "arn:aws:sns:us-east-1:123456789012:restarts"),
        ("failure_destination_arn", "arn:aws:sqs:us-east-1:123456789012:failed"),
    ],
)
def test_topic_or_queue_of_another_region_fails_early(variable, arn):
    with pytest.raises(validate.ProtectionError) as error:
        plan_for(["i-0123456789abcdef0"], region="eu-west-1", **{variable: arn})
    message = str(error.value)
    assert f"stop_protection_{variable} {arn} is in us-east-1" in message and "eu-west-1" in message


def test_a_name_too_long_for_a_regions_role_names_both():
    name = "N" * 52
    assert planning.build_plan(
        name, instances=[("i-0000000000000000a", "us-east-1", "x")], bypass_tag_key="B"
    )
    with pytest.raises(
        validate.ProtectionError,
        match=r"too long for region ap-southeast-1: its role '" + name + "-ap-southeast-1' would have 67",
    ):
        planning.build_plan(
            name, instances=[("i-0000000000000000a", "ap-southeast-1", "x")], bypass_tag_key="B"
        )
