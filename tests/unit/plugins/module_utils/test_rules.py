"""module_utils/rules.py: the rules of a deployment, and the other deployments on the bus."""

import json

import boto3
import pytest
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import rules

REGION = "eu-west-1"
DESCRIPTION = "guardrails.ec2 stop protection - 1 instances"


@pytest.fixture
def events(retrying):
    with mock_aws():
        yield retrying(boto3.client("events", region_name=REGION))


def put(events, name, ids=None, description=DESCRIPTION):
    pattern = {
        "source": ["aws.ec2"],
        "detail": {"state": ["stopped"], **({"instance-id": ids} if ids else {})},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), Description=description)


def test_other_deployments_are_named_with_the_instances_they_protect(events):
    put(events, "EC2Protect.1", ["i-0000000000000000a"])
    put(events, "WebProtect.1", ["i-0000000000000000a", "i-0000000000000000b"])
    put(events, "WebProtect.2", ["i-0000000000000000c"])
    events.put_rule(Name="WebProtect.sweep", ScheduleExpression="rate(5 minutes)", Description=DESCRIPTION)
    put(events, "TagProtect.1")  # tag mode: no ids
    put(events, "Lookalike.1", ["i-0000000000000000d"], description="someone else's rule")
    put(events, "Legacy-1", ["i-0000000000000000e"])  # before 1.1: not named here
    assert rules.other_deployments(events, "EC2Protect") == {
        "TagProtect": [],
        "WebProtect": ["i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"],
    }
