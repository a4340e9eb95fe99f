"""Contract of the read-once rollout (plugins/module_utils/drift.py) against moto.

For each resource the role writes only when the reader finds a difference:

- after the amazon.aws (or guardrails.ec2) module wrote it, the reader finds none, and
  running the module again reports ``changed=false``;
- after a drift that module would repair (edited pattern, extra or missing target,
  disabled rule, changed tags, retention, statement, settings ...), the reader finds a
  difference, and the module indeed reports ``changed=true``.

So "in sync" is never laxer than the module's own comparison, which is what lets the role
skip the module.
"""

import importlib
import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.modules import (
    cloudwatch_metric_alarm,
    cloudwatchevent_rule,
    cloudwatchlogs_log_group,
    cloudwatchlogs_log_group_metric_filter,
    iam_managed_policy,
    iam_role,
    lambda_policy,
)
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    drift,
    iam_policy,
    naming,
    patterns,
    render,
    resource_reads,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    plan as planning,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.ownership import read_ownership
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules
from ansible_collections.guardrails.ec2.plugins.modules import lambda_event_invoke_config, lambda_package

aws_lambda = importlib.import_module("ansible_collections.amazon.aws.plugins.modules.lambda")
TRUST = json.loads(
    (Path(__file__).resolve().parents[4] / "roles/stop_protection/files/assume_role_policy.json").read_text()
)
EXTRA_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
}

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
NAME = "EC2Protect"
IDS = ["i-0000000000000000a", "i-0000000000000000b"]


@pytest.fixture
def aws(monkeypatch, retrying):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield lambda service: retrying(boto3.client(service, region_name=REGION))


@pytest.fixture
def plan():
    return planning.build_plan(
        NAME,
        instances=[(instance_id, REGION, "x") for instance_id in IDS],
        bypass_tag_key="B",
        restart_policy={"sweep_minutes": 5},
        function={"timeout": 30, "restart_together": False},
    )


def package(directory, text="def handler(event, context):\n    return None\n"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", text)
    path = directory / f"package-{len(text)}.zip"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def zip_file(tmp_path):
    return package(tmp_path)


@pytest.fixture
def desired(plan, zip_file):
    policies, _scope = iam_policy.build_policies(plan, ACCOUNT, "aws")
    return render.desired_state(
        plan, REGION, ACCOUNT, "aws", policies, TRUST, lambda_package.code_sha256(zip_file.read_bytes())
    )


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
        Tags={naming.OWNER_TAG_KEY: naming.OWNER_TAG_VALUE},
    )
    return NAME


def state(aws, plan, policies=()):
    """What the reader finds (``read_ownership``), ``policies`` read besides the region's first."""
    clients = {service: aws(service) for service in ("lambda", "logs", "cloudwatch", "events", "iam", "sts")}
    return read_ownership(clients, NAME, REGION, ACCOUNT, "aws", list(policies))["state"]


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
    deployed = list_deployment_rules(aws("events"), NAME)
    return {
        rule["name"]: rule["drift"]
        for rule in drift.rules_to_write(
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
        EventPattern=patterns.state_change_pattern(IDS[:1]),
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
    return drift.region_drift(state(aws, plan), desired)["statement"]


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


def metric_filter_args(desired, key="metric_filter"):
    return {
        "log_group_name": desired["log_group"]["name"],
        "filter_name": desired[key]["name"],
        "filter_pattern": desired[key]["pattern"],
        "metric_transformation": desired[key]["transformation"],
        "state": "present",
    }


def drift_of(aws, plan, desired, key):
    return drift.region_drift(state(aws, plan), desired)[key]


@pytest.mark.parametrize("key", ["metric_filter", "heartbeat_filter"])
def test_log_group_and_metric_filter_written_by_the_modules_are_in_sync(aws, run_module, plan, desired, key):
    assert drift_of(aws, plan, desired, "log_group") == ["missing"]
    assert run(run_module, cloudwatchlogs_log_group, log_group_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "log_group") == []
    assert run(run_module, cloudwatchlogs_log_group, log_group_args(desired))["changed"] is False

    assert drift_of(aws, plan, desired, key)
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired, key))["changed"]
        is True
    )
    assert drift_of(aws, plan, desired, key) == []
    assert (
        run(run_module, cloudwatchlogs_log_group_metric_filter, metric_filter_args(desired, key))["changed"]
        is False
    )
    # The two filters' names share no prefix: neither module run sees the other's filter.
    other = "heartbeat_filter" if key == "metric_filter" else "metric_filter"
    assert drift_of(aws, plan, desired, other) == [
        f"0 metric filters named {desired[other]['name']}*, want exactly {desired[other]['name']}"
    ]


def _retention(logs, group):
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)


def _no_retention(logs, group):
    logs.delete_retention_policy(logGroupName=group)


def _extra_tag(logs, group):
    logs.tag_log_group(logGroupName=group, tags={"team": "x"})


def _changed_tag(logs, group):
    logs.tag_log_group(logGroupName=group, tags={naming.OWNER_TAG_KEY: "someone"})


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
        "reserved_concurrency": config["reserved_concurrency"],
        "state": "present",
    }


