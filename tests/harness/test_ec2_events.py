"""The EC2 provider publishes state-change events like AWS, and the fault switch works."""

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError
from conftest import instance_states, settle, state_pattern, unique, wait_for

ALL_STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")


@pytest.fixture
def event_log(aws):
    """An SQS queue receiving every state-change event of the given instances, via a rule."""
    sqs, events = aws("sqs"), aws("events")
    made = []

    def capture(instance_ids):
        name = unique("harness-events")
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name=name, EventPattern=state_pattern(instance_ids, ALL_STATES))
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
        made.append((name, queue_url))
        return queue_url

    yield capture
    for name, queue_url in made:
        events.remove_targets(Rule=name, Ids=["queue"])
        events.delete_rule(Name=name)
        sqs.delete_queue(QueueUrl=queue_url)


def drain(sqs, queue_url, expected: int, timeout: float = 15.0):
    """Receive until `expected` events arrived (or timeout); return (instance, state) pairs."""
    received = []

    def enough():
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            event = json.loads(message["Body"])
            received.append((event["detail"]["instance-id"], event["detail"]["state"], event))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(received) >= expected

    wait_for(enough, timeout=timeout, interval=0)
    return received


def test_stop_publishes_stopping_then_stopped(aws, instances, event_log):
    ec2, sqs = aws("ec2"), aws("sqs")
    (instance_id,) = instances(1)
    queue_url = event_log([instance_id])

    ec2.stop_instances(InstanceIds=[instance_id])

    received = drain(sqs, queue_url, expected=2)
    assert [(iid, state) for iid, state, _ in received] == [
        (instance_id, "stopping"),
        (instance_id, "stopped"),
    ]
    event = received[-1][2]
    assert event["source"] == "aws.ec2"
    assert event["detail-type"] == "EC2 Instance State-change Notification"
    assert event["region"] == "us-east-1"
    assert event["resources"] == [f"arn:aws:ec2:us-east-1:{event['account']}:instance/{instance_id}"]


def test_start_and_terminate_publish_their_transitions(aws, instances, event_log):
    ec2, sqs = aws("ec2"), aws("sqs")
    (instance_id,) = instances(1)
    ec2.stop_instances(InstanceIds=[instance_id])
    settle()
    queue_url = event_log([instance_id])

    ec2.start_instances(InstanceIds=[instance_id])
    assert [s for _, s, _ in drain(sqs, queue_url, 2)] == ["pending", "running"]

    ec2.terminate_instances(InstanceIds=[instance_id])
    assert [s for _, s, _ in drain(sqs, queue_url, 2)] == ["shutting-down", "terminated"]


def test_no_event_when_the_state_does_not_change(aws, instances, event_log):
    ec2, sqs = aws("ec2"), aws("sqs")
    (instance_id,) = instances(1)
    queue_url = event_log([instance_id])

    ec2.start_instances(InstanceIds=[instance_id])  # already running

    assert drain(sqs, queue_url, expected=1, timeout=3) == []


def test_os_initiated_shutdown_carries_its_reason(aws, endpoint, instances, event_log):
    ec2, sqs = aws("ec2"), aws("sqs")
    (instance_id,) = instances(1)
    queue_url = event_log([instance_id])
    account = aws("sts").get_caller_identity()["Account"]

    request = urllib.request.Request(
        f"{endpoint}/_guardrails/shutdown",
        data=json.dumps(
            {"instance_ids": [instance_id], "region": "us-east-1", "account_id": account}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert json.load(response) == {"stopped": [instance_id]}

    assert [s for _, s, _ in drain(sqs, queue_url, 2)] == ["stopping", "stopped"]
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    reason = reply["Reservations"][0]["Instances"][0]["StateReason"]
    assert reason["Code"] == "Client.InstanceInitiatedShutdown"


class TestFaultSwitch:
    def test_start_fails_with_the_chosen_code_for_the_chosen_instance(self, aws, faults, instances):
        ec2 = aws("ec2")
        faulty, healthy = instances(2)
        ec2.stop_instances(InstanceIds=[faulty, healthy])
        faults.arm("StartInstances", [faulty], "InsufficientInstanceCapacity")

        with pytest.raises(ClientError) as error:
            ec2.start_instances(InstanceIds=[faulty])
        assert error.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert instance_states(ec2, [faulty])[faulty] == "stopped"

        ec2.start_instances(InstanceIds=[healthy])
        assert instance_states(ec2, [healthy])[healthy] == "running"

        faults.clear()
        ec2.start_instances(InstanceIds=[faulty])
        assert instance_states(ec2, [faulty])[faulty] == "running"

    def test_counted_fault_clears_itself(self, aws, faults, instances):
        ec2 = aws("ec2", retries=1)  # botocore would otherwise retry the throttling error itself
        (instance_id,) = instances(1)
        ec2.stop_instances(InstanceIds=[instance_id])
        faults.arm("StartInstances", ["*"], "RequestLimitExceeded", count=2)

        codes = []
        for _ in range(3):
            try:
                ec2.start_instances(InstanceIds=[instance_id])
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        assert codes == ["RequestLimitExceeded", "RequestLimitExceeded", "ok"]
        assert faults.list() == []

    def test_off_by_default_and_rejects_bad_input(self, faults):
        assert faults.list() == []
        status, body = faults.post(
            {"operation": "RebootInstances", "instance_ids": ["i-1"], "error_code": "X"}
        )
        assert status == 400
        assert "RebootInstances" in body["error"]
