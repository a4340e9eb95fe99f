"""Unit tests for the restart Lambda (roles/stop_protection/files/stop_protection_handler.py)."""

import importlib.util
import json
import time
from pathlib import Path
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

HANDLER_PATH = Path(__file__).resolve().parents[3] / "roles/stop_protection/files/stop_protection_handler.py"
REGION = "eu-west-1"


def load_handler():
    spec = importlib.util.spec_from_file_location("stop_protection_handler", HANDLER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(monkeypatch):
    for key, value in {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PROTECTION_MODE": "instance_ids",
        "BYPASS_TAG_KEY": "StopProtectionBypass",
    }.items():
        monkeypatch.setenv(key, value)
    for key in (
        "NOTIFICATION_TOPIC_ARN",
        "PROTECTION_TAG_KEY",
        "PROTECTION_TAG_VALUE",
        "AWS_ENDPOINT_URL",
        "RESTART_TOGETHER",
    ):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture
def fn(env):
    return load_handler()


@pytest.fixture
def naps(monkeypatch):
    """A recording stand-in for ``time.sleep``, passed to the handler's waiting functions.

    Any wait that is not passed it would sleep for real: ``time.sleep`` itself is made to
    fail for the duration of the test, and monkeypatch puts it back afterwards.
    """
    taken = []

    def unexpected(seconds):
        raise AssertionError(f"time.sleep({seconds}) called; the handler must use the sleep it is given")

    monkeypatch.setattr("time.sleep", unexpected)
    return taken


def handle(fn, event, context, naps):
    """Run the state-change path with an explicit sleep that records instead of waiting."""
    return fn.handle_state_change(event, context, fn.settings(), sleep=naps.append)


@pytest.fixture
def aws(env):
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def run_instance(ec2, tags=None, state="stopped"):
    kwargs = {"ImageId": "ami-12345678", "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    instance_id = ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance_id])
    elif state == "terminated":
        ec2.terminate_instances(InstanceIds=[instance_id])
    return instance_id


def state_of(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ]


def stopped_event(instance_id, state="stopped"):
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": state},
    }


def log_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def sweep_decisions(capsys):
    """The sweep's lines but its closing heartbeat (``swept``), which every sweep logs."""
    lines = log_lines(capsys)
    assert lines and lines[-1]["action"] == "swept", lines
    return lines[:-1]


def client_error(code, operation="StartInstances"):
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


class FakeContext:
    def __init__(self, remaining_ms=60_000):
        self.remaining = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining


# --- decisions against moto -------------------------------------------------------------


def test_starts_a_stopped_instance_and_logs_one_decision(fn, aws, capsys):
    instance_id = run_instance(aws)
    result = fn.handler(stopped_event(instance_id), FakeContext())
    assert result["action"] == "started"
    assert state_of(aws, instance_id) in ("pending", "running")
    (line,) = log_lines(capsys)
    assert line["instance_id"] == instance_id
    assert line["region"] == REGION
    assert line["action"] == "started"
    assert line["state_reason_code"] == "Client.UserInitiatedShutdown"
    assert isinstance(line["duration_ms"], float)


def test_bypass_tag_leaves_the_instance_stopped(fn, aws, capsys):
    instance_id = run_instance(aws, tags={"StopProtectionBypass": "maintenance until 14:00"})
    assert fn.handler(stopped_event(instance_id), FakeContext())["action"] == "skipped-bypass"
    assert state_of(aws, instance_id) == "stopped"
    assert "StopProtectionBypass" in log_lines(capsys)[0]["reason"]


def test_custom_bypass_tag_key(fn, aws, env):
    env.setenv("BYPASS_TAG_KEY", "Maintenance")
    instance_id = run_instance(aws, tags={"Maintenance": "yes"})
    assert fn.handler(stopped_event(instance_id), None)["action"] == "skipped-bypass"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"StopProtection": "enabled"}, "started"),
        ({"StopProtection": "disabled"}, "skipped-not-protected"),
        ({}, "skipped-not-protected"),
    ],
)
def test_tag_mode_acts_only_on_tagged_instances(fn, aws, env, tags, expected):
    env.setenv("PROTECTION_MODE", "tag")
    env.setenv("PROTECTION_TAG_KEY", "StopProtection")
    env.setenv("PROTECTION_TAG_VALUE", "enabled")
    instance_id = run_instance(aws, tags=tags)
    assert fn.handler(stopped_event(instance_id), None)["action"] == expected
    assert (state_of(aws, instance_id) == "stopped") == (expected != "started")


@pytest.mark.parametrize("state", ["running", "terminated"])
def test_instance_no_longer_stopped_is_left_alone(fn, aws, capsys, state):
    instance_id = run_instance(aws, state=state)
    result = fn.handler(stopped_event(instance_id), None)
    assert result["action"] == "skipped-state"
    assert result["state"] == state
    assert state_of(aws, instance_id) == state


def test_unknown_instance_is_nothing_to_do(fn, aws):
    result = fn.handler(stopped_event("i-0123456789abcdef0"), None)
    assert result["action"] == "skipped-state"
    assert result["state"] == "not-found"


@pytest.mark.parametrize("event_state", ["stopping", "running", "pending", "terminated"])
def test_events_for_other_states_are_skipped(fn, aws, event_state):
    instance_id = run_instance(aws)
    assert fn.handler(stopped_event(instance_id, event_state), None)["action"] == "skipped-state"
    assert state_of(aws, instance_id) == "stopped"


@pytest.mark.parametrize(
    "event",
    [
        "not an object",
        [],
        {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"},
        {
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "detail": {"state": "stopped"},
        },
        {
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "detail": {"instance-id": 42, "state": "stopped"},
        },
        {"detail-type": "Something Else", "detail": {}},
    ],
)
def test_malformed_events_are_ignored_without_raising(fn, aws, capsys, event):
    assert fn.handler(event, None)["action"] == "ignored"
    (line,) = log_lines(capsys)
    assert line["action"] == "ignored"


def test_region_comes_from_the_runtime(fn, aws, env):
    env.setenv("AWS_REGION", "ap-southeast-2")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="ap-southeast-2")
        instance_id = run_instance(ec2)
        fn._CLIENTS.clear()
        assert (
            fn.handler(stopped_event(instance_id) | {"region": "ap-southeast-2"}, None)["action"] == "started"
        )
    assert "us-east-1" not in HANDLER_PATH.read_text()


# --- retries and failures, with stubbed clients ----------------------------------------------


def started_reply(instance_id="i-0aaaaaaaaaaaaaaaa", previous="stopped"):
    return {
        "StartingInstances": [
            {
                "InstanceId": instance_id,
                "PreviousState": {"Name": previous},
                "CurrentState": {"Name": "pending"},
            }
        ]
    }


