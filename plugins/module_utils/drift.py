# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether a deployed resource already is what the plan wants: the drift step of the
read-once rollout, pure over (what ``render`` plans, what ``resource_reads`` read). The role
runs the amazon.aws task of a resource only when something differs here.

Each comparison is at least as strict as the comparison of the module that would write the
resource (``tests/unit/plugins/module_utils/test_drift_contract.py`` runs those modules
against moto): when a comparison finds no difference, that module reports ``changed=false``.
Stricter is safe (the module then runs and finds nothing to do); laxer would leave drift.
"""

from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import TOPIC_TARGET_ID, rule_kind
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import compact_json
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import missing_metric_filter

EVENTS_PRINCIPAL = "events.amazonaws.com"


def _differs(what, have, want):
    return [f"{what}: {have!r} -> {want!r}"] if have != want else []


def statement_drift(statement, statement_id, target_arn, source_arn):
    """The invoke statement against the one the role writes. Exact: any other principal,
    action, resource or condition (amazon.aws.lambda_policy compares action, principal and
    the source ARN and account) is a difference."""
    if statement is None:
        return [f"statement {statement_id} is missing"]
    want = invoke_statement(
        {"statement": {"statement_id": statement_id, "source_arn": source_arn}, "function_arn": target_arn}
    )
    return [
        f"{key}: {statement.get(key)!r} -> {value!r}"
        for key, value in want.items()
        if statement.get(key) != value
    ] + [f"{key}: unexpected" for key in statement if key not in want]


# Lambda's quota on a function's resource-based policy ("Lambda quotas": 20 KB).
FUNCTION_POLICY_LIMIT = 20 * 1024


def invoke_statement(desired):
    """The region's one invoke statement as Lambda stores it (``statement_drift`` compares it)."""
    statement = desired["statement"]
    return {
        "Sid": statement["statement_id"],
        "Effect": "Allow",
        "Principal": {"Service": EVENTS_PRINCIPAL},
        "Action": "lambda:InvokeFunction",
        "Resource": desired["function_arn"],
        "Condition": {"ArnLike": {"AWS:SourceArn": statement["source_arn"]}},
    }


def statements_to_make_room(name, policy, desired, limit=FUNCTION_POLICY_LIMIT):
    """Statement ids of rules written before 1.1.0 to remove before the region's one
    statement is added, so that the policy stays within Lambda's 20 KB.

    A 1.0 deployment had one statement per rule; one near the quota cannot take the new
    statement before the old ones go. Removed first: the old sweep and attribution rules'
    (for seconds the sweep or the attribution log is paused, no restart is missed), then
    shard rules' from the last one (their instances are unprotected for the seconds until
    the new statement is added). None when it fits, or when the statement is in place.
    """
    if policy is None or policy.get("statement") is not None:
        return []
    excess = policy.get("size", 0) + 1 + len(compact_json(invoke_statement(desired))) - limit
    if excess <= 0:
        return []
    legacy = []
    for statement in policy.get("statements") or []:
        kind = rule_kind(name, statement["sid"] or "")
        if kind and kind[2]:
            legacy.append((kind[0] == "state_change", -(kind[1] or 0), statement))
    chosen = []
    for _shard, _index, statement in sorted(legacy, key=lambda item: item[:2]):
        if excess <= 0:
            break
        chosen.append(statement["sid"])
        excess -= statement["size"] + 1
    return chosen


def invoke_config_drift(current, want):
    """``want``: ``maximum_retry_attempts``, ``maximum_event_age_in_seconds``,
    ``on_failure_destination_arn`` (None for none) and, when it is managed,
    ``reserved_concurrency`` (``UNRESERVED`` for none); the comparison of
    guardrails.ec2.lambda_event_invoke_config itself."""
    if current is None:
        return ["no asynchronous invocation settings"]
    drift = []
    for key, value in want.items():
        if key == "reserved_concurrency" and value is None:
            continue
        want_value = (value or None) if key == "on_failure_destination_arn" else value
        drift += _differs(key, current.get(key), want_value)
    return drift


