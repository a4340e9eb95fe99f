# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether a deployed resource already is what the plan wants: the read-once rollout.

``stop_protection_deployment_info`` reads a region's resources once (``ownership.read_ownership``); the
comparisons here say, per resource, what differs from the desired state. The role then runs
the amazon.aws task of a resource only when something differs: a rerun that finds nothing to
change writes nothing and starts few module processes.

Each comparison is at least as strict as the comparison of the module that would write the
resource (``tests/unit/plugins/modules/test_sync_contract.py`` runs those modules
against moto): when a comparison finds no difference, that module reports ``changed=false``.
Stricter is safe (the module then runs and finds nothing to do); laxer would leave drift.
"""

import json
from urllib.parse import unquote

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies

from ansible_collections.guardrails.ec2.plugins.module_utils.iam_policy import plan_policies
from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    TOPIC_TARGET_ID,
    function_arn,
    iam_arn,
    rule_kind,
    rule_source_pattern,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import compact_json
from ansible_collections.guardrails.ec2.plugins.module_utils.protection import plan_environment
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import marker_pages

EVENTS_PRINCIPAL = "events.amazonaws.com"


# --- reads -----------------------------------------------------------------------------------


def read_function_policy(lam, function, statement_id):
    """The function's resource policy as the rollout needs it: ``statement`` (the one named
    ``statement_id``, or None), ``size`` (characters of the document as compact JSON, as
    Lambda returns it and counts it against its 20 KB quota) and ``statements``
    (``[{"sid", "size"}]``)."""
    try:
        text = lam.get_policy(aws_retry=True, FunctionName=function)["Policy"]
    except is_boto3_error_code("ResourceNotFoundException"):
        return {"statement": None, "size": 0, "statements": []}
    document = json.loads(text)
    statements = document.get("Statement", [])
    return {
        "statement": next((found for found in statements if found.get("Sid") == statement_id), None),
        "size": _compact_size(document),
        "statements": [{"sid": found.get("Sid"), "size": _compact_size(found)} for found in statements],
    }


def _compact_size(document):
    return len(compact_json(document))


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
    found = {
        "function_arn": reply.get("FunctionArn"),
        "maximum_retry_attempts": reply.get("MaximumRetryAttempts"),
        "maximum_event_age_in_seconds": reply.get("MaximumEventAgeInSeconds"),
        "on_failure_destination_arn": ((reply.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        ),
    }
    if not qualifier:
        found["reserved_concurrency"] = read_reserved_concurrency(lam, function)
    return found


UNRESERVED = -1


def read_reserved_concurrency(lam, function):
    """The function's reserved concurrency, ``UNRESERVED`` (-1) when it has none (or the
    function does not exist)."""
    try:
        reply = lam.get_function_concurrency(aws_retry=True, FunctionName=function)
    except is_boto3_error_code("ResourceNotFoundException"):
        return UNRESERVED
    value = reply.get("ReservedConcurrentExecutions")
    return UNRESERVED if value is None else value


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
    excess = policy.get("size", 0) + 1 + _compact_size(invoke_statement(desired)) - limit
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


# --- the desired state of a region, and what differs ---------------------------------------------


HANDLER = "stop_protection_handler.handler"


def desired_state(
    plan,
    region,
    account,
    partition,
    log_retention_days,
    retry_attempts,
    max_event_age_seconds,
    failure_destination_arn=None,
    policies=None,
    trust_policy=None,
    environment=None,
    code_sha256=None,
    runtime=None,
    timeout=None,
    memory_size=None,
    restart_together=False,
):
    """What the role writes in ``region`` besides the rules: the values its tasks pass to the
    modules, and that ``region_drift`` compares. ``policies`` are the region's managed
    policies (``[{"name", "document"}]``, ``protection.build_policies``)."""
    names = plan["names"]
    alarm = plan.get("alarm")
    heartbeat = plan.get("heartbeat")
    entry = next(item for item in plan["regions"] if item["region"] == region)
    role_arn = iam_arn(partition, account, "role", entry["role"])
    return {
        # Every resource the role can tag carries these.
        "tags": plan["tags"],
        "policies": [
            {
                "name": policy["name"],
                "document": policy["document"],
                "description": f"guardrails.ec2 stop protection in {region} - start protected instances, write own logs",
            }
            for policy in policies or []
        ],
        "role": {
            "name": entry["role"],
            "arn": role_arn,
            "trust": trust_policy,
            "description": f"guardrails.ec2 stop protection - restart function in {region}",
            "policy_arns": [
                iam_arn(partition, account, "policy", policy["name"]) for policy in policies or []
            ],
        },
        "function": {
            "Role": role_arn,
            "Handler": HANDLER,
            "Description": "guardrails.ec2 stop protection - restarts protected instances that stop",
            "Timeout": int(timeout) if timeout is not None else None,
            "MemorySize": int(memory_size) if memory_size is not None else None,
            "Runtime": runtime,
            "Environment": environment,
            "VpcId": None,
            "Tags": plan["tags"],
            "CodeSha256": code_sha256,
        },
        "alarm": alarm_request(
            alarm,
            f"guardrails.ec2 stop protection {plan['name']}: an instance could not be restarted, "
            "or was suspended after too many restarts; see the function's log",
            comparison="GreaterThanOrEqualToThreshold",
            evaluation_periods=1,
            missing="notBreaching",
        ),
        "heartbeat": alarm_request(
            heartbeat,
            f"guardrails.ec2 stop protection {plan['name']}: no sweep has completed for about three "
            "sweep intervals - the protection may be disarmed (rule disabled or deleted, function "
            "deleted or throttled, role or log group broken)",
            comparison="LessThanThreshold",
            evaluation_periods=(heartbeat or {}).get("evaluation_periods"),
            missing="breaching",
        ),
        "function_arn": function_arn(partition, region, account, names["function"]),
        "rule_target_id": names["function"],
        "statement": {
            "statement_id": names["invoke_statement"],
            "source_arn": rule_source_pattern(partition, region, account, plan["name"]),
        },
        "log_group": {"name": names["log_group"], "retention": int(log_retention_days), "tags": plan["tags"]},
        "metric_filter": metric_filter_request(alarm),
        "heartbeat_filter": metric_filter_request(heartbeat),
        "invoke_config": {
            "maximum_retry_attempts": int(retry_attempts),
            "maximum_event_age_in_seconds": int(max_event_age_seconds),
            "on_failure_destination_arn": failure_destination_arn or None,
            # One container at a time restarts a burst of stops together (the function
            # reads this setting); otherwise each event decides for its own instance.
            "reserved_concurrency": 1 if restart_together else UNRESERVED,
        },
    }


def alarm_request(settings, description, comparison, evaluation_periods, missing):
    """The ``PutMetricAlarm`` request of one of the deployment's alarms on its own metric
    (``protection.alarm_settings``/``heartbeat_settings``), or None when there is none."""
    if not settings:
        return None
    return {
        "AlarmName": settings["name"],
        "AlarmDescription": description,
        "MetricName": settings["name"],
        "Namespace": settings["namespace"],
        "Statistic": "Sum",
        "ComparisonOperator": comparison,
        "Threshold": 1.0,
        "Period": settings["period"],
        "EvaluationPeriods": evaluation_periods,
        "TreatMissingData": missing,
        "AlarmActions": list(settings["actions"]),
        "InsufficientDataActions": [],
        "OKActions": [],
    }


def metric_filter_request(settings):
    """The metric filter that feeds one alarm's metric: 1 per matching log line."""
    if not settings:
        return None
    return {
        "name": settings["name"],
        "pattern": settings["pattern"],
        "transformation": {
            "metric_name": settings["name"],
            "metric_namespace": settings["namespace"],
            "metric_value": "1",
        },
    }