def stub_ec2(
    fn, states, start_effects=(), reason="Client.InstanceInitiatedShutdown", tags=None, lifecycle=None
):
    """An EC2 client whose describe returns `states` in turn and whose start follows `start_effects`."""
    extra = {"InstanceLifecycle": lifecycle} if lifecycle else {}
    ec2 = mock.MagicMock()
    ec2.describe_instances.side_effect = [
        {
            "Reservations": [
                {
                    "Instances": [
                        {
                            "InstanceId": "i-0aaaaaaaaaaaaaaaa",
                            "State": {"Name": state},
                            "StateReason": {"Code": reason},
                            "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
                            **extra,
                        }
                    ]
                }
            ]
        }
        for state in states
    ]
    ec2.start_instances.side_effect = list(start_effects) or None
    ec2.start_instances.return_value = started_reply()
    fn._CLIENTS.update(ec2=ec2, sns=mock.MagicMock())
    return ec2


def test_waits_while_the_instance_is_still_stopping(fn, env, naps):
    ec2 = stub_ec2(fn, ["stopping", "stopping", "stopped"])
    result = handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    assert result["action"] == "started"
    assert ec2.describe_instances.call_count == 3
    assert naps == [fn.STOPPING_POLL_SECONDS] * 2
    assert result["state_reason_code"] == "Client.InstanceInitiatedShutdown"


def test_incorrect_instance_state_is_retried_then_succeeds(fn, env, naps):
    ec2 = stub_ec2(fn, ["stopped"], [client_error("IncorrectInstanceState")] * 2 + [started_reply()])
    result = handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    assert result["action"] == "started"
    assert result["start_retries"] == 2
    assert ec2.start_instances.call_count == 3
    assert naps == list(fn.START_RETRY_DELAYS[:2])


def test_incorrect_instance_state_gives_up_after_its_retries(fn, env, capsys, naps):
    attempts = len(fn.START_RETRY_DELAYS) + 1
    stub_ec2(fn, ["stopped"], [client_error("IncorrectInstanceState")] * attempts)
    with pytest.raises(fn.RestartFailed, match="IncorrectInstanceState"):
        handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    assert naps == list(fn.START_RETRY_DELAYS)
    assert log_lines(capsys)[-1]["action"] == "failed"


def test_retries_stop_when_the_invocation_runs_out_of_time(fn, env, naps):
    ec2 = stub_ec2(fn, ["stopped"], [client_error("IncorrectInstanceState")] * 10)
    with pytest.raises(fn.RestartFailed):
        handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(remaining_ms=3200), naps)
    assert ec2.start_instances.call_count == 1
    assert naps == []


@pytest.mark.parametrize(
    "code", ["InsufficientInstanceCapacity", "Throttling", "RequestLimitExceeded", "UnauthorizedOperation"]
)
def test_other_errors_raise_for_lambda_retries(fn, env, capsys, naps, code):
    ec2 = stub_ec2(fn, ["stopped"], [client_error(code)])
    with pytest.raises(fn.RestartFailed, match=code):
        handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    assert ec2.start_instances.call_count == 1
    assert naps == []
    line = log_lines(capsys)[-1]
    assert (line["action"], line["error_code"]) == ("failed", code)


def test_instance_vanishing_before_start_is_not_a_failure(fn, env, naps):
    stub_ec2(fn, ["stopped"], [client_error("InvalidInstanceID.NotFound")])
    result = handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    assert (result["action"], result["state"]) == ("skipped-state", "not-found")


# --- notifications ---------------------------------------------------------------------------


def test_notification_on_restart_and_on_failure(fn, env):
    env.setenv("NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:restarts")
    stub_ec2(fn, ["stopped"])
    fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    sns = fn._CLIENTS["sns"]
    (call,) = sns.publish.call_args_list
    assert call.kwargs["TopicArn"] == "arn:aws:sns:eu-west-1:123456789012:restarts"
    assert "Restarted i-0aaaaaaaaaaaaaaaa" in call.kwargs["Subject"]
    assert "Client.InstanceInitiatedShutdown" in call.kwargs["Message"]

    stub_ec2(fn, ["stopped"], [client_error("InsufficientInstanceCapacity")])
    with pytest.raises(fn.RestartFailed):
        fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    message = fn._CLIENTS["sns"].publish.call_args.kwargs["Message"]
    assert "InsufficientInstanceCapacity" in message


def test_no_notification_without_topic(fn, env):
    stub_ec2(fn, ["stopped"])
    fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    fn._CLIENTS["sns"].publish.assert_not_called()


def test_failed_notification_does_not_fail_the_restart(fn, env, capsys):
    env.setenv("NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:gone")
    stub_ec2(fn, ["stopped"])
    fn._CLIENTS["sns"].publish.side_effect = client_error("NotFound", "Publish")
    assert fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())["action"] == "started"
    assert [line["action"] for line in log_lines(capsys)] == ["started", "notify-failed"]


def test_notification_reaches_a_real_topic(fn, aws, env):
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="restarts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    env.setenv("NOTIFICATION_TOPIC_ARN", topic)
    instance_id = run_instance(aws)
    fn.handler(stopped_event(instance_id), None)
    (message,) = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert instance_id in json.loads(message["Body"])["Message"]


# --- attribution -----------------------------------------------------------------------------


def api_call_event(instance_ids, event_name="StopInstances"):
    return {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "region": REGION,
        "detail": {
            "eventName": event_name,
            "eventTime": "2026-11-27T03:04:05Z",
            "sourceIPAddress": "203.0.113.7",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice"},
            "requestParameters": {
                "instancesSet": {"items": [{"instanceId": i} for i in instance_ids]},
                "force": False,
            },
        },
    }


def test_attribution_logs_the_caller_and_starts_nothing(fn, aws, capsys):
    instance_id = run_instance(aws)
    result = fn.handler(api_call_event([instance_id]), None)
    (record,) = result["attributed"]
    assert record["caller_arn"] == "arn:aws:iam::123456789012:user/alice"
    assert record["source_ip"] == "203.0.113.7"
    assert record["event_time"] == "2026-11-27T03:04:05Z"
    assert state_of(aws, instance_id) == "stopped"
    assert log_lines(capsys)[0]["action"] == "attributed"


def test_attribution_in_tag_mode_only_for_tagged_instances(fn, aws, env):
    env.setenv("PROTECTION_MODE", "tag")
    tagged = run_instance(aws, tags={"StopProtection": "enabled"})
    untagged = run_instance(aws)
    result = fn.handler(api_call_event([tagged, untagged]), None)
    assert [r["instance_id"] for r in result["attributed"]] == [tagged]


def test_attribution_in_instance_mode_only_for_instances_in_our_rules(fn, aws, env):
    events = boto3.client("events", region_name=REGION)
    protected, other = run_instance(aws), run_instance(aws)
    pattern = {"source": ["aws.ec2"], "detail": {"state": ["stopped"], "instance-id": [protected]}}
    events.put_rule(Name="EC2Protect.1", EventPattern=json.dumps(pattern))
    events.put_rule(Name="EC2Protect.attribution", EventPattern=json.dumps({"source": ["aws.ec2"]}))
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    result = fn.handler(api_call_event([protected, other]), None)
    assert [r["instance_id"] for r in result["attributed"]] == [protected]


