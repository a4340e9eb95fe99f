# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether a deployed resource already is what the plan wants: the read-once rollout.

``stop_protection_deployment_info`` reads a region's resources once (``read_state``); the
comparisons here say, per resource, what differs from the desired state. The role then runs
the amazon.aws task of a resource only when something differs: a rerun that finds nothing to
change writes nothing and starts few module processes.

Each comparison is at least as strict as the comparison of the module that would write the
resource (``tests/unit/plugins/modules/test_sync_contract.py`` runs those modules
against moto): when a comparison finds no difference, that module reports ``changed=false``.
Stricter is safe (the module then runs and finds nothing to do); laxer would leave drift.
"""

import json

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.guardrails.ec2.plugins.module_utils.protection import (
    function_arn,
    rule_source_pattern,
)

EVENTS_PRINCIPAL = "events.amazonaws.com"


# --- reads -----------------------------------------------------------------------------------


def read_statement(lam, function, statement_id):
    """The statement ``statement_id`` of the function's resource policy, or None."""
    try:
        policy = json.loads(lam.get_policy(aws_retry=True, FunctionName=function)["Policy"])
    except is_boto3_error_code("ResourceNotFoundException"):
        return None
    return next((found for found in policy.get("Statement", []) if found.get("Sid") == statement_id), None)


def read_invoke_config(lam, function, qualifier=None):
    """The asynchronous invocation settings in ``lambda_event_invoke_config``'s return shape,
    or None when there are none."""
    kwargs = {"FunctionName": function}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    try:
        reply = lam.get_function_event_invoke_config(aws_retry=True, **kwargs)
    except is_boto3_error_code("ResourceNotFoundException"):
        return None
    return {
        "function_arn": reply.get("FunctionArn"),
        "maximum_retry_attempts": reply.get("MaximumRetryAttempts"),
        "maximum_event_age_in_seconds": reply.get("MaximumEventAgeInSeconds"),
        "on_failure_destination_arn": ((reply.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        ),
    }


def read_metric_filter_missing():
    return {"count": 0, "name": None, "pattern": None, "transformation": {}}


def read_metric_filter(logs, group, name):
    """The metric filter as amazon.aws.cloudwatchlogs_log_group_metric_filter sees it: the
    filters whose names start with ``name`` (that module acts only when there is exactly one)."""
    try:
        found = logs.describe_metric_filters(aws_retry=True, logGroupName=group, filterNamePrefix=name).get(
            "metricFilters", []
        )
    except is_boto3_error_code("ResourceNotFoundException"):
        found = []
    first = found[0] if found else {}
    transformations = first.get("metricTransformations") or [{}]
    return {
        "count": len(found),
        "name": first.get("filterName"),
        "pattern": first.get("filterPattern"),
        "transformation": transformations[0],
    }


# --- comparisons: each returns the differences, empty when in sync ---------------------------------


def _differs(what, have, want):
    return [f"{what}: {have!r} -> {want!r}"] if have != want else []


def statement_drift(statement, statement_id, target_arn, source_arn):
    """The invoke statement against the one the role writes. Exact: any other principal,
    action, resource or condition (amazon.aws.lambda_policy compares action, principal and
    the source ARN and account) is a difference."""
    if statement is None:
        return [f"statement {statement_id} is missing"]
    want = {
        "Sid": statement_id,
        "Effect": "Allow",
        "Principal": {"Service": EVENTS_PRINCIPAL},
        "Action": "lambda:InvokeFunction",
        "Resource": target_arn,
        "Condition": {"ArnLike": {"AWS:SourceArn": source_arn}},
    }
    return [
        f"{key}: {statement.get(key)!r} -> {value!r}"
        for key, value in want.items()
        if statement.get(key) != value
    ] + [f"{key}: unexpected" for key in statement if key not in want]


def invoke_config_drift(current, want):
    """``want``: ``maximum_retry_attempts``, ``maximum_event_age_in_seconds``,
    ``on_failure_destination_arn`` (None for none); the comparison of
    guardrails.ec2.lambda_event_invoke_config itself."""
    if current is None:
        return ["no asynchronous invocation settings"]
    drift = []
    for key, value in want.items():
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
    """A planned rule (``protection.shard_rules`` entry) against the deployed one
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
    want = [{"id": target_id, "arn": target_arn, "extra": {}}]
    have = [
        {"id": target["id"], "arn": target["arn"], "extra": target.get("extra") or {}}
        for target in deployed.get("targets") or []
    ]
    drift += _differs("targets", have, want)
    return drift


# --- the desired state of a region, and what differs ---------------------------------------------


def desired_state(
    plan,
    region,
    account,
    partition,
    log_retention_days,
    retry_attempts,
    max_event_age_seconds,
    failure_destination_arn=None,
):
    """What the role writes in ``region`` besides IAM, function, alarm and rules: the values
    its tasks pass to the modules, and the comparisons of ``region_drift`` use."""
    names = plan["names"]
    alarm = plan.get("alarm")
    return {
        "function_arn": function_arn(partition, region, account, names["function"]),
        "rule_target_id": names["function"],
        "statement": {
            "statement_id": names["invoke_statement"],
            "source_arn": rule_source_pattern(partition, region, account, plan["name"]),
        },
        "log_group": {"name": names["log_group"], "retention": int(log_retention_days), "tags": plan["tags"]},
        "metric_filter": {
            "name": names["attention"],
            "pattern": alarm["pattern"],
            "transformation": {
                "metric_name": alarm["name"],
                "metric_namespace": alarm["namespace"],
                "metric_value": "1",
            },
        }
        if alarm
        else None,
        "invoke_config": {
            "maximum_retry_attempts": int(retry_attempts),
            "maximum_event_age_in_seconds": int(max_event_age_seconds),
            "on_failure_destination_arn": failure_destination_arn or None,
        },
    }


def region_drift(state, desired):
    """Per resource of ``desired_state``, what differs in ``state`` (the ``state`` that
    ``stop_protection_deployment_info`` returns); an empty list means in sync."""
    metric_filter = desired["metric_filter"]
    return {
        "statement": statement_drift(
            state.get("statement"),
            desired["statement"]["statement_id"],
            desired["function_arn"],
            desired["statement"]["source_arn"],
        ),
        "log_group": log_group_drift(
            state["log_group"], desired["log_group"]["retention"], desired["log_group"]["tags"]
        ),
        "metric_filter": metric_filter_drift(
            state["metric_filter"], metric_filter["name"] if metric_filter else None, metric_filter
        ),
        "invoke_config": invoke_config_drift(state.get("invoke_config"), desired["invoke_config"]),
    }


def rules_to_write(planned, deployed, target_id, target_arn):
    """The planned rules that differ from the deployed ones, in plan order, each with its
    ``drift``; the role writes only these."""
    current = {rule["name"]: rule for rule in deployed or []}
    changed = []
    for rule in planned:
        drift = rule_drift(rule, current.get(rule["name"]), target_id, target_arn)
        if drift:
            changed.append(dict(rule, drift=drift))
    return changed
