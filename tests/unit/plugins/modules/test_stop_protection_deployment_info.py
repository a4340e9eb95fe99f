"""guardrails.ec2.stop_protection_deployment_info against moto: what exists, whose, and stale rules."""

import json

import boto3
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.modules import stop_protection_deployment_info as m


def test_reports_foreign_resources_and_stale_rules(run_module):
    with mock_aws():
        events = boto3.client("events", region_name="eu-west-1")
        for rule, description in (
            ("EC2Protect-1", "guardrails.ec2 stop protection: 2 instances"),
            ("EC2Protect-2", "guardrails.ec2 stop protection: 1 instances"),
            ("EC2Protect-attention", "not ours and not a rule of the deployment"),
        ):
            events.put_rule(
                Name=rule, EventPattern=json.dumps({"source": ["aws.ec2"]}), Description=description
            )
        boto3.client("logs", region_name="eu-west-1").create_log_group(logGroupName="/aws/lambda/EC2Protect")
        result = run_module(m, {"name": "EC2Protect", "keep": ["EC2Protect-1"], "region": "eu-west-1"})
    assert result["changed"] is False
    assert result["account"] == "123456789012"
    assert result["function"] is None
    assert [rule["name"] for rule in result["rules"]] == ["EC2Protect-1", "EC2Protect-2"]
    assert [rule["name"] for rule in result["stale"]] == ["EC2Protect-2"]
    assert result["foreign"] == [
        "log group /aws/lambda/EC2Protect in eu-west-1: it has no tag ManagedBy=guardrails.ec2"
    ]
