"""The protect filters (plugins/filter/stop_protection.py): inventory in, validated plan out; errors name the bad value."""

import json
from pathlib import Path
from unittest import mock

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.filter import stop_protection as f
from ansible_collections.guardrails.ec2.plugins.module_utils import render

ROLE = Path(__file__).resolve().parents[4] / "roles" / "stop_protection"


def host(name, instance_id, **extra):
    return {"inventory_hostname": name, "instance_id": instance_id, **extra}


def test_plan_from_inventory_hosts():
    plan = f.stop_protection_plan(
        [
            host("a", "i-0000000000000000a", placement={"region": "eu-west-1"}),
            host("b", "i-0000000000000000b"),
        ],
        region="us-east-1",
    )
    assert [(r["region"], r["instance_ids"]) for r in plan["regions"]] == [
        ("eu-west-1", ["i-0000000000000000a"]),
        ("us-east-1", ["i-0000000000000000b"]),
    ]


def test_explicit_ids_win_over_the_group():
    plan = f.stop_protection_plan(
        [host("a", "i-0000000000000000a")], instance_ids=["i-0000000000000000c"], region="eu-west-1"
    )
    assert plan["regions"][0]["instance_ids"] == ["i-0000000000000000c"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "eu-west-1"}, "no instances selected"),
        (
            {"region": "xx-nowhere-9", "instance_ids": ["i-0000000000000000a"]},
            "'xx-nowhere-9' is not a region AWS knows",
        ),
        ({"region": "eu-west-1", "instance_ids": ["vol-0123"]}, "'vol-0123'"),
        ({"region": "eu-west-1", "selector": "tag", "tag_key": ""}, "stop_protection_tag_key"),
    ],
)
def test_bad_input_raises_a_filter_error(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        f.stop_protection_plan([], **kwargs)


def test_absent_needs_no_instances_and_keeps_the_region():
    plan = f.stop_protection_plan([], region="eu-west-1", require_instances=False)
    assert [r["region"] for r in plan["regions"]] == ["eu-west-1"]


def test_reshard_filter_names_the_bad_value():
    plan = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    entry = dict(plan["regions"][0], instance_ids=[f"i-{index:017x}" for index in range(40000)])
    with pytest.raises(AnsibleFilterError, match="40000 instances in eu-west-1"):
        f.stop_protection_reshard(entry, plan, [])


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ({"timeout": 5}, "stop_protection_lambda_timeout must be 10-900, got 5"),
        ({"memory_mb": 64}, "stop_protection_lambda_memory_mb must be 128-10240, got 64"),
        ({"max_event_age_seconds": 30}, "stop_protection_max_event_age_seconds must be 60-21600, got 30"),
        ({"log_retention_days": 2}, "stop_protection_log_retention_days must be one of .*, got 2"),
        (
            {"runtime": "python2.7"},
            "stop_protection_lambda_runtime must be one of python3.12, python3.13, got 'python2.7'",
        ),
    ],
)
def test_bad_function_settings_name_the_variable_and_value(function, message):
    with pytest.raises(AnsibleFilterError, match=message):
        f.stop_protection_plan([], region="eu-west-1", require_instances=False, function=function)


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "cn-north-1"])
@pytest.mark.parametrize("count", [1, 180, 200, 1200])
def test_policy_names_before_the_account_are_the_names_rendered_with_it(region, count):
    """The read checks these names before the account is known; the render with the real
    account must need exactly the same policies (in every partition, at every split)."""
    plan = f.stop_protection_plan(
        [], instance_ids=[f"i-{index:017x}" for index in range(count)], region=region
    )
    rendered = f.render.render_region(plan, region, "987654321098", f.naming.partition_of(region))
    assert f.stop_protection_policy_names(plan) == {
        region: [policy["name"] for policy in rendered["policies"]]
    }
    summary = f.stop_protection_summary(plan, "987654321098", f.naming.partition_of(region))
    assert summary["regions"][0]["policies"] == [policy["name"] for policy in rendered["policies"]]


