"""What the audit, drill and IAM-evaluation tests share: a deployment as the audit reads it,
an instance, and the ARNs they name."""

from ansible_collections.guardrails.ec2.plugins.module_utils import iam_policy
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
RULE_ARN = "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.1"
ID = "i-0123456789abcdef0"
SWEEP_ARN = "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.sweep"


def deployment(mode="instance_ids", **overrides):
    rule = {
        "name": "EC2Protect.1",
        "arn": RULE_ARN,
        "state": "ENABLED",
        "listed_ids": {ID} if mode == "instance_ids" else None,
        "matches_stopped": True,
        "matches_running": False,
        "targets_function": True,
    }
    rule.update(overrides.pop("rule", {}))
    sweep = {
        "name": "EC2Protect.sweep",
        "arn": SWEEP_ARN,
        "state": "ENABLED",
        "targets_function": True,
        "kind": "sweep",
    }
    sweep.update(overrides.pop("sweep", {}))
    env = {
        "PROTECTION_MODE": mode,
        "BYPASS_TAG_KEY": "StopProtectionBypass",
        "SUSPENDED_TAG_KEY": "StopProtectionSuspended",
        "SWEEP_MINUTES": "5",
    }
    if mode == "tag":
        env.update(PROTECTION_TAG_KEY="StopProtection", PROTECTION_TAG_VALUE="enabled")
    base = {
        "function": {"State": "Active", "LastUpdateStatus": "Successful"},
        "mode": mode,
        "env": env,
        # the role's one statement per region: a pattern over the deployment's rule names
        "policy_sources": {"arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*"},
        "invoke_config": {"maximum_retry_attempts": 2},
        "rules": [rule],
        "sweep_rule": sweep,
        "function_arn": FUNCTION_ARN,
        "warnings": [],
    }
    base.update(overrides)
    return base


def instance(state="running", tags=None):
    return {
        "InstanceId": ID,
        "State": {"Name": state},
        "Tags": [{"Key": k, "Value": val} for k, val in (tags or {}).items()],
    }


def entries(*states):
    return [
        {"instance_id": f"i-{n:017x}", "region": "eu-west-1", "state": s, "protected": True, "problems": []}
        for n, s in enumerate(states, start=1)
    ]


ROLE_ARN = "arn:aws:iam::123456789012:role/EC2ProtectRole"
ARN_PREFIX = "arn:aws:ec2:eu-west-1:123456789012:instance/"


def generated(instance_ids=(ID,), **kwargs):
    """The policy documents the role deploys for these instances."""

    if kwargs.get("mode") == "tag":
        plan = planning.build_plan(
            "EC2Protect", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
        )
        policies, _scope = iam_policy.build_policies(plan, "123456789012")
    else:
        plan = planning.build_plan(
            "EC2Protect", instances=[(i, "eu-west-1", "x") for i in instance_ids], bypass_tag_key="B"
        )
        policies, _scope = iam_policy.build_policies(plan, "123456789012")
    return [policy["document"] for policy in policies]


CMK = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
