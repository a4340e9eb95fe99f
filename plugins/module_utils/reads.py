# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Batched AWS reads of instances shared by the modules: states, attributes, tags.

Clients are wrapped with AWSRetry by the module (single calls pass ``aws_retry=True``); paged
calls go through botocore's paginators, retried as a whole by amazon.aws
(``paginated_query_with_retries``). Tests pass stand-ins with the same methods.
"""

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.amazon.aws.plugins.module_utils.botocore import (
    is_boto3_error_code,
    paginated_query_with_retries,
)
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict

# DescribeInstances accepts at most 200 values in one filter.
DESCRIBE_BATCH = 200


ATTRIBUTE_WORKERS = 8
NOT_TERMINATED = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}


def describe_filtered(client, operation, filter_name, values):
    """The replies of an EC2 ``Describe*`` call filtered on ``filter_name``, one per batch of
    200 values, each with every page merged (a filter on ids does not fail the batch on an
    unknown id)."""
    for start in range(0, len(values), DESCRIBE_BATCH):
        batch = values[start : start + DESCRIBE_BATCH]
        yield paginated_query_with_retries(
            client, operation, Filters=[{"Name": filter_name, "Values": batch}]
        )


def _instances(reply):
    return [
        instance
        for reservation in reply.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    ]


def describe_instances(ec2, instance_ids):
    """``{instance_id: instance}`` for those that exist; unknown ids are simply absent."""
    return {
        instance["InstanceId"]: instance
        for reply in describe_filtered(ec2, "describe_instances", "instance-id", instance_ids)
        for instance in _instances(reply)
    }


def tagged_instance_ids(ec2, key, value):
    """Ids of the instances of the client's region that carry tag ``key=value`` and are not
    terminated, sorted."""
    return _live_instance_ids(ec2, {"Name": f"tag:{key}", "Values": [value]})


def _live_instance_ids(ec2, tag_filter):
    """Sorted ids of the region's instances that match ``tag_filter`` and are not terminated."""
    reply = paginated_query_with_retries(ec2, "describe_instances", Filters=[tag_filter, NOT_TERMINATED])
    return sorted({instance["InstanceId"] for instance in _instances(reply)})


