# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reads of a deployment's own resources, in the shapes the drift step compares.

``ownership.read_ownership`` reads a region once through these (the function, its policy,
asynchronous settings and reservation, metric filters, policy versions, alarms);
``drift`` compares what they return with what ``render`` plans. The audit
(``audit_reads``) reads the same resources with the same functions, and a role's policy
documents. Nothing here knows the plan. Clients are wrapped with AWSRetry by the module (calls pass
``aws_retry=True``).
"""

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import (
    is_boto3_error_code,
    paginated_query_with_retries,
)
from ansible_collections.amazon.aws.plugins.module_utils.iam import list_iam_managed_policy_versions

from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import compact_json
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import UNRESERVED


def read_function(lam, name):
    """The function's configuration with its ``Tags`` (``GetFunction``), or None when missing."""
    try:
        reply = lam.get_function(aws_retry=True, FunctionName=name)
    except is_boto3_error_code("ResourceNotFoundException"):
        return None
    config = reply["Configuration"]
    config["Tags"] = reply.get("Tags") or {}
    return config


def read_function_policy(lam, function, statement_id=None, document=False):
    """The function's resource policy as the rollout needs it: ``statement`` (the one named
    ``statement_id``, or None), ``size`` (characters of the document as compact JSON, as
    Lambda returns it and counts it against its 20 KB quota) and ``statements``
    (``[{"sid", "size"}]``). With ``document``, also the whole policy (``document``, with an
    empty ``Statement`` list when the function has none), for a reader of every statement:
    the audit."""
    try:
        text = lam.get_policy(aws_retry=True, FunctionName=function)["Policy"]
    except is_boto3_error_code("ResourceNotFoundException"):
        found = {"statement": None, "size": 0, "statements": []}
        return dict(found, document={"Statement": []}) if document else found
    policy = json.loads(text)
    statements = policy.get("Statement", [])
    found = {
        "statement": next((entry for entry in statements if entry.get("Sid") == statement_id), None)
        if statement_id
        else None,
        "size": _compact_size(policy),
        "statements": [{"sid": entry.get("Sid"), "size": _compact_size(entry)} for entry in statements],
    }
    return dict(found, document=policy) if document else found


def _compact_size(document):
    return len(compact_json(document))


def read_invoke_config(lam, function, qualifier=None, concurrency=True):
    """The asynchronous invocation settings in ``lambda_event_invoke_config``'s return shape,
    or None when there are none; with ``concurrency`` (and no qualifier) also the function's
    ``reserved_concurrency``."""
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
    if concurrency and not qualifier:
        found["reserved_concurrency"] = read_reserved_concurrency(lam, function)
    return found


def read_reserved_concurrency(lam, function):
    """The function's reserved concurrency, ``UNRESERVED`` (-1) when it has none (or the
    function does not exist)."""
    try:
        reply = lam.get_function_concurrency(aws_retry=True, FunctionName=function)
    except is_boto3_error_code("ResourceNotFoundException"):
        return UNRESERVED
    value = reply.get("ReservedConcurrentExecutions")
    return UNRESERVED if value is None else value


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


def described_alarms(cloudwatch, names):
    """``{name: the alarm as described, or None}`` for the alarm names, in one call (the
    deployment has two alarms; DescribeAlarms takes up to 100 names)."""
    reply = cloudwatch.describe_alarms(aws_retry=True, AlarmNames=list(names))
    found = {alarm["AlarmName"]: alarm for alarm in reply.get("MetricAlarms") or []}
    return {name: found.get(name) for name in names}


# DescribeAlarms fields by the parameter of amazon.aws.cloudwatch_metric_alarm that sets each.
ALARM_PARAMETERS = {
    "AlarmName": "name",
    "AlarmDescription": "description",
    "MetricName": "metric_name",
    "Namespace": "namespace",
    "Statistic": "statistic",
    "ExtendedStatistic": "extended_statistic",
    "ComparisonOperator": "comparison",
    "Threshold": "threshold",
    "Period": "period",
    "Unit": "unit",
    "EvaluationPeriods": "evaluation_periods",
    "DatapointsToAlarm": "datapoints_to_alarm",
    "EvaluateLowSampleCountPercentile": "evaluate_low_sample_count_percentile",
    "Dimensions": "dimensions",
    "AlarmActions": "alarm_actions",
    "InsufficientDataActions": "insufficient_data_actions",
    "OKActions": "ok_actions",
    "TreatMissingData": "treat_missing_data",
}


