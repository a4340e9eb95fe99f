"""Restart protected EC2 instances that were stopped; deployed by guardrails.ec2.stop_protection.

Invoked by EventBridge with:

* an "EC2 Instance State-change Notification" for state ``stopped``: re-read the instance
  and start it when it is still stopped, protected and not bypassed;
* (attribution on) an "AWS API Call via CloudTrail" event for ``StopInstances``: log who
  stopped which instance; never start anything;
* (tamper rules on) an "AWS API Call via CloudTrail" event for a call that disarms the
  deployment, made by someone other than its automation: log ``tamper`` (who, what, from
  where, refused or not) and notify;
* (sweep on) the schedule rule's "Scheduled Event": find the protected instances of the
  region that are stopped now and decide for each as for a stop event (lost events,
  restarts that failed for longer than Lambda's retries last), repair the deployment's
  rules, and log one ``swept`` line: the heartbeat its alarm counts.

Every decision is one JSON line in the function's log. Settings come from environment
variables the role sets:

``PROTECTION_MODE``        ``instance_ids`` (the rules name the instances; IAM allows
                           StartInstances only on them) or ``tag``
``PROTECTION_TAG_KEY``     tag mode: the tag that marks a protected instance ...
``PROTECTION_TAG_VALUE``   ... and its value
``BYPASS_TAG_KEY``         an instance carrying this tag is left stopped (maintenance)
``NOTIFICATION_TOPIC_ARN`` optional SNS topic told of every restart and failure
``RULE_NAME_PREFIX``       for attribution and the sweep: the deployment's rules
                           ``<prefix>1``, ``<prefix>2``, ... (in instance_ids mode they
                           name the protected instances); the sweep keeps them enabled
                           and targeting the function
``RESTART_LIMIT``          restart budget: at most this many restarts of one instance ...
``RESTART_WINDOW_SECONDS`` ... within this many seconds; past it the instance is suspended
``RESTART_HISTORY_TAG_KEY`` instance tag holding the times of its recent restarts
``SUSPENDED_TAG_KEY``      instance tag that marks (and keeps) an instance suspended
``SKIP_AUTO_SCALING``      ``true``: leave members of an Auto Scaling group stopped
``SKIP_SPOT_INTERRUPTIONS`` ``true``: leave Spot instances stopped by an interruption
``RESTART_HIBERNATED``     ``true``: restart hibernated instances too
``MAX_RETRY_ATTEMPTS``     Lambda's asynchronous retries, for the failure notice's wording
``SWEEP_MINUTES``          how often the sweep runs (0: never), for the failure notice

The restart budget lives on the instance itself (two tags the role may write and no
others), so it survives cold starts and needs no service of its own. Only a
StartInstances that moved the instance out of ``stopped`` counts, so a duplicated event
or a second invocation racing the first never counts twice.

The region comes from the runtime (``AWS_REGION``). Standard library and boto3 only.
"""

import calendar
import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

STATE_CHANGE = "EC2 Instance State-change Notification"
API_CALL = "AWS API Call via CloudTrail"
SCHEDULED = "Scheduled Event"
# Each kind of event the function acts on, with the only source AWS sends it from. The
# invoke permission admits every rule named <name>.*, on any bus of the account, and a
# custom bus accepts any source but "aws.*" from PutEvents: an event whose source does not
# match is ignored (one decision line), never acted on. API calls other than StopInstances
# (the tamper rules') come from the source of their service: any "aws.*".
SOURCES = {STATE_CHANGE: "aws.ec2", API_CALL: "aws.ec2", SCHEDULED: "aws.events"}
TAMPER_SOURCE = "aws.*"
# The rules besides the shards that the sweep keeps enabled and targeting the function.
OWN_RULE_KINDS = ("attribution", "tamper", "tamper-log", "tamper-ec2", "tamper-iam")
# What a disarming call names, in CloudTrail's requestParameters, for the tamper line.
TAMPER_TARGET_KEYS = (
    "name",
    "rule",
    "functionName",
    "logGroupName",
    "filterName",
    "alarmNames",
    "alarmName",
    "topicArn",
    "subscriptionArn",
    "roleName",
    "policyArn",
    "instanceId",
)
AUTO_SCALING_TAG = "aws:autoscaling:groupName"
SPOT_INTERRUPTION = "Server.SpotInstanceShutdown"
HIBERNATION = "Client.UserInitiatedHibernate"
# StartInstances answers IncorrectInstanceState while the instance is still stopping.
START_RETRY_DELAYS = (0.5, 1, 2, 4, 8)
# How long to wait for an instance that is still "stopping" when the event arrives.
STOPPING_WAIT_SECONDS = 30
STOPPING_POLL_SECONDS = 1
# Leave this much of the invocation for logging and raising cleanly.
SAFETY_MARGIN_MS = 3000