def log_group_drift(current, retention, tags):
    """``current``: ``{"exists", "retention", "tags"}``. amazon.aws.cloudwatchlogs_log_group
    sets the retention when it differs and, with purge_tags (its default), makes the tags
    exactly ``tags``."""
    if not current.get("exists"):
        return ["missing"]
    return _differs("retention", current.get("retention"), retention) + _differs(
        "tags", current.get("tags") or {}, tags or {}
    )


METRIC_FIELDS = ("default_value", "metric_name", "metric_namespace", "metric_value", "unit", "dimensions")


def metric_filter_drift(current, name, want):
    """``want``: None for no filter, else ``{"pattern", "transformation"}`` with the
    transformation as the module's ``metric_transformation`` option. amazon.aws.cloudwatchlogs_log_group_metric_filter rewrites the filter
    unless exactly one filter has its name as prefix and pattern and the six transformation
    fields are equal; with state absent it deletes that one filter."""
    if want is None:
        return [f"metric filter {current.get('name')} exists"] if current.get("count") else []
    if current.get("count") != 1 or current.get("name") != name:
        return [f"{current.get('count', 0)} metric filters named {name}*, want exactly {name}"]
    have = {
        "default_value": current["transformation"].get("defaultValue"),
        "metric_name": current["transformation"].get("metricName"),
        "metric_namespace": current["transformation"].get("metricNamespace"),
        "metric_value": current["transformation"].get("metricValue"),
        "unit": current["transformation"].get("unit"),
        "dimensions": current["transformation"].get("dimensions"),
    }
    drift = _differs("pattern", current.get("pattern"), want["pattern"])
    for field in METRIC_FIELDS:
        drift += _differs(field, have[field], want["transformation"].get(field))
    return drift


def rule_drift(planned, deployed, target_id, target_arn):
    """A planned rule (``shards.shard_rules`` entry) against the deployed one
    (``rules.list_deployment_rules`` with targets).

    amazon.aws.cloudwatchevent_rule rewrites the rule unless name, pattern, schedule,
    description and role are equal, puts each wanted target not listed exactly as wanted
    (extra fields such as an input count), removes other targets, and enables it.
    """
    if deployed is None:
        return ["missing"]
    drift = _differs("description", deployed.get("description"), planned["description"])
    drift += _differs("event pattern", deployed.get("event_pattern"), planned.get("pattern"))
    drift += _differs("schedule", deployed.get("schedule_expression"), planned.get("schedule"))
    drift += _differs("role", deployed.get("role_arn"), None)
    drift += _differs("state", deployed.get("state"), "ENABLED")
    want = [dict(target, extra={}) for target in rule_targets(planned, target_id, target_arn)]
    have = sorted(
        (
            {"id": target["id"], "arn": target["arn"], "extra": target.get("extra") or {}}
            for target in deployed.get("targets") or []
        ),
        key=lambda target: target["id"],
    )
    drift += _differs("targets", have, want)
    return drift


def rule_targets(planned, target_id, target_arn):
    """A planned rule's targets, by id: the function, and the topic of a tamper rule (so that
    deleting the function does not silence it)."""
    targets = [{"id": target_id, "arn": target_arn}]
    if planned.get("topic_arn"):
        targets.append({"id": TOPIC_TARGET_ID, "arn": planned["topic_arn"]})
    return sorted(targets, key=lambda target: target["id"])


def rules_to_write(planned, deployed, target_id, target_arn):
    """The planned rules that differ from the deployed ones, in plan order, each with its
    ``drift``; the role writes only these."""
    current = {rule["name"]: rule for rule in deployed or []}
    changed = []
    for rule in planned:
        drift = rule_drift(rule, current.get(rule["name"]), target_id, target_arn)
        if drift:
            changed.append(dict(rule, drift=drift, targets=rule_targets(rule, target_id, target_arn)))
    return changed


def alarm_drift(current, want):
    """``want``: the module's request (``PutMetricAlarm`` parameters), or None for no alarm.
    The module rewrites the alarm unless every compared field is equal."""
    if want is None:
        return ["the alarm exists"] if current else []
    if current is None:
        return ["missing"]
    return [
        f"{key}: {current.get(key)!r} -> {want.get(key)!r}"
        for key in sorted(set(current) | set(want))
        if current.get(key) != want.get(key)
    ]


