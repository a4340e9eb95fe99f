"""The EC2 provider publishes state-change events like AWS, and the fault switch works."""

import importlib.util
import json
import time

import pytest
from botocore.exceptions import ClientError
from conftest import ROOT, instance_states, settle, shutdown_from_inside, state_pattern, unique, wait_for

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


def drain(sqs, queue_url, expected: int, timeout: float = 15.0, ordered: bool = True):
    """Receive until `expected` events arrived (or timeout); return (instance, state, event)
    triples in the order the events' times give (``in_order``), or as they arrived."""
    received = []

    def enough():
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            event = json.loads(message["Body"])
            received.append((event["detail"]["instance-id"], event["detail"]["state"], event))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(received) >= expected

    wait_for(enough, timeout=timeout, interval=0)
    return in_order(received) if ordered else received


def in_order(received):
    """Events by their time, as AWS dates them (whole seconds), and within one second by the
    lifecycle (stopping before stopped). Neither EventBridge nor a standard queue keeps the
    order in which events were sent; the order is in the events themselves."""
    return sorted(received, key=lambda item: (item[2]["time"], ALL_STATES.index(item[1])))


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


def describe(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def states_of(received):
    return [state for _, state, _ in received]


def test_os_initiated_shutdown_carries_its_reason(aws, endpoint, instances, event_log):
    ec2, sqs = aws("ec2"), aws("sqs")
    (instance_id,) = instances(1)
    queue_url = event_log([instance_id])
    account = aws("sts").get_caller_identity()["Account"]

    assert shutdown_from_inside(endpoint, [instance_id], account=account) == (200, {"stopped": [instance_id]})

    assert states_of(drain(sqs, queue_url, 2)) == ["stopping", "stopped"]
    assert describe(ec2, instance_id)["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"


def test_launch_publishes_pending_then_running(aws):
    ec2, sqs, events = aws("ec2"), aws("sqs"), aws("events")
    name = unique("harness-launch")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # Launch events can only be caught by a rule that does not know the id yet.
    events.put_rule(
        Name=name,
        EventPattern=json.dumps(
            {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]}
        ),
    )
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    try:
        instance_id = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        received = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len([r for r in received if r[0] == instance_id]) < 2:
            received.extend(drain(sqs, queue_url, expected=1, timeout=2))
        assert [state for iid, state, _ in in_order(received) if iid == instance_id] == ["pending", "running"]
    finally:
        events.remove_targets(Rule=name, Ids=["queue"])
        events.delete_rule(Name=name)
        sqs.delete_queue(QueueUrl=queue_url)
        ec2.terminate_instances(InstanceIds=[instance_id])


def test_user_stop_and_hibernate_carry_their_reasons(aws):
    ec2 = aws("ec2")
    plain = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    hibernating = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, HibernationOptions={"Configured": True}
    )["Instances"][0]["InstanceId"]
    try:
        with pytest.raises(ClientError) as error:
            ec2.stop_instances(InstanceIds=[plain], Hibernate=True)
        assert error.value.response["Error"]["Code"] == "UnsupportedHibernationConfiguration"
        ec2.stop_instances(InstanceIds=[plain])
        ec2.stop_instances(InstanceIds=[hibernating], Hibernate=True)
        assert describe(ec2, plain)["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
        assert describe(ec2, hibernating)["StateReason"]["Code"] == "Client.UserInitiatedHibernate"
    finally:
        ec2.terminate_instances(InstanceIds=[plain, hibernating])


def test_spot_interruption_and_auto_scaling_membership(aws, endpoint):
    ec2 = aws("ec2")
    reply = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "aws:autoscaling:groupName", "Value": "web"}]}
        ],
    )
    spot = reply["Instances"][0]["InstanceId"]
    on_demand = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    try:
        instance = describe(ec2, spot)
        assert instance["InstanceLifecycle"] == "spot"
        assert {"Key": "aws:autoscaling:groupName", "Value": "web"} in instance["Tags"]
        status, body = shutdown_from_inside(endpoint, [on_demand], "Server.SpotInstanceShutdown")
        assert status == 400 and on_demand in body["error"]
        assert shutdown_from_inside(endpoint, [spot], "Server.SpotInstanceShutdown") == (
            200,
            {"stopped": [spot]},
        )
        stopped = describe(ec2, spot)
        assert (stopped["State"]["Name"], stopped["StateReason"]["Code"]) == (
            "stopped",
            "Server.SpotInstanceShutdown",
        )
    finally:
        ec2.terminate_instances(InstanceIds=[spot, on_demand])


