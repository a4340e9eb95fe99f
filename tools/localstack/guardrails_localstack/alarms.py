"""Metric alarms evaluated as often as CloudWatch does, not once per evaluation range.

LocalStack evaluates a metric alarm every ``EvaluationPeriods * Period`` seconds: an alarm
over two 5-minute periods changes state up to ten minutes late. CloudWatch evaluates a
standard-resolution alarm every minute, and a high-resolution one (10- or 30-second
period) every period. The state each evaluation reaches is LocalStack's own
(``calculate_alarm_state``, missing data and ``TreatMissingData`` included); only how
often it runs changes.

``GUARDRAILS_ALARM_EVALUATION_SECONDS`` (default 60) sets the interval for periods of a
minute or more: the tests set it lower so that a state change shows sooner. The window
each evaluation reads is the alarm's own, so nothing that would not alarm on AWS alarms
here.
"""

from __future__ import annotations

import logging
import os

LOG = logging.getLogger(__name__)

AWS_EVALUATION_SECONDS = 60


def evaluation_interval(period: int) -> int:
    configured = int(os.environ.get("GUARDRAILS_ALARM_EVALUATION_SECONDS") or AWS_EVALUATION_SECONDS)
    return min(period, configured) if period >= 60 else period


def install() -> None:
    from localstack.services.cloudwatch import alarm_scheduler

    original = alarm_scheduler.AlarmScheduler.schedule_metric_alarm
    if getattr(original, "guardrails", False):
        return

    def schedule_metric_alarm(self, alarm_arn: str) -> None:
        details = alarm_scheduler.get_metric_alarm_details_for_alarm_arn(alarm_arn)
        self.delete_scheduler_for_alarm(alarm_arn)
        if not details:
            LOG.warning("Scheduling alarm failed: could not find alarm %s", alarm_arn)
            return
        if not self._is_alarm_supported(details):
            LOG.warning("Alarm %s is not a simple metric alarm: its state is not evaluated.", alarm_arn)
            return
        self.scheduled_alarms[alarm_arn] = self.scheduler.schedule(
            func=alarm_scheduler.calculate_alarm_state,
            period=evaluation_interval(details["Period"]),
            fixed_rate=True,
            args=[alarm_arn],
            on_error=lambda error: LOG.error("Error evaluating alarm %s: %s", alarm_arn, error),
        )

    schedule_metric_alarm.guardrails = True
    alarm_scheduler.AlarmScheduler.schedule_metric_alarm = schedule_metric_alarm
