"""Names, patterns, plan and policies (module_utils naming.py, patterns.py, protection.py, iam_policy.py)."""

import fnmatch
import importlib.util
import itertools
import json
import random
from pathlib import Path

import pytest

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    iam_policy,
    naming,
    patterns,
    protection,
    render,
)


def ids(count, seed=7):
    rng = random.Random(seed)
    return [f"i-{rng.getrandbits(68):017x}"[:19] for _index in range(count)]


# --- names ---------------------------------------------------------------------------------


def test_every_name_derives_from_the_base_name():
    assert naming.resource_names("EC2Protect") == {
        "function": "EC2Protect",
        "log_group": "/aws/lambda/EC2Protect",
        "rule_prefix": "EC2Protect.",
        "attribution_rule": "EC2Protect.attribution",
        "sweep_rule": "EC2Protect.sweep",
        "invoke_statement": "guardrails-ec2-rules",
        "attention": "EC2Protect-attention",
        "heartbeat": "EC2Protect-heartbeat",
        "api_stop_marker": "guardrails.ec2/EC2Protect/disable-api-stop",
    }


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect.1", 1), ("EC2Protect.12", 12), ("EC2Protect.0", None), ("EC2Protect-2.1", None),
     ("EC2Protect.attribution", None), ("EC2ProtectX.1", None), ("Other.1", None), ("EC2Protect-1", None)],
)  # fmt: skip
def test_rule_index_recognises_only_our_shard_rules(candidate, expected):
    assert naming.rule_index("EC2Protect", candidate) == expected


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect.1", ("state_change", 1, False)), ("EC2Protect.sweep", ("sweep", None, False)),
     ("EC2Protect.attribution", ("attribution", None, False)),
     # names of releases before 1.1.0, replaced by the next protect run
     ("EC2Protect-3", ("state_change", 3, True)), ("EC2Protect-sweep", ("sweep", None, True)),
     ("EC2Protect-attribution", ("attribution", None, True)),
     # another deployment's, new and old names
     ("EC2Protect-2.1", None), ("EC2Protect-2-1", None), ("EC2Protect-2.sweep", None),
     ("EC2ProtectX.1", None), ("EC2Protect.x", None), ("EC2Protect.sweep.1", None)],
)  # fmt: skip
def test_rule_kind_knows_new_and_legacy_names_of_one_deployment(candidate, expected):
    assert naming.rule_kind("EC2Protect", candidate) == expected


@pytest.mark.parametrize(
    "other", ["EC2Protect-2", "EC2Protect_x", "EC2ProtectX", "EC2Protect-attribution", "E"]
)
def test_the_invoke_pattern_admits_no_rule_of_another_deployment(other):
    """The one invoke statement's SourceArn pattern admits every rule this deployment writes,
    and none that a deployment with any other valid base name writes."""
    pattern = naming.rule_source_pattern("aws", "eu-west-1", "123456789012", "EC2Protect")
    ours = ["EC2Protect.1", "EC2Protect.300", "EC2Protect.attribution", "EC2Protect.sweep"]
    assert all(
        fnmatch.fnmatchcase(naming.rule_arn("aws", "eu-west-1", "123456789012", rule), pattern)
        for rule in ours
    )
    theirs = [naming.rule_name(other, 1), f"{other}.attribution", f"{other}.sweep"]
    assert protection.BASE_NAME.match(other)
    assert not any(
        fnmatch.fnmatchcase(naming.rule_arn("aws", "eu-west-1", "123456789012", rule), pattern)
        for rule in theirs
    )


def test_function_arn_is_unqualified():
    assert naming.function_arn("aws", "eu-west-1", "123456789012", "EC2Protect") == (
        "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
    )


# --- sharding --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 20, 85, 86, 200, 1000])
def test_shards_cover_every_id_once_and_every_pattern_fits(count):
    instance_ids = ids(count)
    shards = patterns.shard_instance_ids(instance_ids)
    assert sorted(i for shard in shards for i in shard) == sorted(instance_ids)
    assert all(
        len(patterns.state_change_pattern(shard)) <= patterns.MAX_EVENT_PATTERN_CHARS for shard in shards
    )


def test_shards_are_as_few_as_the_limit_allows():
    shards = patterns.shard_instance_ids(ids(1000))
    # Every shard but the last is full: one more id would overflow it.
    for shard, following in itertools.pairwise(shards):
        assert len(patterns.state_change_pattern([*shard, following[0]])) > patterns.MAX_EVENT_PATTERN_CHARS


def test_sharding_does_not_depend_on_input_order():
    instance_ids = ids(300)
    shuffled = list(instance_ids)
    random.Random(1).shuffle(shuffled)
    assert patterns.shard_instance_ids(instance_ids) == patterns.shard_instance_ids(shuffled)


