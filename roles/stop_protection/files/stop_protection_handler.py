"""Restart protected EC2 instances that were stopped; deployed by guardrails.ec2.stop_protection.

Invoked by EventBridge with:

* an "EC2 Instance State-change Notification" for state ``stopped``: re-read the instance
  and start it when it is still stopped, protected and not bypassed;
* (attribution on) an "AWS API Call via CloudTrail" event for ``StopInstances``: log who
  stopped which instance; never start anything.

Every decision is one JSON line in the function's log. Settings come from environment
variables the role sets:

``PROTECTION_MODE``        ``instance_ids`` (the rules name the instances; IAM allows
                           StartInstances only on them) or ``tag``
``PROTECTION_TAG_KEY``     tag mode: the tag that marks a protected instance ...
``PROTECTION_TAG_VALUE``   ... and its value
``BYPASS_TAG_KEY``         an instance carrying this tag is left stopped (maintenance)
``NOTIFICATION_TOPIC_ARN`` optional SNS topic told of every restart and failure
``RULE_NAME_PREFIX``       attribution in instance_ids mode: the deployment's rules
                           ``<prefix>1``, ``<prefix>2``, ... name the protected instances

The region comes from the runtime (``AWS_REGION``). Standard library and boto3 only.
"""

import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

STATE_CHANGE = "EC2 Instance State-change Notification"
API_CALL = "AWS API Call via CloudTrail"
# StartInstances answers IncorrectInstanceState while the instance is still stopping.
START_RETRY_DELAYS = (0.5, 1, 2, 4, 8)
# How long to wait for an instance that is still "stopping" when the event arrives.
STOPPING_WAIT_SECONDS = 30
STOPPING_POLL_SECONDS = 1
# Leave this much of the invocation for logging and raising cleanly.
SAFETY_MARGIN_MS = 3000

_CLIENTS = {}
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15)


def client(service):
    """A boto3 client, built on first use and kept for the life of the container.

    SNS and EventBridge clients are only built when a topic or attribution needs them:
    loading a service model is a noticeable share of a cold start.
    """
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.client(service, region_name=settings()["region"] or None, config=_CONFIG)
    return _CLIENTS[service]


def settings():
    return {
        "mode": os.environ.get("PROTECTION_MODE", "instance_ids"),
        "tag_key": os.environ.get("PROTECTION_TAG_KEY", "StopProtection"),
        "tag_value": os.environ.get("PROTECTION_TAG_VALUE", "enabled"),
        "bypass_tag_key": os.environ.get("BYPASS_TAG_KEY", "StopProtectionBypass"),
        "topic_arn": os.environ.get("NOTIFICATION_TOPIC_ARN") or None,
        "rule_prefix": os.environ.get("RULE_NAME_PREFIX") or None,
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""),
    }


def log(record):
    print(json.dumps(record, sort_keys=True, default=str))


class RestartFailed(Exception):
    """Raised so that Lambda's async retries and the on-failure destination take over."""


def describe(ec2, instance_id):
    """The instance as EC2 sees it now, or None when it does not exist (any more)."""
    try:
        reply = ec2.describe_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            return None
        raise
    for reservation in reply.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            return instance
    return None


