"""The 1.0.0 filters the role no longer uses (plugins/filter/deprecated.py), kept until 2.0.0."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.filter import deprecated as d
from ansible_collections.guardrails.ec2.plugins.filter import stop_protection as f
from ansible_collections.guardrails.ec2.plugins.module_utils import render


def test_summary_names_what_was_deployed_per_region():
    plan = f.stop_protection_plan(
        [],
        instance_ids=["i-0000000000000000a", {"instance_id": "i-0000000000000000b", "region": "us-east-1"}],
        region="eu-west-1",
    )
    iam = d.stop_protection_policies(plan, "123456789012", "aws", kms_key_arns=[], notification_topic_arn="")
    summary = f.stop_protection_summary(
        plan, "123456789012", "aws", iam, {"us-east-1": ["EC2Protect.2", "EC2Protect.sweep"]}
    )
    assert summary["regions"] == [
        {
            "region": "eu-west-1",
            "instances": 1,
            "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect",
            "role": "EC2Protect-eu-west-1",
            "policies": ["EC2Protect-eu-west-1"],
            "policy_scope": "instances",
            "rules": ["EC2Protect.1", "EC2Protect.sweep"],
        },
        {
            "region": "us-east-1",
            "instances": 1,
            "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:EC2Protect",
            "role": "EC2Protect-us-east-1",
            "policies": ["EC2Protect-us-east-1"],
            "policy_scope": "instances",
            "rules": ["EC2Protect.2", "EC2Protect.sweep"],
        },
    ]


def test_summary_takes_the_regions_as_rendered_and_renders_nothing_again(monkeypatch):
    """The role passes each region's policy names and scope as stop_protection_rollout
    rendered them: the summary renders no policy a second time."""
    plan = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    rendered = d.stop_protection_policies(plan, "123456789012", "aws")
    expected = f.stop_protection_summary(plan, "123456789012", "aws", rendered)

    def render_again(*_args, **_kwargs):
        raise AssertionError("the summary rendered the policies again")

    monkeypatch.setattr(f.iam_policy, "build_policies", render_again)
    names = {
        region: {"policies": [policy["name"] for policy in found["policies"]], "scope": found["scope"]}
        for region, found in rendered.items()
    }
    assert f.stop_protection_summary(plan, "123456789012", "aws", names) == expected


def test_policies_filter_gives_each_region_its_own_policies():
    plan = f.stop_protection_plan(
        [],
        instance_ids=[f"i-{index:017x}" for index in range(200)]
        + [{"instance_id": "i-1000000000000000b", "region": "us-east-1"}],
        region="eu-west-1",
    )
    result = d.stop_protection_policies(
        plan, "123456789012", "aws", kms_key_arns=[], notification_topic_arn=""
    )
    assert result["eu-west-1"]["scope"] == "instances"
    assert [policy["name"] for policy in result["eu-west-1"]["policies"]] == [
        "EC2Protect-eu-west-1",
        "EC2Protect-eu-west-1.2",
        "EC2Protect-eu-west-1.3",
    ]
    east = result["us-east-1"]["policies"]
    assert [policy["name"] for policy in east] == ["EC2Protect-us-east-1"]
    assert "eu-west-1" not in str(east[0]["document"])


def test_policies_filter_checks_the_kms_keys_it_is_given():
    """The plan's keys were checked when it was built; keys given to the filter are checked
    here, once, and a bad one is named."""
    plan = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    with pytest.raises(AnsibleFilterError, match="'alias/ebs' is not a KMS key ARN"):
        d.stop_protection_policies(plan, "123456789012", "aws", kms_key_arns=["alias/ebs"])
    key = "arn:aws:kms:eu-west-1:123456789012:key/abc"
    (policy,) = d.stop_protection_policies(plan, "123456789012", "aws", kms_key_arns=[key])["eu-west-1"][
        "policies"
    ]
    assert key in str(policy["document"])


def test_rule_changes_lists_missing_and_differing_rules():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
    planned = [{"name": f"EC2Protect.{n}", "pattern": f"p{n}", "description": "d"} for n in (1, 2, 3, 4)]
    target = [{"id": "EC2Protect", "arn": arn, "extra": {}}]

    def deployed(n, pattern, state="ENABLED"):
        return {"name": f"EC2Protect.{n}", "event_pattern": pattern, "description": "d", "state": state,
                "targets": target}  # fmt: skip

    existing = [deployed(1, "p1"), deployed(2, "old"), deployed(3, "p3", "DISABLED")]
    assert d.stop_protection_rule_changes(planned, existing, arn) == [
        "EC2Protect.2",
        "EC2Protect.3",
        "EC2Protect.4",
    ]
    assert d.stop_protection_rule_changes(planned[:1], existing, arn + ":1") == ["EC2Protect.1"]


def test_the_plan_keeps_its_settings_and_renders_a_region_alone():
    """render_region from the plan alone = the values rendered from the role's
    variables one by one (policies, environment, function settings)."""
    topic = "arn:aws:sns:eu-west-1:123456789012:alerts"
    variables = {
        "selector": "tag",
        "tag_key": "Keep",
        "tag_value": "on",
        "bypass_tag_key": "Skip",
        "attribution": True,
        "notification_topic_arn": topic,
        "failure_destination_arn": "",
        "kms_key_arns": ["arn:aws:kms:eu-west-1:123456789012:key/abc"],
    }
    function = {
        "runtime": "python3.12",
        "timeout": 90,
        "memory_mb": 256,
        "max_event_age_seconds": 600,
        "log_retention_days": 14,
    }
    plan = f.stop_protection_plan([], region="eu-west-1", function=function, **variables)
    rendered = f.render.render_region(
        plan, "eu-west-1", "123456789012", "aws", code_sha256="abc=", trust_policy={}
    )
    iam = d.stop_protection_policies(
        plan,
        "123456789012",
        "aws",
        **{k: v for k, v in variables.items() if k not in ("selector", "bypass_tag_key")},
    )["eu-west-1"]
    assert rendered == render.desired_state(
        plan, "eu-west-1", "123456789012", "aws", iam["policies"], {}, "abc="
    ) | {"scope": iam["scope"]}
    # The plan carries every setting the role's variables gave, one by one.
    assert rendered["function"]["environment_variables"] == d.stop_protection_environment(
        plan,
        **{
            k: v
            for k, v in variables.items()
            if k in ("tag_key", "tag_value", "bypass_tag_key", "notification_topic_arn", "attribution")
        },
    )
    assert (
        rendered["function"]["runtime"],
        rendered["function"]["timeout"],
        rendered["function"]["memory_size"],
    ) == (
        "python3.12",
        90,
        256,
    )
    assert rendered["invoke_config"]["maximum_event_age_in_seconds"] == 600
    assert rendered["function"]["environment_variables"]["NOTIFICATION_TOPIC_ARN"] == topic
    assert rendered["log_group"]["retention"] == 14
