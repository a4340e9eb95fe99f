"""module_utils/reads.py: reads that protect and the audit share (against moto)."""

import boto3
import pytest
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
