"""module_utils/guard.py: the guard policy of a deployment."""

import json

import botocore.session
import pytest

from ansible_collections.guardrails.ec2.plugins.module_utils import guard
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError

AUTOMATION = ["arn:aws:iam::*:role/platform-automation"]
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ops"


def statements(**kwargs):
    found = guard.guard_statements(
        "EC2Protect",
        AUTOMATION,
        tag_keys=["StopProtection", "StopProtectionBypass"],
        budget_tag_keys=["StopProtectionRestarts", "StopProtectionSuspended"],
        topic_arn=TOPIC,
        **kwargs,
    )
    return found + guard.stop_protection_off_statements(
        AUTOMATION, tag_key="StopProtection", tag_value="enabled"
    )


def test_every_action_exists_in_the_service_model():
    """A misspelt action in an SCP denies nothing, silently: each must be an API operation."""
    session = botocore.session.get_session()
    operations = {}
    for statement in statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            # These services' IAM prefixes are their botocore names.
            service, name = action.split(":")
            if service not in operations:
                operations[service] = set(session.get_service_model(service).operation_names)
            assert name in operations[service], action


def test_everyone_but_automation_is_denied_and_the_function_role_may_repair_and_budget():
    found = {statement["Sid"]: statement for statement in statements()}
    assert all(statement["Effect"] == "Deny" for statement in found.values())
    role = "arn:aws:iam::*:role/EC2Protect-*"
    for sid, statement in found.items():
        exempt = statement["Condition"]["ArnNotLike"]["aws:PrincipalARN"]
        assert exempt[: len(AUTOMATION)] == AUTOMATION, sid
        assert (role in exempt) == (sid in ("GuardTheRuleTargets", "GuardTheBudgetTags")), sid
    assert found["GuardTheRules"]["Resource"] == "arn:aws:events:*:*:rule/EC2Protect.*"
    assert "events:EnableRule" not in json.dumps(found)  # enabling a rule never disarms it
    assert found["GuardTheProtectionTags"]["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"] == [
        "StopProtection",
        "StopProtectionBypass",
    ]
    assert found["GuardStopProtection"]["Condition"]["StringEquals"] == {
        "aws:ResourceTag/StopProtection": "enabled"
    }
    assert found["GuardTheTopic"]["Resource"] == [TOPIC, TOPIC + ":*"]


def test_a_policy_too_large_for_one_scp_is_split_without_losing_a_resource():
    arns = [f"arn:aws:ec2:eu-west-1:*:instance/i-{n:017x}" for n in range(400)]
    found = guard.guard_statements("EC2Protect", AUTOMATION, ["StopProtection"], ["R", "S"])
    found += guard.stop_protection_off_statements(AUTOMATION, instance_arns=arns)
    docs = guard.documents(found)
    assert len(docs) > 1
    assert all(guard.size(document) <= guard.SCP_LIMIT for document in docs)
    listed = [
        arn
        for document in docs
        for statement in document["Statement"]
        if statement["Sid"].startswith("GuardStopProtection")
        for arn in statement["Resource"]
    ]
    assert sorted(listed) == sorted(arns)
    assert len({s["Sid"] for d in docs for s in d["Statement"]}) == sum(len(d["Statement"]) for d in docs)


def test_one_small_deployment_is_one_scp():
    (document,) = guard.documents(statements())
    assert guard.size(document) <= guard.SCP_LIMIT


@pytest.mark.parametrize("principals", [[], "arn:aws:iam::*:role/x", ["platform-automation"], None])
def test_the_automation_principals_are_required_and_named(principals):
    with pytest.raises(ProtectionError, match="stop_protection_automation_principals"):
        guard.guard_statements("EC2Protect", principals, ["K"], ["R", "S"])
