"""module_utils/audit_reads.py: what the audit reads of a deployment (alarms, volumes, settings)."""

import json

import boto3
from fakes import Paged
from moto import mock_aws
from verify_helpers import (
    CMK,
    ID,
    instance,
)

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    audit_reads,
    resource_reads,
)


def test_sample_event_is_a_stopped_state_change():
    event = json.loads(audit_reads.sample_event(ID, "eu-west-1", "123456789012"))
    assert event["detail"] == {"instance-id": ID, "state": "stopped"}
    assert event["detail-type"] == "EC2 Instance State-change Notification"


class VolumeEc2(Paged):
    def __init__(self, volumes):
        self.volumes = volumes
        self.calls = 0

    def describe_volumes(self, aws_retry=False, Filters=()):
        self.calls += 1
        wanted = set(Filters[0]["Values"])
        return {"Volumes": [v for v in self.volumes if v["VolumeId"] in wanted]}


class Kms:
    def __init__(self, keys):
        self.keys = keys
        self.asked = []

    def describe_key(self, aws_retry, KeyId):
        self.asked.append(KeyId)
        return {"KeyMetadata": self.keys[KeyId]}


def with_volumes(*volume_ids):
    inst = instance()
    inst["BlockDeviceMappings"] = [
        {"DeviceName": f"/dev/sd{i}", "Ebs": {"VolumeId": v}} for i, v in enumerate(volume_ids)
    ]
    return inst


def test_volume_keys_reads_each_key_once_and_skips_unencrypted_volumes():
    ec2 = VolumeEc2(
        [
            {"VolumeId": "vol-1", "Encrypted": True, "KmsKeyId": CMK},
            {"VolumeId": "vol-2", "Encrypted": True, "KmsKeyId": CMK},
            {"VolumeId": "vol-3", "Encrypted": False},
        ]
    )
    kms = Kms({CMK: {"Arn": CMK, "KeyManager": "CUSTOMER", "KeyState": "Enabled"}})
    found = audit_reads.volume_keys(ec2, kms, {ID: with_volumes("vol-1", "vol-2", "vol-3")}, [])
    assert [volume["volume_id"] for volume in found[ID]] == ["vol-1", "vol-2"]
    assert kms.asked == [CMK]
    assert ec2.calls == 1


def test_the_audit_reports_both_alarms_and_warns_of_each_in_alarm(retrying):
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        warnings = []
        assert audit_reads.alarm_states(retrying(cloudwatch), "EC2Protect", warnings) == {
            "attention": None,
            "heartbeat": None,
        }
        for kind in ("attention", "heartbeat"):
            cloudwatch.put_metric_alarm(
                AlarmName=f"EC2Protect-{kind}",
                MetricName=f"EC2Protect-{kind}",
                Namespace="guardrails.ec2",
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=2,
                Threshold=1.0,
                ComparisonOperator="LessThanThreshold",
            )
        cloudwatch.set_alarm_state(
            AlarmName="EC2Protect-heartbeat", StateValue="ALARM", StateReason="no sweep"
        )
        cloudwatch.set_alarm_state(AlarmName="EC2Protect-attention", StateValue="OK", StateReason="quiet")
        states = audit_reads.alarm_states(retrying(cloudwatch), "EC2Protect", warnings)
    assert (states["attention"]["state"], states["heartbeat"]["state"]) == ("OK", "ALARM")
    assert states["heartbeat"]["reason"] == "no sweep"
    (warning,) = warnings
    assert warning.startswith(
        "Alarm EC2Protect-heartbeat is in ALARM: no sweep has completed for about three sweep intervals"
    )


def test_the_audit_reads_the_function_and_its_settings_with_protects_reader(monkeypatch, retrying):
    """read_deployment reads the function (GetFunction, with its tags) and the asynchronous
    settings as protect does (snake_case), checks that their failure destination exists, and
    takes an unreserved function as not set; it reads every statement of the function's
    policy with protect's reader of that policy, and the role's policies with the reader's."""
    import io
    import zipfile

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    queue = "arn:aws:sqs:eu-west-1:123456789012:gone"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", "def handler(event, context):\n    return None\n")
    with mock_aws():
        clients = {
            service: retrying(boto3.client(service, region_name="eu-west-1"))
            for service in ("lambda", "events", "iam", "sns", "sqs")
        }
        role = clients["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        clients["lambda"].create_function(
            FunctionName="EC2Protect",
            Runtime="python3.13",
            Role=role,
            Handler="stop_protection_handler.handler",
            Code={"ZipFile": buffer.getvalue()},
        )
        clients["lambda"].put_function_event_invoke_config(
            FunctionName="EC2Protect",
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": queue}},
        )
        rule = "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.1"
        clients["lambda"].add_permission(
            FunctionName="EC2Protect",
            StatementId="EC2Protect.1",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule,
        )
        read = []
        reader = audit_reads.read_function_policy
        monkeypatch.setattr(
            audit_reads,
            "read_function_policy",
            lambda *args, **kwargs: read.append(kwargs) or reader(*args, **kwargs),
        )
        found = audit_reads.read_deployment(clients, "EC2Protect", "eu-west-1", "123456789012", "aws")
    assert read == [{"document": True}]
    assert found["function"]["Tags"] == {}
    assert found["start_permission"].role == "r"
    assert audit_reads.role_policy_documents is resource_reads.role_policy_documents
    assert [source for source in found["policy_sources"] if rule in str(source)], found["policy_sources"]
    assert found["invoke_config"]["maximum_retry_attempts"] == 1
    assert found["invoke_config"]["on_failure_destination_arn"] == queue
    assert "reserved_concurrency" not in found["invoke_config"]
    assert (found["reserved_concurrency"], found["reserved_concurrency_read"]) == (None, True)
    assert found["missing_targets"] == [queue]