def render_region(plan, region, account, partition, code_sha256=None, trust_policy=None):
    """Everything the role writes in ``region``, from the plan alone: ``desired_state`` with
    the region's managed policies (``iam_policy.plan_policies``), their ``scope`` and the
    function's environment (``protection.plan_environment``). ``code_sha256`` is the
    package's hash, ``trust_policy`` the role's trust document (both files of the role)."""
    settings = plan["settings"]
    function = settings["function"]
    policies, scope = plan_policies(plan, region, account, partition)
    desired = desired_state(
        plan,
        region,
        account,
        partition,
        log_retention_days=function["log_retention_days"],
        retry_attempts=plan["restart_policy"]["retry_attempts"],
        max_event_age_seconds=function["max_event_age_seconds"],
        failure_destination_arn=settings["failure_destination_arn"],
        policies=policies,
        trust_policy=trust_policy,
        environment=plan_environment(plan),
        code_sha256=code_sha256,
        runtime=function["runtime"],
        timeout=function["timeout"],
        memory_size=function["memory_mb"],
        restart_together=function["restart_together"],
    )
    desired["scope"] = scope
    return desired


def region_drift(state, desired):
    """Per resource of ``desired_state``, what differs in ``state`` (the ``state`` that
    ``stop_protection_deployment_info`` returns); an empty list means in sync. Keys:
    ``policy <name>`` for each managed policy, ``role``, ``function``, ``alarm``,
    ``heartbeat``, ``statement``, ``log_group``, ``metric_filter``, ``heartbeat_filter``,
    ``invoke_config``."""
    role = desired["role"]
    tags = desired["tags"]
    return {
        **{
            f"policy {policy['name']}": policy_drift(
                (state.get("policies") or {}).get(policy["name"]), policy["document"], tags
            )
            for policy in desired["policies"]
        },
        "role": role_drift(state.get("role"), role["trust"], role["description"], role["policy_arns"], tags)
        if role["trust"] is not None
        else ["not compared: no trust policy given"],
        "function": function_drift(state.get("function"), desired["function"])
        if all(value is not None for key, value in desired["function"].items() if key != "VpcId")
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
                state.get(key) or read_metric_filter_missing(),
                desired[key]["name"] if desired.get(key) else None,
                desired.get(key),
            )
            for key in ("metric_filter", "heartbeat_filter")
        },
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
            changed.append(dict(rule, drift=drift, targets=rule_targets(rule, target_id, target_arn)))
    return changed


