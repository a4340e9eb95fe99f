"""module_utils/render.py: a region's desired state, from the plan alone."""

import pytest
from plan_helpers import plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import environment, iam_policy, render
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import UNRESERVED

ACCOUNT = "123456789012"
ID = "i-0123456789abcdef0"


def test_the_function_takes_its_settings_from_the_plan_by_amazon_aws_lambdas_names():
    plan = plan_for(
        [ID],
        function={"runtime": "python3.12", "timeout": 45, "memory_mb": 256, "restart_together": True},
    )
    rendered = render.render_region(plan, "eu-west-1", ACCOUNT, "aws", code_sha256="abc=")
    function = rendered["function"]
    assert (function["runtime"], function["timeout"], function["memory_size"]) == ("python3.12", 45, 256)
    assert function["role"] == f"arn:aws:iam::{ACCOUNT}:role/{plan['regions'][0]['role']}"
    assert function["environment_variables"] == environment.function_environment(plan)
    assert (function["tags"], function["code_sha256"], function["vpc_id"]) == (plan["tags"], "abc=", None)


def test_the_region_carries_its_policies_and_scope_as_the_policy_module_builds_them():
    plan = plan_for([ID])
    rendered = render.render_region(plan, "eu-west-1", ACCOUNT, "aws")
    policies, scope = iam_policy.build_policies(plan, ACCOUNT, "aws", "eu-west-1")
    assert [(p["name"], p["document"]) for p in rendered["policies"]] == [
        (p["name"], p["document"]) for p in policies
    ]
    assert rendered["scope"] == scope == "instances"


@pytest.mark.parametrize(("together", "reserved"), [(True, 1), (False, UNRESERVED)])
def test_restarting_together_reserves_one_container_and_otherwise_none(together, reserved):
    plan = plan_for([ID], function={"restart_together": together})
    rendered = render.render_region(plan, "eu-west-1", ACCOUNT, "aws")
    assert rendered["invoke_config"]["reserved_concurrency"] == reserved


def test_the_rules_invoke_the_unqualified_function_through_one_statement_for_the_deployments_names():
    rendered = render.render_region(plan_for([ID]), "eu-west-1", ACCOUNT, "aws")
    assert rendered["function_arn"] == f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:EC2Protect"
    assert rendered["statement"]["source_arn"] == f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/EC2Protect.*"
