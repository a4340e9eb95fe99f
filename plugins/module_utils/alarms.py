# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The alarms on the function's log: attention (decisions that need a person) and the
sweep's heartbeat. Pure: no AWS calls."""

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import METRIC_NAMESPACE

# Decisions that need a person: one metric filter counts them, one alarm fires on any. A
# restart whose budget could not be written (budget_error: the instance may then restart
# forever) and a notice that could not be sent (notify-failed: e.g. a topic's KMS key the
# role may not use) count too, so that the alarm never goes quiet with the notices; and so do
# calls that disarm the deployment (tamper) and the sweep's repairs of them.
ATTENTION_PATTERN = (
    '{ ($.action = "failed") || ($.action = "suspended") || ($.action = "notify-failed")'
    ' || ($.action = "tamper") || ($.action = "tamper-repaired") || ($.action = "repair-failed")'
    ' || ($.budget_error = "*") }'
)


def alarm_settings(names, period, topic_arn):
    """The metric filter and alarm on decisions that need a person (``ATTENTION_PATTERN``),
    or None when turned off."""
    if not period:
        return None
    return {
        "name": names["attention"],
        "log_group": names["log_group"],
        "pattern": ATTENTION_PATTERN,
        "namespace": METRIC_NAMESPACE,
        "period": period,
        "actions": [topic_arn] if topic_arn else [],
    }


# The sweep's closing line (stop_protection_handler.handle_sweep).
HEARTBEAT_PATTERN = '{ $.action = "swept" }'
# The heartbeat alarm looks at one sweep interval, missing data breaching. CloudWatch
# evaluates an alarm over a range wider than its evaluation periods and fills in missing
# points only when that range holds fewer real ones than the periods ("Configuring how
# CloudWatch alarms treat missing data", CloudWatch user guide): the alarm fires once the
# whole range, about three sweep intervals, passed without a heartbeat; one late or lost
# scheduled sweep never fires it.
HEARTBEAT_EVALUATION_PERIODS = 1


def heartbeat_settings(names, sweep_minutes, alarm_period, topic_arn):
    """The dead-man's switch: a metric filter counts the sweep's ``swept`` lines, an alarm
    fires when none arrived for about three sweep intervals (``HEARTBEAT_EVALUATION_PERIODS``),
    missing data counting as breaching. None without a sweep or with alarms turned off."""
    if not sweep_minutes or not alarm_period:
        return None
    return {
        "name": names["heartbeat"],
        "log_group": names["log_group"],
        "pattern": HEARTBEAT_PATTERN,
        "namespace": METRIC_NAMESPACE,
        "period": sweep_minutes * 60,
        "evaluation_periods": HEARTBEAT_EVALUATION_PERIODS,
        "actions": [topic_arn] if topic_arn else [],
    }
