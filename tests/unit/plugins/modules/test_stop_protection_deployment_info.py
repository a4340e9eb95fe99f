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
    # keep (and stale with it) is deprecated: the role compares the rules itself.
    assert any("keep" in str(item) and "2.0.0" in str(item) for item in result.get("deprecations", [])), (
        result
    )
    assert result["foreign"] == [
        "log group /aws/lambda/EC2Protect in eu-west-1: it has no tag ManagedBy=guardrails.ec2"
    ]


def test_looks_up_the_instances_and_warns_only_about_those_joining(run_module):
    """The read also looks the listed instances up; the terminate warning (one attribute read
    each) is for instances that no rule names yet, not for every instance on every rerun."""
    from ansible_collections.guardrails.ec2.plugins.module_utils import naming, patterns

    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        protected, joining = [
            i["InstanceId"]
            for i in ec2.run_instances(
                ImageId="ami-12345678", MinCount=2, MaxCount=2, InstanceInitiatedShutdownBehavior="terminate"
            )["Instances"]
        ]
        calm = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ec2.create_tags(Resources=[joining], Tags=[{"Key": "aws:autoscaling:groupName", "Value": "web"}])
        gone = "i-0123456789abcdef0"
        boto3.client("events", region_name="eu-west-1").put_rule(
            Name=naming.rule_name("EC2Protect", 1),
            EventPattern=patterns.state_change_pattern([protected]),
            Description="guardrails.ec2 stop protection: 1 instances",
        )
        args = {"name": "EC2Protect", "region": "eu-west-1", "instance_ids": [protected, joining, calm, gone]}
        quiet = run_module(m, args)
        warned = run_module(m, {**args, "warn_shutdown_terminate": True, "warn_managed": True})
    assert quiet["instances"]["missing"] == [gone]
    assert quiet["instances"]["states"] == dict.fromkeys([protected, joining, calm], "running")
    assert quiet["instances"]["shutdown_terminates"] == []
    assert not quiet.get("warnings")
    assert warned["instances"]["shutdown_terminates"] == [joining]
    assert warned["instances"]["auto_scaling_groups"] == {joining: "web"}
    assert len(warned["warnings"]) == 2
    assert all(joining in warning and protected not in warning for warning in warned["warnings"])
