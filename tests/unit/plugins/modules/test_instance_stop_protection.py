"""guardrails.ec2.instance_stop_protection: DisableApiStop on, off, remembered (moto)."""

import boto3
import pytest
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.modules import instance_stop_protection as m

REGION = "eu-west-1"
MARKER = "guardrails.ec2/EC2Protect/disable-api-stop"


@pytest.fixture
def ec2():
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def run_instances(ec2, count, **extra):
    reply = ec2.run_instances(ImageId="ami-12345678", MinCount=count, MaxCount=count, **extra)
    return [instance["InstanceId"] for instance in reply["Instances"]]


def protected(ec2, instance_id):
    return ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiStop")[
        "DisableApiStop"
    ]["Value"]


def marked(ec2, instance_id):
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return MARKER in {tag["Key"] for tag in reservation["Instances"][0].get("Tags", [])}


def args(**extra):
    return {"region": REGION, "marker_tag_key": MARKER} | extra


def test_on_for_the_listed_off_only_where_it_was_set_here(ec2, run_module):
    mine, theirs = run_instances(ec2, 1)[0], run_instances(ec2, 1, DisableApiStop=True)[0]

    result = run_module(m, args(instance_ids=[mine, theirs]))
    assert (result["changed"], result["turned_on"], result["turned_off"]) == (True, [mine], [])
    assert result["diff"] == {"before": {mine: False}, "after": {mine: True}}
    assert (protected(ec2, mine), marked(ec2, mine), marked(ec2, theirs)) == (True, True, False)
    # Idempotent.
    assert run_module(m, args(instance_ids=[mine, theirs]))["changed"] is False

    # No longer listed: off again where it was set here, left on where it was not.
    result = run_module(m, args(instance_ids=[]))
    assert (result["turned_on"], result["turned_off"]) == ([], [mine])
    assert (protected(ec2, mine), marked(ec2, mine), protected(ec2, theirs)) == (False, False, True)


def test_absent_turns_off_the_marked_instances_only(ec2, run_module):
    mine, theirs = run_instances(ec2, 1)[0], run_instances(ec2, 1, DisableApiStop=True)[0]
    run_module(m, args(instance_ids=[mine, theirs]))
    result = run_module(m, args(state="absent"))
    assert (result["changed"], result["turned_off"]) == (True, [mine])
    assert (protected(ec2, mine), protected(ec2, theirs)) == (False, True)
    assert run_module(m, args(state="absent"))["changed"] is False


def test_check_mode_changes_nothing_and_says_what_it_would(ec2, run_module):
    (instance_id,) = run_instances(ec2, 1)
    result = run_module(m, args(instance_ids=[instance_id], _ansible_check_mode=True))
    assert (result["changed"], result["turned_on"]) == (True, [instance_id])
    assert (protected(ec2, instance_id), marked(ec2, instance_id)) == (False, False)


def test_protected_instances_refuse_a_stop(ec2, run_module):
    (instance_id,) = run_instances(ec2, 1)
    run_module(m, args(instance_ids=[instance_id]))
    with pytest.raises(ec2.exceptions.ClientError, match="OperationNotPermitted"):
        ec2.stop_instances(InstanceIds=[instance_id])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"instance_ids": ["web-1"]}, "not instance ids: web-1"),
        ({"marker_tag_key": "aws:mine"}, "marker_tag_key must be 1-128 characters and not start with 'aws:'"),
    ],
)
def test_bad_input_is_named_before_any_call(ec2, run_module, extra, message):
    result = run_module(m, args(**extra))
    assert result["failed"] is True and message in result["msg"]


def test_a_missing_instance_fails_before_any_change(ec2, run_module):
    (instance_id,) = run_instances(ec2, 1)
    result = run_module(m, args(instance_ids=[instance_id, "i-0123456789abcdef0"]))
    assert result["failed"] is True
    assert protected(ec2, instance_id) is False