# --- validation --------------------------------------------------------------------------------

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

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
    with pytest.raises(protection.ProtectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        protection.build_plan(**kwargs)


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
        assert protection.collect_instances(hosts, explicit, "us-east-1") == [
            ("i-0123456789abcdef0", "us-east-1", "host web")
        ]
        return
    with pytest.raises(protection.ProtectionError, match=message):
        protection.collect_instances(hosts, explicit, "us-east-1")


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
    found = protection.collect_instances(hosts, [], "us-east-1")
    assert [entry[1] for entry in found] == ["eu-west-1", "us-west-2", "us-east-1"]


def test_instance_ids_given_as_one_string_are_read_as_a_comma_separated_list():
    """-e stop_protection_instance_ids=i-...,i-... is a string, not a list of characters."""
    found = protection.collect_instances([], "i-0000000000000000a, i-0000000000000000b", "eu-west-1")
    assert [(instance_id, region) for instance_id, region, _source in found] == [
        ("i-0000000000000000a", "eu-west-1"),
        ("i-0000000000000000b", "eu-west-1"),
    ]


def test_missing_region_is_an_error():
    with pytest.raises(protection.ProtectionError, match="names no region"):
        protection.collect_instances([("a", {"instance_id": "i-0000000000000000a"})], [], "")


def test_unknown_region_rejected_when_the_known_list_is_given():
    with pytest.raises(protection.ProtectionError, match="not a region AWS knows"):
        protection.collect_instances([], ["i-0000000000000000a"], "xx-nowhere-9", known_regions={"eu-west-1"})


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "us-isob-east-1", "eusc-de-east-1"])
def test_every_partitions_region_names_are_accepted(region):
    """naming.partition_of knows these partitions; validation accepts their regions too."""
    assert protection.validate_region(region) == region
    assert naming.partition_of(region) != "aws" or region == "eu-west-1"


def test_too_many_shards_for_one_bus_is_refused():
    many = [(i, "eu-west-1", "x") for i in ids(30000)]
    with pytest.raises(protection.ProtectionError, match="use stop_protection_selector: tag"):
        protection.build_plan("EC2Protect", instances=many, bypass_tag_key="B")


def test_plan_groups_by_region_and_shards_each():
    instances = [(i, "eu-west-1", "x") for i in ids(200)] + [("i-0123456789abcdef0", "us-east-1", "y")]
    plan = protection.build_plan("EC2Protect", instances=instances, bypass_tag_key="B", attribution=True)
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
    plan = protection.build_plan(
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


# --- IAM policy ---------------------------------------------------------------------------------


def plan_for(instance_ids, region="eu-west-1", **kwargs):
    return protection.build_plan(
        "EC2Protect", instances=[(i, region, "x") for i in instance_ids], bypass_tag_key="B", **kwargs
    )


def build_policy(*args, **kwargs):
    """The one policy of a deployment that fits in one (asserted), and the scope."""
    policies, scope = iam_policy.build_policies(*args, **kwargs)
    assert len(policies) == 1
    assert policies[0]["name"] == args[0]["regions"][0]["policy"]
    return policies[0]["document"], scope


def statement(document, sid):
    (found,) = [s for s in document["Statement"] if s["Sid"] == sid]
    return found


def test_policy_allows_start_only_on_the_protected_instances():
    document, scope = build_policy(plan_for(["i-0123456789abcdef0"]), "123456789012")
    assert scope == "instances"
    start = statement(document, "StartProtectedInstances")
    assert start["Action"] == ["ec2:StartInstances", "ec2:CreateTags"]
    assert start["Resource"] == ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"]
    logs = statement(document, "WriteOwnLogs")
    assert logs["Resource"] == ["arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/EC2Protect:*"]
    assert "logs:CreateLogGroup" not in logs["Action"]
    # A deleted log group is recreated by Lambda with the role: that group, no other.
    assert statement(document, "RecreateOwnLogGroup") == {
        "Sid": "RecreateOwnLogGroup",
        "Effect": "Allow",
        "Action": "logs:CreateLogGroup",
        "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/EC2Protect"],
    }


def load_harness_log_patterns():
    """The harness's CloudWatch Logs filter matcher (standard library only), which matches
    like AWS's (tools/localstack/README.md, fidelity table)."""
    path = Path(__file__).resolve().parents[4] / "tools/localstack/guardrails_localstack/log_patterns.py"
    spec = importlib.util.spec_from_file_location("harness_log_patterns", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        ({"action": "failed", "instance_id": "i-1"}, True),
        ({"action": "suspended", "instance_id": "i-1"}, True),
        ({"action": "notify-failed", "error_code": "KMS.AccessDeniedException"}, True),
        ({"action": "tamper", "event_name": "DisableRule", "caller_arn": "arn:aws:iam::1:user/m"}, True),
        ({"action": "tamper-repaired", "rule": "EC2Protect.1", "repaired": ["enabled again"]}, True),
        ({"action": "repair-failed", "error_code": "AccessDeniedException"}, True),
        ({"action": "started", "instance_id": "i-1", "budget_error": "TagLimitExceeded"}, True),
        ({"action": "started", "instance_id": "i-1"}, False),
        ({"action": "skipped-bypass", "reason": "failed once"}, False),
    ],
)
def test_the_attention_alarm_counts_every_decision_that_needs_a_person(line, counted):
    matcher = load_harness_log_patterns().matcher_for(protection.ATTENTION_PATTERN)
    assert matcher(protection.ATTENTION_PATTERN, {"message": json.dumps(line)}) is counted


