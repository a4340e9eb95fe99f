"""module_utils/drift.py: pure steps of the read-once rollout (the contract tests against the
amazon.aws modules are in test_drift_contract.py)."""

import json

import pytest

from ansible_collections.guardrails.ec2.plugins.module_utils import drift

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
DESIRED = {
    "statement": {
        "statement_id": "guardrails-ec2-rules",
        "source_arn": "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*",
    },
    "function_arn": FUNCTION,
}


def legacy_statement(sid):
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": FUNCTION,
        "Condition": {"ArnLike": {"AWS:SourceArn": f"arn:aws:events:eu-west-1:123456789012:rule/{sid}"}},
    }


def policy_of(sids):
    """The function policy as read_function_policy returns it, for statements ``sids``."""
    statements = [legacy_statement(sid) for sid in sids]
    text = json.dumps(
        {"Version": "2012-10-17", "Id": "default", "Statement": statements}, separators=(",", ":")
    )
    return {
        "statement": None,
        "size": len(text),
        "statements": [
            {"sid": s["Sid"], "size": len(json.dumps(s, separators=(",", ":")))} for s in statements
        ],
    }


def test_nothing_is_removed_when_the_statement_fits_or_is_in_place():
    small = policy_of(["EC2Protect-1", "EC2Protect-sweep"])
    assert drift.statements_to_make_room("EC2Protect", small, DESIRED) == []
    assert (
        drift.statements_to_make_room("EC2Protect", dict(small, statement={"Sid": "x"}), DESIRED, limit=1)
        == []
    )
    assert drift.statements_to_make_room("EC2Protect", None, DESIRED) == []


@pytest.mark.parametrize("shards", [60, 75])
def test_near_the_quota_the_fewest_old_statements_go_sweep_and_attribution_first(shards):
    sids = [f"EC2Protect-{index}" for index in range(1, shards + 1)] + [
        "EC2Protect-attribution",
        "EC2Protect-sweep",
    ]
    policy = policy_of(sids)
    sizes = {s["sid"]: s["size"] + 1 for s in policy["statements"]}
    new = len(json.dumps(drift.invoke_statement(DESIRED), separators=(",", ":"))) + 1

    def fits(chosen, limit):
        return policy["size"] + new - sum(sizes[sid] for sid in chosen) <= limit

    # Within 100 bytes of the quota: one old statement makes room, a non-shard one.
    near = policy["size"] + 100
    assert not fits([], near)
    assert drift.statements_to_make_room("EC2Protect", policy, DESIRED, limit=near) == [
        "EC2Protect-attribution"
    ]
    # Further over: both non-shard statements, then shards from the last, no more than needed.
    over = policy["size"] - 700
    chosen = drift.statements_to_make_room("EC2Protect", policy, DESIRED, limit=over)
    expected = ["EC2Protect-attribution", "EC2Protect-sweep"] + [
        f"EC2Protect-{i}" for i in range(shards, 0, -1)
    ]
    assert chosen == expected[: len(chosen)]
    assert fits(chosen, over) and not fits(chosen[:-1], over)


def test_statements_of_this_release_or_another_deployment_are_never_chosen():
    policy = policy_of(["EC2Protect.1", "Other-1", "EC2Protect-2-1"])
    assert drift.statements_to_make_room("EC2Protect", policy, DESIRED, limit=policy["size"]) == []


def test_a_tamper_rule_without_its_topic_target_drifts():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
    topic = "arn:aws:sns:eu-west-1:123456789012:alerts"
    planned = {"name": "EC2Protect.tamper", "pattern": "{}", "description": "d", "topic_arn": topic}
    deployed = {
        "name": "EC2Protect.tamper",
        "event_pattern": "{}",
        "description": "d",
        "state": "ENABLED",
        "targets": [{"id": "notify", "arn": topic}, {"id": "EC2Protect", "arn": arn}],
    }
    assert drift.rule_drift(planned, deployed, "EC2Protect", arn) == []
    deployed["targets"] = deployed["targets"][1:]
    (difference,) = drift.rule_drift(planned, deployed, "EC2Protect", arn)
    assert difference.startswith("targets:")
    (written,) = drift.rules_to_write([planned], [deployed], "EC2Protect", arn)
    assert written["targets"] == [{"id": "EC2Protect", "arn": arn}, {"id": "notify", "arn": topic}]