def test_policy_names_of_one_region_build_that_regions_policies_alone(monkeypatch):
    """The read asks each region for its own names: one region's policies are built, not
    every region's once per region."""
    plan = f.stop_protection_plan(
        [],
        instance_ids=["i-0000000000000000a"],
        region="eu-west-1",
        regions=["us-east-1", "ap-south-1"],
        require_instances=False,
    )
    everything = f.stop_protection_policy_names(plan)
    built = []
    build = f.iam_policy.build_policies
    monkeypatch.setattr(f.iam_policy, "build_policies", lambda *args: built.append(args[3]) or build(*args))
    assert f.stop_protection_policy_names(plan, region="us-east-1") == {"us-east-1": everything["us-east-1"]}
    assert built == ["us-east-1"]


def test_unknown_variables_are_named_with_the_closest_known_one():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    names = [
        "stop_protection_inventroy_group",  # a typo of an input of the main entry point
        "stop_protection_verify_mod",  # of the verify entry point
        "stop_protection_region",
        "stop_protection_verify_mode",
        "stop_protection_summary",  # an output
        "stop_protection__plan",  # internal
        "stop_protection_zzz",
    ]
    assert f.stop_protection_unknown_variables(names, specs) == [
        "The role does not know the variable stop_protection_inventroy_group: it is ignored; "
        "did you mean stop_protection_inventory_group?",
        "The role does not know the variable stop_protection_verify_mod: it is ignored; "
        "did you mean stop_protection_verify_mode?",
        "The role does not know the variable stop_protection_zzz: it is ignored",
    ]


def test_deployments_one_host_per_region():
    deployments = f.stop_protection_deployments(
        [], instance_ids=[{"instance_id": "i-0000000000000000a", "region": "eu-west-1"}], region="us-east-1"
    )
    assert [(d["host"], d["region"]) for d in deployments] == [("own-eu-west-1", "eu-west-1")]


def test_deployments_check_the_default_region_even_when_every_instance_names_its_own():
    with pytest.raises(
        AnsibleFilterError,
        match=r"stop_protection_region \(or AWS_REGION\) 'mars-north-1' is not an AWS region",
    ):
        f.stop_protection_deployments(
            [],
            instance_ids=[{"instance_id": "i-0000000000000000a", "region": "eu-west-1"}],
            region="mars-north-1",
        )


def test_bad_input_can_be_returned_for_a_task_to_fail_with_the_message_alone():
    bad = [{"instance_id": "i-123", "region": "eu-west-1"}]
    message = "stop_protection_instance_ids[0] 'i-123' is not an EC2 instance id"
    assert f.stop_protection_plan([], instance_ids=bad, errors="return")["error"].startswith(message)
    assert f.stop_protection_deployments([], instance_ids=bad, errors="return")["error"].startswith(message)
    with pytest.raises(AnsibleFilterError, match=r"'i-123' is not an EC2 instance id"):
        f.stop_protection_plan([], instance_ids=bad)


def test_drift_names_what_the_role_writes_in_the_shapes_its_tasks_loop_over():
    """stop_protection_rollout's drift, as present_region.yml uses it: with nothing deployed every
    resource differs, and ``policies`` holds each rendered policy to write (name, description,
    document) with its drift; once the state matches, nothing is left to write."""
    plan = f.stop_protection_plan(
        [], instance_ids=[{"instance_id": "i-0000000000000000a", "region": "eu-west-1"}], region="eu-west-1"
    )
    rendered = f.render.render_region(
        plan, "eu-west-1", "123456789012", "aws", code_sha256="abc=", trust_policy={}
    )
    nothing = {"rules": [], "state": {"log_group": {"exists": False}}}
    rollout = f.FilterModule().filters()["stop_protection_rollout"]
    drift = rollout(
        plan, plan["regions"][0], "123456789012", "aws", nothing, code_sha256="abc=", trust_policy={}
    )["drift"]
    assert [policy["name"] for policy in drift["policies"]] == [
        policy["name"] for policy in rendered["policies"]
    ]
    assert all(
        set(policy) == {"name", "description", "document", "drift"} and policy["drift"] == ["missing"]
        for policy in drift["policies"]
    )
    assert drift["role"] == ["missing"] and drift["function"] == ["missing"]
    in_sync = {
        "log_group": {"exists": False},
        "policies": {
            policy["name"]: {
                "exists": True,
                "default_version": "v1",
                "versions": [{"id": "v1", "document": policy["document"]}],
                "tags": rendered["tags"],
            }
            for policy in rendered["policies"]
        },
    }
    existing = {"rules": [], "state": in_sync}
    assert (
        rollout(
            plan, plan["regions"][0], "123456789012", "aws", existing, code_sha256="abc=", trust_policy={}
        )["drift"]["policies"]
        == []
    )