def test_policy_lets_the_role_write_only_the_restart_budget_tags():
    plan = protection.build_plan(
        "EC2Protect",
        instances=[("i-0123456789abcdef0", "eu-west-1", "test")],
        bypass_tag_key="StopProtectionBypass",
        restart_policy={"history_tag_key": "Restarts", "suspended_tag_key": "Suspended"},
    )
    document, _scope = build_policy(plan, "123456789012")
    assert statement(document, "TagOnlyTheRestartBudget") == {
        "Sid": "TagOnlyTheRestartBudget",
        "Effect": "Deny",
        "Action": "ec2:CreateTags",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["Restarts", "Suspended"]}},
    }


def test_restart_policy_reaches_the_function_environment():
    plan = protection.build_plan(
        "EC2Protect",
        instances=[("i-0123456789abcdef0", "eu-west-1", "test")],
        bypass_tag_key="StopProtectionBypass",
        restart_policy={"restart_limit": 5, "restart_window_seconds": 600, "restart_hibernated": True},
    )
    env = protection.lambda_environment(plan, None, None, "StopProtectionBypass", None, False)
    assert {key: env[key] for key in env if key not in ("PROTECTION_MODE", "BYPASS_TAG_KEY")} == {
        "RESTART_LIMIT": "5",
        "RESTART_WINDOW_SECONDS": "600",
        "RESTART_HISTORY_TAG_KEY": "StopProtectionRestarts",
        "SUSPENDED_TAG_KEY": "StopProtectionSuspended",
        "SKIP_AUTO_SCALING": "true",
        "SKIP_SPOT_INTERRUPTIONS": "true",
        "RESTART_HIBERNATED": "true",
        "MAX_RETRY_ATTEMPTS": "2",
        "SWEEP_MINUTES": "5",
        "RULE_NAME_PREFIX": "EC2Protect.",
        "RESTART_TOGETHER": "true",
    }


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
    with pytest.raises(protection.ProtectionError) as error:
        protection.validate_restart_policy(settings, bypass_tag_key="StopProtectionBypass")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("minutes", "schedule"), [(1, "rate(1 minute)"), (5, "rate(5 minutes)"), (1440, "rate(1440 minutes)")]
)
def test_sweep_rule_follows_the_setting(minutes, schedule):
    plan = plan_for(["i-0123456789abcdef0"], restart_policy={"sweep_minutes": minutes})
    (sweep,) = [rule for rule in plan["regions"][0]["rules"] if rule["kind"] == "sweep"]
    assert (sweep["name"], sweep["schedule"]) == ("EC2Protect.sweep", schedule)


def test_no_sweep_means_no_rule_no_rule_reading_and_no_prefix():
    plan = plan_for(
        ["i-0123456789abcdef0"], restart_policy={"sweep_minutes": 0}, function={"restart_together": False}
    )
    assert [rule["kind"] for rule in plan["regions"][0]["rules"]] == ["instances"]
    document, _scope = build_policy(plan, "123456789012")
    assert not {"ReadOwnRules", "ReadOwnConcurrency"} & {s["Sid"] for s in document["Statement"]}
    env = protection.lambda_environment(plan, None, None, "B", None, False)
    assert env["SWEEP_MINUTES"] == "0" and "RULE_NAME_PREFIX" not in env
    assert "RESTART_TOGETHER" not in env  # the function never asks for its concurrency


def test_restarting_together_reads_the_protected_ids_from_the_rules_without_a_sweep():
    """A burst's first event reads every protected instance: in instance mode the function
    learns their ids from the deployment's rules, which it may read but not change."""
    plan = plan_for(
        ["i-0123456789abcdef0"], restart_policy={"sweep_minutes": 0}, function={"restart_together": True}
    )
    document, _scope = build_policy(plan, "123456789012")
    assert statement(document, "ReadOwnRules")["Action"] == "events:DescribeRule"
    assert "RepairOwnRules" not in {s["Sid"] for s in document["Statement"]}
    env = protection.lambda_environment(plan, None, None, "B", None, False)
    assert (env["RULE_NAME_PREFIX"], env["RESTART_TOGETHER"]) == ("EC2Protect.", "true")
    assert statement(document, "ReadOwnConcurrency") == {
        "Sid": "ReadOwnConcurrency",
        "Effect": "Allow",
        "Action": "lambda:GetFunctionConcurrency",
        "Resource": ["arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"],
    }