def test_invoke_config_written_by_the_module_is_in_sync_and_drift_is_found(
    aws, run_module, plan, desired, function
):
    assert drift_of(aws, plan, desired, "invoke_config")
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "invoke_config") == []
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is False
    # Someone reserves a concurrency the deployment does not set (off by default).
    aws("lambda").put_function_concurrency(FunctionName=NAME, ReservedConcurrentExecutions=5)
    assert drift_of(aws, plan, desired, "invoke_config") == ["reserved_concurrency: 5 -> -1"]
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is True
    assert drift_of(aws, plan, desired, "invoke_config") == []
    aws("lambda").delete_function_event_invoke_config(FunctionName=NAME)
    aws("lambda").put_function_event_invoke_config(FunctionName=NAME, MaximumRetryAttempts=0)
    assert drift_of(aws, plan, desired, "invoke_config")
    assert run(run_module, lambda_event_invoke_config, invoke_config_args(desired))["changed"] is True


def test_the_reader_reads_nothing_of_a_missing_function(aws, plan, desired):
    found = state(aws, plan)
    assert (found["statement"], found["invoke_config"]) == (None, None)
    differences = drift.region_drift(found, desired)
    assert all(differences[key] for key in ("statement", "log_group", "metric_filter", "invoke_config"))
    assert json.dumps(differences)  # plain data for the role's "what differs" line


# --- managed policies and role ------------------------------------------------------------------


def policy_args(desired):
    policy = desired["policies"][0]
    return {
        "name": policy["name"],
        "description": policy["description"],
        "policy": json.dumps(policy["document"]),
        "tags": desired["log_group"]["tags"],
        "state": "present",
    }


def role_args(desired):
    role = desired["role"]
    return {
        "name": role["name"],
        "description": role["description"],
        "assume_role_policy_document": json.dumps(role["trust"]),
        "managed_policies": role["policy_arns"],
        "create_instance_profile": False,
        "delete_instance_profile": False,
        "tags": desired["log_group"]["tags"],
        "state": "present",
    }


POLICY = "policy"


def iam_drift(aws, plan, desired, key):
    """The drift of the role, or (``POLICY``) of the region's first managed policy."""
    found = drift.region_drift(state(aws, plan, [policy["name"] for policy in desired["policies"]]), desired)
    if key != POLICY:
        return found[key]
    name = desired["policies"][0]["name"]
    return next((policy["drift"] for policy in found["policies"] if policy["name"] == name), [])


def test_policy_and_role_written_by_the_modules_are_in_sync(aws, run_module, plan, desired):
    assert iam_drift(aws, plan, desired, POLICY) == ["missing"]
    assert run_module(iam_managed_policy, policy_args(desired))["changed"] is True
    assert iam_drift(aws, plan, desired, POLICY) == []
    assert run_module(iam_managed_policy, policy_args(desired))["changed"] is False

    assert iam_drift(aws, plan, desired, "role") == ["missing"]
    assert run_module(iam_role, role_args(desired))["changed"] is True
    assert iam_drift(aws, plan, desired, "role") == []
    assert run_module(iam_role, role_args(desired))["changed"] is False


def _new_default_version(iam, desired):
    arn = desired["role"]["policy_arns"][0]
    document = json.loads(json.dumps(desired["policies"][0]["document"]))
    document["Statement"][0]["Resource"] = ["arn:aws:ec2:eu-west-1:123456789012:instance/*"]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)


def _policy_tag(iam, desired):
    iam.tag_policy(PolicyArn=desired["role"]["policy_arns"][0], Tags=[{"Key": "team", "Value": "x"}])


@pytest.mark.parametrize(("drift", "reason"), [(_new_default_version, "version"), (_policy_tag, "tags")])
def test_a_drifted_policy_is_found_and_the_module_would_repair_it(
    aws, run_module, plan, desired, drift, reason
):
    run_module(iam_managed_policy, policy_args(desired))
    drift(aws("iam"), desired)
    found = iam_drift(aws, plan, desired, POLICY)
    assert found and (reason in found[0] or found[0].startswith(reason)), found
    assert run_module(iam_managed_policy, policy_args(desired))["changed"] is True
    assert iam_drift(aws, plan, desired, POLICY) == []


def _trust(iam, desired):
    other = {
        "Version": "2012-10-17",
        "Statement": [dict(TRUST["Statement"][0], Principal={"Service": "ec2.amazonaws.com"})],
    }
    iam.update_assume_role_policy(RoleName=desired["role"]["name"], PolicyDocument=json.dumps(other))


def _role_description(iam, desired):
    iam.update_role(RoleName=desired["role"]["name"], Description="someone else's")


def _detached(iam, desired):
    iam.detach_role_policy(RoleName=desired["role"]["name"], PolicyArn=desired["role"]["policy_arns"][0])


def _extra_policy(iam, desired):
    arn = iam.create_policy(PolicyName="extra", PolicyDocument=json.dumps(EXTRA_POLICY))
    iam.attach_role_policy(RoleName=desired["role"]["name"], PolicyArn=arn["Policy"]["Arn"])