def test_attribution_sees_instances_protected_after_the_rules_were_read(fn, aws, env):
    """A warm container read the rules before a protect run added an instance."""
    events = boto3.client("events", region_name=REGION)
    first, joined = run_instance(aws), run_instance(aws)

    def protect(ids):
        pattern = {"source": ["aws.ec2"], "detail": {"state": ["stopped"], "instance-id": ids}}
        events.put_rule(Name="EC2Protect.1", EventPattern=json.dumps(pattern))

    protect([first])
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    assert [r["instance_id"] for r in fn.handler(api_call_event([first]), None)["attributed"]] == [first]
    protect([first, joined])
    result = fn.handler(api_call_event([joined]), None)
    assert [r["instance_id"] for r in result["attributed"]] == [joined]


@pytest.mark.parametrize(
    "event",
    [
        stopped_event("i-0123456789abcdef0") | {"source": "my.app"},
        api_call_event(["i-0123456789abcdef0"]) | {"source": "aws.events"},
        {"detail-type": "Scheduled Event", "source": "my.scheduler", "detail": {}},
        {"detail-type": "EC2 Instance State-change Notification", "detail": {"state": "stopped"}},
    ],
)
def test_events_from_an_unexpected_source_are_ignored(fn, aws, capsys, event):
    """The invoke permission admits any rule named <name>.*, also on a custom bus, where
    anyone may put an event that looks like EC2's: it is ignored, with a decision line."""
    instance_id = run_instance(aws)
    if "detail" in event and "instance-id" in event["detail"]:
        event["detail"]["instance-id"] = instance_id
    assert fn.handler(event, FakeContext())["action"] == "ignored"
    (line,) = log_lines(capsys)
    assert line["action"] == "ignored" and "source" in line["reason"]
    assert state_of(aws, instance_id) == "stopped"


def tamper_event(event_name, parameters, source="aws.events", error_code=None, **identity):
    detail = {
        "eventSource": f"{source[4:]}.amazonaws.com",
        "eventName": event_name,
        "eventTime": "2026-12-06T03:04:05Z",
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.9",
        "userIdentity": identity or {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory"},
        "requestParameters": parameters,
    }
    if error_code:
        detail["errorCode"] = error_code
    return {
        "detail-type": "AWS API Call via CloudTrail",
        "source": source,
        "region": REGION,
        "detail": detail,
    }


def test_a_disarming_call_is_logged_as_tamper_and_notified(fn, aws, env, capsys):
    """Who, what, from where: one tamper line (the attention alarm counts it) and a notice."""
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="restarts")["TopicArn"]
    env.setenv("NOTIFICATION_TOPIC_ARN", topic)
    with mock.patch.object(fn, "notify", wraps=fn.notify) as notify:
        result = fn.handler(tamper_event("DisableRule", {"name": "EC2Protect.1"}), None)
    (line,) = log_lines(capsys)
    assert line == result["tamper"]
    assert {
        key: line[key] for key in ("action", "event_name", "target", "caller_arn", "source_ip", "region")
    } == {
        "action": "tamper",
        "event_name": "DisableRule",
        "target": "name=EC2Protect.1",
        "caller_arn": "arn:aws:iam::123456789012:user/mallory",
        "source_ip": "198.51.100.9",
        "region": REGION,
    }
    assert "refused" not in line
    (call,) = notify.call_args_list
    subject, lines = call.args[1], call.args[2]
    assert subject == "Stop protection: DisableRule by arn:aws:iam::123456789012:user/mallory"
    assert "called DisableRule on name=EC2Protect.1" in lines[0] and lines[1] == "It succeeded."


@pytest.mark.parametrize(
    ("event", "target", "extra"),
    [
        (
            tamper_event("PutFunctionConcurrency20171031", {"functionName": "EC2Protect"}, "aws.lambda"),
            "functionName=EC2Protect",
            {},
        ),
        (
            tamper_event(
                "CreateTags",
                {
                    "resourcesSet": {"items": [{"resourceId": "i-0123456789abcdef0"}]},
                    "tagSet": {"items": [{"key": "StopProtectionBypass", "value": "x"}]},
                },
                "aws.ec2",
                error_code="Client.UnauthorizedOperation",
            ),
            "resources=i-0123456789abcdef0",
            {"tag_keys": ["StopProtectionBypass"], "refused": "Client.UnauthorizedOperation"},
        ),
    ],
)
def test_the_tamper_line_says_what_was_touched_and_whether_it_was_refused(
    fn, aws, capsys, event, target, extra
):
    fn.handler(event, None)
    (line,) = log_lines(capsys)
    assert line["target"] == target
    assert {key: line.get(key) for key in extra} == extra


def test_a_tamper_event_is_acted_on_only_from_an_aws_source(fn, aws, capsys):
    """A custom bus takes any source but aws.* from PutEvents: a look-alike is ignored."""
    assert fn.handler(tamper_event("DisableRule", {"name": "EC2Protect.1"}) | {"source": "my.app"}, None) == {
        "action": "ignored"
    }
    assert fn.handler(tamper_event("DisableRule", {"name": "EC2Protect.1"}) | {"source": "aws."}, None) == {
        "action": "ignored"
    }
    assert [line["action"] for line in log_lines(capsys)] == ["ignored", "ignored"]


# --- cold start --------------------------------------------------------------------------------


def test_clients_are_built_once_per_container(fn, aws):
    instance_id = run_instance(aws)
    with mock.patch.object(fn.boto3, "client", wraps=boto3.client) as make_client:
        fn.handler(stopped_event(instance_id), None)
        fn.handler(stopped_event(instance_id), None)
    assert [call.args[0] for call in make_client.call_args_list] == ["ec2"]  # once, and only what is needed


def test_imports_only_the_standard_library_and_boto3():
    imported = {
        line.split()[1].split(".")[0]
        for line in HANDLER_PATH.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= {"calendar", "json", "os", "time", "boto3", "botocore"}


# --- restart budget ----------------------------------------------------------------------------


def tag_value(ec2, instance_id, key):
    tags = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0].get(
        "Tags", []
    )
    return {t["Key"]: t["Value"] for t in tags}.get(key)


def restart_cycle(fn, ec2, instance_id):
    """Stop the instance and hand the handler its stopped event, as EventBridge would."""
    ec2.stop_instances(InstanceIds=[instance_id])
    return fn.handler(stopped_event(instance_id), FakeContext())


def test_restarts_up_to_the_limit_then_suspends(fn, aws, env, capsys):
    env.setenv("RESTART_LIMIT", "3")
    instance_id = run_instance(aws, state="running")
    actions = [restart_cycle(fn, aws, instance_id)["action"] for _cycle in range(4)]
    assert actions == ["started", "started", "started", "suspended"]
    assert state_of(aws, instance_id) == "stopped"
    suspended = tag_value(aws, instance_id, "StopProtectionSuspended")
    assert suspended.endswith("3 restarts within 3600 s")
    assert suspended[:4].isdigit() and "T" in suspended and "Z " in suspended  # UTC time first
    assert tag_value(aws, instance_id, "StopProtectionRestarts") == ""
    lines = log_lines(capsys)
    assert [line["restarts_in_window"] for line in lines] == [1, 2, 3, 3]
    assert lines[-1]["restart_limit"] == 3

    # Left alone like a bypassed instance, until a person removes the tag.
    assert restart_cycle(fn, aws, instance_id)["action"] == "skipped-suspended"
    aws.delete_tags(Resources=[instance_id], Tags=[{"Key": "StopProtectionSuspended"}])
    result = fn.handler(stopped_event(instance_id), FakeContext())
    assert (result["action"], result["restarts_in_window"]) == ("started", 1)


