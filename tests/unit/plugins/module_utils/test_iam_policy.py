"""The function role's managed policies (module_utils/iam_policy.py)."""

import itertools
import json

import pytest
from plan_helpers import KEY, build_policy, ids, plan_for, statement

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    environment,
    iam_policy,
    validate,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning


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


def test_policy_lets_the_role_write_only_the_restart_budget_tags():
    plan = planning.build_plan(
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


def test_restarting_together_reads_the_protected_ids_from_the_rules_without_a_sweep():
    """A burst's first event reads every protected instance: in instance mode the function
    learns their ids from the deployment's rules, which it may read but not change."""
    plan = plan_for(
        ["i-0123456789abcdef0"], restart_policy={"sweep_minutes": 0}, function={"restart_together": True}
    )
    document, _scope = build_policy(plan, "123456789012")
    assert statement(document, "ReadOwnRules")["Action"] == "events:DescribeRule"
    assert "RepairOwnRules" not in {s["Sid"] for s in document["Statement"]}
    env = environment.function_environment(plan)
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
    plan = planning.build_plan("N", mode=mode, bypass_tag_key="B", **kwargs)
    document, _scope = build_policy(plan, "123456789012", tag_key="K", tag_value="V")
    own = ["arn:aws:events:eu-west-1:123456789012:rule/N.*"]
    assert statement(document, "ReadOwnRules")["Resource"] == own
    assert statement(document, "RepairOwnRules") == {
        "Sid": "RepairOwnRules",
        "Effect": "Allow",
        "Action": ["events:EnableRule", "events:ListTargetsByRule", "events:PutTargets"],
        "Resource": own,
    }
    assert environment.function_environment(plan)["RULE_NAME_PREFIX"] == "N."
    no_sweep = planning.build_plan(
        "N",
        mode=mode,
        bypass_tag_key="B",
        restart_policy={"sweep_minutes": 0},
        function={"restart_together": False},
        **kwargs,
    )
    bare, _scope = build_policy(no_sweep, "123456789012", tag_key="K", tag_value="V")
    assert "events:" not in json.dumps(bare)


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
    policies, scope = iam_policy.build_policies(plan_for(instance_ids, kms_key_arns=[KEY]), "123456789012")
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


def test_policy_in_tag_mode_is_conditioned_on_the_tag():
    plan = planning.build_plan(
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
        plan = planning.build_plan(
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
            planning.build_plan(
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


def test_each_region_has_its_own_role_and_policies():
    plan = planning.build_plan(
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
    with pytest.raises(validate.ProtectionError, match="name the region"):
        iam_policy.build_policies(plan, "123456789012")
    with pytest.raises(validate.ProtectionError, match="'ap-south-2'"):
        iam_policy.build_policies(plan, "123456789012", region="ap-south-2")