def _role_tag(iam, desired):
    iam.tag_role(RoleName=desired["role"]["name"], Tags=[{"Key": "team", "Value": "x"}])


@pytest.mark.parametrize(
    ("drift", "reason"),
    [
        (_trust, "trust"),
        (_role_description, "description"),
        (_detached, "managed policies"),
        (_extra_policy, "managed policies"),
        (_role_tag, "tags"),
    ],
)
def test_a_drifted_role_is_found_and_the_module_would_repair_it(
    aws, run_module, plan, desired, drift, reason
):
    run_module(iam_managed_policy, policy_args(desired))
    run_module(iam_role, role_args(desired))
    drift(aws("iam"), desired)
    found = iam_drift(aws, plan, desired, "role")
    assert found and found[0].startswith(reason), found
    assert run_module(iam_role, role_args(desired))["changed"] is True
    assert iam_drift(aws, plan, desired, "role") == []


# --- alarm ------------------------------------------------------------------------------------


def alarm_args(desired, key="alarm"):
    """The role's task passes the rendered alarm by the module's own parameter names."""
    return dict(desired[key], state="present")


def alarm_request(args):
    """The PutMetricAlarm request of module arguments (for changing the alarm behind its back)."""
    fields = {parameter: field for field, parameter in resource_reads.ALARM_PARAMETERS.items()}
    return {fields[key]: value for key, value in args.items() if key in fields}


@pytest.mark.parametrize("key", ["alarm", "heartbeat"])
def test_the_alarm_written_by_the_module_is_in_sync_and_drift_is_found(aws, run_module, plan, desired, key):
    assert drift_of(aws, plan, desired, key) == ["missing"]
    assert run(run_module, cloudwatch_metric_alarm, alarm_args(desired, key))["changed"] is True
    assert drift_of(aws, plan, desired, key) == []
    assert run(run_module, cloudwatch_metric_alarm, alarm_args(desired, key))["changed"] is False
    for change in (
        {"threshold": 5.0},
        {"treat_missing_data": "ignore"},
        {"alarm_actions": ["arn:aws:sns:eu-west-1:123456789012:t"]},
        # A field the role leaves out: the module compares it all the same.
        {"datapoints_to_alarm": 1},
    ):
        aws("cloudwatch").put_metric_alarm(**alarm_request(dict(desired[key]) | change))
        found = drift_of(aws, plan, desired, key)
        assert [line.split(":")[0] for line in found] == list(change), found
        assert run(run_module, cloudwatch_metric_alarm, alarm_args(desired, key))["changed"] is True
        assert drift_of(aws, plan, desired, key) == []
    assert drift_of(aws, plan, dict(desired, **{key: None}), key) == ["the alarm exists"]


# --- function -----------------------------------------------------------------------------------


def function_args(desired, zip_file):
    function = desired["function"]
    return {
        "name": NAME,
        "description": function["description"],
        "runtime": function["runtime"],
        "handler": function["handler"],
        "zip_file": str(zip_file),
        "role": function["role"],
        "timeout": function["timeout"],
        "memory_size": function["memory_size"],
        "environment_variables": function["environment_variables"],
        "tags": function["tags"],
        "state": "present",
    }


@pytest.fixture
def role(aws, desired):
    aws("iam").create_role(RoleName=desired["role"]["name"], AssumeRolePolicyDocument=json.dumps(TRUST))


def _environment(lam, tmp_path):
    lam.update_function_configuration(
        FunctionName=NAME, Environment={"Variables": {"PROTECTION_MODE": "tag"}}
    )


def _timeout(lam, tmp_path):
    lam.update_function_configuration(FunctionName=NAME, Timeout=3)


def _code(lam, tmp_path):
    lam.update_function_code(
        FunctionName=NAME, ZipFile=package(tmp_path, "def handler(e, c):\n    pass\n").read_bytes()
    )


def _function_tag(lam, tmp_path):
    lam.tag_resource(Resource=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NAME}", Tags={"team": "x"})


@pytest.mark.parametrize(
    ("drift", "field"),
    [
        (_environment, "environment_variables"),
        (_timeout, "timeout"),
        (_code, "code_sha256"),
        (_function_tag, "tags"),
    ],
)
def test_the_function_written_by_the_module_is_in_sync_and_drift_is_found(
    aws, run_module, plan, desired, zip_file, role, tmp_path, drift, field
):
    assert drift_of(aws, plan, desired, "function") == ["missing"]
    assert run(run_module, aws_lambda, function_args(desired, zip_file))["changed"] is True
    assert drift_of(aws, plan, desired, "function") == []
    assert run(run_module, aws_lambda, function_args(desired, zip_file))["changed"] is False
    drift(aws("lambda"), tmp_path)
    found = drift_of(aws, plan, desired, "function")
    assert [line.split(":")[0] for line in found] == [field], found
    assert run(run_module, aws_lambda, function_args(desired, zip_file))["changed"] is True
    assert drift_of(aws, plan, desired, "function") == []