@pytest.mark.parametrize("mode", ["tag", "instance_ids"])
def test_the_sweep_may_read_and_repair_its_own_rules_only(mode):
    """Each sweep re-enables the deployment's rules and puts their target back (in tag mode
    too, where it finds instances by tag); without a sweep the role may not touch them."""
    kwargs = {"regions": ["eu-west-1"], "tag_key": "K", "tag_value": "V"} if mode == "tag" else {
        "instances": [("i-0123456789abcdef0", "eu-west-1", "x")]}  # fmt: skip
    plan = protection.build_plan("N", mode=mode, bypass_tag_key="B", **kwargs)
    document, _scope = build_policy(plan, "123456789012", tag_key="K", tag_value="V")
    own = ["arn:aws:events:eu-west-1:123456789012:rule/N.*"]
    assert statement(document, "ReadOwnRules")["Resource"] == own
    assert statement(document, "RepairOwnRules") == {
        "Sid": "RepairOwnRules",
        "Effect": "Allow",
        "Action": ["events:EnableRule", "events:ListTargetsByRule", "events:PutTargets"],
        "Resource": own,
    }
    assert protection.lambda_environment(plan, "K", "V", "B", None, False)["RULE_NAME_PREFIX"] == "N."
    no_sweep = protection.build_plan(
        "N",
        mode=mode,
        bypass_tag_key="B",
        restart_policy={"sweep_minutes": 0},
        function={"restart_together": False},
        **kwargs,
    )
    bare, _scope = build_policy(no_sweep, "123456789012", tag_key="K", tag_value="V")
    assert "events:" not in json.dumps(bare)


@pytest.mark.parametrize("minutes", [-1, 1441, True, "5"])
def test_bad_sweep_minutes_name_the_value(minutes):
    with pytest.raises(
        protection.ProtectionError,
        match=f"stop_protection_sweep_minutes must be 0 \\(no sweep\\) to 1440, got {minutes!r}",
    ):
        protection.validate_restart_policy({"sweep_minutes": minutes})


def test_alarm_counts_what_needs_a_person_and_notifies_the_topic():
    topic = "arn:aws:sns:eu-west-1:123456789012:restarts"
    plan = plan_for(["i-0123456789abcdef0"], notification_topic_arn=topic)
    assert plan["alarm"] == {
        "name": "EC2Protect-attention",
        "log_group": "/aws/lambda/EC2Protect",
        "pattern": protection.ATTENTION_PATTERN,
        "namespace": "guardrails.ec2",
        "period": 300,
        "actions": [topic],
    }
    assert plan_for(["i-0123456789abcdef0"])["alarm"]["actions"] == []
    assert plan_for(["i-0123456789abcdef0"], restart_policy={"alarm_period_seconds": 0})["alarm"] is None


def test_the_heartbeat_alarm_fires_when_its_evaluation_range_holds_no_sweep():
    topic = "arn:aws:sns:eu-west-1:123456789012:restarts"
    plan = plan_for(
        ["i-0123456789abcdef0"], notification_topic_arn=topic, restart_policy={"sweep_minutes": 3}
    )
    assert plan["heartbeat"] == {
        "name": "EC2Protect-heartbeat",
        "log_group": "/aws/lambda/EC2Protect",
        "pattern": protection.HEARTBEAT_PATTERN,
        "namespace": "guardrails.ec2",
        "period": 180,
        "evaluation_periods": 1,
        "actions": [topic],
    }
    alarm = render.desired_state(plan, "eu-west-1", "123456789012", "aws", 30, 2, 3600)["heartbeat"]
    # Fewer than one heartbeat in a period, and no data at all counts as none.
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]) == (
        "LessThanThreshold",
        1.0,
        "Sum",
    )
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (180, 1, "breaching")
    assert alarm["AlarmActions"] == [topic]
    # No sweep, or alarms turned off: no heartbeat to miss.
    for policy in ({"sweep_minutes": 0}, {"alarm_period_seconds": 0}):
        assert plan_for(["i-0123456789abcdef0"], restart_policy=policy)["heartbeat"] is None


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        ({"action": "swept", "trigger": "sweep", "stopped_found": 0}, True),
        ({"action": "sweep-incomplete", "trigger": "sweep"}, False),
        ({"action": "started", "trigger": "sweep", "instance_id": "i-1"}, False),
    ],
)
def test_the_heartbeat_counts_only_the_sweeps_closing_line(line, counted):
    matcher = load_harness_log_patterns().matcher_for(protection.HEARTBEAT_PATTERN)
    assert matcher(protection.HEARTBEAT_PATTERN, {"message": json.dumps(line)}) is counted


@pytest.mark.parametrize("period", [5, 45, 90, 86460, -60, True])
def test_bad_alarm_period_names_the_value(period):
    with pytest.raises(
        protection.ProtectionError, match=f"stop_protection_alarm_period_seconds must be .* got {period!r}"
    ):
        protection.validate_restart_policy({"alarm_period_seconds": period})


@pytest.mark.parametrize(
    ("variable", "arn"),
    [
        ("notification_topic_arn", "arn:aws:sns:us-east-1:123456789012:restarts"),
        ("failure_destination_arn", "arn:aws:sqs:us-east-1:123456789012:failed"),
    ],
)
def test_topic_or_queue_of_another_region_fails_early(variable, arn):
    with pytest.raises(protection.ProtectionError) as error:
        plan_for(["i-0123456789abcdef0"], region="eu-west-1", **{variable: arn})
    message = str(error.value)
    assert f"stop_protection_{variable} {arn} is in us-east-1" in message and "eu-west-1" in message


def test_policy_falls_back_to_region_scope_when_too_long_but_never_star():
    document, scope = build_policy(plan_for(ids(1000)), "123456789012")
    assert scope == "region"
    assert statement(document, "StartProtectedInstances")["Resource"] == [
        "arn:aws:ec2:eu-west-1:123456789012:instance/*"
    ]
    assert iam_policy.policy_length(document) <= iam_policy.MAX_MANAGED_POLICY_CHARS