# --- IAM, function and alarm ------------------------------------------------------------------

# What amazon.aws.cloudwatch_metric_alarm leaves out when it compares an alarm.
ALARM_IGNORED_KEYS = (
    "ActionsEnabled",
    "StateValue",
    "StateReason",
    "StateReasonData",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "AlarmArn",
    "AlarmConfigurationUpdatedTimestamp",
    "Metrics",
)


def alarm_state(found):
    """A described alarm as amazon.aws.cloudwatch_metric_alarm compares it, or None."""
    if found is None:
        return None
    alarm = {key: value for key, value in found.items() if key not in ALARM_IGNORED_KEYS}
    alarm.setdefault("TreatMissingData", "missing")
    if not alarm.get("Dimensions"):
        alarm.pop("Dimensions", None)
    return json.loads(json.dumps(alarm, default=str))


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


def read_policy_versions(iam, arn):
    """The versions of a managed policy in the order IAM lists them: ``[{"id", "document"}]``."""
    versions = []
    for page in marker_pages(iam.list_policy_versions, PolicyArn=arn):
        for version in page.get("Versions", []):
            document = iam.get_policy_version(aws_retry=True, PolicyArn=arn, VersionId=version["VersionId"])[
                "PolicyVersion"
            ]["Document"]
            versions.append({"id": version["VersionId"], "document": _policy_document(document)})
    return versions


def _policy_document(document):
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


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


FUNCTION_FIELDS = ("Role", "Handler", "Description", "Timeout", "MemorySize", "Runtime")


def function_state(config, tags):
    """The function as amazon.aws.lambda compares it (configuration, VPC, tags, code hash), or None."""
    if config is None:
        return None
    return {
        **{field: config.get(field) for field in FUNCTION_FIELDS},
        "Environment": (config.get("Environment") or {}).get("Variables") or {},
        "VpcId": (config.get("VpcConfig") or {}).get("VpcId") or None,
        "Tags": tags or {},
        "CodeSha256": config.get("CodeSha256"),
    }


def function_drift(current, want):
    """``want``: the fields of ``function_state`` as planned (``VpcId`` None). amazon.aws.lambda
    updates the configuration when one of these differs, the code when its SHA-256 differs,
    the tags exactly (purge_tags), and removes a VPC configuration nobody asked for."""
    if current is None:
        return ["missing"]
    return [
        f"{key}: {current.get(key)!r} -> {value!r}"
        for key, value in want.items()
        if current.get(key) != value
    ]
