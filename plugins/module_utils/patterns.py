# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The event patterns and schedule of the deployment's rules: built here, parsed here.

Standard library only: the harness and the probes load it from the checkout.
"""

import json

STATE_CHANGE_DETAIL_TYPE = "EC2 Instance State-change Notification"


API_CALL_DETAIL_TYPE = "AWS API Call via CloudTrail"


# EventBridge rejects event patterns longer than this many characters.
MAX_EVENT_PATTERN_CHARS = 2048


def compact_json(document):
    return json.dumps(document, separators=(",", ":"))


def state_change_pattern(instance_ids=None):
    """The pattern for "stopped" notifications, of the given instances or (None) of all."""
    detail = {"state": ["stopped"]}
    if instance_ids is not None:
        detail["instance-id"] = list(instance_ids)
    return compact_json({"source": ["aws.ec2"], "detail-type": [STATE_CHANGE_DETAIL_TYPE], "detail": detail})


def sweep_schedule(minutes):
    """The schedule expression of the sweep rule: EventBridge wants the singular for 1."""
    return "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"


def attribution_pattern():
    """The pattern for CloudTrail-recorded StopInstances calls."""
    return compact_json(
        {
            "source": ["aws.ec2"],
            "detail-type": [API_CALL_DETAIL_TYPE],
            "detail": {"eventSource": ["ec2.amazonaws.com"], "eventName": ["StopInstances"]},
        }
    )


def pack_json_array(items, empty_length, limit):
    """Split ``items`` (strings) into as few lists as keep a JSON document within ``limit``
    characters, when the document is ``empty_length`` long with an empty array where the
    list goes (compact JSON: one comma between items)."""
    groups, current, length = [], [], empty_length
    for item in items:
        added = len(json.dumps(item)) + (1 if current else 0)
        if current and length + added > limit:
            groups.append(current)
            current, length = [], empty_length
            added = len(json.dumps(item))
        current.append(item)
        length += added
    if current:
        groups.append(current)
    return groups


def shard_instance_ids(instance_ids, limit=MAX_EVENT_PATTERN_CHARS, current=()):
    """Split instance ids into as few groups as keep every pattern within ``limit``.

    ``current`` is the deployed sharding (lists of ids, in rule order). Ids keep their order
    from it, new ids (sorted) come last, and the groups are packed greedily in that order:
    no id ever lands in a later group than the one it is in now (greedy packing of a
    sequence puts every item in the earliest group any packing in that order can), new ids
    join the last group or new ones. The role writes rules in group order and removes
    stale rules last, so an id that moves is always covered by its new rule before its old
    rule lets it go: a reshard never leaves a listed id uncovered.
    """
    wanted = set(instance_ids)
    ordered, seen = [], set()
    for group in current:
        for instance_id in group:
            if instance_id in wanted and instance_id not in seen:
                ordered.append(instance_id)
                seen.add(instance_id)
    ordered.extend(sorted(wanted - seen))
    return pack_json_array(ordered, len(state_change_pattern([])), limit)


def listed_instance_ids(pattern):
    """The instance ids a state-change pattern names, or None when it names none (tag mode:
    every instance) or is of another shape."""
    try:
        listed = (json.loads(pattern or "{}").get("detail") or {}).get("instance-id")
    except (ValueError, AttributeError):
        return None
    return [item for item in listed if isinstance(item, str)] if isinstance(listed, list) else None


def pattern_instance_ids(pattern):
    """The instance ids a state-change pattern names (``[]`` for none or a pattern of another shape)."""
    return listed_instance_ids(pattern) or []