def start_resources(policies):
    return [
        arn
        for policy in policies
        for item in policy["document"]["Statement"]
        if "ec2:StartInstances" in item["Action"]
        for arn in item["Resource"]
    ]


@pytest.mark.parametrize("count", [88, 200, 500])
def test_long_instance_lists_spill_into_further_policies(count):
    instance_ids = ids(count)
    policies, scope = iam_policy.build_policies(plan_for(instance_ids), "123456789012", kms_key_arns=[KEY])
    assert scope == "instances"
    assert [policy["name"] for policy in policies] == ["EC2Protect-eu-west-1"] + [
        f"EC2Protect-eu-west-1.{index}" for index in range(2, len(policies) + 1)
    ]
    assert 1 < len(policies) <= iam_policy.MAX_POLICIES_PER_ROLE
    expected = sorted(f"arn:aws:ec2:eu-west-1:123456789012:instance/{i}" for i in instance_ids)
    assert sorted(start_resources(policies)) == expected  # every instance once, nothing else
    for policy in policies:
        assert iam_policy.policy_length(policy["document"]) <= iam_policy.MAX_MANAGED_POLICY_CHARS
    # Only the first policy holds the other statements; the rest only StartInstances.
    assert {s["Sid"] for s in policies[0]["document"]["Statement"]} >= {
        "WriteOwnLogs",
        "StartWithEncryptedVolumes",
    }
    for policy in policies[1:]:
        assert [s["Sid"] for s in policy["document"]["Statement"]] == ["StartProtectedInstances"]


def test_policies_are_as_few_as_the_limit_allows():
    policies, _scope = iam_policy.build_policies(plan_for(ids(300)), "123456789012")
    # Adding the first ARN of the next policy to the previous one would overflow it.
    for current, following in itertools.pairwise(policies):
        first_of_next = following["document"]["Statement"][0]["Resource"][0]
        (start,) = [s for s in current["document"]["Statement"] if "ec2:StartInstances" in s["Action"]]
        start["Resource"].append(first_of_next)
        assert iam_policy.policy_length(current["document"]) > iam_policy.MAX_MANAGED_POLICY_CHARS


def test_region_scope_only_when_the_role_cannot_hold_enough_policies():
    def scope(count):
        return iam_policy.build_policies(plan_for(ids(count)), "123456789012")[1]

    low, high = 1, 2000  # scope(low) == "instances", scope(high) == "region"
    assert (scope(low), scope(high)) == ("instances", "region")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if scope(middle) == "instances" else (low, middle)
    largest, _scope = iam_policy.build_policies(plan_for(ids(low)), "123456789012")
    assert len(largest) == iam_policy.MAX_POLICIES_PER_ROLE
    fallback, _scope = iam_policy.build_policies(plan_for(ids(high)), "123456789012")
    assert len(fallback) == 1
    assert 850 < low < 1000


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect", 1), ("EC2Protect.2", 2), ("EC2Protect.10", 10), ("EC2Protect.1", None),
     ("EC2Protect.02", None), ("EC2ProtectRole", None), ("EC2Protect.x", None), ("Other.2", None),
     ("EC2Protect-2", None)],
)  # fmt: skip
def test_policy_index_recognises_only_our_policies(candidate, expected):
    assert naming.policy_index("EC2Protect", candidate) == expected


def test_policy_in_tag_mode_is_conditioned_on_the_tag():
    plan = protection.build_plan(
        "EC2Protect", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
    )
    document, scope = build_policy(plan, "123456789012", tag_key="K", tag_value="V")
    start = statement(document, "StartProtectedInstances")
    assert scope == "tag"
    assert start["Condition"] == {"StringEquals": {"aws:ResourceTag/K": "V"}}


TOPIC = "arn:aws:sns:eu-west-1:123456789012:restarts"
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:failures"


def test_policy_grants_publish_and_send_only_on_configured_targets():
    topic, queue = TOPIC, QUEUE
    document, _scope = build_policy(
        plan_for(["i-0123456789abcdef0"]),
        "123456789012",
        notification_topic_arn=topic,
        failure_destination_arn=queue,
    )
    assert statement(document, "NotifyTopic") == {
        "Sid": "NotifyTopic", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic,
    }  # fmt: skip
    assert statement(document, "SendFailedEvents")["Action"] == "sqs:SendMessage"
    assert statement(document, "SendFailedEvents")["Resource"] == queue
    bare, _scope = build_policy(plan_for(["i-0123456789abcdef0"]), "123456789012")
    assert {s["Sid"] for s in bare["Statement"]} == {
        "StartProtectedInstances",
        "TagOnlyTheRestartBudget",
        "ReadInstanceState",
        "WriteOwnLogs",
        "RecreateOwnLogGroup",
        "ReadOwnConcurrency",  # restart_together (the default): is the reservation still 1?
        "ReadOwnRules",  # the sweep reads the instance ids from the rules
        "RepairOwnRules",  # and enables them again, or puts their target back
    }


