"""Contract of the read-once rollout (plugins/module_utils/sync.py) against moto.

For each resource the role writes only when the reader finds a difference:

- after the amazon.aws (or guardrails.ec2) module wrote it, the reader finds none, and
  running the module again reports ``changed=false``;
- after a drift that module would repair (edited pattern, extra or missing target,
  disabled rule, changed tags, retention, statement, settings ...), the reader finds a
  difference, and the module indeed reports ``changed=true``.

So "in sync" is never laxer than the module's own comparison, which is what lets the role
skip the module.
"""

import io
import json
import zipfile

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.modules import (
    cloudwatchevent_rule,
    cloudwatchlogs_log_group,
    cloudwatchlogs_log_group_metric_filter,
    lambda_policy,
)
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import protection as p
from ansible_collections.guardrails.ec2.plugins.module_utils import sync
from ansible_collections.guardrails.ec2.plugins.module_utils.ownership import read_ownership
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules
from ansible_collections.guardrails.ec2.plugins.modules import lambda_event_invoke_config

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
NAME = "EC2Protect"
IDS = ["i-0000000000000000a", "i-0000000000000000b"]


class Retrying:
    """boto3 client that accepts the ``aws_retry`` keyword of AWSRetry-wrapped clients."""

    def __init__(self, client):
        self._client = client
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def call(*args, aws_retry=False, **kwargs):
            return method(*args, **kwargs)

        return call


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield lambda service: boto3.client(service, region_name=REGION)


@pytest.fixture
def plan():
    return p.build_plan(
        NAME,
        instances=[(instance_id, REGION, "x") for instance_id in IDS],
        bypass_tag_key="B",
        restart_policy={"sweep_minutes": 5},
    )


@pytest.fixture
def desired(plan):
    return sync.desired_state(plan, REGION, ACCOUNT, "aws", 30, 2, 3600)


@pytest.fixture
def function(aws):
    iam = aws("iam")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", "def handler(event, context):\n    return None\n")
    aws("lambda").create_function(
        FunctionName=NAME,
        Runtime="python3.13",
        Role=role,
        Handler="stop_protection_handler.handler",
        Code={"ZipFile": buffer.getvalue()},
        Tags={p.OWNER_TAG_KEY: p.OWNER_TAG_VALUE},
    )
    return NAME


def state(aws, plan):
    clients = {
        service: Retrying(aws(service))
        for service in ("lambda", "logs", "cloudwatch", "events", "iam", "sts")
    }
    return read_ownership(clients, NAME, REGION, ACCOUNT, "aws")["state"]


def run(run_module, module, args):
    return run_module(module, {"region": REGION, **args})


# --- rules ---------------------------------------------------------------------------------


def rule_args(rule, desired):
    args = {
        "name": rule["name"],
        "description": rule["description"],
        "targets": [{"id": desired["rule_target_id"], "arn": desired["function_arn"]}],
        "state": "present",
    }
    if rule.get("pattern"):
        args["event_pattern"] = rule["pattern"]
    if rule.get("schedule"):
        args["schedule_expression"] = rule["schedule"]
    return args


def rule_drift(aws, plan, desired):
    deployed = list_deployment_rules(Retrying(aws("events")), NAME)
    return {
        rule["name"]: rule["drift"]
        for rule in sync.rules_to_write(
            plan["regions"][0]["rules"], deployed, desired["rule_target_id"], desired["function_arn"]
        )
    }


def write_rules(run_module, plan, desired):
    return [
        run(run_module, cloudwatchevent_rule, rule_args(rule, desired))
        for rule in plan["regions"][0]["rules"]
    ]


def test_rules_written_by_the_module_are_in_sync_and_the_module_agrees(aws, run_module, plan, desired):
    assert set(rule_drift(aws, plan, desired)) == {f"{NAME}.1", f"{NAME}.sweep"}  # missing
    assert all(result["changed"] for result in write_rules(run_module, plan, desired))
    assert rule_drift(aws, plan, desired) == {}
    assert not any(result["changed"] for result in write_rules(run_module, plan, desired))


def _edit_pattern(events, desired):
    events.put_rule(
        Name=f"{NAME}.1",
        EventPattern=p.state_change_pattern(IDS[:1]),
        Description=events.describe_rule(Name=f"{NAME}.1")["Description"],
    )


def _extra_target(events, desired):
    events.put_targets(Rule=f"{NAME}.1", Targets=[{"Id": "other", "Arn": desired["function_arn"]}])


def _missing_target(events, desired):
    events.remove_targets(Rule=f"{NAME}.1", Ids=[desired["rule_target_id"]])


