"""The role's filters: inventory in, validated plan out; errors name the bad value."""

import ast
import os
import subprocess
import sys
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


def test_summary_names_what_was_deployed_per_region():
    plan = f.stop_protection_plan(
        [],
        instance_ids=["i-0000000000000000a", {"instance_id": "i-0000000000000000b", "region": "us-east-1"}],
        region="eu-west-1",
    )
    iam = f.stop_protection_policies(plan, "123456789012", "aws", kms_key_arns=[], notification_topic_arn="")
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
    rendered = f.stop_protection_policies(plan, "123456789012", "aws")
    expected = f.stop_protection_summary(plan, "123456789012", "aws", rendered)

    def render_again(*_args, **_kwargs):
        raise AssertionError("the summary rendered the policies again")

    monkeypatch.setattr(f.iam_policy, "plan_policies", render_again)
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
    result = f.stop_protection_policies(
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


def test_reshard_filter_names_the_bad_value():
    plan = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    entry = dict(plan["regions"][0], instance_ids=[f"i-{index:017x}" for index in range(40000)])
    with pytest.raises(AnsibleFilterError, match="40000 instances in eu-west-1"):
        f.stop_protection_reshard(entry, plan, [])


def test_verify_report_lines():
    result = {
        "stop_protection__region": {"region": "eu-west-1"},
        "instances": [
            {
                "instance_id": "i-1",
                "drilled": True,
                "recovered": True,
                "seconds_to_stopped": 0.4,
                "seconds_to_running": 1.25,
                "problems": [],
            },
            {
                "instance_id": "i-2",
                "drilled": False,
                "protected": False,
                "state": "stopped",
                "problems": ["No rule of this deployment names the instance."],
            },
        ],
        "summary": {
            "drilled": 1,
            "recovered": 1,
            "recovery_seconds": {"min": 1.25, "median": 1.25, "max": 1.25},
        },
        "passed": True,
    }
    report = f.stop_protection_verify_report(result)
    assert report["ok"] is True
    assert report["lines"] == [
        "i-1 (eu-west-1): back - stopped after 0.4 s, running after 1.2 s",
        "i-2 (eu-west-1): NOT protected, stopped - No rule of this deployment names the instance.",
        "eu-west-1: 1 of 1 drilled instances back; recovery min 1.2 s, median 1.2 s, max 1.2 s",
    ]
    failed = f.stop_protection_verify_report(
        result | {"failed": True, "msg": "1 of 2 instances are not protected"}
    )
    assert (failed["ok"], failed["msg"]) == (False, "1 of 2 instances are not protected")


@pytest.mark.parametrize(
    "result",
    [
        # What a loop item looks like under failed_when: false: "failed" overwritten.
        {"failed": False, "failed_when_result": False, "passed": False, "msg": "1 of 1 did not recover"},
        # A module failure before any verdict (credentials, API errors) carries no "passed".
        {"failed": False, "failed_when_result": False, "msg": "Couldn't audit stop protection"},
    ],
)
def test_verify_report_is_not_ok_when_failed_was_masked(result):
    report = f.stop_protection_verify_report(result | {"stop_protection__region": {"region": "eu-west-1"}})
    assert report["ok"] is False
    assert report["msg"] == result["msg"]


def test_verify_report_names_instances_the_drill_restored():
    result = {
        "stop_protection__region": {"region": "eu-west-1"},
        "passed": False,
        "instances": [
            {
                "instance_id": "i-1",
                "drilled": True,
                "recovered": False,
                "restored_by_drill": True,
                "seconds_to_stopped": 0.4,
                "seconds_to_running": None,
                "problems": ["Started again by the drill itself, not by the protection."],
            }
        ],
        "summary": {"drilled": 1, "recovered": 0, "restored_by_drill": 1, "recovery_seconds": {}},
    }
    lines = f.stop_protection_verify_report(result)["lines"]
    assert lines[0].startswith("i-1 (eu-west-1): NOT back, started again by the drill")
    assert lines[-1].startswith("eu-west-1: 0 of 1 drilled instances back, 1 started again by the drill")


def test_rule_changes_lists_missing_and_differing_rules():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
    planned = [{"name": f"EC2Protect.{n}", "pattern": f"p{n}", "description": "d"} for n in (1, 2, 3, 4)]
    target = [{"id": "EC2Protect", "arn": arn, "extra": {}}]

    def deployed(n, pattern, state="ENABLED"):
        return {"name": f"EC2Protect.{n}", "event_pattern": pattern, "description": "d", "state": state,
                "targets": target}  # fmt: skip

    existing = [deployed(1, "p1"), deployed(2, "old"), deployed(3, "p3", "DISABLED")]
    assert f.stop_protection_rule_changes(planned, existing, arn) == [
        "EC2Protect.2",
        "EC2Protect.3",
        "EC2Protect.4",
    ]
    assert f.stop_protection_rule_changes(planned[:1], existing, arn + ":1") == ["EC2Protect.1"]


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
    iam = f.stop_protection_policies(
        plan,
        "123456789012",
        "aws",
        **{k: v for k, v in variables.items() if k not in ("selector", "bypass_tag_key")},
    )["eu-west-1"]
    assert rendered == render.desired_state(
        plan, "eu-west-1", "123456789012", "aws", iam["policies"], {}, "abc="
    ) | {"scope": iam["scope"]}
    # The plan carries every setting the role's variables gave, one by one.
    assert rendered["function"]["Environment"] == f.stop_protection_environment(
        plan,
        **{
            k: v
            for k, v in variables.items()
            if k in ("tag_key", "tag_value", "bypass_tag_key", "notification_topic_arn", "attribution")
        },
    )
    assert (
        rendered["function"]["Runtime"],
        rendered["function"]["Timeout"],
        rendered["function"]["MemorySize"],
    ) == (
        "python3.12",
        90,
        256,
    )
    assert rendered["invoke_config"]["maximum_event_age_in_seconds"] == 600
    assert rendered["function"]["Environment"]["NOTIFICATION_TOPIC_ARN"] == topic
    assert rendered["log_group"]["retention"] == 14


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


def test_report_path_is_relative_to_where_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert f.stop_protection_report_path("out/verify.json") == str(tmp_path / "out" / "verify.json")
    assert f.stop_protection_report_path("/abs/verify.json") == "/abs/verify.json"


def test_bad_input_can_be_returned_for_a_task_to_fail_with_the_message_alone():
    bad = [{"instance_id": "i-123", "region": "eu-west-1"}]
    message = "stop_protection_instance_ids[0] 'i-123' is not an EC2 instance id"
    assert f.stop_protection_plan([], instance_ids=bad, errors="return")["error"].startswith(message)
    assert f.stop_protection_deployments([], instance_ids=bad, errors="return")["error"].startswith(message)
    with pytest.raises(AnsibleFilterError, match=r"'i-123' is not an EC2 instance id"):
        f.stop_protection_plan([], instance_ids=bad)


def planned_region(region, states, passed=True):
    instances = [
        {"instance_id": f"i-{n:017x}", "region": region, "state": s, "protected": True, "problems": []}
        for n, s in enumerate(states, start=1)
    ]
    return {"stop_protection__region": {"region": region}, "passed": passed, "instances": instances}


def test_drill_batches_come_from_the_audit_before_the_drill():
    planned = {
        "results": [
            planned_region("eu-west-1", ["running"] * 3),
            planned_region("us-east-1", ["running"], False),
        ]
    }
    assert f.stop_protection_drill_batches(planned, "50%") == [
        {"region": "eu-west-1", "number": 1, "of": 3, "instance_ids": ["i-00000000000000001"]},
        {"region": "eu-west-1", "number": 2, "of": 3, "instance_ids": ["i-00000000000000002"]},
        {"region": "eu-west-1", "number": 3, "of": 3, "instance_ids": ["i-00000000000000003"]},
    ]  # 50% of 3 is one at a time; the refused region is not drilled


def test_a_batch_that_failed_outright_fails_its_region():
    planned = {"results": [planned_region("eu-west-1", ["running"])]}
    broken = {"failed": True, "msg": "Couldn't stop the instances for the drill: boom",
              "stop_protection__batch": {"region": "eu-west-1"}}  # fmt: skip
    (result,) = f.stop_protection_drill_merge(planned, [broken], 60)["results"]
    assert result["passed"] is False and result["failed"] is True
    assert result["msg"] == "Couldn't stop the instances for the drill: boom"
    (untouched,) = f.stop_protection_drill_merge(
        {"results": [planned_region("eu-west-1", ["running"], False)]}, [], 60
    )["results"]
    assert untouched["passed"] is False


def test_guard_policy_files_are_one_path_or_numbered_when_split(tmp_path):
    automation = ["arn:aws:iam::*:role/platform-automation"]
    small = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    (only,) = f.stop_protection_guard_policy(
        small, automation, str(tmp_path / "guard.json"), "StopProtection"
    )
    assert only["path"] == str(tmp_path / "guard.json")
    statement = next(s for s in only["document"]["Statement"] if s["Sid"] == "GuardTheProtectionTags")
    assert statement["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"] == [
        "StopProtection",
        "StopProtectionBypass",
    ]
    many = [f"i-{n:017x}" for n in range(300)]
    large = f.stop_protection_plan([], instance_ids=many, region="eu-west-1")
    files = f.stop_protection_guard_policy(large, automation, str(tmp_path / "guard.json"))
    assert [item["path"] for item in files] == [
        str(tmp_path / f"guard.json.{n}") for n in range(1, len(files) + 1)
    ]
    with pytest.raises(AnsibleFilterError, match="stop_protection_automation_principals"):
        f.stop_protection_guard_policy(small, [], "guard.json")


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


def test_the_filters_load_no_aws_sdk():
    """Planning, rendering and drift are pure steps on the controller: the filter plugin (which
    every planning task loads, in a fresh worker process each time) imports neither boto3 nor
    botocore, nor any reader of AWS."""
    code = (
        "import sys\n"
        "import ansible_collections.guardrails.ec2.plugins.filter.stop_protection\n"
        "prefix = 'ansible_collections.guardrails.ec2.plugins.module_utils.'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')\n"
        "             or m.startswith(prefix) and m[len(prefix):] in ('reads', 'resource_reads', 'ownership', 'drill')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path)),
    ).stdout
    assert ast.literal_eval(loaded) == []


def test_known_regions_come_from_botocores_partitions_without_importing_it(monkeypatch):
    """The regions a plan accepts: every region botocore's session lists for EC2, in every
    partition, read from its partitions.json; no "aws-global" pseudo-region. Without that
    file (an older botocore), the session's list."""
    import botocore.session

    session = botocore.session.get_session()
    ec2 = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    known = f._known_regions()
    assert ec2 <= known and "eu-west-1" in known
    assert not [region for region in known if region.endswith("-global")]
    monkeypatch.setattr(f, "PARTITIONS_DATA", ("data", "no-such-file.json"))
    assert f._known_regions() == ec2
