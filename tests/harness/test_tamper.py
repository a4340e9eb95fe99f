"""Tamper events: a call that disarms a deployment, by anyone but its automation, is seen
as it happens (the tamper rules, the function's ``tamper`` line, a notice), and the same
call by the automation is not.

The harness publishes the CloudTrail events AWS would (``guardrails_localstack.cloudtrail``):
the calls here are real calls, signed by IAM users, and the events carry who made them.
"""

import importlib.util
import json
import sys

import boto3
import pytest
from conftest import REGION, ROOT, unique, wait_for
from playbook_runs import protect_vars, run_playbook

sys.path.insert(0, str(ROOT / "tools"))
from lab import decisions

_spec = importlib.util.spec_from_file_location(
    "guardrails_patterns", ROOT / "plugins/module_utils/patterns.py"
)
patterns = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(patterns)

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
AUTOMATION = ["arn:aws:iam::*:user/{name}-automation", "arn:aws:iam::*:role/platform/{name}-deployer"]


def cloudtrail_event(event_source, event_name, parameters, arn, kind="IAMUser", issuer=None):
    identity = {"type": kind, "arn": arn}
    if issuer:
        identity["sessionContext"] = {"sessionIssuer": {"type": "Role", "arn": issuer}}
    return json.dumps(
        {
            "version": "0",
            "id": "1",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws." + event_source.split(".")[0],
            "account": "000000000000",
            "time": "2026-12-06T00:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": {
                "eventSource": event_source,
                "eventName": event_name,
                "userIdentity": identity,
                "requestParameters": parameters,
            },
        }
    )


INSIDER = "arn:aws:iam::000000000000:user/mallory"
DEPLOYER_SESSION = "arn:aws:sts::000000000000:assumed-role/Guard-deployer/run-42"
FUNCTION_SESSION = f"arn:aws:sts::000000000000:assumed-role/Guard-{REGION}/Guard"
TOPIC = f"arn:aws:sns:{REGION}:000000000000:alerts"


@pytest.mark.parametrize(
    ("kind", "event", "matched"),
    [
        ("tamper", ("events.amazonaws.com", "DisableRule", {"name": "Guard.1"}, INSIDER), True),
        (
            "tamper",
            ("events.amazonaws.com", "RemoveTargets", {"rule": "Guard.sweep", "ids": ["Guard"]}, INSIDER),
            True,
        ),
        ("tamper", ("events.amazonaws.com", "DisableRule", {"name": "Other.1"}, INSIDER), False),
        ("tamper", ("events.amazonaws.com", "EnableRule", {"name": "Guard.1"}, INSIDER), False),
        # The automation, as an IAM user and as a session of its role (the path left out).
        (
            "tamper",
            (
                "events.amazonaws.com",
                "DisableRule",
                {"name": "Guard.1"},
                "arn:aws:iam::000000000000:user/Guard-automation",
            ),
            False,
        ),
        (
            "tamper",
            ("events.amazonaws.com", "DeleteRule", {"name": "Guard.1"}, DEPLOYER_SESSION, "AssumedRole"),
            False,
        ),
        # The function's own repairs.
        (
            "tamper",
            ("events.amazonaws.com", "PutTargets", {"rule": "Guard.1"}, FUNCTION_SESSION, "AssumedRole"),
            False,
        ),
        (
            "tamper",
            ("lambda.amazonaws.com", "PutFunctionConcurrency20171031", {"functionName": "Guard"}, INSIDER),
            True,
        ),
        (
            "tamper",
            (
                "lambda.amazonaws.com",
                "UpdateFunctionCode20150331v2",
                {"functionName": f"arn:aws:lambda:{REGION}:000000000000:function:Guard"},
                INSIDER,
            ),
            True,
        ),
        (
            "tamper",
            ("lambda.amazonaws.com", "UpdateFunctionCode20150331v2", {"functionName": "GuardOther"}, INSIDER),
            False,
        ),
        (
            "tamper-log",
            ("logs.amazonaws.com", "DeleteLogGroup", {"logGroupName": "/aws/lambda/Guard"}, INSIDER),
            True,
        ),
        (
            "tamper-log",
            ("monitoring.amazonaws.com", "DeleteAlarms", {"alarmNames": ["x", "Guard-heartbeat"]}, INSIDER),
            True,
        ),
        (
            "tamper-log",
            ("sns.amazonaws.com", "Unsubscribe", {"subscriptionArn": f"{TOPIC}:0b1f"}, INSIDER),
            True,
        ),
        ("tamper-log", ("sns.amazonaws.com", "DeleteTopic", {"topicArn": f"{TOPIC}-2"}, INSIDER), False),
        (
            "tamper-ec2",
            (
                "ec2.amazonaws.com",
                "CreateTags",
                {"tagSet": {"items": [{"key": "Team"}, {"key": "StopProtectionBypass"}]}},
                INSIDER,
            ),
            True,
        ),
        (
            "tamper-ec2",
            ("ec2.amazonaws.com", "CreateTags", {"tagSet": {"items": [{"key": "Team"}]}}, INSIDER),
            False,
        ),
        # The budget's tags, written by the function's role, are its own business.
        (
            "tamper-ec2",
            (
                "ec2.amazonaws.com",
                "CreateTags",
                {"tagSet": {"items": [{"key": "StopProtectionSuspended"}]}},
                FUNCTION_SESSION,
                "AssumedRole",
            ),
            False,
        ),
        (
            "tamper-ec2",
            ("ec2.amazonaws.com", "ModifyInstanceAttribute", {"disableApiStop": {"value": False}}, INSIDER),
            True,
        ),
        (
            "tamper-ec2",
            ("ec2.amazonaws.com", "ModifyInstanceAttribute", {"disableApiStop": {"value": True}}, INSIDER),
            False,
        ),
        (
            "tamper-iam",
            ("iam.amazonaws.com", "DetachRolePolicy", {"roleName": f"Guard-{REGION}"}, INSIDER),
            True,
        ),
        (
            "tamper-iam",
            (
                "iam.amazonaws.com",
                "CreatePolicyVersion",
                {"policyArn": "arn:aws:iam::000000000000:policy/Guard-eu-west-1"},
                INSIDER,
            ),
            True,
        ),
        ("tamper-iam", ("iam.amazonaws.com", "DetachRolePolicy", {"roleName": "Guardian"}, INSIDER), False),
    ],
)
def test_the_tamper_patterns_match_what_disarms_and_nothing_the_automation_does(aws, kind, event, matched):
    """EventBridge's own matcher (TestEventPattern) on the patterns the role deploys."""
    found = patterns.tamper_patterns(
        "Guard",
        REGION,
        [pattern.format(name="Guard") for pattern in AUTOMATION],
        ["StopProtectionBypass", "StopProtectionSuspended"],
        TOPIC,
        iam=True,
    )
    source, name, parameters, arn, *identity = event
    result = aws("events").test_event_pattern(
        EventPattern=found[kind], Event=cloudtrail_event(source, name, parameters, arn, *identity)
    )["Result"]
    assert result is matched