def _target_with_input(events, desired):
    target = {"Id": desired["rule_target_id"], "Arn": desired["function_arn"], "Input": '{"a": 1}'}
    events.put_targets(Rule=f"{NAME}.1", Targets=[target])


def _disabled(events, desired):
    events.disable_rule(Name=f"{NAME}.1")


def _description(events, desired):
    rule = events.describe_rule(Name=f"{NAME}.1")
    events.put_rule(
        Name=f"{NAME}.1", EventPattern=rule["EventPattern"], Description="guardrails.ec2 stop protection"
    )


def _schedule(events, desired):
    events.put_rule(
        Name=f"{NAME}.sweep",
        ScheduleExpression="rate(7 minutes)",
        Description=events.describe_rule(Name=f"{NAME}.sweep")["Description"],
    )


@pytest.mark.parametrize(
    ("drift", "rule", "reason"),
    [
        (_edit_pattern, f"{NAME}.1", "event pattern"),
        (_extra_target, f"{NAME}.1", "targets"),
        (_missing_target, f"{NAME}.1", "targets"),
        (_target_with_input, f"{NAME}.1", "targets"),
        (_disabled, f"{NAME}.1", "state"),
        (_description, f"{NAME}.1", "description"),
        (_schedule, f"{NAME}.sweep", "schedule"),
    ],
)
def test_a_drifted_rule_is_found_and_the_module_would_repair_it(
    aws, run_module, plan, desired, drift, rule, reason
):
    write_rules(run_module, plan, desired)
    drift(aws("events"), desired)
    found = rule_drift(aws, plan, desired)
    assert list(found) == [rule]
    assert any(line.startswith(reason) for line in found[rule]), found
    planned = next(item for item in plan["regions"][0]["rules"] if item["name"] == rule)
    assert run(run_module, cloudwatchevent_rule, rule_args(planned, desired))["changed"] is True
    assert rule_drift(aws, plan, desired) == {}


# --- the invoke statement ------------------------------------------------------------------


def statement_args(desired):
    return {
        "function_name": NAME,
        "statement_id": desired["statement"]["statement_id"],
        "action": "lambda:InvokeFunction",
        "principal": "events.amazonaws.com",
        "source_arn": desired["statement"]["source_arn"],
        "state": "present",
    }


def statement_drift(aws, plan, desired):
    return sync.region_drift(state(aws, plan), desired)["statement"]


def test_the_statement_written_by_the_module_is_in_sync(aws, run_module, plan, desired, function):
    assert statement_drift(aws, plan, desired)
    assert run(run_module, lambda_policy, statement_args(desired))["changed"] is True
    assert statement_drift(aws, plan, desired) == []
    assert run(run_module, lambda_policy, statement_args(desired))["changed"] is False