def test_policy_allows_kms_grants_only_for_aws_resources_on_the_listed_keys():
    document, _scope = build_policy(plan_for(["i-0123456789abcdef0"]), "123456789012", kms_key_arns=[KEY])
    assert statement(document, "StartWithEncryptedVolumes") == {
        "Sid": "StartWithEncryptedVolumes",
        "Effect": "Allow",
        "Action": "kms:CreateGrant",
        "Resource": [KEY],
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
    }
    bare, _scope = build_policy(plan_for(["i-0123456789abcdef0"]), "123456789012", kms_key_arns=[])
    assert "kms:CreateGrant" not in json.dumps(bare)
    # No topic, no destination: the keys are for volumes only.
    assert "kms:GenerateDataKey*" not in json.dumps(document)


def test_listed_keys_let_the_role_send_to_an_encrypted_topic_and_queue_through_them_only():
    topic, queue = TOPIC, QUEUE
    document, _scope = build_policy(
        plan_for(["i-0123456789abcdef0"]),
        "123456789012",
        kms_key_arns=[KEY],
        notification_topic_arn=topic,
        failure_destination_arn=queue,
    )
    assert statement(document, "SendToEncryptedTopicsAndQueues") == {
        "Sid": "SendToEncryptedTopicsAndQueues",
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Resource": [KEY],
        "Condition": {
            "StringEquals": {"kms:ViaService": ["sns.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com"]}
        },
    }
    topic_only, _scope = build_policy(
        plan_for(["i-0123456789abcdef0"]), "123456789012", kms_key_arns=[KEY], notification_topic_arn=topic
    )
    condition = statement(topic_only, "SendToEncryptedTopicsAndQueues")["Condition"]
    assert condition == {"StringEquals": {"kms:ViaService": ["sns.eu-west-1.amazonaws.com"]}}
    unencrypted, _scope = build_policy(
        plan_for(["i-0123456789abcdef0"]), "123456789012", notification_topic_arn=topic
    )
    assert "kms:" not in json.dumps(unencrypted)


@pytest.mark.parametrize("mode", ["instance_ids", "tag"])
@pytest.mark.parametrize("count", [1, 1000])
def test_no_star_resource_for_start_instances_ever(mode, count):
    if mode == "tag":
        plan = protection.build_plan(
            "N", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
        )
    else:
        plan = plan_for(ids(count))
    document, _scope = build_policy(plan, "123456789012", tag_key="K", tag_value="V")
    for item in document["Statement"]:
        resources = item["Resource"] if isinstance(item["Resource"], list) else [item["Resource"]]
        actions = item["Action"] if isinstance(item["Action"], list) else [item["Action"]]
        if any(a.startswith("ec2:Start") for a in actions):
            assert "*" not in resources
            assert all(r.startswith("arn:aws:ec2:eu-west-1:123456789012:instance/") for r in resources)
        assert not any(a.endswith("*") for a in actions)


def test_policy_documents_pass_parliament():
    import parliament

    topic = "arn:aws:sns:eu-west-1:123456789012:restarts"
    for document in (
        build_policy(
            plan_for(["i-0123456789abcdef0"]),
            "123456789012",
            notification_topic_arn=topic,
            kms_key_arns=[KEY],
        )[0],
        build_policy(plan_for(ids(1000)), "123456789012")[0],
        *[policy["document"] for policy in iam_policy.build_policies(plan_for(ids(200)), "123456789012")[0]],
        build_policy(
            protection.build_plan(
                "N", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
            ),
            "123456789012",
            tag_key="K",
            tag_value="V",
        )[0],
    ):
        policy = parliament.analyze_policy_string(json.dumps(document))
        assert [finding.issue for finding in policy.findings] == []
    # The linter is awake: a misspelt action is a finding.
    broken = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:StartInstancez", "Resource": "*"}],
    }
    assert "UNKNOWN_ACTION" in [
        f.issue for f in parliament.analyze_policy_string(json.dumps(broken)).findings
    ]


def test_environment_carries_only_what_the_function_needs():
    plan = plan_for(["i-0123456789abcdef0"])
    env = protection.lambda_environment(plan, "K", "V", "B", None, False)
    restart_settings = {
        key for key in env if key.startswith(("RESTART_", "SKIP_", "SUSPENDED_", "MAX_RETRY", "SWEEP_"))
    }
    assert {key: env[key] for key in set(env) - restart_settings} == {
        "PROTECTION_MODE": "instance_ids",
        "BYPASS_TAG_KEY": "B",
        "RULE_NAME_PREFIX": "EC2Protect.",  # the sweep reads the instance ids from the rules
    }
    tag_plan = protection.build_plan(
        "N", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
    )
    env = protection.lambda_environment(tag_plan, "K", "V", "B", "arn:aws:sns:eu-west-1:123456789012:t", True)
    assert env["PROTECTION_TAG_KEY"] == "K"
    assert env["NOTIFICATION_TOPIC_ARN"] == "arn:aws:sns:eu-west-1:123456789012:t"
    assert env["RULE_NAME_PREFIX"] == "N."


# --- one role and policies per region -----------------------------------------------------