_CLIENTS = {}
# Adaptive retries: besides backing off, the client slows its own requests once EC2 answers
# RequestLimitExceeded, instead of spending its attempts against an empty token bucket.
_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 3}, connect_timeout=5, read_timeout=15)


def client(service):
    """A boto3 client, built on first use and kept for the life of the container.

    SNS and EventBridge clients are only built when a topic or attribution needs them:
    loading a service model is a noticeable share of a cold start.
    """
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.client(service, region_name=settings()["region"] or None, config=_CONFIG)
    return _CLIENTS[service]


def _flag(name, default):
    return os.environ.get(name, default).strip().lower() == "true"


def settings():
    return {
        "mode": os.environ.get("PROTECTION_MODE", "instance_ids"),
        "restart_limit": int(os.environ.get("RESTART_LIMIT", "3")),
        "restart_window": int(os.environ.get("RESTART_WINDOW_SECONDS", "3600")),
        "history_tag_key": os.environ.get("RESTART_HISTORY_TAG_KEY", "StopProtectionRestarts"),
        "suspended_tag_key": os.environ.get("SUSPENDED_TAG_KEY", "StopProtectionSuspended"),
        "skip_auto_scaling": _flag("SKIP_AUTO_SCALING", "true"),
        "skip_spot_interruptions": _flag("SKIP_SPOT_INTERRUPTIONS", "true"),
        "restart_hibernated": _flag("RESTART_HIBERNATED", "false"),
        "max_retry_attempts": int(os.environ.get("MAX_RETRY_ATTEMPTS", "2")),
        "sweep_minutes": int(os.environ.get("SWEEP_MINUTES", "0")),
        "tag_key": os.environ.get("PROTECTION_TAG_KEY", "StopProtection"),
        "tag_value": os.environ.get("PROTECTION_TAG_VALUE", "enabled"),
        "bypass_tag_key": os.environ.get("BYPASS_TAG_KEY", "StopProtectionBypass"),
        "topic_arn": os.environ.get("NOTIFICATION_TOPIC_ARN") or None,
        "rule_prefix": os.environ.get("RULE_NAME_PREFIX") or None,
        "restart_together": _flag("RESTART_TOGETHER", "false"),
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
    """StartInstances, retrying briefly while EC2 says the state does not allow it yet.

    Returns ``(retries, previous_state)``: the state EC2 says the instance left, so that a
    start another invocation already made (``pending``) is not counted twice.
    """
    for attempt, delay in enumerate((*START_RETRY_DELAYS, None)):
        try:
            reply = ec2.start_instances(InstanceIds=[instance_id])
            starting = reply.get("StartingInstances") or [{}]
            return attempt, (starting[0].get("PreviousState") or {}).get("Name", "stopped")
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


def decider(record, began):
    """The function that completes ``record`` with a decision and logs it as one line."""

    def decide(action, **fields):
        record.update(action=action, **fields)
        record["duration_ms"] = round((time.monotonic() - began) * 1000, 1)
        log(record)
        return record

    return decide


def handle_state_change(event, context, config, sleep=time.sleep):
    began = time.monotonic()
    detail = event.get("detail") or {}
    instance_id = detail.get("instance-id")
    record = {
        "instance_id": instance_id,
        "region": event.get("region") or config["region"],
        "trigger": "event",
        "event_state": detail.get("state"),
        "event_id": event.get("id"),
    }
    decide = decider(record, began)

    if not isinstance(instance_id, str) or not instance_id.startswith("i-"):
        return decide("ignored", reason="malformed event: no instance-id in detail")
    if detail.get("state") != "stopped":
        return decide("skipped-state", reason=f"event is for state {detail.get('state')!r}, not 'stopped'")

    ec2 = client("ec2")
    if together(config, context):
        return restart_stopped_together(ec2, event, record, decide, config, context, sleep)
    return restart_alone(ec2, instance_id, record, decide, config, context, sleep)


def restart_alone(ec2, instance_id, record, decide, config, context, sleep):
    """The decision for the event's own instance, read on its own."""
    instance = wait_while_stopping(ec2, describe(ec2, instance_id), context, sleep=sleep)
    if instance is None:
        return decide("skipped-state", state="not-found", reason="instance no longer exists")
    return restart_if_protected(ec2, instance, record, decide, config, context, sleep)


# The line of a stop event whose instance was decided with an earlier event's batch.
COALESCED = "coalesced"
# Whether this container restarts a burst of stops together, by function name.
_COALESCING = {}
# What this container last decided for each instance it found stopped: when it read them
# (epoch seconds, taken before the read), the decision, and the event that led to it.
_DECIDED = {}
_DECIDED_KEEP_SECONDS = 3600


def coalescing(context, fresh=False):
    """True when the function's reserved concurrency is 1: one container at a time handles
    events, so one that finds every stopped protected instance may start them all while the
    events of the others find them decided. With more containers each would start them all.
    Read once per container (the sweep reads it again)."""
    name = getattr(context, "function_name", None)
    if not isinstance(name, str) or not name:
        return False
    if fresh or name not in _COALESCING:
        try:
            reply = client("lambda").get_function_concurrency(FunctionName=name)
            _COALESCING[name] = reply.get("ReservedConcurrentExecutions") == 1
        except (ClientError, BotoCoreError):
            _COALESCING[name] = False
    return _COALESCING[name]


def together(config, context, fresh=False):
    """Whether this event (or sweep) starts the burst it belongs to together: the deployment
    asks for it (``RESTART_TOGETHER``, set by ``restart_together``), the function can find
    every protected instance (tag mode, or the rules in instance mode), and its reserved
    concurrency is 1. Without the first, no call is made to learn the rest."""
    if not config["restart_together"] or not (config["mode"] == "tag" or config["rule_prefix"]):
        return False
    return coalescing(context, fresh=fresh)


def event_epoch(event):
    try:
        return calendar.timegm(time.strptime(event.get("time") or "", "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def decided_before(instance_id, event):
    """This container's decision for the stop this event reports, when it made one.

    The decision covers the stop when the instance was read stopped after it: the event
    is dated (whole seconds) before the second in which the read began. A later stop of
    the same instance comes after the start that decision made, so it is dated in that
    second or after, and is read again. A failed restart is never taken as decided."""
    seen = _DECIDED.get(instance_id)
    stopped_at = event_epoch(event)
    if seen is None or stopped_at is None or seen["action"] == "failed":
        return None
    return seen if stopped_at + 1 <= seen["read_at"] else None


def remember(decisions, read_at, event_id):
    """Keep ``(instance_id, action)`` decisions of one read; forget those older than an hour."""
    for instance_id, action in decisions:
        _DECIDED[instance_id] = {"read_at": read_at, "action": action, "event_id": event_id}
    for instance_id in [
        i for i, seen in _DECIDED.items() if read_at - seen["read_at"] > _DECIDED_KEEP_SECONDS
    ]:
        del _DECIDED[instance_id]


def left_stopped(seen):
    """Whether a decision of this container left the instance stopped on purpose."""
    return seen is not None and (seen["action"].startswith("skipped-") or seen["action"] == "suspended")


def coalesced(decide, seen, why):
    """Not a second decision: a note that this event's stop was decided already."""
    return decide(
        COALESCED,
        decision=seen["action"],
        decided_with=seen["event_id"],
        reason=f"decided ({seen['action']}) with the stopped instances read for event {seen['event_id']}; {why}",
    )


def restart_stopped_together(ec2, event, record, decide, config, context, sleep):
    """A stop event, when one container handles them all: every protected instance found
    stopped is decided and started now, in batches; their own events, when they come, find
    the decision made. A mass stop thus costs EC2 calls per batch, not per instance."""
    instance_id = record["instance_id"]
    seen = decided_before(instance_id, event)
    if seen:
        return coalesced(decide, seen, "read after it stopped")
    fresh = config["mode"] != "tag" and instance_id not in protected_by_rules(config["rule_prefix"])
    read_at = time.time()
    instances = stopped_protected_instances(ec2, config, fresh=fresh)
    stopped = {instance["InstanceId"] for instance in instances}
    # Decided instances that are not stopped now: every stop of theirs dated before this
    # read is settled, so their events find them decided from here on.
    for other, entry in _DECIDED.items():
        if other not in stopped and entry["action"] != "failed":
            entry["read_at"] = max(entry["read_at"], read_at)
    if instance_id not in stopped:
        seen = _DECIDED.get(instance_id)
        if seen is not None and seen["action"] != "failed":
            # A stop after the decision would leave it stopped until someone starts it.
            return coalesced(decide, seen, "not stopped at a later read")
        # Not stopped any more, still stopping, or not protected: decided on its own, as before.
        return restart_alone(ec2, instance_id, record, decide, config, context, sleep)
    records = []
    for instance in instances:
        own = instance["InstanceId"] == instance_id
        if not own and left_stopped(_DECIDED.get(instance["InstanceId"])):
            # Left stopped on purpose (bypass, suspension, skip rules) at an earlier read and
            # not started since: decided already; its next stop brings its own event.
            continue
        other = {
            "instance_id": instance["InstanceId"],
            "region": record["region"],
            "trigger": "event",
            "event_id": record["event_id"],
            "found_with": instance_id,
        }
        records.append(
            (instance, record if own else other, decide if own else decider(other, time.monotonic()))
        )
    actions = decide_and_start(ec2, records, config, context, sleep, "event")
    remember(actions.items(), read_at, record["event_id"])
    if actions.get(instance_id) == "failed":
        raise RestartFailed(f"StartInstances for {instance_id} failed with {record.get('error_code')}")
    return record


def decide_and_start(ec2, records, config, context, sleep, trigger):
    """Decide for each ``(instance, record, decide)`` and start those to start in batches of
    ``START_BATCH``; returns the action decided for each instance id. Instances left when
    the time runs out get no decision (the next sweep, or their own event, decides)."""
    actions = {}
    pending = []
    for instance, record, decide in records:
        decided = prepare_restart(ec2, instance, record, decide, config)
        if isinstance(decided, Pending):
            pending.append(decided)
        else:
            actions[instance["InstanceId"]] = decided["action"]
    for number, position in enumerate(range(0, len(pending), START_BATCH)):
        if number >= START_BURST:
            # Past the bucket's burst, one call per refill: no throttling, no backoff.
            sleep(START_REFILL_SECONDS)
        if remaining_ms(context) < SAFETY_MARGIN_MS * 2:
            left = len(pending) - position
            log(
                {
                    "action": "sweep-incomplete" if trigger == "sweep" else "batch-incomplete",
                    "reason": f"out of time; {left} stopped instances left for the next sweep"
                    + ("" if trigger == "sweep" else " and their own stop events"),
                    "trigger": trigger,
                }
            )
            break
        batch = pending[position : position + START_BATCH]
        results = start_batch(ec2, batch, config, context, sleep)
        actions.update(zip((item.instance_id for item in batch), results, strict=True))
    return actions


def restart_if_protected(ec2, instance, record, decide, config, context, sleep):
    """The decision for one instance seen stopped by an event."""
    pending = prepare_restart(ec2, instance, record, decide, config)
    if not isinstance(pending, Pending):
        return pending
    return start_pending(ec2, pending, config, context, sleep)


def start_pending(ec2, pending, config, context, sleep):
    """Start one instance (retrying while it is still stopping), write its budget, decide,
    notify; a start that fails is logged ``failed`` and raised as ``RestartFailed``."""
    instance_id, record, decide = pending.instance_id, pending.record, pending.decide
    try:
        retries, previous = start_with_retries(ec2, instance_id, context, sleep=sleep)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "InvalidInstanceID.NotFound":
            return decide(
                "skipped-state", state="not-found", reason="instance vanished before it could start"
            )
        fail(config, record, decide, pending.why, code, exc.response["Error"].get("Message", ""))
        raise RestartFailed(f"StartInstances for {instance_id} failed with {code}") from exc
    except Exception as exc:  # timeouts, connection errors: still one decision line
        fail(config, record, decide, pending.why, type(exc).__name__, str(exc))
        raise RestartFailed(f"StartInstances for {instance_id} failed: {exc}") from exc
    if previous != "stopped":
        # Another invocation of the same (duplicated) event started it a moment ago.
        return decide("skipped-state", start_retries=retries, reason=f"instance was already {previous}")
    budget_error = write_tags(ec2, [instance_id], {config["history_tag_key"]: pending.history_value})
    result = started(pending, retries, budget_error)
    notify(config, f"Restarted {instance_id}", restart_notice(pending, config))
    return result


class Pending:
    """An instance to start: everything its decision line and budget need afterwards."""

    def __init__(self, instance_id, record, decide, history, now, why, config):
        self.instance_id, self.record, self.decide = instance_id, record, decide
        self.history, self.why = history, why
        self.history_value = history_value([*history, now], config)


def started(pending, retries, budget_error):
    pending.record["restarts_in_window"] = len(pending.history) + 1
    return pending.decide(
        "started", start_retries=retries, **({"budget_error": budget_error} if budget_error else {})
    )


def restart_notice(pending, config):
    return [
        f"Instance {pending.instance_id} in {pending.record['region']} was stopped ({pending.why}).",
        "guardrails.ec2 stop protection started it again "
        f"(restart {len(pending.history) + 1} of {config['restart_limit']} allowed in {config['restart_window']} s).",
    ]


def prepare_restart(ec2, instance, record, decide, config):
    """Every decision short of starting: the logged decision when the instance is to stay
    stopped (or is suspended now), else a ``Pending`` start."""
    instance_id = instance["InstanceId"]
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
    if config["suspended_tag_key"] in tags:
        return decide(
            "skipped-suspended",
            reason=f"suspended ({tags[config['suspended_tag_key']]}); remove tag "
            f"{config['suspended_tag_key']} to protect it again",
        )
    left_alone = reason_to_leave_stopped(instance, tags, config)
    if left_alone:
        action, why_not = left_alone
        return decide(action, reason=why_not)

    why = reason.get("Message") or reason.get("Code") or "unknown reason"
    now = int(time.time())
    history = recent_restarts(tags, config, now)
    record.update(restarts_in_window=len(history), restart_limit=config["restart_limit"])
    if len(history) >= config["restart_limit"]:
        return suspend(ec2, instance_id, config, now, history, why, decide)
    return Pending(instance_id, record, decide, history, now, why, config)


def reason_to_leave_stopped(instance, tags, config):
    """``(action, reason)`` when someone else owns the instance's lifecycle, else None."""
    code = (instance.get("StateReason") or {}).get("Code")
    if config["skip_auto_scaling"] and AUTO_SCALING_TAG in tags:
        return (
            "skipped-managed",
            f"member of Auto Scaling group {tags[AUTO_SCALING_TAG]!r}: the group owns its lifecycle",
        )
    if (
        config["skip_spot_interruptions"]
        and instance.get("InstanceLifecycle") == "spot"
        and code == SPOT_INTERRUPTION
    ):
        return "skipped-reason", f"Spot interruption ({code}): only EC2 may start it again"
    if not config["restart_hibernated"] and code == HIBERNATION:
        return "skipped-reason", f"hibernated ({code}); restarting hibernated instances is turned off"
    return None


def recent_restarts(tags, config, now):
    """Times (epoch seconds) of the instance's restarts within the window, oldest first."""
    stamps = []
    for word in tags.get(config["history_tag_key"], "").split():
        if word.isdigit() and now - int(word) < config["restart_window"]:
            stamps.append(int(word))
    return sorted(stamps)


def history_value(stamps, config):
    # Only the newest `limit` entries can matter; a tag value holds at most 256 characters.
    return " ".join(str(stamp) for stamp in stamps[-config["restart_limit"] :])


def write_tags(ec2, instance_ids, tags):
    """Tag the instances; returns the error code instead of raising (the log line says it)."""
    try:
        ec2.create_tags(Resources=list(instance_ids), Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return None


def suspend(ec2, instance_id, config, now, history, why, decide):
    """Leave the instance stopped for good and say so: its restart budget is spent."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    reason = f"{len(history)} restarts within {config['restart_window']} s"
    # The history is emptied with it, so that removing the suspended tag starts afresh.
    error = write_tags(
        ec2, [instance_id], {config["suspended_tag_key"]: f"{stamp} {reason}", config["history_tag_key"]: ""}
    )
    result = decide(
        "suspended",
        reason=f"restart budget spent: {reason}; left stopped and tagged {config['suspended_tag_key']}",
        **({"tag_error": error} if error else {}),
    )
    notify(
        config,
        f"SUSPENDED stop protection of {instance_id}",
        [
            f"Instance {instance_id} in {result['region']} was stopped again ({why}).",
            f"It was restarted {reason}, so it is left stopped and tagged {config['suspended_tag_key']}.",
            "Remove that tag to protect it again.",
        ],
    )
    return result


def fail(config, record, decide, why, code, message):
    decide("failed", error_code=code, reason=message)
    attempts = config["max_retry_attempts"]
    notify(
        config,
        f"FAILED to restart {record['instance_id']}",
        [
            f"Instance {record['instance_id']} in {record['region']} was stopped ({why}).",
            f"Starting it again failed with {code}.",
            f"Lambda retries the event up to {attempts} times, then sends it to the failure destination if one is set."
            if attempts
            else "Lambda does not retry it.",
            f"The sweep tries again every {config['sweep_minutes']} minutes."
            if config["sweep_minutes"]
            else "No sweep is deployed to try again later.",
        ],
    )


_PROTECTED_BY_RULES = {}
# The deployment's shard rules as the last fresh read described them, by prefix.
_OWN_RULES = {}


def protected_by_rules(prefix, fresh=False):
    """Instance ids named by the deployment's rules ``<prefix>1``, ``<prefix>2``, ...

    Read once per container, or again with ``fresh`` (the sweep, and attribution for an id
    not known yet: a protect run may have changed the rules since).
    """
    if fresh or prefix not in _PROTECTED_BY_RULES:
        events = client("events")
        ids = set()
        rules = []
        index = 1
        while True:
            rule = describe_rule(events, f"{prefix}{index}")
            if rule is None:
                break
            rules.append(rule)
            pattern = json.loads(rule.get("EventPattern") or "{}")
            ids.update((pattern.get("detail") or {}).get("instance-id") or [])
            index += 1
        _PROTECTED_BY_RULES[prefix] = ids
        _OWN_RULES[prefix] = rules
    return _PROTECTED_BY_RULES[prefix]


def describe_rule(events, name):
    """The rule, or None when it does not exist."""
    try:
        return events.describe_rule(Name=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def own_function_arn(context):
    """The function's unqualified ARN, the target the deployment's rules name."""
    arn = getattr(context, "invoked_function_arn", None) or ""
    return ":".join(arn.split(":")[:7]) if arn.count(":") >= 6 else None


def repair_own_rules(config, context):
    """Self-repair, run by each sweep: the deployment's shard, attribution and tamper rules
    must be enabled and target this function. Whoever disabled one, or removed its target, disarmed
    the protection of its instances; it is enabled again, or the target put back, and each
    repair logged as ``tamper-repaired`` (the attention alarm counts it). The role may do
    this on its own rules only. A disabled sweep rule cannot repair itself: the sweep does
    not run (the audit reports it)."""
    prefix, arn = config["rule_prefix"], own_function_arn(context)
    if not prefix or not arn:
        return []
    events = client("events")
    if config["mode"] == "tag" or prefix not in _OWN_RULES:
        # In instance mode this sweep has just read them (stopped_protected_instances).
        protected_by_rules(prefix, fresh=True)
    rules = list(_OWN_RULES[prefix])
    for kind in OWN_RULE_KINDS:
        rule = describe_rule(events, f"{prefix}{kind}")
        if rule is not None:
            rules.append(rule)
    repaired = []
    for rule in rules:
        fixes = []
        if rule.get("State") == "DISABLED":
            events.enable_rule(Name=rule["Name"])
            fixes.append("enabled again")
        targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        if not any(target.get("Arn") == arn for target in targets):
            events.put_targets(Rule=rule["Name"], Targets=[{"Id": arn.rsplit(":", 1)[-1], "Arn": arn}])
            fixes.append("target put back")
        if fixes:
            record = {
                "action": "tamper-repaired",
                "rule": rule["Name"],
                "repaired": fixes,
                "trigger": "sweep",
                "reason": "the rule was disarmed (disabled, or its target removed) by someone else",
            }
            log(record)
            repaired.append(record)
    return repaired


DESCRIBE_FILTER_LIMIT = 200  # DescribeInstances takes at most 200 values in one filter


def start_batch(ec2, batch, config, context, sleep):
    """Start ``batch`` (``Pending``) in one call and decide for each; the actions."""
    if len(batch) == 1:
        # One instance: started as a single stop always was (retried while still stopping).
        return [start_alone(ec2, batch[0], config, context, sleep)]
    try:
        reply = start_throttled(ec2, [pending.instance_id for pending in batch], context, sleep)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in THROTTLING_CODES:
            # Splitting the batch would only spend more of the same empty bucket.
            message = exc.response["Error"].get("Message", "")
            for pending in batch:
                fail(config, pending.record, pending.decide, pending.why, code, message)
            return ["failed"] * len(batch)
        # EC2 refused the call as a whole: each instance on its own, so that one
        # instance's error never fails the others.
        return [start_alone(ec2, pending, config, context, sleep) for pending in batch]
    previous = {
        item["InstanceId"]: item["PreviousState"]["Name"] for item in reply.get("StartingInstances", [])
    }
    restarted = [pending for pending in batch if previous.get(pending.instance_id) == "stopped"]
    errors = {}
    by_value = {}
    for pending in restarted:
        by_value.setdefault(pending.history_value, []).append(pending.instance_id)
    for value, ids in by_value.items():
        error = write_tags(ec2, ids, {config["history_tag_key"]: value})
        errors.update(dict.fromkeys(ids, error))
    actions = []
    for pending in batch:
        state = previous.get(pending.instance_id)
        if state == "stopped":
            actions.append(started(pending, 0, errors.get(pending.instance_id))["action"])
        elif state is None:
            pending.decide(
                "skipped-state", state="not-found", reason="instance vanished before it could start"
            )
            actions.append("skipped-state")
        else:
            pending.decide("skipped-state", reason=f"instance was already {state}")
            actions.append("skipped-state")
    if restarted:
        lines = [line for pending in restarted for line in restart_notice(pending, config)]
        subject = (
            f"Restarted {restarted[0].instance_id}"
            if len(restarted) == 1
            else f"Restarted {len(restarted)} instances"
        )
        notify(config, subject, lines)
    return actions


THROTTLING_CODES = ("RequestLimitExceeded", "Throttling", "ThrottlingException")
# Waits before a batch's StartInstances is tried again once the client's own retries met a
# throttled bucket: StartInstances refills 2 request tokens and 2 instances a second.
THROTTLED_BATCH_DELAYS = (2, 4, 8)


def start_throttled(ec2, instance_ids, context, sleep):
    """StartInstances for a batch, waiting and trying again while EC2 throttles it."""
    for delay in (*THROTTLED_BATCH_DELAYS, None):
        try:
            return ec2.start_instances(InstanceIds=instance_ids)
        except ClientError as exc:
            throttled = exc.response["Error"]["Code"] in THROTTLING_CODES
            if not throttled or delay is None or remaining_ms(context) - delay * 1000 < SAFETY_MARGIN_MS * 2:
                raise
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def start_alone(ec2, pending, config, context, sleep):
    try:
        return start_pending(ec2, pending, config, context, sleep)["action"]
    except RestartFailed:
        # Logged as failed already. The next sweep tries again: raising here would make
        # Lambda retry the whole sweep, restarting nothing more.
        return "failed"


def stopped_protected_instances(ec2, config, fresh=True):
    """The protected instances of the region that are stopped now; ``fresh`` reads the
    rules that name them (instance mode) again."""
    stopped = [{"Name": "instance-state-name", "Values": ["stopped"]}]
    if config["mode"] == "tag":
        batches = [[{"Name": f"tag:{config['tag_key']}", "Values": [config["tag_value"]]}]]
    else:
        ids = sorted(protected_by_rules(config["rule_prefix"], fresh=fresh)) if config["rule_prefix"] else []
        batches = [
            [{"Name": "instance-id", "Values": ids[start : start + DESCRIBE_FILTER_LIMIT]}]
            for start in range(0, len(ids), DESCRIBE_FILTER_LIMIT)
        ]
    found = []
    for filters in batches:
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters + stopped):
            for reservation in page.get("Reservations", []):
                found.extend(reservation.get("Instances", []))
    return found


# Instance ids per StartInstances call of the sweep and of a burst.
START_BATCH = 100
# StartInstances' request bucket by default ("Request throttling for the Amazon EC2 API"):
# 5 calls at once, then one per half second. Batches past the fifth are paced to it rather
# than thrown at an empty bucket and left to botocore's growing backoff.
START_BURST = 5
START_REFILL_SECONDS = 0.5


def handle_sweep(event, context, config, sleep=time.sleep):
    """Reconciliation: restart protected instances whose stop event was lost or whose
    restart failed for longer than Lambda's retries last, under the same rules.

    Batched, so that a mass stop costs EC2 calls per batch, not per instance: one
    DescribeInstances per 200 ids, one StartInstances per ``START_BATCH`` instances to
    start, and the budget tags in one CreateTags per distinct value. A batch EC2 refuses
    as a whole (one instance's capacity error, say) is started instance by instance, so
    that no instance's error fails the others."""
    ec2 = client("ec2")
    together(config, context, fresh=True)
    read_at = time.time()
    instances = stopped_protected_instances(ec2, config)
    records = []
    for instance in instances:
        record = {
            "instance_id": instance["InstanceId"],
            "region": event.get("region") or config["region"],
            "trigger": "sweep",
            "event_id": event.get("id"),
        }
        records.append((instance, record, decider(record, time.monotonic())))
    decided = decide_and_start(ec2, records, config, context, sleep, "sweep")
    remember(decided.items(), read_at, event.get("id"))
    actions = list(decided.values())
    # After the restarts, which must never wait for it or fail with it.
    try:
        actions.extend(record["action"] for record in repair_own_rules(config, context))
    except ClientError as exc:
        log(
            {
                "action": "repair-failed",
                "error_code": exc.response["Error"]["Code"],
                "trigger": "sweep",
                "reason": "could not check or repair the deployment's rules",
            }
        )
        actions.append("repair-failed")
    # The heartbeat: the heartbeat alarm fires when no sweep got this far for two sweep
    # intervals (rule disabled or deleted, function deleted or throttled, role broken, log
    # group or metric filter gone). Logged last, so that a sweep which could not read the
    # instances leaves none.
    log({"action": "swept", "trigger": "sweep", "stopped_found": len(instances)})
    return {"swept": len(instances), "actions": actions}


def tamper_target(parameters):
    """What a disarming call acted on, from CloudTrail's requestParameters: the first name
    it gives, or the instances and tag keys of an EC2 call."""
    for key in TAMPER_TARGET_KEYS:
        if parameters.get(key):
            return f"{key}={parameters[key]}"
    resources = ((parameters.get("resourcesSet") or {}).get("items")) or []
    ids = [item.get("resourceId") for item in resources if isinstance(item, dict)]
    return f"resources={','.join(filter(None, ids))}" if ids else None


def handle_tamper(event, config):
    """A call that disarms the deployment, by anyone but its automation (the tamper rules'
    patterns leave those out): one ``tamper`` line, counted by the attention alarm, and a
    notice. A refused call is reported too: it was an attempt."""
    detail = event.get("detail") or {}
    identity = detail.get("userIdentity") or {}
    parameters = detail.get("requestParameters") or {}
    tags = [
        item.get("key")
        for item in ((parameters.get("tagSet") or {}).get("items") or [])
        if isinstance(item, dict)
    ]
    record = {
        "action": "tamper",
        "event_name": detail.get("eventName"),
        "event_source": detail.get("eventSource"),
        "target": tamper_target(parameters),
        "caller_arn": identity.get("arn"),
        "caller_type": identity.get("type"),
        "source_ip": detail.get("sourceIPAddress"),
        "event_time": detail.get("eventTime"),
        "region": detail.get("awsRegion") or event.get("region") or config["region"],
    }
    if tags:
        record["tag_keys"] = tags
    if detail.get("errorCode"):
        record["refused"] = detail["errorCode"]
    log(record)
    outcome = f"It was refused ({record['refused']})." if record.get("refused") else "It succeeded."
    notify(
        config,
        f"Stop protection: {record['event_name']} by {record['caller_arn']}",
        [
            f"{record['caller_arn']} ({record['caller_type']}) called {record['event_name']} on "
            f"{record['target'] or 'a resource of the deployment'} in {record['region']} "
            f"from {record['source_ip']} at {record['event_time']}.",
            outcome,
            "The call disarms the stop protection; only the deployment's automation should make it.",
        ],
    )
    return record


def handle_api_call(event, config):
    """Attribution: log who called StopInstances, for each protected instance in the call."""
    detail = event.get("detail") or {}
    if detail.get("eventName") != "StopInstances":
        log({"action": "ignored", "reason": f"API call {detail.get('eventName')!r} is not StopInstances"})
        return []
    if detail.get("errorCode"):
        # Refused calls (DryRun answers with an error code too) stopped nothing.
        log(
            {
                "action": "ignored",
                "reason": f"StopInstances call failed with {detail['errorCode']}: it stopped nothing",
            }
        )
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
        if not protected.issuperset(ids):
            # A protect run since this container read the rules may have added instances.
            protected = protected_by_rules(config["rule_prefix"], fresh=True)
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


def source_matches(source, expected):
    """``expected`` is a source, or a prefix ending in ``*`` that must be followed by more."""
    if expected.endswith("*"):
        return isinstance(source, str) and len(source) >= len(expected) and source.startswith(expected[:-1])
    return source == expected


def handler(event, context):
    config = settings()
    if not isinstance(event, dict):
        log({"action": "ignored", "reason": "malformed event: not a JSON object"})
        return {"action": "ignored"}
    kind = event.get("detail-type")
    tamper = kind == API_CALL and (event.get("detail") or {}).get("eventName") != "StopInstances"
    expected = TAMPER_SOURCE if tamper else SOURCES.get(kind)
    if expected and not source_matches(event.get("source"), expected):
        reason = f"{kind!r} from source {event.get('source')!r}, not {expected!r}"
        log({"action": "ignored", "reason": reason})
        return {"action": "ignored"}
    if kind == STATE_CHANGE:
        return handle_state_change(event, context, config)
    if tamper:
        return {"tamper": handle_tamper(event, config)}
    if kind == API_CALL:
        return {"attributed": handle_api_call(event, config)}
    if kind == SCHEDULED:
        return handle_sweep(event, context, config)
    log({"action": "ignored", "reason": f"unexpected event type {kind!r}"})
    return {"action": "ignored"}
