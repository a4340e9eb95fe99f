"""module_utils/iam_eval.py: what the function's role and resource policy allow."""

import pytest
from verify_helpers import ARN_PREFIX, ID, ROLE_ARN, RULE_ARN, SWEEP_ARN, generated

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    iam_eval,
)


def test_invoke_sources_reads_events_statements_only():
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": RULE_ARN}},
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}},
            },
            {
                "Effect": "Deny",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:events:eu-west-1:123456789012:rule/x"}},
            },
        ]
    }
    assert iam_eval.invoke_sources(policy) == {RULE_ARN}


@pytest.mark.parametrize(
    ("operator", "source", "rule", "admitted"),
    [
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", RULE_ARN, True),
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", SWEEP_ARN, True),
        # another deployment's pattern, or the pre-1.1.0 names: not this rule
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect-*", RULE_ARN, False),
        ("ArnLike", "arn:aws:events:us-east-1:123456789012:rule/EC2Protect.*", RULE_ARN, False),
        ("ArnEquals", RULE_ARN, RULE_ARN, True),
        # Equals takes "*" literally
        ("ArnEquals", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", RULE_ARN, False),
    ],
)
def test_invocation_admitted_follows_the_condition_operator(operator, source, rule, admitted):
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {operator: {"AWS:SourceArn": source}},
            }
        ]
    }
    assert iam_eval.invocation_admitted(iam_eval.invoke_sources(policy), rule) is admitted


def test_the_generated_policy_allows_exactly_the_listed_instances():
    permission = iam_eval.RolePermissions(ROLE_ARN, generated())
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {}) == "allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + "i-0fffffffffffffff0", {}) == "not-allowed"
    assert (
        permission.check("ec2:StartInstances", "arn:aws:ec2:us-east-1:123456789012:instance/" + ID)
        == "not-allowed"
    )


def test_spilled_policies_allow_every_instance():
    instance_ids = [f"i-{index:017x}" for index in range(300)]
    documents = generated(instance_ids)
    assert len(documents) > 2
    permission = iam_eval.RolePermissions(ROLE_ARN, documents)
    assert {permission.check("ec2:StartInstances", ARN_PREFIX + i, {}) for i in instance_ids} == {"allowed"}
    # Without the policies that hold the later ARNs, those instances are not allowed.
    partial = iam_eval.RolePermissions(ROLE_ARN, documents[:1])
    assert partial.check("ec2:StartInstances", ARN_PREFIX + instance_ids[-1], {}) == "not-allowed"


def test_tag_mode_policy_allows_only_tagged_instances():
    permission = iam_eval.RolePermissions(ROLE_ARN, generated(mode="tag"))
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {"K": "V"}) == "allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {"K": "other"}) == "not-allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {}) == "not-allowed"


@pytest.mark.parametrize(
    ("statement", "tags", "expected"),
    [
        ({"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}, {}, "denied"),
        ({"Effect": "Deny", "Action": "ec2:Start*", "Resource": ARN_PREFIX + "*"}, {}, "denied"),
        ({"Effect": "Deny", "NotAction": "ec2:Describe*", "Resource": "*"}, {}, "denied"),
        ({"Effect": "Deny", "Action": "ec2:StopInstances", "Resource": "*"}, {}, "allowed"),
        ({"Effect": "Deny", "Action": "ec2:*", "NotResource": ARN_PREFIX + ID}, {}, "allowed"),
        # A condition on a tag is evaluated; one on anything else never counts against the instance.
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/Frozen": "yes"}}},
            {"Frozen": "yes"},
            "denied",
        ),
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/Frozen": "yes"}}},
            {},
            "allowed",
        ),
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            {},
            "allowed",
        ),
    ],
)  # fmt: skip
def test_explicit_denies_and_conditions(statement, tags, expected):
    documents = [*generated(), {"Version": "2012-10-17", "Statement": [statement]}]
    assert (
        iam_eval.RolePermissions(ROLE_ARN, documents).check("ec2:StartInstances", ARN_PREFIX + ID, tags)
        == expected
    )


def test_an_allow_with_a_condition_it_cannot_evaluate_still_counts():
    document = {
        "Statement": {
            "Effect": "Allow",
            "Action": ["ec2:StartInstances"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"Bool": {"aws:ViaAWSService": "false"}},
        }
    }
    assert (
        iam_eval.RolePermissions(ROLE_ARN, [document]).check("ec2:StartInstances", ARN_PREFIX + ID, {})
        == "allowed"
    )


NEGATED_DENIES = [
    ("StringNotEquals", "ops", {}, "denied"),  # IAM: a negated operator on a missing key is met
    ("StringNotEquals", "ops", {"Owner": "ops"}, "allowed"),
    ("StringNotEquals", "ops", {"Owner": "dev"}, "denied"),
    ("StringNotLike", "op*", {}, "denied"),
    ("StringNotLike", "op*", {"Owner": "ops"}, "allowed"),
    ("StringEqualsIfExists", "dev", {}, "denied"),  # ...IfExists on a missing key is met
    ("StringEqualsIfExists", "dev", {"Owner": "ops"}, "allowed"),
    ("StringNotEqualsIfExists", "ops", {}, "denied"),
    ("StringEquals", "dev", {}, "allowed"),  # a positive operator on a missing key fails
]


@pytest.mark.parametrize(("operator", "value", "tags", "expected"), NEGATED_DENIES)
def test_deny_conditions_on_missing_tags_follow_iam(operator, value, tags, expected):
    documents = [
        {"Statement": [{"Effect": "Allow", "Action": "ec2:StartInstances", "Resource": "*"}]},
        {
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "ec2:StartInstances",
                    "Resource": "*",
                    "Condition": {operator: {"ec2:ResourceTag/Owner": value}},
                }
            ]
        },
    ]
    assert (
        iam_eval.RolePermissions(ROLE_ARN, documents).check("ec2:StartInstances", ARN_PREFIX + ID, tags)
        == expected
    )
