"""module_utils/reads.py: reads that protect and the audit share (against moto)."""

import boto3
import pytest
from fakes import Paged
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import reads

REGION = "eu-west-1"


@pytest.fixture
def clients(retrying):
    with mock_aws():
        yield {service: retrying(boto3.client(service, region_name=REGION)) for service in ("sns", "sqs")}


def test_missing_targets_names_the_topic_and_queue_that_do_not_exist(clients):
    topic = clients["sns"].create_topic(Name="ops")["TopicArn"]
    clients["sqs"].create_queue(QueueName="failures")
    account = topic.split(":")[4]
    queue = f"arn:aws:sqs:{REGION}:{account}:failures"
    gone_topic = f"arn:aws:sns:{REGION}:{account}:ops-typo"
    gone_queue = f"arn:aws:sqs:{REGION}:{account}:no-such-queue"
    assert reads.missing_targets(clients.__getitem__, [topic, queue]) == []
    assert reads.missing_targets(clients.__getitem__, [topic, gone_topic, queue, gone_queue]) == [
        gone_topic,
        gone_queue,
    ]


def test_describe_filtered_batches_by_200_and_follows_next_token():
    calls = []

    class Volumes(Paged):
        def describe_volumes(self, Filters, NextToken=None):
            calls.append((len(Filters[0]["Values"]), NextToken))
            page = [{"VolumeId": f"{len(Filters[0]['Values'])}-{NextToken}"}]
            return {"Volumes": page, **({"NextToken": "second"} if NextToken is None else {})}

    replies = list(
        reads.describe_filtered(Volumes(), "describe_volumes", "volume-id", [f"vol-{n}" for n in range(250)])
    )
    assert calls == [(200, None), (200, "second"), (50, None), (50, "second")]
    # One reply per batch, its pages merged.
    assert [[v["VolumeId"] for v in reply["Volumes"]] for reply in replies] == [
        ["200-None", "200-second"],
        ["50-None", "50-second"],
    ]


def test_instance_attributes_reads_stop_protection_and_shutdown_behavior(retrying):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        plain, guarded = (
            ec2.run_instances(
                ImageId="ami-12345678",
                MinCount=1,
                MaxCount=1,
                InstanceInitiatedShutdownBehavior=behavior,
                **extra,
            )["Instances"][0]["InstanceId"]
            for behavior, extra in (("terminate", {}), ("stop", {"DisableApiStop": True}))
        )
        found = reads.instance_attributes(retrying(ec2), [plain, guarded])
    assert found == {
        plain: {"disable_api_stop": False, "shutdown_behavior": "terminate"},
        guarded: {"disable_api_stop": True, "shutdown_behavior": "stop"},
    }


def test_instance_states_describe_in_full_only_a_batch_with_an_unknown_id(retrying):
    """States come from DescribeInstanceStatus (small replies, 100 ids a call); only a batch
    that EC2 refuses for an unknown id is looked up with the filtered DescribeInstances."""
    with mock_aws():
        client = boto3.client("ec2", region_name="eu-west-1")
        ids = [
            i["InstanceId"]
            for i in client.run_instances(ImageId="ami-12345678", MinCount=250, MaxCount=250)["Instances"]
        ]
        client.terminate_instances(InstanceIds=ids[:1])
        calls = []
        client.meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))
        unknown = "i-0123456789abcdef0"
        states = reads.instance_states(retrying(client), [*ids[:150], unknown, *ids[150:]])
    assert set(states) == set(ids)
    assert states[ids[0]] == "terminated" and states[ids[1]] == "running"
    assert calls == [
        "DescribeInstanceStatus",
        "DescribeInstanceStatus",
        "DescribeInstances",
        "DescribeInstanceStatus",
    ]
