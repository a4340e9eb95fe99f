"""The dead-man's switch: the heartbeat alarm fires when the sweep stops running, whatever
stopped it, and clears when it runs again (protect.yml, IAM enforced for the function).

The harness evaluates alarms every 10 s (``GUARDRAILS_ALARM_EVALUATION_SECONDS``; AWS: every
minute); the range each evaluation reads is LocalStack's: the alarm's period and two more,
about as CloudWatch's evaluation range, so the alarm fires about three sweep intervals after
the last heartbeat.
"""

import sys

from conftest import ROOT, wait_for
from playbook_runs import protect_vars, run_playbook

sys.path.insert(0, str(ROOT / "tools"))
from lab import heartbeats


def test_the_heartbeat_alarm_fires_when_the_sweep_is_disarmed_and_clears_when_it_runs_again(
    aws, endpoint, instances
):
    name = "PulseProtect"
    (instance_id,) = instances(1)
    variables = protect_vars(name, [instance_id], stop_protection_sweep_minutes=1)
    cloudwatch, events, logs = aws("cloudwatch"), aws("events"), aws("logs")

    def heartbeat_state():
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"{name}-heartbeat"])["MetricAlarms"]
        return alarm["StateValue"]

    result = run_playbook("protect.yml", endpoint, variables)
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"{name}-heartbeat"])["MetricAlarms"]
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (
            60,
            1,
            "breaching",
        )
        # protect ran the first sweep: the new alarm does not start in ALARM.
        assert wait_for(lambda: heartbeats(logs, name), timeout=30, interval=1)
        assert wait_for(lambda: heartbeat_state() == "OK", timeout=60, interval=2), heartbeat_state()

        # An insider disables the sweep rule (a sweep cannot repair its own rule).
        events.disable_rule(Name=f"{name}.sweep")
        assert wait_for(lambda: heartbeat_state() == "ALARM", timeout=300, interval=5), heartbeat_state()
        audit = run_playbook("verify.yml", endpoint, variables)
        said = " ".join((audit.stdout + audit.stderr).split())
        assert f"Alarm {name}-heartbeat is in ALARM: no sweep has completed" in said, said[-3000:]

        # Enabled again: the next scheduled sweep's heartbeat clears the alarm.
        seen = len(heartbeats(logs, name))
        events.enable_rule(Name=f"{name}.sweep")
        assert wait_for(lambda: len(heartbeats(logs, name)) > seen, timeout=90, interval=2)
        assert wait_for(lambda: heartbeat_state() == "OK", timeout=60, interval=2), heartbeat_state()
    finally:
        assert run_playbook("unprotect.yml", endpoint, variables).returncode == 0
    assert not cloudwatch.describe_alarms(AlarmNamePrefix=name)["MetricAlarms"]
    assert not logs.describe_metric_filters(logGroupName=f"/aws/lambda/{name}")["metricFilters"]