@pytest.mark.parametrize(
    "source_arn",
    [
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{NAME}-*",  # the names before 1.1.0
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/*",  # any rule of the account
    ],
)
def test_a_statement_with_another_source_is_found_and_replaced(
    aws, run_module, plan, desired, function, source_arn
):
    aws("lambda").add_permission(
        FunctionName=NAME,
        StatementId=desired["statement"]["statement_id"],
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=source_arn,
    )
    assert any(line.startswith("Condition") for line in statement_drift(aws, plan, desired))
    assert run(run_module, lambda_policy, statement_args(desired))["changed"] is True
    assert statement_drift(aws, plan, desired) == []


# --- log group and metric filter -------------------------------------------------------------


def log_group_args(desired):
    group = desired["log_group"]
    return {
        "log_group_name": group["name"],
        "retention": group["retention"],
        "tags": group["tags"],
        "state": "present",
    }


def metric_filter_args(desired):
    return {
        "log_group_name": desired["log_group"]["name"],
        "filter_name": desired["metric_filter"]["name"],
        "filter_pattern": desired["metric_filter"]["pattern"],
        "metric_transformation": desired["metric_filter"]["transformation"],
        "state": "present",
    }


def drift_of(aws, plan, desired, key):
    return sync.region_drift(state(aws, plan), desired)[key]


def test_log_group_and_metric_filter_written_by_the_modules_are_in_sync(aws, run_module, plan, desired):
    assert drift_of(aws, plan, desired, "log_group") == ["missing"]
    assert run(run_module, cloudwatchlogs_log_group, log_group_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "log_group") == []
    assert run(run_module, cloudwatchlogs_log_group, log_group_args(desired))["changed"] is False

    assert drift_of(aws, plan, desired, "metric_filter")
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired))["changed"]
        is True
    )
    assert drift_of(aws, plan, desired, "metric_filter") == []
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired))["changed"]
        is False
    )


def _retention(logs, group):
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)


def _no_retention(logs, group):
    logs.delete_retention_policy(logGroupName=group)


def _extra_tag(logs, group):
    logs.tag_log_group(logGroupName=group, tags={"team": "x"})


def _changed_tag(logs, group):
    logs.tag_log_group(logGroupName=group, tags={p.OWNER_TAG_KEY: "someone"})


@pytest.mark.parametrize(
    ("drift", "reason"),
    [(_retention, "retention"), (_no_retention, "retention"), (_extra_tag, "tags"), (_changed_tag, "tags")],
)
def test_a_drifted_log_group_is_found_and_the_module_would_repair_it(
    aws, run_module, plan, desired, drift, reason
):
    run(run_module, cloudwatchlogs_log_group, log_group_args(desired))
    drift(aws("logs"), desired["log_group"]["name"])
    found = drift_of(aws, plan, desired, "log_group")
    assert found and found[0].startswith(reason), found
    assert run(run_module, cloudwatchlogs_log_group, log_group_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "log_group") == []


# moto adds a second filter on PutMetricFilter with an existing name (AWS replaces it), and
# keeps the first PutFunctionEventInvokeConfig (AWS replaces it): the drifts below delete
# first, and after the module's repair only its "changed" is checked.


def _drop_filter(logs, desired):
    logs.delete_metric_filter(
        logGroupName=desired["log_group"]["name"], filterName=desired["metric_filter"]["name"]
    )


def _filter_pattern(logs, desired):
    _drop_filter(logs, desired)
    logs.put_metric_filter(
        logGroupName=desired["log_group"]["name"],
        filterName=desired["metric_filter"]["name"],
        filterPattern='{ $.action = "failed" }',
        metricTransformations=[{"metricName": "m", "metricNamespace": "n", "metricValue": "1"}],
    )


def _filter_value(logs, desired):
    transformation = desired["metric_filter"]["transformation"]
    _drop_filter(logs, desired)
    logs.put_metric_filter(
        logGroupName=desired["log_group"]["name"],
        filterName=desired["metric_filter"]["name"],
        filterPattern=desired["metric_filter"]["pattern"],
        metricTransformations=[
            {
                "metricName": transformation["metric_name"],
                "metricNamespace": transformation["metric_namespace"],
                "metricValue": "2",
            }
        ],
    )


@pytest.mark.parametrize("drift", [_filter_pattern, _filter_value])
def test_a_drifted_metric_filter_is_found_and_the_module_would_repair_it(
    aws, run_module, plan, desired, drift
):
    run(run_module, cloudwatchlogs_log_group, log_group_args(desired))
    run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired))
    drift(aws("logs"), desired)
    assert drift_of(aws, plan, desired, "metric_filter")
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired))["changed"]
        is True
    )


def test_no_alarm_wants_no_metric_filter(aws, run_module, plan, desired):
    run(run_module, cloudwatchlogs_log_group, log_group_args(desired))
    run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired))
    without = dict(desired, metric_filter=None)
    assert drift_of(aws, plan, without, "metric_filter")
    args = {key: metric_filter_args(desired)[key] for key in ("log_group_name", "filter_name")}
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, {**args, "state": "absent"})["changed"]
        is True
    )
    assert drift_of(aws, plan, without, "metric_filter") == []


# --- asynchronous invocation settings ----------------------------------------------------------


def invoke_config_args(desired):
    config = desired["invoke_config"]
    return {
        "function_name": NAME,
        "maximum_retry_attempts": config["maximum_retry_attempts"],
        "maximum_event_age_in_seconds": config["maximum_event_age_in_seconds"],
        "state": "present",
    }


def test_invoke_config_written_by_the_module_is_in_sync_and_drift_is_found(
    aws, run_module, plan, desired, function
):
    assert drift_of(aws, plan, desired, "invoke_config")
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "invoke_config") == []
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is False
    aws("lambda").delete_function_event_invoke_config(FunctionName=NAME)
    aws("lambda").put_function_event_invoke_config(FunctionName=NAME, MaximumRetryAttempts=0)
    assert drift_of(aws, plan, desired, "invoke_config")
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is True


def test_the_reader_reads_nothing_of_a_missing_function(aws, plan, desired):
    found = state(aws, plan)
    assert (found["statement"], found["invoke_config"]) == (None, None)
    drift = sync.region_drift(found, desired)
    assert all(drift[key] for key in ("statement", "log_group", "metric_filter", "invoke_config"))
    assert json.dumps(drift)  # plain data for the role's "what differs" line