def test_deployments_run_once_per_account_and_region_through_the_filter_plugin():
    """stop_protection_deployments as the playbooks call it: the inventory's hosts, each
    with its region and account, become one deployment host per pair."""
    hosts = [
        {"inventory_hostname": "web-1", "instance_id": "i-0000000000000000a", "region": "eu-west-1"},
        {"inventory_hostname": "web-2", "instance_id": "i-0000000000000000b", "region": "eu-west-1"},
        {"inventory_hostname": "db-1", "instance_id": "i-0000000000000000c", "region": "us-east-1"},
    ]
    deployments = f.FilterModule().filters()["stop_protection_deployments"](hosts, region="eu-west-1")
    assert sorted(d["region"] for d in deployments) == ["eu-west-1", "us-east-1"]
    assert len({d["host"] for d in deployments}) == 2


def test_a_region_in_sync_has_no_changes_and_one_difference_is_a_change():
    """stop_protection_rollout: the region's render, rules and drift in one step, the same as
    the three filters give apart; ``changes`` is false only when nothing is to write, so the
    role's rerun skips every write task of the region at once."""
    plan = f.stop_protection_plan(
        [], instance_ids=[{"instance_id": "i-0000000000000000a", "region": "eu-west-1"}], region="eu-west-1"
    )
    entry = plan["regions"][0]
    rendered = f.render.render_region(
        plan, "eu-west-1", "123456789012", "aws", code_sha256="abc=", trust_policy=None
    )
    rules = f.stop_protection_reshard(entry, plan, [], rendered["function_arn"])
    nothing = {"rules": [], "state": {"log_group": {"exists": False}}}
    rollout = f.FilterModule().filters()["stop_protection_rollout"]
    fresh = rollout(plan, entry, "123456789012", "aws", nothing, code_sha256="abc=")
    assert fresh["desired"] == rendered and fresh["rules"] == rules
    assert fresh["drift"] == f.drift.region_drift(nothing["state"], rendered)
    assert fresh["changes"] is True and fresh["differs"] is True
    # Everything as planned: a state whose every comparison is empty, and the rules deployed.
    in_sync = dict(nothing, rules=[])
    with mock.patch.object(
        f.drift, "region_drift", return_value={"policies": [], "role": [], "function": []}
    ):
        deployed = [dict(rule, targets=rule["targets"]) for rule in rules["write"]]
        with mock.patch.object(f.drift, "rules_to_write", return_value=[]):
            quiet = rollout(
                plan, entry, "123456789012", "aws", dict(in_sync, rules=deployed), code_sha256="abc="
            )
            assert (quiet["changes"], quiet["differs"]) == (False, False)
            asked = rollout(
                plan, entry, "123456789012", "aws", dict(in_sync, rules=deployed), disable_api_stop=True
            )
            # AWS's stop protection is written, but nothing differs to show.
            assert (asked["changes"], asked["differs"]) == (True, False)
            marked = {
                "rules": deployed,
                "state": {"log_group": {"exists": False}, "api_stop_marked": ["i-1"]},
            }
            assert rollout(plan, entry, "123456789012", "aws", marked)["changes"] is True


def test_the_filters_load_no_aws_sdk(loaded_by):
    """Planning, rendering and drift are pure steps on the controller: the filter plugins (all
    of them load for any of their filters, in a fresh worker process for each task) import
    neither boto3 nor botocore, nor any reader of AWS."""
    prefix = "ansible_collections.guardrails.ec2.plugins."
    loaded = loaded_by(*(f"{prefix}filter.{name}" for name in ("stop_protection", "verify", "deprecated")))
    readers = {f"{prefix}module_utils.{name}" for name in ("reads", "resource_reads", "ownership", "drill")}
    assert [name for name in loaded if name.split(".")[0] in ("boto3", "botocore") or name in readers] == []


