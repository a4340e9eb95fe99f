"""From inventory to the plan: instances, regions, accounts (module_utils/plan.py)."""

import pytest
from plan_helpers import OTHER_ROLE, ids, plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    validate,
)


@pytest.mark.parametrize(
    ("hosts", "explicit", "message"),
    [
        ([("web", {"instance_id": "i-123"})], [], "host web 'i-123'"),
        ([("web", {})], [], "host web has no instance_id"),
        ([], ["i-0123456789abcdef0", "i-0123456789abcdef0"], "listed more than once: i-0123456789abcdef0"),
        (
            [],
            [{"instance_id": "i-0123456789abcdef0", "region": "eu-west-1"}, "i-0123456789ABCDEF0"],
            "ABCDEF",
        ),
        ([("web", {"instance_id": "i-0123456789abcdef0", "region": "europe"})], [], "'europe'"),
        ([], ["i-0123456789abcdef0\n"], "'i-0123456789abcdef0\\\\n'"),
        ([("web", {"instance_id": "i-0123456789abcdef0", "region": "eu-west-1\n"})], [], "'eu-west-1\\\\n'"),
        ([("web", {"instance_id": "i-0123456789abcdef0"})], [], None),
        ([], [42], "stop_protection_instance_ids\\[0\\] 42"),
    ],
)
def test_collect_instances_rejects_bad_entries(hosts, explicit, message):
    if message is None:
        assert planning.collect_instances(hosts, explicit, "us-east-1") == [
            ("i-0123456789abcdef0", "us-east-1", "host web")
        ]
        return
    with pytest.raises(validate.ProtectionError, match=message):
        planning.collect_instances(hosts, explicit, "us-east-1")


def test_region_is_taken_from_placement_then_region_then_default():
    hosts = [
        (
            "a",
            {
                "instance_id": "i-0000000000000000a",
                "placement": {"region": "eu-west-1"},
                "region": "us-west-2",
            },
        ),
        ("b", {"instance_id": "i-0000000000000000b", "region": "us-west-2"}),
        ("c", {"instance_id": "i-0000000000000000c"}),
    ]
    found = planning.collect_instances(hosts, [], "us-east-1")
    assert [entry[1] for entry in found] == ["eu-west-1", "us-west-2", "us-east-1"]


def test_instance_ids_given_as_one_string_are_read_as_a_comma_separated_list():
    """-e stop_protection_instance_ids=i-...,i-... is a string, not a list of characters."""
    found = planning.collect_instances([], "i-0000000000000000a, i-0000000000000000b", "eu-west-1")
    assert [(instance_id, region) for instance_id, region, _source in found] == [
        ("i-0000000000000000a", "eu-west-1"),
        ("i-0000000000000000b", "eu-west-1"),
    ]


def test_missing_region_is_an_error():
    with pytest.raises(validate.ProtectionError, match="names no region"):
        planning.collect_instances([("a", {"instance_id": "i-0000000000000000a"})], [], "")


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


def test_one_deployment_per_account_and_region_with_the_role_to_assume():
    instances = [
        ("i-0000000000000000a", "eu-west-1", "host a"),
        ("i-0000000000000000b", "us-east-1", "host b"),
        ("i-0000000000000000c", "eu-west-1", "host c"),
        ("i-0000000000000000d", "us-east-1", "host d"),
        ("i-0000000000000000e", "eu-west-1", "host e"),
    ]
    accounts = {
        "i-0000000000000000b": "222222222222",
        "i-0000000000000000c": "333333333333",
        "i-0000000000000000e": "222222222222",
    }
    deployments = planning.plan_deployments(instances, accounts, {"222222222222": OTHER_ROLE})
    assert [(d["host"], d["assume_role_arn"], d["region"], d["regions"]) for d in deployments] == [
        ("own-eu-west-1", "", "eu-west-1", ["eu-west-1"]),
        ("own-us-east-1", "", "us-east-1", ["us-east-1"]),
        ("222222222222-eu-west-1", OTHER_ROLE, "eu-west-1", ["eu-west-1"]),
        ("222222222222-us-east-1", OTHER_ROLE, "us-east-1", ["us-east-1"]),
    ]
    by_host = {d["host"]: [entry["instance_id"] for entry in d["instance_ids"]] for d in deployments}
    # an account without a role to assume is deployed with the play's credentials
    assert by_host["own-eu-west-1"] == ["i-0000000000000000a", "i-0000000000000000c"]
    assert by_host["222222222222-eu-west-1"] == ["i-0000000000000000e"]


def test_tag_mode_deploys_every_region_in_every_listed_account_and_nothing_keeps_one_host():
    deployments = planning.plan_deployments(
        [], {}, {"222222222222": OTHER_ROLE}, tag_mode=True, regions=["eu-west-1"]
    )
    assert [d["host"] for d in deployments] == ["own-eu-west-1", "222222222222-eu-west-1"]
    assert planning.plan_deployments([], {}, {}) == [
        {
            "host": "localhost",
            "account_id": "",
            "assume_role_arn": "",
            "region": "",
            "regions": None,
            "instance_ids": [],
        }
    ]


def test_instance_accounts_come_from_account_id_or_owner_id():
    hosts = [
        ("web", {"instance_id": "i-0000000000000000a", "account_id": "222222222222"}),
        ("db", {"instance_id": "i-0000000000000000b", "owner_id": "333333333333"}),
        ("plain", {"instance_id": "i-0000000000000000c"}),
    ]
    assert planning.instance_accounts(hosts, []) == {
        "i-0000000000000000a": "222222222222",
        "i-0000000000000000b": "333333333333",
    }
    explicit = [{"instance_id": "i-0000000000000000a", "account_id": 222222222222}, "i-0000000000000000b"]
    assert planning.instance_accounts(hosts, explicit) == {"i-0000000000000000a": "222222222222"}


def test_a_bad_account_of_a_host_is_named():
    with pytest.raises(validate.ProtectionError, match="account of host web 'prod' is not an AWS account id"):
        planning.instance_accounts(
            [("web", {"instance_id": "i-0000000000000000a", "account_id": "prod"})], []
        )