def test_restarts_outside_the_window_do_not_count(fn, aws, env):
    env.setenv("RESTART_LIMIT", "2")
    env.setenv("RESTART_WINDOW_SECONDS", "600")
    now = int(fn.time.time())
    instance_id = run_instance(
        aws, tags={"StopProtectionRestarts": f"{now - 4000} {now - 700} {now - 30} junk"}
    )
    result = fn.handler(stopped_event(instance_id), FakeContext())
    assert (result["action"], result["restarts_in_window"]) == ("started", 2)
    assert tag_value(aws, instance_id, "StopProtectionRestarts").split()[0] == str(now - 30)


def test_custom_budget_tags(fn, aws, env):
    env.setenv("RESTART_LIMIT", "1")
    env.setenv("RESTART_HISTORY_TAG_KEY", "Restarts")
    env.setenv("SUSPENDED_TAG_KEY", "Suspended")
    instance_id = run_instance(aws, state="running")
    assert [restart_cycle(fn, aws, instance_id)["action"] for _cycle in range(2)] == ["started", "suspended"]
    assert tag_value(aws, instance_id, "Suspended")
    assert tag_value(aws, instance_id, "StopProtectionSuspended") is None


def test_a_start_another_invocation_made_is_not_counted(fn, env):
    ec2 = stub_ec2(fn, ["stopped"])
    ec2.start_instances.return_value = started_reply(previous="pending")
    result = fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    assert result["action"] == "skipped-state"
    ec2.create_tags.assert_not_called()


def test_duplicate_event_after_the_restart_is_nothing_to_do(fn, aws):
    instance_id = run_instance(aws)
    assert fn.handler(stopped_event(instance_id), None)["action"] == "started"
    assert fn.handler(stopped_event(instance_id), None)["action"] == "skipped-state"
    assert len(tag_value(aws, instance_id, "StopProtectionRestarts").split()) == 1


def test_suspension_is_notified(fn, env):
    env.setenv("NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:restarts")
    now = int(fn.time.time())
    stub_ec2(fn, ["stopped"], tags={"StopProtectionRestarts": f"{now - 3} {now - 2} {now - 1}"})
    assert fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())["action"] == "suspended"
    call = fn._CLIENTS["sns"].publish.call_args
    assert call.kwargs["Subject"].startswith("SUSPENDED")
    assert "Remove that tag" in call.kwargs["Message"]
    fn._CLIENTS["ec2"].start_instances.assert_not_called()


def test_a_failed_budget_write_does_not_undo_the_restart(fn, env):
    ec2 = stub_ec2(fn, ["stopped"])
    ec2.create_tags.side_effect = client_error("UnauthorizedOperation", "CreateTags")
    result = fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    assert (result["action"], result["budget_error"]) == ("started", "UnauthorizedOperation")


# --- what not to restart -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stub", "switch", "action", "says"),
    [
        ({"tags": {"aws:autoscaling:groupName": "web"}}, "SKIP_AUTO_SCALING", "skipped-managed", "'web'"),
        (
            {"lifecycle": "spot", "reason": "Server.SpotInstanceShutdown"},
            "SKIP_SPOT_INTERRUPTIONS",
            "skipped-reason",
            "Spot interruption",
        ),
        ({"reason": "Client.UserInitiatedHibernate"}, "RESTART_HIBERNATED", "skipped-reason", "hibernated"),
    ],
)
def test_leaves_alone_what_others_own_unless_switched(fn, env, capsys, stub, switch, action, says):
    stub_ec2(fn, ["stopped"], **stub)
    result = fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    assert result["action"] == action and says in result["reason"]
    fn._CLIENTS["ec2"].start_instances.assert_not_called()

    env.setenv(switch, "true" if switch == "RESTART_HIBERNATED" else "false")
    stub_ec2(fn, ["stopped"], **stub)
    assert fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())["action"] == "started"


def test_spot_instance_stopped_by_a_person_is_restarted(fn, env):
    stub_ec2(fn, ["stopped"], lifecycle="spot", reason="Client.UserInitiatedShutdown")
    assert fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())["action"] == "started"


# --- failures are one decision line each -----------------------------------------------------------


def test_errors_other_than_client_errors_still_log_failed(fn, env, capsys, naps):
    from botocore.exceptions import ReadTimeoutError

    stub_ec2(fn, ["stopped"], [ReadTimeoutError(endpoint_url="https://ec2")])
    with pytest.raises(fn.RestartFailed, match="Read timeout"):
        handle(fn, stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext(), naps)
    line = log_lines(capsys)[-1]
    assert (line["action"], line["error_code"]) == ("failed", "ReadTimeoutError")


@pytest.mark.parametrize(("attempts", "says"), [("2", "up to 2 times"), ("0", "does not retry")])
def test_failure_notice_tells_what_happens_next(fn, env, attempts, says):
    env.setenv("NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:restarts")
    env.setenv("MAX_RETRY_ATTEMPTS", attempts)
    stub_ec2(fn, ["stopped"], [client_error("InsufficientInstanceCapacity")])
    with pytest.raises(fn.RestartFailed):
        fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    message = fn._CLIENTS["sns"].publish.call_args.kwargs["Message"]
    assert says in message and "will retry" not in message


@pytest.mark.parametrize("error_code", ["Client.DryRunOperation", "Client.UnauthorizedOperation"])
def test_attribution_skips_calls_that_stopped_nothing(fn, aws, capsys, error_code):
    instance_id = run_instance(aws)
    event = api_call_event([instance_id])
    event["detail"]["errorCode"] = error_code
    assert fn.handler(event, None) == {"attributed": []}
    assert error_code in log_lines(capsys)[0]["reason"]


def test_every_setting_the_role_renders_is_one_the_handler_reads():
    """The role writes the environment, the handler reads it: the names must agree."""
    from ansible_collections.guardrails.ec2.plugins.module_utils import environment, plan

    rendered = environment.function_environment(
        plan.build_plan(
            "EC2Protect",
            mode="tag",
            regions=[REGION],
            tag_key="K",
            tag_value="V",
            bypass_tag_key="B",
            notification_topic_arn="arn:aws:sns:eu-west-1:123456789012:t",
            attribution=True,
        )
    )
    source = HANDLER_PATH.read_text()
    assert [
        name
        for name in rendered
        if f'os.environ.get("{name}"' not in source and f'_flag("{name}"' not in source
    ] == []