def test_each_region_has_its_own_role_and_policies():
    plan = protection.build_plan(
        "EC2Protect",
        instances=[("i-0000000000000000a", "eu-west-1", "x"), ("i-0000000000000000b", "us-east-1", "y")],
        bypass_tag_key="B",
    )
    assert [(entry["region"], entry["role"], entry["policy"]) for entry in plan["regions"]] == [
        ("eu-west-1", "EC2Protect-eu-west-1", "EC2Protect-eu-west-1"),
        ("us-east-1", "EC2Protect-us-east-1", "EC2Protect-us-east-1"),
    ]
    east, scope = iam_policy.build_policies(plan, "123456789012", region="us-east-1")
    assert scope == "instances"
    assert [policy["name"] for policy in east] == ["EC2Protect-us-east-1"]
    document = east[0]["document"]
    # A run over one region rewrites only that region's policies: nothing in them may
    # name another region, and nothing of another region may depend on them.
    assert "eu-west-1" not in json.dumps(document)
    assert statement(document, "StartProtectedInstances")["Resource"] == [
        "arn:aws:ec2:us-east-1:123456789012:instance/i-0000000000000000b"
    ]
    assert statement(document, "WriteOwnLogs")["Resource"] == [
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/EC2Protect:*"
    ]
    with pytest.raises(protection.ProtectionError, match="name the region"):
        iam_policy.build_policies(plan, "123456789012")
    with pytest.raises(protection.ProtectionError, match="'ap-south-2'"):
        iam_policy.build_policies(plan, "123456789012", region="ap-south-2")


def test_a_name_too_long_for_a_regions_role_names_both():
    name = "N" * 52
    assert protection.build_plan(
        name, instances=[("i-0000000000000000a", "us-east-1", "x")], bypass_tag_key="B"
    )
    with pytest.raises(
        protection.ProtectionError,
        match=r"too long for region ap-southeast-1: its role '" + name + "-ap-southeast-1' would have 67",
    ):
        protection.build_plan(
            name, instances=[("i-0000000000000000a", "ap-southeast-1", "x")], bypass_tag_key="B"
        )


# --- tags ----------------------------------------------------------------------------------


def test_resource_tags_always_carry_the_owner_tag():
    assert protection.validate_resource_tags({"Team": "platform"}) == {
        "Team": "platform",
        "ManagedBy": "guardrails.ec2",
    }
    assert protection.validate_resource_tags(None) == {"ManagedBy": "guardrails.ec2"}
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
    with pytest.raises(protection.ProtectionError, match=message):
        protection.validate_resource_tags(tags)


# --- stable shards -------------------------------------------------------------------------


def shard_of(shards):
    return {instance_id: index for index, shard in enumerate(shards) for instance_id in shard}


def test_fresh_shards_are_sorted_and_packed():
    instance_ids = ids(300)
    assert patterns.shard_instance_ids(list(reversed(instance_ids))) == patterns.shard_instance_ids(
        instance_ids, current=[]
    )
    assert [i for shard in patterns.shard_instance_ids(instance_ids) for i in shard] == sorted(instance_ids)


def test_new_ids_join_the_last_shard_and_never_move_the_others():
    current = patterns.shard_instance_ids(ids(250))
    assert len(current) > 2
    # An id that sorts first joins at the end; a plain re-sort would shift every shard.
    added = "i-00000000000000000"
    grown = patterns.shard_instance_ids([*ids(250), added], current=current)
    assert grown[: len(current) - 1] == current[:-1]
    assert grown[len(current) - 1][: len(current[-1])] == current[-1]
    assert added in grown[-1]


@pytest.mark.parametrize("seed", range(25))
def test_a_reshard_never_moves_an_id_to_a_later_rule(seed):
    """The role writes rules in order and removes stale ones last: an id may move to an
    earlier rule (covered by the new one first) but never to a later one."""
    rng = random.Random(seed)
    before = rng.sample(ids(2000), rng.randint(1, 600))
    current = patterns.shard_instance_ids(before)
    for _round in range(3):
        kept = [i for i in before if rng.random() > 0.3]
        after = kept + rng.sample([i for i in ids(2000) if i not in before], rng.randint(0, 200))
        shards = patterns.shard_instance_ids(after, current=current)
        old, new = shard_of(current), shard_of(shards)
        assert sorted(new) == sorted(set(after))  # every listed id in exactly one rule
        assert all(new[i] <= old[i] for i in kept)
        for shard in shards:
            assert len(patterns.state_change_pattern(shard)) <= patterns.MAX_EVENT_PATTERN_CHARS
        before, current = after, shards


def test_a_shrunk_deployment_packs_into_fewer_rules():
    current = patterns.shard_instance_ids(ids(200))
    keep = ids(200)[:20] + ids(200)[-1:]
    assert patterns.shard_instance_ids(keep, current=current) == [sorted(keep)]


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
    result = protection.reshard_region(plan, entry, deployed)
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
    result = protection.reshard_region(plan, plan["regions"][0], legacy_rules(deployed_shards))
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
    result = protection.reshard_region(plan, plan["regions"][0], legacy_rules([ids(200)[:87]]) + new)
    assert result["rules"][0]["instance_ids"] == ids(200)[100:187]
    assert {rule["name"] for rule in result["stale"]} == {"EC2Protect-1", "EC2Protect-sweep"}


