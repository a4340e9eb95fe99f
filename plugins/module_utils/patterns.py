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


# The calls that disarm a deployment: the guard policy denies them to everyone but the
# automation (guard.py), and the tamper rules watch for them (tamper_patterns).
RULE_ACTIONS = ["events:DeleteRule", "events:DisableRule", "events:PutRule", "events:RemoveTargets"]
FUNCTION_ACTIONS = [
    "lambda:AddPermission",
    "lambda:DeleteFunction",
    # A reservation removed: the events of a mass stop restart one instance each again.
    "lambda:DeleteFunctionConcurrency",
    "lambda:DeleteFunctionEventInvokeConfig",
    "lambda:PutFunctionConcurrency",
    "lambda:PutFunctionEventInvokeConfig",
    "lambda:RemovePermission",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:UpdateFunctionEventInvokeConfig",
]
ROLE_ACTIONS = [
    "iam:AttachRolePolicy",
    "iam:DeleteRole",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
]
POLICY_ACTIONS = [
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
]
LOG_ACTIONS = ["logs:DeleteLogGroup", "logs:DeleteMetricFilter", "logs:PutMetricFilter"]
ALARM_ACTIONS = ["cloudwatch:DeleteAlarms", "cloudwatch:DisableAlarmActions", "cloudwatch:PutMetricAlarm"]
TOPIC_ACTIONS = ["sns:DeleteTopic", "sns:SetTopicAttributes", "sns:Unsubscribe"]
TAG_ACTIONS = ["ec2:CreateTags", "ec2:DeleteTags"]


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


# --- tamper rules ------------------------------------------------------------------------------

# IAM is global: CloudTrail delivers its events to EventBridge in us-east-1 only ("AWS
# service events delivered via AWS CloudTrail", Amazon EventBridge user guide).
IAM_EVENTS_REGION = "us-east-1"


def _names(actions):
    return [action.split(":", 1)[1] for action in actions]


def assumed_role_patterns(principals):
    """The ``userIdentity.arn`` patterns of the given principal ARN patterns: CloudTrail
    records a role's sessions as ``arn:<p>:sts::<account>:assumed-role/<role name>/<session>``
    (the role's path left out), an IAM user or root as its own ARN."""
    found = []
    for principal in principals:
        found.append(principal)
        parts = principal.split(":", 5)
        if len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("role/"):
            role_name = parts[5].rsplit("/", 1)[1]
            found.append(f"{parts[0]}:{parts[1]}:sts::{parts[4]}:assumed-role/{role_name}/*")
    return list(dict.fromkeys(found))


def _tamper(principals, branches):
    return compact_json(
        {
            "detail-type": [API_CALL_DETAIL_TYPE],
            "detail": {
                "userIdentity": {"arn": [{"anything-but": {"wildcard": principals}}]},
                "$or": branches,
            },
        }
    )


def tamper_patterns(name, region, automation_principals, tag_keys, topic_arn=None, iam=False):
    """``{kind: pattern}`` of the rules that report the calls which disarm deployment
    ``name`` in ``region``, made by anyone but ``automation_principals`` (ARN patterns)
    and, for rule repair and the budget tags, the region's function role:

    - ``tamper``: the deployment's rules and their targets, and its function;
    - ``tamper-log``: its log group and metric filters, alarms, and the notification topic
      and its subscriptions;
    - ``tamper-ec2``: setting or removing ``tag_keys`` on instances, and turning an
      instance's ``DisableApiStop`` off;
    - ``tamper-iam`` (``iam``: the region is ``IAM_EVENTS_REGION``): the deployment's roles
      and policies.

    Lambda records its calls with the API version appended (``UpdateFunctionCode20150331v2``),
    so its event names match by prefix. A refused call (``errorCode``) is reported too: it
    is an attempt.
    """
    automation = assumed_role_patterns(automation_principals)
    own_role = f"arn:*:sts::*:assumed-role/{name}-{region}/*"
    prefix = f"{name}."
    function = [name, {"suffix": f":function:{name}"}, {"wildcard": f"*:function:{name}:*"}]
    alarms = [f"{name}-attention", f"{name}-heartbeat"]
    rules = ["events.amazonaws.com"]
    branches = [
        {
            "eventSource": rules,
            "eventName": _names(RULE_ACTIONS),
            "requestParameters": {"name": [{"prefix": prefix}]},
        },
        {
            "eventSource": rules,
            "eventName": _names([*RULE_ACTIONS, "events:PutTargets"]),
            "requestParameters": {"rule": [{"prefix": prefix}]},
        },
        {
            "eventSource": ["lambda.amazonaws.com"],
            "eventName": [{"prefix": action} for action in _names(FUNCTION_ACTIONS)],
            "requestParameters": {"functionName": function},
        },
    ]
    reporting = [
        {
            "eventSource": ["logs.amazonaws.com"],
            "eventName": _names(LOG_ACTIONS),
            "requestParameters": {"logGroupName": [f"/aws/lambda/{name}"]},
        },
        {
            "eventSource": ["monitoring.amazonaws.com"],
            "eventName": _names(ALARM_ACTIONS),
            "requestParameters": {"alarmNames": alarms},
        },
        {
            "eventSource": ["monitoring.amazonaws.com"],
            "eventName": _names(ALARM_ACTIONS),
            "requestParameters": {"alarmName": alarms},
        },
    ]
    if topic_arn:
        reporting += [
            {
                "eventSource": ["sns.amazonaws.com"],
                "eventName": _names(TOPIC_ACTIONS),
                "requestParameters": {"topicArn": [topic_arn]},
            },
            {
                "eventSource": ["sns.amazonaws.com"],
                "eventName": ["Unsubscribe"],
                "requestParameters": {"subscriptionArn": [{"prefix": f"{topic_arn}:"}]},
            },
        ]
    patterns = {
        "tamper": _tamper([*automation, own_role], branches),
        "tamper-log": _tamper(automation, reporting),
        "tamper-ec2": _tamper(
            [*automation, own_role],
            [
                {
                    "eventSource": ["ec2.amazonaws.com"],
                    "eventName": _names(TAG_ACTIONS),
                    "requestParameters": {"tagSet": {"items": {"key": sorted(tag_keys)}}},
                },
                {
                    "eventSource": ["ec2.amazonaws.com"],
                    "eventName": ["ModifyInstanceAttribute"],
                    "requestParameters": {"disableApiStop": {"value": [False]}},
                },
            ],
        ),
    }
    if iam:
        patterns["tamper-iam"] = _tamper(
            automation,
            [
                {
                    "eventSource": ["iam.amazonaws.com"],
                    "eventName": _names(ROLE_ACTIONS),
                    "requestParameters": {"roleName": [{"prefix": f"{name}-"}]},
                },
                {
                    "eventSource": ["iam.amazonaws.com"],
                    "eventName": _names(POLICY_ACTIONS),
                    "requestParameters": {"policyArn": [{"wildcard": f"arn:*:iam::*:policy/{name}-*"}]},
                },
            ],
        )
    return patterns