class TestEc2Behaviours:
    def test_stopping_lasts_and_start_is_refused_meanwhile(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        queue_url = event_log([instance_id])
        behaviours.arm("stopping-dwell", [instance_id], seconds=2)

        began = time.monotonic()
        reply = ec2.stop_instances(InstanceIds=[instance_id])
        assert reply["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
        assert instance_states(ec2, [instance_id])[instance_id] == "stopping"
        with pytest.raises(ClientError) as error:
            ec2.start_instances(InstanceIds=[instance_id])
        assert error.value.response["Error"]["Code"] == "IncorrectInstanceState"

        received = drain(sqs, queue_url, 2)
        assert states_of(received) == ["stopping", "stopped"]
        assert time.monotonic() - began >= 2
        assert instance_states(ec2, [instance_id])[instance_id] == "stopped"
        ec2.start_instances(InstanceIds=[instance_id])

    def test_start_falls_back_to_stopped_with_its_reason(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        ec2.stop_instances(InstanceIds=[instance_id])
        settle()
        queue_url = event_log([instance_id])
        behaviours.arm("start-falls-back", [instance_id], reason_code="Client.InternalError", count=1)

        reply = ec2.start_instances(InstanceIds=[instance_id])
        assert reply["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
        assert states_of(drain(sqs, queue_url, 2)) == ["pending", "stopped"]
        instance = describe(ec2, instance_id)
        assert (instance["State"]["Name"], instance["StateReason"]["Code"]) == (
            "stopped",
            "Client.InternalError",
        )

        ec2.start_instances(InstanceIds=[instance_id])  # the behaviour was armed once
        assert states_of(drain(sqs, queue_url, 2)) == ["pending", "running"]
        assert behaviours.list() == []

    def test_instance_powers_off_after_every_boot_until_cleared(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        ec2.stop_instances(InstanceIds=[instance_id])
        settle()
        queue_url = event_log([instance_id])
        behaviours.arm("stops-after-boot", [instance_id], seconds=1)

        for _ in range(2):
            ec2.start_instances(InstanceIds=[instance_id])
            assert states_of(drain(sqs, queue_url, 4)) == ["pending", "running", "stopping", "stopped"]
            assert describe(ec2, instance_id)["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"

        behaviours.clear()
        ec2.start_instances(InstanceIds=[instance_id])
        assert states_of(drain(sqs, queue_url, 2)) == ["pending", "running"]
        time.sleep(2)
        assert instance_states(ec2, [instance_id])[instance_id] == "running"

    def test_rejects_bad_input(self, behaviours):
        for body, wanted in [
            ({"kind": "teleport", "instance_ids": ["i-1"]}, "teleport"),
            ({"kind": "stopping-dwell", "instance_ids": ["i-1"], "seconds": 0}, "seconds"),
            ({"kind": "start-falls-back", "instance_ids": ["i-1"], "reason_code": "Nope"}, "Nope"),
            ({"kind": "drop-events", "instance_ids": [], "count": 1}, "instance_ids"),
            ({"kind": "drop-events", "instance_ids": ["i-1"], "states": ["asleep"]}, "asleep"),
        ]:
            status, reply = behaviours.post(body)
            assert status == 400 and wanted in reply["error"], (body, reply)
        assert behaviours.list() == []


class TestEventBridgeDelivery:
    def test_disabled_rule_delivers_nothing(self, aws, instances, event_log):
        ec2, sqs, events = aws("ec2"), aws("sqs"), aws("events")
        (instance_id,) = instances(1)
        queue_url = event_log([instance_id])
        rule = next(
            r["Name"]
            for r in events.list_rules(NamePrefix="harness-events")["Rules"]
            if instance_id in (r.get("EventPattern") or "")
        )
        events.disable_rule(Name=rule)

        ec2.stop_instances(InstanceIds=[instance_id])
        assert drain(sqs, queue_url, expected=1, timeout=3) == []

        events.enable_rule(Name=rule)
        ec2.start_instances(InstanceIds=[instance_id])
        assert states_of(drain(sqs, queue_url, 2)) == ["pending", "running"]

    def test_dropped_events_are_lost(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        queue_url = event_log([instance_id])
        behaviours.arm("drop-events", [instance_id], states=["stopped"], count=1)

        ec2.stop_instances(InstanceIds=[instance_id])
        assert states_of(drain(sqs, queue_url, expected=2, timeout=3)) == ["stopping"]
        ec2.start_instances(InstanceIds=[instance_id])
        settle()
        ec2.stop_instances(InstanceIds=[instance_id])
        assert states_of(drain(sqs, queue_url, 4)) == ["pending", "running", "stopping", "stopped"]

    def test_duplicated_events_arrive_twice(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        queue_url = event_log([instance_id])
        behaviours.arm("duplicate-events", [instance_id], states=["stopped"], count=1)

        ec2.stop_instances(InstanceIds=[instance_id])
        received = drain(sqs, queue_url, 3)
        assert states_of(received) == ["stopping", "stopped", "stopped"]
        assert len({event["id"] for _, _, event in received}) == 3  # separate deliveries, as AWS retries are

    def test_reordered_events_arrive_out_of_order(self, aws, instances, event_log, behaviours):
        ec2, sqs = aws("ec2"), aws("sqs")
        (instance_id,) = instances(1)
        queue_url = event_log([instance_id])
        behaviours.arm("reorder-events", [instance_id], states=["stopping"], count=1)

        ec2.stop_instances(InstanceIds=[instance_id])
        # As they arrive: the held "stopping" event comes after "stopped".
        assert states_of(drain(sqs, queue_url, 2, ordered=False)) == ["stopped", "stopping"]


def aws_state_change_event(
    instance_id, state="stopped", detail_type="EC2 Instance State-change Notification"
):
    """An event as AWS documents it for EC2 state changes."""
    return json.dumps(
        {
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": detail_type,
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2026-11-27T21:29:54Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": state},
        }
    )


@pytest.mark.parametrize(
    ("listed", "event", "matches"),
    [
        (["i-0123456789abcdef0"], ("i-0123456789abcdef0",), True),
        (["i-0123456789abcdef0", "i-0fedcba9876543210"], ("i-0fedcba9876543210",), True),
        (["i-0123456789abcdef0"], ("i-0aaaaaaaaaaaaaaaa",), False),
        (["i-0123456789abcdef0"], ("i-0123456789abcdef0", "stopping"), False),
        (["i-0123456789abcdef0"], ("i-0123456789abcdef0", "running"), False),
        (["i-0123456789abcdef0"], ("i-0123456789abcdef0", "stopped", "AWS API Call via CloudTrail"), False),
        (None, ("i-0aaaaaaaaaaaaaaaa",), True),  # tag mode: every stopped instance of the region
        (None, ("i-0aaaaaaaaaaaaaaaa", "stopping"), False),
    ],
)
def test_rule_pattern_matches_the_events_aws_sends(aws, listed, event, matches):
    """The role's pattern, judged by EventBridge itself against AWS-shaped events."""
    spec = importlib.util.spec_from_file_location("patterns", ROOT / "plugins/module_utils/patterns.py")
    patterns = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patterns)
    reply = aws("events").test_event_pattern(
        EventPattern=patterns.state_change_pattern(listed), Event=aws_state_change_event(*event)
    )
    assert reply["Result"] is matches


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