def test_policy_room_names_the_old_statements_that_must_go_before_the_new_one_fits():
    """A 1.0 deployment's function policy, one statement per rule, near Lambda's 20 KB: the
    filter names the old statements to remove first (the sweep's before any shard's), and
    nothing when the policy has room or the new statement is in place."""
    plan = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    desired = render.render_region(plan, "eu-west-1", "123456789012", "aws")
    function = desired["function_arn"]
    sids = [f"EC2Protect-{index}" for index in range(1, 81)] + ["EC2Protect-sweep"]
    statements = [
        {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": function,
            "Condition": {"ArnLike": {"AWS:SourceArn": f"arn:aws:events:eu-west-1:123456789012:rule/{sid}"}},
        }
        for sid in sids
    ]

    def compact(document):
        return len(json.dumps(document, separators=(",", ":")))

    policy = {
        "statement": None,
        "size": compact({"Version": "2012-10-17", "Id": "default", "Statement": statements}),
        "statements": [{"sid": entry["Sid"], "size": compact(entry)} for entry in statements],
    }
    assert policy["size"] > 20 * 1024 - 300  # near the quota: the new statement does not fit
    room = f.stop_protection_policy_room({"function_policy": policy}, desired, "EC2Protect")
    assert room and room[0] == "EC2Protect-sweep"
    assert (
        f.stop_protection_policy_room(
            {"function_policy": dict(policy, statement={"Sid": "x"})}, desired, "EC2Protect"
        )
        == []
    )
    assert f.stop_protection_policy_room({"function_policy": None}, desired, "EC2Protect") == []


def _role_variables(**overrides):
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    return dict(defaults, **overrides)


def test_the_role_variables_as_one_mapping_plan_as_the_keywords_do():
    hosts = [host("a", "i-0000000000000000a", placement={"region": "eu-west-1"})]
    variables = _role_variables(stop_protection_name="Guard", stop_protection_restart_limit="5")
    by_variables = f.stop_protection_plan(hosts, variables=variables, environment_region="us-east-1")
    by_keywords = f.stop_protection_plan(
        hosts,
        name="Guard",
        region="us-east-1",
        regions=[],
        tag_key="StopProtection",
        tag_value="enabled",
        notification_topic_arn="",
        failure_destination_arn="",
        resource_tags={"ManagedBy": "guardrails.ec2"},
        restart_policy={"restart_limit": 5},
    )
    assert by_variables == by_keywords
    assert by_variables["restart_policy"]["restart_limit"] == 5


def test_variables_and_keywords_together_are_an_error():
    result = f.stop_protection_plan([], variables=_role_variables(), name="Guard", errors="return")
    assert result == {"error": "give the role's variables or the settings as options, not both: name"}


def test_a_bad_variable_fails_naming_it():
    variables = _role_variables(
        stop_protection_instance_ids=["i-0000000000000000a"], stop_protection_lambda_timeout=5
    )
    result = f.stop_protection_plan([], variables=variables, environment_region="eu-west-1", errors="return")
    assert result == {"error": "stop_protection_lambda_timeout must be 10-900, got 5"}


def test_deployments_read_the_role_variables_too():
    variables = _role_variables(
        stop_protection_instance_ids=[{"instance_id": "i-0000000000000000a", "region": "us-west-2"}],
        stop_protection_regions=["eu-north-1"],
        stop_protection_selector="tag",
    )
    deployments = f.stop_protection_deployments([], variables=variables, environment_region="eu-west-1")
    assert deployments == f.stop_protection_deployments(
        [],
        instance_ids=variables["stop_protection_instance_ids"],
        region="eu-west-1",
        regions=["eu-north-1"],
        selector="tag",
    )
    assert [(d["host"], d["region"]) for d in deployments] == [
        ("own-eu-north-1", "eu-north-1"),
        ("own-eu-west-1", "eu-west-1"),
        ("own-us-west-2", "us-west-2"),
    ]
