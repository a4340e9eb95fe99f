# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Everything the role writes in one region, from the plan alone: the desired state of each
resource in the shape its amazon.aws module takes and ``drift`` compares."""

from ansible_collections.guardrails.ec2.plugins.module_utils.environment import function_environment
from ansible_collections.guardrails.ec2.plugins.module_utils.iam_policy import build_policies
from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    function_arn,
    iam_arn,
    rule_source_pattern,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import UNRESERVED

HANDLER = "stop_protection_handler.handler"


def desired_state(plan, region, account, partition, policies=(), trust_policy=None, code_sha256=None):
    """What the role writes in ``region`` besides the rules, from the plan's validated
    settings: the values its tasks pass to the modules, and that ``region_drift`` compares.
    ``policies`` are the region's managed policies (``[{"name", "document"}]``,
    ``iam_policy.build_policies``); ``trust_policy`` and ``code_sha256`` come from the role's
    files."""
    settings = plan["settings"]
    function = settings["function"]
    environment = function_environment(plan)
    retry_attempts = plan["restart_policy"]["retry_attempts"]
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
            "role": role_arn,
            "handler": HANDLER,
            "description": "guardrails.ec2 stop protection - restarts protected instances that stop",
            "timeout": int(function["timeout"]),
            "memory_size": int(function["memory_mb"]),
            "runtime": function["runtime"],
            "environment_variables": environment,
            "vpc_id": None,
            "tags": plan["tags"],
            "code_sha256": code_sha256,
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
        "log_group": {
            "name": names["log_group"],
            "retention": int(function["log_retention_days"]),
            "tags": plan["tags"],
        },
        "metric_filter": metric_filter_request(alarm),
        "heartbeat_filter": metric_filter_request(heartbeat),
        "invoke_config": {
            "maximum_retry_attempts": int(retry_attempts),
            "maximum_event_age_in_seconds": int(function["max_event_age_seconds"]),
            "on_failure_destination_arn": settings["failure_destination_arn"] or None,
            # One container at a time restarts a burst of stops together (the function
            # reads this setting); otherwise each event decides for its own instance.
            "reserved_concurrency": 1 if function["restart_together"] else UNRESERVED,
        },
    }


def alarm_request(settings, description, comparison, evaluation_periods, missing):
    """One of the deployment's alarms on its own metric (``alarms.alarm_settings``/
    ``heartbeat_settings``) by amazon.aws.cloudwatch_metric_alarm's parameter names, with the
    values that module sends when the role leaves one out; None when there is no alarm."""
    if not settings:
        return None
    return {
        "name": settings["name"],
        "description": description,
        "metric_name": settings["name"],
        "namespace": settings["namespace"],
        "statistic": "Sum",
        "comparison": comparison,
        "threshold": 1.0,
        "period": settings["period"],
        "evaluation_periods": evaluation_periods,
        "treat_missing_data": missing,
        "alarm_actions": list(settings["actions"]),
        "insufficient_data_actions": [],
        "ok_actions": [],
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
    the region's managed policies (``iam_policy.build_policies``) and their ``scope``.
    ``code_sha256`` is the package's hash, ``trust_policy`` the role's trust document (both
    files of the role)."""
    policies, scope = build_policies(plan, account, partition, region)
    desired = desired_state(plan, region, account, partition, policies, trust_policy, code_sha256)
    desired["scope"] = scope
    return desired