def test_the_handlers_defaults_are_the_roles(fn, env):
    """With a setting left out of the environment the handler falls back to its own default:
    the same as the role's (validate.DEFAULT_RESTART_POLICY), never a second opinion."""
    from ansible_collections.guardrails.ec2.plugins.module_utils import validate

    for name in (
        "RESTART_LIMIT",
        "RESTART_WINDOW_SECONDS",
        "RESTART_HISTORY_TAG_KEY",
        "SUSPENDED_TAG_KEY",
        "SKIP_AUTO_SCALING",
        "SKIP_SPOT_INTERRUPTIONS",
        "RESTART_HIBERNATED",
        "MAX_RETRY_ATTEMPTS",
    ):
        env.delenv(name, raising=False)
    found = fn.settings()
    policy = validate.DEFAULT_RESTART_POLICY
    assert (
        found["restart_limit"],
        found["restart_window"],
        found["history_tag_key"],
        found["suspended_tag_key"],
        found["skip_auto_scaling"],
        found["skip_spot_interruptions"],
        found["restart_hibernated"],
        found["max_retry_attempts"],
    ) == (
        policy["restart_limit"],
        policy["restart_window_seconds"],
        policy["history_tag_key"],
        policy["suspended_tag_key"],
        policy["skip_auto_scaling"],
        policy["skip_spot_interruptions"],
        policy["restart_hibernated"],
        policy["retry_attempts"],
    )


@mock_aws
@pytest.mark.parametrize("count", [1, 3])
def test_the_handler_reads_the_ids_of_the_rules_the_role_renders(fn, count):
    """The sweep and attribution find the protected ids in the rules: rule names
    (naming.rule_name, the RULE_NAME_PREFIX of the environment) and pattern shape
    (patterns.state_change_pattern) as the role writes them."""
    from ansible_collections.guardrails.ec2.plugins.module_utils import environment, naming, patterns
    from ansible_collections.guardrails.ec2.plugins.module_utils.plan import build_plan

    ids = [f"i-{index:017x}" for index in range(1, 301)]
    plan = build_plan(
        "EC2Protect",
        instances=[(i, REGION, "test") for i in ids[: count * 100]],
        bypass_tag_key="B",
        attribution=True,
    )
    rules = [rule for rule in plan["regions"][0]["rules"] if rule["instance_ids"]]
    events = boto3.client("events", region_name=REGION)
    for index, rule in enumerate(rules, start=1):
        assert rule["name"] == naming.rule_name("EC2Protect", index)
        events.put_rule(Name=rule["name"], EventPattern=patterns.state_change_pattern(rule["instance_ids"]))
    prefix = environment.function_environment(plan)["RULE_NAME_PREFIX"]
    assert fn.protected_by_rules(prefix, fresh=True) == set(ids[: count * 100])


# --- the reconciliation sweep ------------------------------------------------------------------------


def scheduled_event():
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/EC2Protect.sweep"],
        "detail": {},
    }


def put_shard_rule(index, instance_ids):
    boto3.client("events", region_name=REGION).put_rule(
        Name=f"EC2Protect.{index}",
        EventPattern=json.dumps(
            {
                "source": ["aws.ec2"],
                "detail-type": ["EC2 Instance State-change Notification"],
                "detail": {"state": ["stopped"], "instance-id": instance_ids},
            }
        ),
    )


def test_sweep_restarts_the_listed_instances_left_stopped(fn, aws, env, capsys):
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    lost, also_lost, fine = (run_instance(aws) for _instance in range(3))
    aws.start_instances(InstanceIds=[fine])
    stranger = run_instance(aws)
    put_shard_rule(1, [lost, fine])
    put_shard_rule(2, [also_lost])

    result = fn.handler(scheduled_event(), FakeContext())

    assert result == {"swept": 2, "actions": ["started", "started"]}
    assert {state_of(aws, i) for i in (lost, also_lost, fine)} == {"running"}
    assert state_of(aws, stranger) == "stopped"
    lines = sweep_decisions(capsys)
    assert sorted(line["instance_id"] for line in lines) == sorted([lost, also_lost])
    assert {line["trigger"] for line in lines} == {"sweep"}


def test_each_sweep_that_read_the_instances_leaves_a_heartbeat(fn, aws, env, capsys):
    """One ``swept`` line per sweep, last, with what it found; a sweep that could not read
    the instances (a broken role) leaves none, so that the heartbeat alarm fires."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    put_shard_rule(1, [run_instance(aws)])
    fn.handler(scheduled_event(), FakeContext())
    restarted, heartbeat = log_lines(capsys)
    assert (restarted["action"], heartbeat) == (
        "started",
        {"action": "swept", "trigger": "sweep", "stopped_found": 1},
    )
    fn.handler(scheduled_event(), FakeContext())
    (heartbeat,) = log_lines(capsys)
    assert heartbeat == {"action": "swept", "trigger": "sweep", "stopped_found": 0}
    ec2 = mock.MagicMock()
    ec2.get_paginator.return_value.paginate.side_effect = client_error(
        "UnauthorizedOperation", "DescribeInstances"
    )
    fn._CLIENTS.update(ec2=ec2)
    with pytest.raises(ClientError):
        fn.handler(scheduled_event(), FakeContext())
    assert log_lines(capsys) == []


def test_sweep_reads_the_rules_afresh_each_time(fn, aws, env):
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    first, second = run_instance(aws), run_instance(aws)
    put_shard_rule(1, [first])
    assert fn.handler(scheduled_event(), FakeContext())["swept"] == 1
    put_shard_rule(1, [first, second])  # a protect run added an instance
    assert fn.handler(scheduled_event(), FakeContext())["swept"] == 1
    assert state_of(aws, second) == "running"


def test_sweep_in_tag_mode_finds_instances_by_tag(fn, aws, env):
    env.setenv("PROTECTION_MODE", "tag")
    env.setenv("PROTECTION_TAG_KEY", "StopProtection")
    env.setenv("PROTECTION_TAG_VALUE", "enabled")
    tagged = run_instance(aws, tags={"StopProtection": "enabled"})
    untagged = run_instance(aws, tags={"StopProtection": "disabled"})
    assert fn.handler(scheduled_event(), FakeContext())["actions"] == ["started"]
    assert (state_of(aws, tagged), state_of(aws, untagged)) == ("running", "stopped")


FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:EC2Protect"


class ContextOf(FakeContext):
    """The Lambda context of the deployment's function (``invoked_function_arn``)."""

    def __init__(self, arn=FUNCTION_ARN):
        super().__init__()
        self.invoked_function_arn = arn