def alarm_state(found):
    """A described alarm as amazon.aws.cloudwatch_metric_alarm compares it (every field but
    those it leaves out), by that module's parameter names, or None. A field it has no
    parameter for keeps its name in snake_case: the module compares it too, so it counts."""
    if found is None:
        return None
    alarm = {key: value for key, value in found.items() if key not in ALARM_IGNORED_KEYS}
    alarm.setdefault("TreatMissingData", "missing")
    if not alarm.get("Dimensions"):
        alarm.pop("Dimensions", None)
    alarm = json.loads(json.dumps(alarm, default=str))
    named = {ALARM_PARAMETERS[key]: value for key, value in alarm.items() if key in ALARM_PARAMETERS}
    others = camel_dict_to_snake_dict(
        {key: value for key, value in alarm.items() if key not in ALARM_PARAMETERS}
    )
    return {**others, **named}


def read_policy_versions(iam, arn):
    """The versions of a managed policy in the order IAM lists them: ``[{"id", "document"}]``
    (IAM keeps at most five: one page)."""
    listed = [version["VersionId"] for version in list_iam_managed_policy_versions(iam, arn)]

    def document(version):
        found = iam.get_policy_version(aws_retry=True, PolicyArn=arn, VersionId=version)
        return {"id": version, "document": _policy_document(found["PolicyVersion"]["Document"])}

    # Side by side: up to five GetPolicyVersion calls, independent of each other.
    with ThreadPoolExecutor(max_workers=max(1, len(listed))) as pool:
        return list(pool.map(document, listed))


def _policy_document(document):
    """A policy document as a dict: boto3 decodes IAM's URL-encoded JSON; be lenient if not."""
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


def role_policy_documents(iam, role_arn):
    """The identity policy documents of a role: its attached managed policies (default
    versions) and its inline policies."""
    role = role_arn.rsplit("/", 1)[-1]
    documents = []
    # The audit's own errors (AccessDenied above all) stay botocore's: not amazon.aws's iam
    # helpers, which turn them into AnsibleIAMError.
    attached = paginated_query_with_retries(iam, "list_attached_role_policies", RoleName=role)
    for entry in attached.get("AttachedPolicies", []):
        policy = iam.get_policy(aws_retry=True, PolicyArn=entry["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            aws_retry=True, PolicyArn=entry["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )
        documents.append(_policy_document(version["PolicyVersion"]["Document"]))
    inline = paginated_query_with_retries(iam, "list_role_policies", RoleName=role)
    for policy_name in inline.get("PolicyNames", []):
        found = iam.get_role_policy(aws_retry=True, RoleName=role, PolicyName=policy_name)
        documents.append(_policy_document(found["PolicyDocument"]))
    return documents


# The function's configuration fields that amazon.aws.lambda compares, by the names of its
# parameters.
FUNCTION_FIELDS = {
    "Role": "role",
    "Handler": "handler",
    "Description": "description",
    "Timeout": "timeout",
    "MemorySize": "memory_size",
    "Runtime": "runtime",
}


def function_state(config, tags):
    """The function as amazon.aws.lambda compares it (configuration, VPC, tags, code hash), by
    that module's parameter names, or None."""
    if config is None:
        return None
    return {
        **{key: config.get(field) for field, key in FUNCTION_FIELDS.items()},
        "environment_variables": (config.get("Environment") or {}).get("Variables") or {},
        "vpc_id": (config.get("VpcConfig") or {}).get("VpcId") or None,
        "tags": tags or {},
        "code_sha256": config.get("CodeSha256"),
    }
