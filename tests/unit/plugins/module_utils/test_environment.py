"""The function's environment (module_utils/environment.py)."""

from plan_helpers import build_policy, plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    environment,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import plan as planning


def test_restart_policy_reaches_the_function_environment():
    plan = planning.build_plan(
        "EC2Protect",
        instances=[("i-0123456789abcdef0", "eu-west-1", "test")],
        bypass_tag_key="StopProtectionBypass",
        restart_policy={"restart_limit": 5, "restart_window_seconds": 600, "restart_hibernated": True},
    )
    env = environment.function_environment(plan)
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


def test_no_sweep_means_no_rule_no_rule_reading_and_no_prefix():
    plan = plan_for(
        ["i-0123456789abcdef0"], restart_policy={"sweep_minutes": 0}, function={"restart_together": False}
    )
    assert [rule["kind"] for rule in plan["regions"][0]["rules"]] == ["instances"]
    document, _scope = build_policy(plan, "123456789012")
    assert not {"ReadOwnRules", "ReadOwnConcurrency"} & {s["Sid"] for s in document["Statement"]}
    env = environment.function_environment(plan)
    assert env["SWEEP_MINUTES"] == "0" and "RULE_NAME_PREFIX" not in env
    assert "RESTART_TOGETHER" not in env  # the function never asks for its concurrency


def test_environment_carries_only_what_the_function_needs():
    plan = plan_for(["i-0123456789abcdef0"])
    env = environment.function_environment(plan)
    restart_settings = {
        key for key in env if key.startswith(("RESTART_", "SKIP_", "SUSPENDED_", "MAX_RETRY", "SWEEP_"))
    }
    assert {key: env[key] for key in set(env) - restart_settings} == {
        "PROTECTION_MODE": "instance_ids",
        "BYPASS_TAG_KEY": "B",
        "RULE_NAME_PREFIX": "EC2Protect.",  # the sweep reads the instance ids from the rules
    }
    tag_plan = planning.build_plan(
        "N",
        mode="tag",
        regions=["eu-west-1"],
        tag_key="K",
        tag_value="V",
        bypass_tag_key="B",
        notification_topic_arn="arn:aws:sns:eu-west-1:123456789012:t",
        attribution=True,
    )
    env = environment.function_environment(tag_plan)
    assert env["PROTECTION_TAG_KEY"] == "K"
    assert env["NOTIFICATION_TOPIC_ARN"] == "arn:aws:sns:eu-west-1:123456789012:t"
    assert env["RULE_NAME_PREFIX"] == "N."
