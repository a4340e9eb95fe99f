"""module_utils/diff.py: what a protect run changes, as Ansible diffs and lines naming the
instances that join or leave each rule and managed policy."""

import json

from ansible_collections.guardrails.ec2.plugins.module_utils import diff

A, B, C, D = (f"i-000000000000000{letter}a" for letter in "abcd")
ARN = "arn:aws:ec2:eu-west-1:123456789012:instance/"
FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:P"


def document(*ids):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "StartProtectedInstances", "Effect": "Allow", "Action": "ec2:StartInstances",
             "Resource": [ARN + i for i in ids]},
            {"Sid": "ReadInstanceState", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
        ],
    }  # fmt: skip


def pattern(*ids):
    return {"source": ["aws.ec2"], "detail": {"state": ["stopped"], "instance-id": list(ids)}}


def test_policy_instance_ids_are_the_start_statements_instance_arns():
    assert diff.policy_instance_ids(document(A, B)) == {A, B}
    region_wide = {"Statement": [{"Sid": "StartProtectedInstances", "Resource": [ARN + "*"]}]}
    assert diff.policy_instance_ids(region_wide) == set()


def test_a_region_diff_names_the_instances_joining_and_leaving_each_rule_and_policy():
    state = {"policies": {"P-eu-west-1": {"exists": True, "default_version": "v2",
                                          "versions": [{"id": "v1", "document": document(D)},
                                                       {"id": "v2", "document": document(A, B)}]}},
             "role": {"exists": True}}  # fmt: skip
    desired = {
        "policies": [{"name": "P-eu-west-1", "document": document(B, C)}],
        "rule_target_id": "P",
        "function_arn": FUNCTION,
    }
    drift = {
        "policies": [
            {
                "name": "P-eu-west-1",
                "document": document(B, C),
                "drift": ["no version has the planned document"],
            }
        ],
        "role": [],
    }
    write = [
        {"name": "P.1", "description": "d", "pattern": pattern(B, C), "drift": ["event pattern: 'x' -> 'y'"]}
    ]
    deployed = [
        {"name": "P.1", "description": "d", "event_pattern": json.dumps(pattern(A, B)), "state": "ENABLED",
         "targets": [{"id": "P", "arn": FUNCTION}]},
        {"name": "P.2", "description": "d", "event_pattern": json.dumps(pattern(D)), "state": "ENABLED"},
    ]  # fmt: skip
    found = diff.region_diff("eu-west-1", state, desired, drift, write, [deployed[1]], deployed)
    assert found["lines"] == [
        "eu-west-1 policy P-eu-west-1: no version has the planned document",
        f"eu-west-1 policy P-eu-west-1 (ec2:StartInstances): instances joining {C}; leaving {A}",
        "eu-west-1 rule P.1: event pattern differs",
        f"eu-west-1 rule P.1: instances joining {C}; leaving {A}",
        "eu-west-1 rule P.2: removed",
        f"eu-west-1 rule P.2: instances leaving {D}",
    ]
    policy, rule, removed = found["diff"]
    # The default version is "before", not the first one IAM lists.
    assert json.loads(policy["before"]) == document(A, B) and json.loads(policy["after"]) == document(B, C)
    assert policy["before_header"] == "policy P-eu-west-1 in eu-west-1 (deployed)"
    assert json.loads(rule["after"])["event_pattern"] == pattern(B, C)
    assert json.loads(rule["after"])["targets"] == [{"id": "P", "arn": FUNCTION}]
    assert removed["after"] == "" and json.loads(removed["before"])["event_pattern"] == pattern(D)


def test_nothing_differs_nothing_to_say():
    assert diff.region_diff("eu-west-1", {}, {"policies": []}, {"role": [], "function": []}) == {
        "diff": [],
        "lines": [],
    }


def test_a_resource_to_create_has_an_empty_before():
    desired = {
        "log_group": {"name": "/aws/lambda/P", "retention": 30, "tags": {"ManagedBy": "guardrails.ec2"}}
    }
    found = diff.region_diff(
        "eu-west-1", {"log_group": {"exists": False}}, desired, {"log_group": ["missing"]}
    )
    (entry,) = found["diff"]
    assert entry["before"] == "" and json.loads(entry["after"])["retention"] == 30
    assert found["lines"] == ["eu-west-1 log_group: missing"]