def instance_attributes(ec2, instance_ids, stop_protection=True):
    """``{instance_id: {"disable_api_stop": bool, "shutdown_behavior": "stop" | "terminate"}}``.

    AWS's own stop protection (unless ``stop_protection`` is false), and what a shutdown
    inside the OS does. DescribeInstanceAttribute has no batch form and reads one attribute
    per call: one or two calls per instance, in parallel.
    """

    def one(instance_id):
        found = {}
        if stop_protection:
            stop = ec2.describe_instance_attribute(
                aws_retry=True, InstanceId=instance_id, Attribute="disableApiStop"
            )
            found["disable_api_stop"] = bool((stop.get("DisableApiStop") or {}).get("Value"))
        behavior = ec2.describe_instance_attribute(
            aws_retry=True, InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        found["shutdown_behavior"] = (behavior.get("InstanceInitiatedShutdownBehavior") or {}).get(
            "Value", "stop"
        )
        return instance_id, found

    with ThreadPoolExecutor(max_workers=ATTRIBUTE_WORKERS) as pool:
        return dict(pool.map(one, instance_ids))


def tags_of(instance):
    return boto3_tag_list_to_ansible_dict(instance.get("Tags") or [])


AUTO_SCALING_TAG = "aws:autoscaling:groupName"


# DescribeInstanceStatus takes at most 100 instance ids.
STATUS_BATCH = 100


def instance_states(ec2, instance_ids):
    """``{instance_id: state name}`` of the ids EC2 knows; unknown ids are absent.

    DescribeInstanceStatus (every state, 100 ids a call) answers with the state alone, where
    DescribeInstances describes each instance in full: about a tenth of the time per id
    here. A batch that holds an id EC2 does not know fails as a whole; only that batch is
    then looked up with the filtered DescribeInstances, which skips unknown ids.
    """
    states = {}
    for start in range(0, len(instance_ids), STATUS_BATCH):
        batch = instance_ids[start : start + STATUS_BATCH]
        try:
            reply = ec2.describe_instance_status(aws_retry=True, InstanceIds=batch, IncludeAllInstances=True)
        except is_boto3_error_code(("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")):
            states.update(
                {
                    instance_id: found["State"]["Name"]
                    for instance_id, found in describe_instances(ec2, batch).items()
                }
            )
            continue
        states.update(
            {
                found["InstanceId"]: found["InstanceState"]["Name"]
                for found in reply.get("InstanceStatuses", [])
            }
        )
    return states


def tagged_with(ec2, key):
    """``{instance_id: value}`` of the region's instances that carry tag ``key`` (DescribeTags)."""
    reply = paginated_query_with_retries(
        ec2,
        "describe_tags",
        Filters=[{"Name": "key", "Values": [key]}, {"Name": "resource-type", "Values": ["instance"]}],
        PaginationConfig={"PageSize": 1000},
    )
    return {tag["ResourceId"]: tag.get("Value", "") for tag in reply.get("Tags", [])}


def marked_instances(ec2, marker):
    """Ids of the region's instances (not terminated) that carry tag ``marker``."""
    return _live_instance_ids(ec2, {"Name": "tag-key", "Values": [marker]})


def look_up_instances(ec2, instance_ids, shutdown_behavior_of=()):
    """What protect needs to know about the listed instances: ``states`` (id -> state
    name, ``instance_states``), ``missing`` (ids EC2 does not know), ``auto_scaling_groups``
    (id -> group, from the region's Auto Scaling tags) and ``shutdown_terminates``: those of
    ``shutdown_behavior_of`` that exist, are not terminated and whose
    InstanceInitiatedShutdownBehavior is ``terminate`` (one DescribeInstanceAttribute each).
    """
    ids = list(dict.fromkeys(instance_ids))
    states = instance_states(ec2, ids)
    groups = tagged_with(ec2, AUTO_SCALING_TAG) if ids else {}
    live = [
        i
        for i in dict.fromkeys(shutdown_behavior_of)
        if states.get(i) not in (None, "terminated", "shutting-down")
    ]
    behaviors = instance_attributes(ec2, live, stop_protection=False) if live else {}
    return {
        "states": {i: states[i] for i in ids if i in states},
        "missing": [i for i in ids if i not in states],
        "auto_scaling_groups": {i: groups[i] for i in ids if i in states and i in groups},
        "shutdown_terminates": [i for i in live if behaviors[i]["shutdown_behavior"] == "terminate"],
    }


# What SNS and SQS answer for a topic or queue that does not exist.
NOT_FOUND = ("NotFound", "NotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def missing_targets(client_for, arns):
    """Those of ``arns`` (SNS topics, SQS queues) that do not exist: a notice or a failed
    event sent there would be lost. ``client_for(service)`` returns a client of the ARN's
    region. Only "not found" counts: a topic of another account that may not be read is
    not judged here."""
    missing = []
    for arn in arns:
        _arn, _partition, service, _region, account, name = arn.split(":", 5)
        try:
            if service == "sns":
                client_for("sns").get_topic_attributes(TopicArn=arn, aws_retry=True)
            elif service == "sqs":
                client_for("sqs").get_queue_url(
                    QueueName=name, QueueOwnerAWSAccountId=account, aws_retry=True
                )
        except is_boto3_error_code(list(NOT_FOUND)):
            missing.append(arn)
    return missing


def instance_warnings(found, warn_managed=False):
    """The warnings protect gives about ``look_up_instances``' result."""
    warnings = [
        f"{instance_id} has InstanceInitiatedShutdownBehavior terminate: a shutdown inside its OS terminates "
        "it, which no restart can undo (set it to stop)"
        for instance_id in found["shutdown_terminates"]
    ]
    if warn_managed:
        warnings.extend(
            f"{instance_id} is a member of Auto Scaling group {group!r}: the group owns its lifecycle, so "
            "stop protection leaves it stopped (stop_protection_skip_auto_scaling)"
            for instance_id, group in found["auto_scaling_groups"].items()
        )
    return warnings
