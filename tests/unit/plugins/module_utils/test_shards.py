"""The rules of one region: reshards, quota, tamper rules (module_utils/shards.py)."""

import json

import pytest
from plan_helpers import ids, plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    naming,
    patterns,
    shards,
    validate,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning


def test_too_many_shards_for_one_bus_is_refused():
    many = [(i, "eu-west-1", "x") for i in ids(30000)]
    with pytest.raises(validate.ProtectionError, match="use stop_protection_selector: tag"):
        planning.build_plan("EC2Protect", instances=many, bypass_tag_key="B")


def test_reshard_region_keeps_deployed_shards_and_lists_stale_rules():
    plan = plan_for([*ids(250), "i-00000000000000000"])
    entry = plan["regions"][0]
    deployed_shards = patterns.shard_instance_ids(ids(250))
    deployed = [
        {
            "name": f"EC2Protect.{index}",
            "kind": "state_change",
            "index": index,
            "event_pattern": patterns.state_change_pattern(shard),
        }
        for index, shard in enumerate(deployed_shards, start=1)
    ] + [
        {
            "name": "EC2Protect.9",
            "kind": "state_change",
            "index": 9,
            "event_pattern": patterns.state_change_pattern(["i-0000000000000ffff"]),
        },
        {"name": "EC2Protect.attribution", "kind": "attribution", "index": None, "event_pattern": "{}"},
    ]
    result = shards.reshard_region(plan, entry, deployed)
    assert [rule["instance_ids"] for rule in result["rules"][: len(deployed_shards) - 1]] == deployed_shards[
        :-1
    ]
    assert [rule["name"] for rule in result["rules"]][-1] == "EC2Protect.sweep"
    assert [rule["name"] for rule in result["stale"]] == ["EC2Protect.9", "EC2Protect.attribution"]


def legacy_rules(shards):
    """Rules as releases before 1.1.0 named them: ``<name>-<n>``, ``<name>-sweep``."""
    return [
        {
            "name": f"EC2Protect-{index}",
            "kind": "state_change",
            "index": index,
            "legacy": True,
            "event_pattern": patterns.state_change_pattern(shard),
        }
        for index, shard in enumerate(shards, start=1)
    ] + [{"name": "EC2Protect-sweep", "kind": "sweep", "index": None, "legacy": True}]


def test_reshard_region_replaces_legacy_rules_keeping_their_shards():
    plan = plan_for(ids(200))
    deployed_shards = patterns.shard_instance_ids(ids(200))
    result = shards.reshard_region(plan, plan["regions"][0], legacy_rules(deployed_shards))
    assert [rule["name"] for rule in result["rules"]] == [
        f"EC2Protect.{index}" for index in range(1, len(deployed_shards) + 1)
    ] + ["EC2Protect.sweep"]
    assert [rule["instance_ids"] for rule in result["rules"][:-1]] == deployed_shards
    assert [rule["name"] for rule in result["stale"]] == [
        f"EC2Protect-{index}" for index in range(1, len(deployed_shards) + 1)
    ] + ["EC2Protect-sweep"]


def test_reshard_region_after_a_cut_short_migration_follows_the_new_rules():
    """Once new shard rules exist they are the current shards; the legacy ones only go."""
    plan = plan_for(ids(200))
    new = [
        {
            "name": "EC2Protect.1",
            "kind": "state_change",
            "index": 1,
            "legacy": False,
            "event_pattern": patterns.state_change_pattern(ids(200)[100:187]),
        }
    ]
    result = shards.reshard_region(plan, plan["regions"][0], legacy_rules([ids(200)[:87]]) + new)
    assert result["rules"][0]["instance_ids"] == ids(200)[100:187]
    assert {rule["name"] for rule in result["stale"]} == {"EC2Protect-1", "EC2Protect-sweep"}


def test_the_function_policy_does_not_grow_with_the_rules():
    """One invoke statement per region admits every rule: 300 rules need no more policy
    than one (the function's 20 KB resource policy once capped instance-id mode at ~69)."""
    plan = plan_for(ids(25000))
    assert len(plan["regions"][0]["rules"]) == 289
    # tag mode needs one rule for any number of instances
    assert plan_for(ids(27000), mode=validate.MODE_TAG, tag_key="StopProtection", tag_value="enabled")


def test_the_rule_quota_is_checked_before_any_change():
    with pytest.raises(validate.ProtectionError, match=r"more than the 300 an event bus holds by default"):
        plan_for(ids(27000))


AUTOMATION = ["arn:aws:iam::123456789012:role/platform/deployer", "arn:aws:iam::*:user/ci"]


def test_tamper_rules_exist_only_with_automation_principals_and_iam_only_in_us_east_1():
    assert not [
        r for r in plan_for(["i-0123456789abcdef0"])["regions"][0]["rules"] if r["kind"].startswith("tamper")
    ]
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    for region, kinds in (
        ("eu-west-1", ["tamper", "tamper-log", "tamper-ec2"]),
        ("us-east-1", ["tamper", "tamper-log", "tamper-ec2", "tamper-iam"]),
    ):
        plan = plan_for(
            ["i-0123456789abcdef0"],
            region=region,
            automation_principals=AUTOMATION,
            notification_topic_arn=topic if region == "us-east-1" else None,
        )
        rules = [rule for rule in plan["regions"][0]["rules"] if rule["kind"].startswith("tamper")]
        assert [rule["kind"] for rule in rules] == kinds
        assert [rule["name"] for rule in rules] == [f"EC2Protect.{kind}" for kind in kinds]
        assert {rule["topic_arn"] for rule in rules} == {topic if region == "us-east-1" else None}
        # Each rule is the deployment's by name, as unprotect and the invoke permission see it.
        assert all(naming.rule_kind("EC2Protect", rule["name"])[0] == rule["kind"] for rule in rules)
        assert set(kinds) <= set(naming.TAMPER_KINDS)


def test_a_tamper_pattern_leaves_out_the_automation_and_the_regions_function_role():
    pattern = json.loads(
        patterns.tamper_patterns("EC2Protect", "eu-west-1", AUTOMATION, ["StopProtectionBypass"])["tamper"]
    )
    assert pattern["detail"]["userIdentity"]["arn"] == [
        {
            "anything-but": {
                "wildcard": [
                    "arn:aws:iam::123456789012:role/platform/deployer",
                    # A role's sessions, as CloudTrail records them (its path left out).
                    "arn:aws:sts::123456789012:assumed-role/deployer/*",
                    "arn:aws:iam::*:user/ci",
                    "arn:*:sts::*:assumed-role/EC2Protect-eu-west-1/*",
                ]
            }
        }
    ]


def test_a_tamper_pattern_too_long_for_eventbridge_names_the_variable():
    many = [f"arn:aws:iam::123456789012:role/automation-role-number-{n:03d}" for n in range(40)]
    with pytest.raises(
        validate.ProtectionError, match="list fewer or shorter stop_protection_automation_principals"
    ):
        plan_for(["i-0123456789abcdef0"], automation_principals=many)


def test_the_actions_the_tamper_rules_watch_are_the_ones_the_guard_policy_denies():
    from ansible_collections.guardrails.ec2.plugins.module_utils import guard

    assert guard.RULE_ACTIONS is patterns.RULE_ACTIONS and guard.FUNCTION_ACTIONS is patterns.FUNCTION_ACTIONS