@pytest.fixture
def iam_users(aws):
    """``make(user) -> credentials``: an IAM user allowed everything; removed afterwards."""
    iam, made = aws("iam"), []

    def make(user):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="everything", PolicyDocument=json.dumps(ALLOW_ALL))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        made.append((user, key["AccessKeyId"]))
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    yield make
    for user, key_id in made:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        iam.delete_user_policy(UserName=user, PolicyName="everything")
        iam.delete_user(UserName=user)


def run_as(credentials, endpoint, playbook, extra_vars):
    return run_playbook(playbook, endpoint, extra_vars, timeout=600, credentials=credentials)


def test_an_insider_disarming_the_protection_is_reported_and_the_automation_is_not(
    aws, endpoint, instances, iam_users
):
    name = unique("Watched")
    (instance_id,) = instances(1)
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue)
    automation, insider = iam_users(f"{name}-automation"), iam_users(f"{name}-insider")
    settings = protect_vars(
        name,
        [instance_id],
        stop_protection_keep_logs=False,
        stop_protection_notification_topic_arn=topic,
        stop_protection_automation_principals=[pattern.format(name=name) for pattern in AUTOMATION],
    )

    def session(credentials):
        return boto3.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def tampering():
        return [line for line in decisions(aws("logs"), name) if line["action"] == "tamper"]

    try:
        result = run_as(automation, endpoint, "protect.yml", settings)
        assert result.returncode == 0, result.stdout[-3000:]
        rules = {rule["Name"] for rule in aws("events").list_rules(NamePrefix=f"{name}.")["Rules"]}
        assert {f"{name}.tamper", f"{name}.tamper-log", f"{name}.tamper-ec2", f"{name}.tamper-iam"} <= rules
        targets = aws("events").list_targets_by_rule(Rule=f"{name}.tamper")["Targets"]
        assert sorted(target["Arn"].rsplit(":", 1)[-1] for target in targets) == sorted([name, name])

        # The automation pauses a rule for maintenance: its own business.
        ops = session(automation).client("events", endpoint_url=endpoint)
        ops.disable_rule(Name=f"{name}.1")
        ops.enable_rule(Name=f"{name}.1")
        # The insider disarms the protection: the rule, then the function.
        events = session(insider).client("events", endpoint_url=endpoint)
        lam = session(insider).client("lambda", endpoint_url=endpoint)
        events.disable_rule(Name=f"{name}.1")
        insider_arn = f"arn:aws:iam::000000000000:user/{name}-insider"
        lines = wait_for(lambda: tampering() or None, timeout=30, interval=1)
        assert lines, "no tamper line"
        assert lines[0]["event_name"] == "DisableRule" and lines[0]["target"] == f"name={name}.1"
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

        # With concurrency 0 the function may never see the second call: the rules also
        # send every event to the topic themselves.
        received = []

        def notices():
            reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            received.extend(json.loads(m["Body"]) for m in reply.get("Messages", []))
            return len(received) >= 3

        assert wait_for(notices, timeout=30, interval=0), received
        subjects = [message.get("Subject") for message in received]
        assert f"Stop protection: DisableRule by {insider_arn}" in subjects
        raw = [json.loads(message["Message"]) for message in received if not message.get("Subject")]
        assert sorted(event["detail"]["eventName"] for event in raw) == [
            "DisableRule",
            "PutFunctionConcurrency20171031",
        ]
        assert {event["detail"]["userIdentity"]["arn"] for event in raw} == {insider_arn}
        # The automation's own DisableRule, made first, was reported by nobody.
        assert {line["caller_arn"] for line in tampering()} == {insider_arn}
    finally:
        aws("lambda").delete_function_concurrency(FunctionName=name)
        result = run_as(automation, endpoint, "unprotect.yml", settings)
        assert result.returncode == 0, result.stdout[-3000:]
        sqs.delete_queue(QueueUrl=queue_url)
        sns.delete_topic(TopicArn=topic)