@pytest.mark.parametrize("mode", ["instance_ids", "tag"])
def test_sweep_repairs_disarmed_rules_and_says_so(fn, aws, env, capsys, mode):
    """Disabled, or its target removed: the sweep enables the rule again, puts the function
    back as its target, and logs one tamper-repaired line per rule; a sound rule is left be."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    if mode == "tag":
        env.setenv("PROTECTION_MODE", "tag")
    events = boto3.client("events", region_name=REGION)
    instance_id = run_instance(aws)
    aws.start_instances(InstanceIds=[instance_id])
    put_shard_rule(1, [instance_id])
    put_shard_rule(2, [instance_id])
    events.put_targets(Rule="EC2Protect.2", Targets=[{"Id": "EC2Protect", "Arn": FUNCTION_ARN}])
    events.put_rule(Name="EC2Protect.attribution", EventPattern=json.dumps({"source": ["aws.ec2"]}))
    events.put_targets(Rule="EC2Protect.attribution", Targets=[{"Id": "x", "Arn": FUNCTION_ARN + "-other"}])
    events.disable_rule(Name="EC2Protect.1")  # disabled, and no target either
    events.put_rule(Name="EC2Protect.tamper-ec2", EventPattern=json.dumps({"source": ["aws.ec2"]}))
    events.put_targets(Rule="EC2Protect.tamper-ec2", Targets=[{"Id": "EC2Protect", "Arn": FUNCTION_ARN}])
    events.disable_rule(Name="EC2Protect.tamper-ec2")  # the insider silences the tamper report first

    result = fn.handler(scheduled_event(), ContextOf(FUNCTION_ARN + ":7"))

    assert result["actions"] == ["tamper-repaired"] * 3
    assert events.describe_rule(Name="EC2Protect.tamper-ec2")["State"] == "ENABLED"
    assert events.describe_rule(Name="EC2Protect.1")["State"] == "ENABLED"
    for rule in ("EC2Protect.1", "EC2Protect.attribution"):
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert {"Id": "EC2Protect", "Arn": FUNCTION_ARN} in [
            {"Id": t["Id"], "Arn": t["Arn"]} for t in targets
        ]
    lines = {line["rule"]: line for line in log_lines(capsys) if line["action"] == "tamper-repaired"}
    assert lines["EC2Protect.1"]["repaired"] == ["enabled again", "target put back"]
    assert lines["EC2Protect.attribution"]["repaired"] == ["target put back"]
    assert "EC2Protect.2" not in lines
    # Repaired, so the next sweep finds nothing to say.
    assert fn.handler(scheduled_event(), ContextOf())["actions"] == []


def test_a_repair_that_fails_never_stops_the_sweeps_restarts(fn, aws, env, capsys):
    """The role may lack the repair permissions (a policy from before them): the sweep
    still restarts, and says that it could not check the rules."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    lost = run_instance(aws)
    put_shard_rule(1, [lost])
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListTargetsByRule")
    with mock.patch.object(fn, "repair_own_rules", side_effect=denied):
        result = fn.handler(scheduled_event(), ContextOf())
    assert result["actions"] == ["started", "repair-failed"]
    assert state_of(aws, lost) in ("pending", "running")
    (failed,) = [line for line in log_lines(capsys) if line["action"] == "repair-failed"]
    assert failed["error_code"] == "AccessDeniedException"


def test_sweep_obeys_bypass_suspension_and_budget(fn, aws, env, capsys):
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    env.setenv("RESTART_LIMIT", "1")
    now = int(fn.time.time())
    bypassed = run_instance(aws, tags={"StopProtectionBypass": "CHG-1"})
    suspended = run_instance(aws, tags={"StopProtectionSuspended": "2026-11-27T00:00:00Z 1 restarts"})
    spent = run_instance(aws, tags={"StopProtectionRestarts": str(now - 10)})
    put_shard_rule(1, sorted([bypassed, suspended, spent]))
    fn.handler(scheduled_event(), FakeContext())
    actions = {line["instance_id"]: line["action"] for line in sweep_decisions(capsys)}
    assert actions == {bypassed: "skipped-bypass", suspended: "skipped-suspended", spent: "suspended"}
    assert {state_of(aws, i) for i in actions} == {"stopped"}


class Clock(FakeContext):
    """A context whose remaining time runs down with the clock and with the naps taken."""

    def __init__(self, naps, remaining_ms=60_000):
        super().__init__(remaining_ms)
        self.began, self.naps = time.monotonic(), naps

    def get_remaining_time_in_millis(self):
        return self.remaining - int((time.monotonic() - self.began + sum(self.naps)) * 1000)


def test_one_sweep_finishes_a_thousand_stopped_instances_within_the_default_timeout(
    fn, aws, env, capsys, naps
):
    """1,000 protected instances stopped with their events lost: one sweep within the
    function's default 60 s starts them all - ten StartInstances calls, the five past the
    bucket's burst paced half a second apart - with one decision each and no instance left."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    reply = aws.run_instances(ImageId="ami-12345678", MinCount=1000, MaxCount=1000, InstanceType="t3.micro")
    ids = sorted(instance["InstanceId"] for instance in reply["Instances"])
    aws.stop_instances(InstanceIds=ids)
    for index, start in enumerate(range(0, 1000, 200), start=1):
        put_shard_rule(index, ids[start : start + 200])
    with mock.patch.object(fn, "notify"):
        result = fn.handle_sweep(scheduled_event(), Clock(naps), fn.settings(), sleep=naps.append)
    assert result["swept"] == 1000 and result["actions"].count("started") == 1000
    assert naps == [0.5] * 5
    assert {state_of(aws, i) for i in ids} == {"running"}
    assert not [line for line in log_lines(capsys) if line["action"] == "sweep-incomplete"]


def test_a_mass_stop_is_swept_in_batches_with_one_decision_each(fn, aws, env, capsys):
    """250 protected instances stopped at once, their events lost: one sweep starts them
    all with one StartInstances per 100 and writes the budget in one CreateTags per
    distinct value (the stamp of the second), and sends one notice per batch."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    reply = aws.run_instances(ImageId="ami-12345678", MinCount=250, MaxCount=250, InstanceType="t3.micro")
    ids = sorted(instance["InstanceId"] for instance in reply["Instances"])
    aws.stop_instances(InstanceIds=ids)
    put_shard_rule(1, ids[:200])
    put_shard_rule(2, ids[200:])
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    fn._CLIENTS.update(ec2=ec2)
    with mock.patch.object(fn, "notify") as notify:
        result = fn.handler(scheduled_event(), FakeContext())
    assert result == {"swept": 250, "actions": ["started"] * 250}
    assert [len(call.kwargs["InstanceIds"]) for call in ec2.start_instances.call_args_list] == [100, 100, 50]
    assert ec2.create_tags.call_count <= 2 * 3  # at most two stamps per batch
    assert sum(len(call.kwargs["Resources"]) for call in ec2.create_tags.call_args_list) == 250
    assert notify.call_count == 3
    assert {state_of(aws, i) for i in ids} == {"running"}
    lines = sweep_decisions(capsys)
    assert sorted(line["instance_id"] for line in lines) == ids
    assert {line["restarts_in_window"] for line in lines} == {1}


class OwnFunction(FakeContext):
    """The context of a function whose reserved concurrency ``lam`` reports."""

    function_name = "EC2Protect"


def reserved(fn, env, concurrency):
    """A deployment with ``restart_together`` (its RESTART_TOGETHER variable) and the
    function's reserved concurrency as GetFunctionConcurrency reports it."""
    env.setenv("RESTART_TOGETHER", "true")
    lam = mock.MagicMock()
    lam.get_function_concurrency.return_value = (
        {} if concurrency is None else {"ReservedConcurrentExecutions": concurrency}
    )
    fn._CLIENTS["lambda"] = lam
    return lam


def dated(event, seconds):
    return event | {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))}


