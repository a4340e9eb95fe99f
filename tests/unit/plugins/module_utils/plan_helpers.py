"""Plans and policies that the tests of the planning modules share."""

import random

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    iam_policy,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning


def ids(count, seed=7):
    rng = random.Random(seed)
    return [f"i-{rng.getrandbits(68):017x}"[:19] for _index in range(count)]


KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def plan_for(instance_ids, region="eu-west-1", **kwargs):
    return planning.build_plan(
        "EC2Protect", instances=[(i, region, "x") for i in instance_ids], bypass_tag_key="B", **kwargs
    )


def with_settings(plan, **settings):
    """The plan with ``settings`` in place of its own (the policies read theirs from it)."""
    return dict(plan, settings=dict(plan["settings"], **settings))


def build_policies(plan, account, partition="aws", region=None, **settings):
    """``iam_policy.build_policies`` of the plan with ``settings`` in place of its own."""
    return iam_policy.build_policies(with_settings(plan, **settings), account, partition, region)


def build_policy(plan, account, partition="aws", region=None, **settings):
    """The one policy of a deployment that fits in one (asserted), and the scope."""
    policies, scope = build_policies(plan, account, partition, region, **settings)
    assert len(policies) == 1
    assert policies[0]["name"] == plan["regions"][0]["policy"]
    return policies[0]["document"], scope


def statement(document, sid):
    (found,) = [s for s in document["Statement"] if s["Sid"] == sid]
    return found


OTHER_ROLE = "arn:aws:iam::222222222222:role/guardrails-deployer"