def policy_drift(current, document, tags):
    """``current``: ``{"exists", "default_version", "versions", "tags"}``.
    amazon.aws.iam_managed_policy takes the first version (in IAM's order) whose document
    equals ``document`` by amazon.aws's ``compare_policies``, creates one when none does,
    makes it the default, and sets the tags exactly (purge_tags)."""
    if not current or not current.get("exists"):
        return ["missing"]
    match = next(
        (
            version
            for version in current.get("versions") or []
            if not compare_policies(version["document"], document)
        ),
        None,
    )
    drift = []
    if match is None:
        drift.append("no version has the planned document")
    elif match["id"] != current.get("default_version"):
        drift.append(f"version {match['id']} has the planned document but is not the default")
    return drift + _differs("tags", current.get("tags") or {}, tags or {})


def role_drift(current, trust, description, policy_arns, tags):
    """``current``: ``{"exists", "trust", "description", "attached", "tags"}``.
    amazon.aws.iam_role updates the trust policy when ``compare_policies`` finds a
    difference, the description when it differs, the tags exactly, and attaches and (with
    purge_policies, its default) detaches managed policies until they are ``policy_arns``."""
    if not current or not current.get("exists"):
        return ["missing"]
    drift = ["trust policy differs"] if compare_policies(current.get("trust") or {}, trust) else []
    drift += _differs("description", current.get("description"), description)
    drift += _differs("managed policies", sorted(current.get("attached") or []), sorted(policy_arns))
    return drift + _differs("tags", current.get("tags") or {}, tags or {})


def function_drift(current, want):
    """``want``: the fields of ``function_state`` as planned (``vpc_id`` None). amazon.aws.lambda
    updates the configuration when one of these differs, the code when its SHA-256 differs,
    the tags exactly (purge_tags), and removes a VPC configuration nobody asked for."""
    if current is None:
        return ["missing"]
    return [
        f"{key}: {current.get(key)!r} -> {value!r}"
        for key, value in want.items()
        if current.get(key) != value
    ]


def region_drift(state, desired):
    """Per resource of ``desired_state``, what differs in ``state`` (the ``state`` that
    ``stop_protection_deployment_info`` returns); an empty list means in sync. Keys:
    ``role``, ``function``, ``alarm``, ``heartbeat``, ``statement``, ``log_group``,
    ``metric_filter``, ``heartbeat_filter``, ``invoke_config``, and ``policies``: the planned
    managed policies to write, each as planned (``name``, ``description``, ``document``)
    with its ``drift``; empty when every policy is in sync."""
    role = desired["role"]
    tags = desired["tags"]
    policies = []
    for policy in desired["policies"]:
        differences = policy_drift(
            (state.get("policies") or {}).get(policy["name"]), policy["document"], tags
        )
        if differences:
            policies.append(dict(policy, drift=differences))
    return {
        "policies": policies,
        "role": role_drift(state.get("role"), role["trust"], role["description"], role["policy_arns"], tags)
        if role["trust"] is not None
        else ["not compared: no trust policy given"],
        "function": function_drift(state.get("function"), desired["function"])
        if all(value is not None for key, value in desired["function"].items() if key != "vpc_id")
        else ["not compared: the function's settings were not all given"],
        "alarm": alarm_drift(state.get("alarm"), desired["alarm"]),
        "heartbeat": alarm_drift(state.get("heartbeat"), desired.get("heartbeat")),
        "statement": statement_drift(
            state.get("statement"),
            desired["statement"]["statement_id"],
            desired["function_arn"],
            desired["statement"]["source_arn"],
        ),
        "log_group": log_group_drift(
            state["log_group"], desired["log_group"]["retention"], desired["log_group"]["tags"]
        ),
        **{
            key: metric_filter_drift(
                state.get(key) or missing_metric_filter(),
                desired[key]["name"] if desired.get(key) else None,
                desired.get(key),
            )
            for key in ("metric_filter", "heartbeat_filter")
        },
        "invoke_config": invoke_config_drift(state.get("invoke_config"), desired["invoke_config"]),
    }