def tags_of(instance):
    return {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", [])}


def remaining_ms(context):
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return 10**9
    return context.get_remaining_time_in_millis()


def wait_while_stopping(ec2, instance, context, sleep=time.sleep):
    """Re-read an instance that is still stopping until it settles, within the time left."""
    deadline = time.monotonic() + STOPPING_WAIT_SECONDS
    while (
        instance is not None
        and instance["State"]["Name"] == "stopping"
        and time.monotonic() < deadline
        and remaining_ms(context) > SAFETY_MARGIN_MS
    ):
        sleep(STOPPING_POLL_SECONDS)
        instance = describe(ec2, instance["InstanceId"])
    return instance


def start_with_retries(ec2, instance_id, context, sleep=time.sleep):
    """StartInstances, retrying briefly while EC2 says the state does not allow it yet."""
    for attempt, delay in enumerate((*START_RETRY_DELAYS, None)):
        try:
            ec2.start_instances(InstanceIds=[instance_id])
            return attempt
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            out_of_time = remaining_ms(context) - (delay or 0) * 1000 < SAFETY_MARGIN_MS
            if code != "IncorrectInstanceState" or delay is None or out_of_time:
                raise
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def notify(config, subject, lines):
    if not config["topic_arn"]:
        return
    try:
        client("sns").publish(TopicArn=config["topic_arn"], Subject=subject[:100], Message="\n".join(lines))
    except ClientError as exc:
        # A failed notification must not undo or repeat a restart; say so in the log.
        log(
            {
                "action": "notify-failed",
                "error_code": exc.response["Error"]["Code"],
                "topic": config["topic_arn"],
            }
        )


def handle_state_change(event, context, config, sleep=time.sleep):
    began = time.monotonic()
    detail = event.get("detail") or {}
    instance_id = detail.get("instance-id")
    record = {
        "instance_id": instance_id,
        "region": event.get("region") or config["region"],
        "event_state": detail.get("state"),
        "event_id": event.get("id"),
    }

    def decide(action, **fields):
        record.update(action=action, **fields)
        record["duration_ms"] = round((time.monotonic() - began) * 1000, 1)
        log(record)
        return record

    if not isinstance(instance_id, str) or not instance_id.startswith("i-"):
        return decide("ignored", reason="malformed event: no instance-id in detail")
    if detail.get("state") != "stopped":
        return decide("skipped-state", reason=f"event is for state {detail.get('state')!r}, not 'stopped'")

    ec2 = client("ec2")
    instance = wait_while_stopping(ec2, describe(ec2, instance_id), context, sleep=sleep)
    if instance is None:
        return decide("skipped-state", state="not-found", reason="instance no longer exists")
    state = instance["State"]["Name"]
    reason = instance.get("StateReason") or {}
    record.update(state=state, state_reason_code=reason.get("Code"))
    tags = tags_of(instance)
    if state != "stopped":
        return decide("skipped-state", reason=f"instance is {state}, nothing to do")
    if config["mode"] == "tag" and tags.get(config["tag_key"]) != config["tag_value"]:
        return decide(
            "skipped-not-protected",
            reason=f"instance does not carry tag {config['tag_key']}={config['tag_value']}",
        )
    if config["bypass_tag_key"] in tags:
        return decide(
            "skipped-bypass",
            reason=f"bypass tag {config['bypass_tag_key']} is set; left stopped for maintenance",
        )

    why = reason.get("Message") or reason.get("Code") or "unknown reason"
    try:
        retries = start_with_retries(ec2, instance_id, context, sleep=sleep)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "InvalidInstanceID.NotFound":
            return decide(
                "skipped-state", state="not-found", reason="instance vanished before it could start"
            )
        decide("failed", error_code=code, reason=exc.response["Error"].get("Message", ""))
        notify(
            config,
            f"FAILED to restart {instance_id}",
            [
                f"Instance {instance_id} in {record['region']} was stopped ({why}).",
                f"Starting it again failed with {code}; Lambda will retry the event.",
            ],
        )
        raise RestartFailed(f"StartInstances for {instance_id} failed with {code}") from exc
    result = decide("started", start_retries=retries)
    notify(
        config,
        f"Restarted {instance_id}",
        [
            f"Instance {instance_id} in {record['region']} was stopped ({why}).",
            "guardrails.ec2 stop protection started it again.",
        ],
    )
    return result


_PROTECTED_BY_RULES = {}


def protected_by_rules(prefix):
    """Instance ids named by the deployment's rules ``<prefix>1``, ``<prefix>2``, ...; read once."""
    if prefix not in _PROTECTED_BY_RULES:
        events = client("events")
        ids = set()
        index = 1
        while True:
            try:
                rule = events.describe_rule(Name=f"{prefix}{index}")
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    break
                raise
            pattern = json.loads(rule.get("EventPattern") or "{}")
            ids.update((pattern.get("detail") or {}).get("instance-id") or [])
            index += 1
        _PROTECTED_BY_RULES[prefix] = ids
    return _PROTECTED_BY_RULES[prefix]


def handle_api_call(event, config):
    """Attribution: log who called StopInstances, for each protected instance in the call."""
    detail = event.get("detail") or {}
    if detail.get("eventName") != "StopInstances":
        log({"action": "ignored", "reason": f"API call {detail.get('eventName')!r} is not StopInstances"})
        return []
    items = ((detail.get("requestParameters") or {}).get("instancesSet") or {}).get("items") or []
    ids = [item.get("instanceId") for item in items if isinstance(item, dict) and item.get("instanceId")]
    identity = detail.get("userIdentity") or {}
    if config["mode"] == "tag" and ids:
        ec2 = client("ec2")
        tagged = []
        for instance_id in ids:
            instance = describe(ec2, instance_id)
            if instance and tags_of(instance).get(config["tag_key"]) == config["tag_value"]:
                tagged.append(instance_id)
        ids = tagged
    elif config["rule_prefix"]:
        protected = protected_by_rules(config["rule_prefix"])
        ids = [instance_id for instance_id in ids if instance_id in protected]
    records = []
    for instance_id in ids:
        record = {
            "action": "attributed",
            "instance_id": instance_id,
            "region": event.get("region") or config["region"],
            "caller_arn": identity.get("arn"),
            "caller_type": identity.get("type"),
            "source_ip": detail.get("sourceIPAddress"),
            "event_time": detail.get("eventTime"),
            "force": bool((detail.get("requestParameters") or {}).get("force")),
        }
        log(record)
        records.append(record)
    return records


def handler(event, context):
    config = settings()
    if not isinstance(event, dict):
        log({"action": "ignored", "reason": "malformed event: not a JSON object"})
        return {"action": "ignored"}
    kind = event.get("detail-type")
    if kind == STATE_CHANGE:
        return handle_state_change(event, context, config)
    if kind == API_CALL:
        return {"attributed": handle_api_call(event, config)}
    log({"action": "ignored", "reason": f"unexpected event type {kind!r}"})
    return {"action": "ignored"}