def mass_stop(aws, count):
    reply = aws.run_instances(ImageId="ami-12345678", MinCount=count, MaxCount=count, InstanceType="t3.micro")
    ids = sorted(instance["InstanceId"] for instance in reply["Instances"])
    aws.stop_instances(InstanceIds=ids)
    put_shard_rule(1, ids[:200])
    if ids[200:]:
        put_shard_rule(2, ids[200:])
    return ids


def ec2_calls(ec2):
    return sum(
        len(getattr(ec2, name).call_args_list)
        for name in ("describe_instances", "get_paginator", "start_instances", "create_tags")
    )


def test_a_mass_stop_costs_ec2_calls_per_batch_when_one_container_handles_the_events(fn, aws, env, capsys):
    """Reserved concurrency 1: the first of 250 stop events finds every stopped protected
    instance and starts them in batches of 100; the other 249 events find their instance
    decided and make no EC2 call. One ``started`` line per instance, one line per event."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 250)
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    fn._CLIENTS.update(ec2=ec2)
    lam = reserved(fn, env, 1)
    now = time.time() - 1  # the stops, a second before the first event is handled
    with mock.patch.object(fn, "notify") as notify:
        first = fn.handler(dated(stopped_event(ids[7]), now), OwnFunction())
        assert (first["action"], first["instance_id"]) == ("started", ids[7])
        calls = ec2_calls(ec2)
        assert [len(call.kwargs["InstanceIds"]) for call in ec2.start_instances.call_args_list] == [
            100,
            100,
            50,
        ]
        assert calls <= 2 + 3 + 2 * 3  # two reads of up to 200 ids, three batches, two stamps each
        assert notify.call_count == 3
        for instance_id in ids[:7] + ids[8:]:
            assert fn.handler(dated(stopped_event(instance_id), now), OwnFunction())["action"] == "coalesced"
    assert ec2_calls(ec2) == calls
    assert calls / len(ids) <= 0.05
    assert lam.get_function_concurrency.call_count == 1  # once per container
    assert {state_of(aws, i) for i in ids} == {"running"}
    lines = log_lines(capsys)
    started = [line for line in lines if line["action"] == "started"]
    assert sorted(line["instance_id"] for line in started) == ids
    assert {line["trigger"] for line in started} == {"event"}
    assert {line.get("found_with") for line in started} == {None, ids[7]}
    later = [line for line in lines if line["action"] == "coalesced"]
    assert len(later) == 249 and {line["decided_with"] for line in later} == {first["event_id"]}
    assert {line["decision"] for line in later} == {"started"}
    assert len(lines) == 250 + 249  # one decision per instance, one line per event


def test_batches_past_the_start_bucket_s_burst_are_paced_to_its_refill(fn, aws, env, capsys, naps):
    """StartInstances holds 5 request tokens and refills 2 a second: the sixth batch and
    later ones wait half a second each, instead of meeting RequestLimitExceeded."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 70)
    reserved(fn, env, 1)
    with mock.patch.object(fn, "START_BATCH", 10):
        record = handle(fn, dated(stopped_event(ids[0]), time.time() - 1), OwnFunction(), naps)
    assert record["action"] == "started"
    assert naps == [0.5, 0.5]  # batches 6 and 7
    assert {state_of(aws, i) for i in ids} == {"running"}


def test_an_instance_left_stopped_on_purpose_is_not_decided_again_by_each_read(fn, aws, env, capsys):
    """A bypassed instance stays stopped: the read for a later stop of another instance
    finds it stopped again and leaves it be, instead of logging a second decision for it."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 2)
    aws.create_tags(Resources=[ids[1]], Tags=[{"Key": "StopProtectionBypass", "Value": "maintenance"}])
    reserved(fn, env, 1)
    assert fn.handler(dated(stopped_event(ids[0]), time.time() - 1), OwnFunction())["action"] == "started"
    aws.stop_instances(InstanceIds=[ids[0]])
    assert fn.handler(dated(stopped_event(ids[0]), time.time() + 1), OwnFunction())["action"] == "started"
    lines = log_lines(capsys)
    assert sorted((line["instance_id"], line["action"]) for line in lines) == sorted(
        [(ids[0], "started"), (ids[1], "skipped-bypass"), (ids[0], "started")]
    )


@pytest.mark.parametrize("concurrency", [None, 2])
def test_without_a_reserved_concurrency_of_one_each_event_decides_for_its_own_instance(
    fn, aws, env, concurrency
):
    """Several containers at once would each start every stopped instance: each event reads
    and starts its own instance only, as before."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 3)
    ec2 = mock.MagicMock(wraps=aws)
    fn._CLIENTS.update(ec2=ec2)
    reserved(fn, env, concurrency)
    assert fn.handler(dated(stopped_event(ids[0]), time.time()), OwnFunction())["action"] == "started"
    assert [call.kwargs["InstanceIds"] for call in ec2.start_instances.call_args_list] == [[ids[0]]]
    assert [state_of(aws, i) for i in ids] == ["running", "stopped", "stopped"]


def test_without_restart_together_the_function_never_asks_for_its_concurrency(fn, aws, env):
    """The default deployment: each event starts its own instance, as before, and neither an
    event nor a sweep spends a Lambda call to learn a reservation it would not use."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 3)
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    fn._CLIENTS.update(ec2=ec2)
    lam = reserved(fn, env, 1)
    env.delenv("RESTART_TOGETHER")
    assert fn.handler(dated(stopped_event(ids[0]), time.time() - 1), OwnFunction())["action"] == "started"
    assert [call.kwargs["InstanceIds"] for call in ec2.start_instances.call_args_list] == [[ids[0]]]
    assert [state_of(aws, i) for i in ids] == ["running", "stopped", "stopped"]
    fn.handle_sweep({"id": "sweep-1"}, OwnFunction(), fn.settings())
    assert {state_of(aws, i) for i in ids} == {"running"}
    assert lam.get_function_concurrency.call_count == 0


def test_a_stop_after_the_read_is_read_again(fn, aws, env):
    """A decision covers the stop that read saw: the same instance stopped again right after
    its restart (its event dated in the second of the read, or later) is read and started
    again, not taken as decided."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    (instance_id,) = mass_stop(aws, 1)
    reserved(fn, env, 1)
    now = time.time()
    assert fn.handler(dated(stopped_event(instance_id), now), OwnFunction())["action"] == "started"
    aws.stop_instances(InstanceIds=[instance_id])
    # Dated when it stopped again: in the second of the read, or the next.
    again = fn.handler(dated(stopped_event(instance_id), time.time()), OwnFunction())
    assert again["action"] == "started" and "decided_with" not in again
    assert state_of(aws, instance_id) == "running"


