"""The alarms on the function's log (module_utils/alarms.py)."""

import importlib.util
import json
from pathlib import Path

import pytest
from plan_helpers import plan_for

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    alarms,
    render,
)


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
    matcher = load_harness_log_patterns().matcher_for(alarms.ATTENTION_PATTERN)
    assert matcher(alarms.ATTENTION_PATTERN, {"message": json.dumps(line)}) is counted


def test_alarm_counts_what_needs_a_person_and_notifies_the_topic():
    topic = "arn:aws:sns:eu-west-1:123456789012:restarts"
    plan = plan_for(["i-0123456789abcdef0"], notification_topic_arn=topic)
    assert plan["alarm"] == {
        "name": "EC2Protect-attention",
        "log_group": "/aws/lambda/EC2Protect",
        "pattern": alarms.ATTENTION_PATTERN,
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
        "pattern": alarms.HEARTBEAT_PATTERN,
        "namespace": "guardrails.ec2",
        "period": 180,
        "evaluation_periods": 1,
        "actions": [topic],
    }
    alarm = render.desired_state(plan, "eu-west-1", "123456789012", "aws")["heartbeat"]
    # Fewer than one heartbeat in a period, and no data at all counts as none.
    assert (alarm["comparison"], alarm["threshold"], alarm["statistic"]) == (
        "LessThanThreshold",
        1.0,
        "Sum",
    )
    assert (alarm["period"], alarm["evaluation_periods"], alarm["treat_missing_data"]) == (
        180,
        1,
        "breaching",
    )
    assert alarm["alarm_actions"] == [topic]
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
    matcher = load_harness_log_patterns().matcher_for(alarms.HEARTBEAT_PATTERN)
    assert matcher(alarms.HEARTBEAT_PATTERN, {"message": json.dumps(line)}) is counted
