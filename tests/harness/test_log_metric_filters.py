"""Metric filters count only the log lines their pattern matches, as on AWS.

LocalStack community counts every line; the harness's matcher makes the role's alarm on
failed and suspended decisions meaningful on the emulator.
"""

import json
import time
from datetime import UTC, datetime, timedelta

from conftest import unique, wait_for

PATTERN = '{ ($.action = "failed") || ($.action = "suspended") }'


def test_only_matching_json_lines_are_counted(aws):
    logs, cloudwatch = aws("logs"), aws("cloudwatch")
    group, metric = f"/harness/{unique('metric')}", unique("attention")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_metric_filter(
        logGroupName=group,
        filterName=metric,
        filterPattern=PATTERN,
        metricTransformations=[{"metricName": metric, "metricNamespace": "harness", "metricValue": "1"}],
    )
    lines = [
        "START RequestId: 1 Version: $LATEST",
        json.dumps({"action": "started", "instance_id": "i-1"}),
        json.dumps({"action": "failed", "instance_id": "i-2"}),
        json.dumps({"action": "suspended", "instance_id": "i-3"}),
        json.dumps({"action": "skipped-bypass", "reason": "failed once"}),
        "REPORT RequestId: 1 Duration: 1 ms",
    ]
    now = int(time.time() * 1000)
    try:
        logs.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )

        def total():
            reply = cloudwatch.get_metric_statistics(
                Namespace="harness",
                MetricName=metric,
                StartTime=datetime.now(tz=UTC) - timedelta(minutes=5),
                EndTime=datetime.now(tz=UTC) + timedelta(minutes=1),
                Period=60,
                Statistics=["Sum"],
            )
            return sum(point["Sum"] for point in reply["Datapoints"])

        assert wait_for(lambda: total() >= 2, timeout=10)
        time.sleep(1)
        assert total() == 2  # the failed and the suspended line, nothing else
    finally:
        logs.delete_log_group(logGroupName=group)