def test_an_event_dated_in_the_second_of_the_read_is_settled_by_one_more_read(fn, aws, env):
    """Event times are whole seconds: a stop dated in the second the read began may be the
    one it saw or a later one. One more read settles it for every decided instance: not
    stopped now, their events are notes; the read is not repeated for each."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 5)
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    fn._CLIENTS.update(ec2=ec2)
    reserved(fn, env, 1)
    with mock.patch.object(fn.time, "time", return_value=1_000_000.5):
        assert fn.handler(dated(stopped_event(ids[0]), 1_000_000), OwnFunction())["action"] == "started"
    with mock.patch.object(fn.time, "time", return_value=1_000_001.2):
        actions = [fn.handler(dated(stopped_event(i), 1_000_000), OwnFunction())["action"] for i in ids[1:]]
    assert actions == ["coalesced"] * 4
    assert ec2.get_paginator.call_count == 2  # the first read and one more
    ec2.describe_instances.assert_not_called()


def test_an_instance_that_fails_inside_a_batch_fails_alone_and_its_event_is_retried(fn, aws, env, capsys):
    """EC2 refuses the batch for one instance's capacity: each is started on its own, the
    others come back, and the failed one's own event is not taken as decided."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ids = mass_stop(aws, 3)
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    real_start = aws.start_instances

    def start(InstanceIds):
        if ids[1] in InstanceIds:
            raise client_error("InsufficientInstanceCapacity")
        return real_start(InstanceIds=InstanceIds)

    ec2.start_instances.side_effect = start
    fn._CLIENTS.update(ec2=ec2)
    reserved(fn, env, 1)
    now = time.time()
    assert fn.handler(dated(stopped_event(ids[0]), now), OwnFunction())["action"] == "started"
    assert [state_of(aws, i) for i in ids] == ["running", "stopped", "running"]
    failed = [line for line in log_lines(capsys) if line["action"] == "failed"]
    assert [(line["instance_id"], line["error_code"]) for line in failed] == [
        (ids[1], "InsufficientInstanceCapacity")
    ]
    with pytest.raises(fn.RestartFailed):
        fn.handler(dated(stopped_event(ids[1]), now), OwnFunction())


def test_a_burst_of_one_is_started_as_a_single_stop_always_was(fn, aws, env, naps):
    """One stopped instance found by the read: no batch call, the single start with its
    retries while EC2 still says it is stopping (two here), counted on its decision."""
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    (instance_id,) = mass_stop(aws, 1)
    ec2 = mock.MagicMock(wraps=aws)
    ec2.get_paginator.side_effect = aws.get_paginator
    refusals = [client_error("IncorrectInstanceState")] * 2

    def start(InstanceIds):
        if refusals:
            raise refusals.pop()
        return aws.start_instances(InstanceIds=InstanceIds)

    ec2.start_instances.side_effect = start
    fn._CLIENTS.update(ec2=ec2)
    reserved(fn, env, 1)
    record = handle(fn, dated(stopped_event(instance_id), time.time() - 1), OwnFunction(), naps)
    assert (record["action"], record["start_retries"]) == ("started", 2)
    assert naps == list(fn.START_RETRY_DELAYS[:2])


def test_a_throttled_batch_waits_and_is_not_split(fn, env, naps, capsys):
    """RequestLimitExceeded past the client's own retries: the batch waits and is tried again
    whole (splitting it would spend more of the empty bucket); still throttled, each of its
    instances is ``failed`` and left to the retries and the sweep."""
    ec2 = mock.MagicMock()
    ec2.start_instances.side_effect = [
        client_error("RequestLimitExceeded"),
        {
            "StartingInstances": [
                {"InstanceId": i, "PreviousState": {"Name": "stopped"}} for i in ("i-0a", "i-0b")
            ]
        },
        *[client_error("RequestLimitExceeded")] * 4,
    ]
    config = fn.settings()

    def batch(*ids):
        out = []
        for instance_id in ids:
            record = {"instance_id": instance_id, "region": REGION, "trigger": "sweep"}
            out.append(fn.Pending(instance_id, record, fn.decider(record, 0), [], 1, "stopped", config))
        return out

    assert fn.start_batch(ec2, batch("i-0a", "i-0b"), config, FakeContext(), naps.append) == ["started"] * 2
    assert fn.start_batch(ec2, batch("i-0c", "i-0d"), config, FakeContext(), naps.append) == ["failed"] * 2
    assert [len(call.kwargs["InstanceIds"]) for call in ec2.start_instances.call_args_list] == [2] * 6
    assert naps == [2, 2, 4, 8]


def test_sweep_goes_on_after_a_failed_restart(fn, env, capsys):
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    ec2 = mock.MagicMock()
    stopped = {
        "State": {"Name": "stopped"},
        "StateReason": {"Code": "Client.UserInitiatedShutdown"},
        "Tags": [],
    }
    ec2.get_paginator.return_value.paginate.return_value = [
        {
            "Reservations": [
                {
                    "Instances": [
                        stopped | {"InstanceId": "i-0aaaaaaaaaaaaaaaa"},
                        stopped | {"InstanceId": "i-0bbbbbbbbbbbbbbbb"},
                    ]
                }
            ]
        }
    ]
    ec2.start_instances.side_effect = [
        # The batch: EC2 refuses it as a whole for one instance's capacity ...
        client_error("InsufficientInstanceCapacity"),
        # ... so each is started on its own, and only that one fails.
        client_error("InsufficientInstanceCapacity"),
        started_reply("i-0bbbbbbbbbbbbbbbb"),
    ]
    events = mock.MagicMock()
    events.describe_rule.side_effect = [
        {
            "EventPattern": json.dumps(
                {"detail": {"instance-id": ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"]}}
            )
        },
        ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "DescribeRule"),
    ]
    fn._CLIENTS.update(ec2=ec2, events=events)
    result = fn.handler(scheduled_event(), FakeContext())
    assert result["actions"] == ["failed", "started"]
    assert [call.kwargs["InstanceIds"] for call in ec2.start_instances.call_args_list] == [
        ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"],
        ["i-0aaaaaaaaaaaaaaaa"],
        ["i-0bbbbbbbbbbbbbbbb"],
    ]
    failed = log_lines(capsys)[0]
    assert (failed["action"], failed["trigger"], failed["error_code"]) == (
        "failed",
        "sweep",
        "InsufficientInstanceCapacity",
    )


def test_sweep_stops_before_the_invocation_runs_out_of_time(fn, aws, env, capsys):
    env.setenv("RULE_NAME_PREFIX", "EC2Protect.")
    put_shard_rule(1, [run_instance(aws), run_instance(aws)])
    result = fn.handler(scheduled_event(), FakeContext(remaining_ms=5000))
    assert result["actions"] == []
    (line,) = sweep_decisions(capsys)
    assert line["action"] == "sweep-incomplete" and "2 stopped instances left" in line["reason"]


@pytest.mark.parametrize(("minutes", "says"), [("5", "every 5 minutes"), ("0", "No sweep")])
def test_failure_notice_says_whether_a_sweep_tries_again(fn, env, minutes, says):
    env.setenv("NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:restarts")
    env.setenv("SWEEP_MINUTES", minutes)
    stub_ec2(fn, ["stopped"], [client_error("InsufficientInstanceCapacity")])
    with pytest.raises(fn.RestartFailed):
        fn.handler(stopped_event("i-0aaaaaaaaaaaaaaaa"), FakeContext())
    assert says in fn._CLIENTS["sns"].publish.call_args.kwargs["Message"]