def test_pattern_instance_ids_reads_only_lists_of_ids():
    assert patterns.pattern_instance_ids(patterns.state_change_pattern(["i-0000000a"])) == ["i-0000000a"]
    assert patterns.pattern_instance_ids(patterns.state_change_pattern()) == []
    assert patterns.pattern_instance_ids("not json") == []
    assert patterns.pattern_instance_ids(None) == []


# --- accounts ------------------------------------------------------------------------------

OTHER_ROLE = "arn:aws:iam::222222222222:role/guardrails-deployer"


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
    deployments = protection.plan_deployments(instances, accounts, {"222222222222": OTHER_ROLE})
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
    deployments = protection.plan_deployments(
        [], {}, {"222222222222": OTHER_ROLE}, tag_mode=True, regions=["eu-west-1"]
    )
    assert [d["host"] for d in deployments] == ["own-eu-west-1", "222222222222-eu-west-1"]
    assert protection.plan_deployments([], {}, {}) == [
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
    assert protection.instance_accounts(hosts, []) == {
        "i-0000000000000000a": "222222222222",
        "i-0000000000000000b": "333333333333",
    }
    explicit = [{"instance_id": "i-0000000000000000a", "account_id": 222222222222}, "i-0000000000000000b"]
    assert protection.instance_accounts(hosts, explicit) == {"i-0000000000000000a": "222222222222"}


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"2222": OTHER_ROLE}, "stop_protection_assume_roles key '2222' is not an AWS account id"),
        ({"222222222222": "arn:aws:iam::222222222222:user/x"}, "is not an IAM role ARN"),
        ({"333333333333": OTHER_ROLE}, "is a role of account 222222222222, not 333333333333"),
        (["222222222222"], "must map account ids to role ARNs"),
    ],
)
def test_bad_assume_roles_are_named(roles, message):
    with pytest.raises(protection.ProtectionError, match=message):
        protection.validate_assume_roles(roles)


def test_a_bad_account_of_a_host_is_named():
    with pytest.raises(
        protection.ProtectionError, match="account of host web 'prod' is not an AWS account id"
    ):
        protection.instance_accounts(
            [("web", {"instance_id": "i-0000000000000000a", "account_id": "prod"})], []
        )


# --- capacity ------------------------------------------------------------------------------


def test_the_function_policy_does_not_grow_with_the_rules():
    """One invoke statement per region admits every rule: 300 rules need no more policy
    than one (the function's 20 KB resource policy once capped instance-id mode at ~69)."""
    plan = plan_for(ids(25000))
    assert len(plan["regions"][0]["rules"]) == 289
    # tag mode needs one rule for any number of instances
    assert plan_for(ids(27000), mode=protection.MODE_TAG, tag_key="StopProtection", tag_value="enabled")


def test_the_rule_quota_is_checked_before_any_change():
    with pytest.raises(protection.ProtectionError, match=r"more than the 300 an event bus holds by default"):
        plan_for(ids(27000))


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("eu-west-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
    ],
)
def test_the_partition_of_a_region_is_known_before_any_call(region, partition):
    assert naming.partition_of(region) == partition


def test_the_partition_table_agrees_with_botocore():
    """naming.partition_of for every region botocore knows: the same partition."""
    import botocore.session

    session = botocore.session.get_session()
    checked = 0
    for partition in session.get_available_partitions():
        for region in session.get_available_regions("ec2", partition_name=partition):
            assert naming.partition_of(region) == partition, region
            checked += 1
    assert checked > 20


def test_only_the_owner_tag_marks_a_resource_as_ours():
    assert naming.owner_tagged({"ManagedBy": "guardrails.ec2", "Team": "x"})
    assert not naming.owner_tagged({"ManagedBy": "someone-else"})
    assert not naming.owner_tagged(None)


# --- tamper rules ------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("principals", "message"),
    [
        ("arn:aws:iam::*:role/x", "must be a list of ARN patterns"),
        (["deployer"], "entry 'deployer' is not an ARN pattern"),
        (["arn:aws:iam::**:role/x"], "never \\*\\*"),
    ],
)
def test_bad_automation_principals_are_named(principals, message):
    with pytest.raises(protection.ProtectionError, match=message):
        plan_for(["i-0123456789abcdef0"], automation_principals=principals)


def test_a_tamper_pattern_too_long_for_eventbridge_names_the_variable():
    many = [f"arn:aws:iam::123456789012:role/automation-role-number-{n:03d}" for n in range(40)]
    with pytest.raises(
        protection.ProtectionError, match="list fewer or shorter stop_protection_automation_principals"
    ):
        plan_for(["i-0123456789abcdef0"], automation_principals=many)


def test_the_actions_the_tamper_rules_watch_are_the_ones_the_guard_policy_denies():
    from ansible_collections.guardrails.ec2.plugins.module_utils import guard

    assert guard.RULE_ACTIONS is patterns.RULE_ACTIONS and guard.FUNCTION_ACTIONS is patterns.FUNCTION_ACTIONS
