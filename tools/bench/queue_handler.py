"""The queue design of a mass stop, built only to measure it beside the shipped one.

EventBridge puts each stop event on an SQS queue; an event source mapping hands the function
batches of up to 1,000 messages, gathered for up to a second; each batch is one read of its
instances (one ``DescribeInstances`` per 200 ids) and the same decisions and batched starts
as the shipped function (``decide_and_start``). Messages of instances that failed are
reported back (``ReportBatchItemFailures``) and come again after the visibility timeout.

``make bench`` (step ``mass``) deploys it over the bench's own deployment for the rows
"queue design"; the role never deploys it (see the role README, "A mass stop"). Any other
event (the sweep, a retried event sent straight to the function) goes to the shipped handler.
"""

import json
import time

import stop_protection_handler as shipped

DESCRIBE_LIMIT = 200


def stopped_instances(ec2, instance_ids):
    """The instances among ``instance_ids`` that are stopped now."""
    found = []
    for start in range(0, len(instance_ids), DESCRIBE_LIMIT):
        filters = [
            {"Name": "instance-id", "Values": instance_ids[start : start + DESCRIBE_LIMIT]},
            {"Name": "instance-state-name", "Values": ["stopped"]},
        ]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                found.extend(reservation.get("Instances", []))
    return found


def handler(event, context):
    if not isinstance(event, dict) or "Records" not in event:
        return shipped.handler(event, context)
    config = shipped.settings()
    messages = {}
    for message in event["Records"]:
        body = json.loads(message.get("body") or "{}")
        detail = body.get("detail") or {}
        if body.get("detail-type") == shipped.STATE_CHANGE and detail.get("state") == "stopped":
            messages.setdefault(detail.get("instance-id"), []).append((message["messageId"], body.get("id")))
    ids = sorted(instance_id for instance_id in messages if str(instance_id).startswith("i-"))
    ec2 = shipped.client("ec2")
    records = []
    for instance in stopped_instances(ec2, ids):
        record = {
            "instance_id": instance["InstanceId"],
            "region": config["region"],
            "trigger": "queue",
            "event_id": messages[instance["InstanceId"]][0][1],
        }
        records.append((instance, record, shipped.decider(record, time.monotonic())))
    actions = shipped.decide_and_start(ec2, records, config, context, time.sleep, "queue")
    # A failed start, or one left undecided when the time ran out, comes back from the queue.
    read = {record["instance_id"] for _instance, record, _decide in records}
    again = [
        message_id
        for instance_id, message_ids in messages.items()
        if actions.get(instance_id) == "failed" or (instance_id in read and instance_id not in actions)
        for message_id, _event_id in message_ids
    ]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in again]}
