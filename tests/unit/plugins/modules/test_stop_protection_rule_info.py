"""guardrails.ec2.stop_protection_rule_info against moto's EventBridge."""

import json

import boto3
import pytest
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.modules import stop_protection_rule_info

PATTERN = json.dumps({"source": ["aws.ec2"]})


@pytest.fixture
def events(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("events", region_name="eu-west-1")
        for name in ["EC2Protect-10", "EC2Protect-2", "EC2Protect-1", "EC2Protect-attribution", "EC2Protect-2-1",
                     "EC2ProtectOther-1", "Unrelated"]:  # fmt: skip
            client.put_rule(Name=name, EventPattern=PATTERN)
        client.put_targets(
            Rule="EC2Protect-1",
            Targets=[
                {"Id": "EC2Protect", "Arn": "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"}
            ],
        )
        yield client


def test_lists_only_our_rules_in_shard_order_and_the_stale_ones(events, run_module):
    result = run_module(
        stop_protection_rule_info, {"name": "EC2Protect", "region": "eu-west-1", "keep": ["EC2Protect-1"]}
    )
    assert result["changed"] is False
    assert [r["name"] for r in result["rules"]] == [
        "EC2Protect-1", "EC2Protect-2", "EC2Protect-10", "EC2Protect-attribution",
    ]  # fmt: skip
    assert [r["name"] for r in result["stale"]] == ["EC2Protect-2", "EC2Protect-10", "EC2Protect-attribution"]
    first = result["rules"][0]
    assert first["targets"] == [
        {"id": "EC2Protect", "arn": "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect", "extra": {}}
    ]
    assert (first["index"], first["kind"], first["state"]) == (1, "state_change", "ENABLED")
    assert result["rules"][-1]["kind"] == "attribution"


def test_another_deployment_is_not_ours(events, run_module):
    result = run_module(stop_protection_rule_info, {"name": "EC2Protect-2", "region": "eu-west-1"})
    assert [r["name"] for r in result["rules"]] == ["EC2Protect-2-1"]
