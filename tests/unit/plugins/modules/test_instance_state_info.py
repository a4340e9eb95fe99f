"""guardrails.ec2.instance_state_info against moto: states in batches, unknown ids reported."""

import boto3
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.modules import instance_state_info


def test_states_and_missing_over_several_batches(run_module):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        ids = [
            i["InstanceId"]
            for i in ec2.run_instances(ImageId="ami-12345678", MinCount=250, MaxCount=250)["Instances"]
        ]
        ec2.stop_instances(InstanceIds=ids[:1])
        ec2.terminate_instances(InstanceIds=ids[1:2])
        unknown = "i-0123456789abcdef0"
        result = run_module(
            instance_state_info, {"instance_ids": [*ids, unknown, ids[0]], "region": "eu-west-1"}
        )
    assert result["changed"] is False
    assert result["missing"] == [unknown]
    assert len(result["states"]) == 250
    assert result["states"][ids[0]] == "stopped"
    assert result["states"][ids[1]] == "terminated"
    assert result["states"][ids[2]] == "running"


def test_auto_scaling_members_are_reported_and_warned_about(run_module):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        member, plain = [
            i["InstanceId"]
            for i in ec2.run_instances(ImageId="ami-12345678", MinCount=2, MaxCount=2)["Instances"]
        ]
        ec2.create_tags(Resources=[member], Tags=[{"Key": "aws:autoscaling:groupName", "Value": "web"}])
        quiet = run_module(instance_state_info, {"instance_ids": [member, plain], "region": "eu-west-1"})
        warned = run_module(
            instance_state_info,
            {"instance_ids": [member, plain], "region": "eu-west-1", "warn_managed": True},
        )
    assert quiet["auto_scaling_groups"] == warned["auto_scaling_groups"] == {member: "web"}
    assert not quiet.get("warnings")
    (warning,) = warned["warnings"]
    assert member in warning and "'web'" in warning and plain not in warning


def test_instances_whose_shutdown_terminates_them_are_warned_about(run_module):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        doomed, plain, gone = (
            ec2.run_instances(
                ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceInitiatedShutdownBehavior=behavior
            )["Instances"][0]["InstanceId"]
            for behavior in ("terminate", "stop", "terminate")
        )
        ec2.terminate_instances(InstanceIds=[gone])
        args = {"instance_ids": [doomed, plain, gone], "region": "eu-west-1"}
        quiet = run_module(instance_state_info, args)
        warned = run_module(instance_state_info, {**args, "warn_shutdown_terminate": True})
    assert quiet["shutdown_terminates"] == []
    assert not quiet.get("warnings")
    assert warned["shutdown_terminates"] == [doomed]
    (warning,) = warned["warnings"]
    assert warning.startswith(f"{doomed} has InstanceInitiatedShutdownBehavior terminate")
