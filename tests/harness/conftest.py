"""Fixtures for tests that run against a real LocalStack (the project's host-mode harness).

When ``AWS_ENDPOINT_URL`` is set (``make test`` starts one emulator for all suites), the
tests use it. Otherwise the session starts its own LocalStack through the launcher and
stops it at the end, so ``pytest tests/harness`` works on its own too.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ASSUME_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def _load_launcher():
    spec = importlib.util.spec_from_file_location("launcher", ROOT / "tools/localstack/launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory):
    given = os.environ.get("AWS_ENDPOINT_URL")
    if given:
        yield given
        return
    launcher = _load_launcher()
    harness = launcher.Harness(
        tmp_path_factory.mktemp("localstack"),
        ROOT / ".venv/localstack",
        ROOT / ".venv/lambda-runtime",
    )
    url = harness.start(None, {"LAMBDA_RETRY_BASE_DELAY": "1", "GUARDRAILS_ALARM_EVALUATION_SECONDS": "10"})
    try:
        yield url
    finally:
        harness.stop(quiet=True)


@pytest.fixture(scope="session")
def aws(endpoint):
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)

    def client(service, region=REGION, retries: int | None = None):
        config = Config(retries={"mode": "standard", "total_max_attempts": retries}) if retries else None
        return session.client(service, endpoint_url=endpoint, region_name=region, config=config)

    return client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def zip_source(source: str, module: str = "handler") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{module}.py", source)
    return buffer.getvalue()


def allow(*statements) -> dict:
    """An identity policy of Allow statements, each ``(actions, resources)``."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": a, "Resource": r} for a, r in statements],
    }


def instance_arn(instance_id: str, region: str = REGION, account: str = "000000000000") -> str:
    return f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"


@pytest.fixture
def make_function(aws):
    """Create a Python function from source; deleted at the end of the test.

    The harness enforces IAM for the function's role session, as AWS does: ``policy`` is
    the execution role's inline policy (none by default, so the function may call nothing).
    """
    created = []
    iam = aws("iam")
    lam = aws("lambda")

    def make(
        source: str,
        runtime: str = "python3.13",
        timeout: int = 10,
        handler="handler.handler",
        policy: dict | None = None,
    ):
        name = unique("harness-fn")
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ASSUME_LAMBDA))
        if policy is not None:
            iam.put_role_policy(RoleName=name, PolicyName="function", PolicyDocument=json.dumps(policy))
        arn = lam.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=role["Role"]["Arn"],
            Handler=handler,
            Code={"ZipFile": zip_source(source)},
            Timeout=timeout,
        )["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        created.append(name)
        return name, arn

    yield make
    for name in created:
        lam.delete_function(FunctionName=name)
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        iam.delete_role(RoleName=name)


@pytest.fixture
def rule_to_function(aws):
    """A rule with an event pattern that invokes a function, as the role wires them; removed after."""
    events, lam = aws("events"), aws("lambda")
    made = []

    def wire(pattern: str, function_name: str, function_arn: str) -> str:
        rule = unique("harness-rule")
        rule_arn = events.put_rule(Name=rule, EventPattern=pattern)["RuleArn"]
        events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": function_arn}])
        lam.add_permission(
            FunctionName=function_name,
            StatementId="events",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )
        made.append(rule)
        return rule

    yield wire
    for rule in made:
        events.remove_targets(Rule=rule, Ids=["fn"])
        events.delete_rule(Name=rule)


@pytest.fixture
def instances(aws):
    """Run instances on demand; terminated at the end of the test."""
    ec2 = aws("ec2")
    created = []

    def run(count: int = 1):
        reply = ec2.run_instances(
            ImageId="ami-12345678", MinCount=count, MaxCount=count, InstanceType="t3.micro"
        )
        ids = [item["InstanceId"] for item in reply["Instances"]]
        created.extend(ids)
        settle()
        return ids

    yield run
    if created:
        ec2.terminate_instances(InstanceIds=created)


def settle():
    """Let the state-change events of a call already made reach EventBridge.

    The provider publishes them on a thread, with a short gap between intermediate and
    final state; a rule created right after the call could still see them.
    """
    time.sleep(0.5)


def instance_states(ec2, ids):
    reply = ec2.describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def state_pattern(instance_ids, states=("stopped",)):
    return json.dumps(
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": list(states), "instance-id": list(instance_ids)},
        }
    )


class FaultSwitch:
    """Client for one of the harness's switches: /_guardrails/faults or /_guardrails/behaviours."""

    def __init__(self, endpoint: str, switch: str = "faults"):
        self.url = f"{endpoint}/_guardrails/{switch}"
        self.key = switch

    def _call(self, method: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url, data=data, method=method)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def arm(self, operation, instance_ids, error_code, count=None):
        status, body = self.post(
            {"operation": operation, "instance_ids": instance_ids, "error_code": error_code, "count": count}
        )
        assert status == 200, body

    def post(self, fault):
        return self._call("POST", fault)

    def list(self):
        return self._call("GET")[1][self.key]

    def clear(self):
        self._call("DELETE")


@pytest.fixture
def faults(endpoint):
    switch = FaultSwitch(endpoint)
    switch.clear()
    yield switch
    switch.clear()


@pytest.fixture
def behaviours(endpoint):
    """The EC2/EventBridge behaviour switch; everything armed is cleared after the test."""
    switch = FaultSwitch(endpoint, "behaviours")
    switch.clear()

    def arm(kind, instance_ids, **settings):
        status, body = switch.post({"kind": kind, "instance_ids": instance_ids, **settings})
        assert status == 200, body

    switch.arm = arm
    yield switch
    switch.clear()


@pytest.fixture
def throttle(endpoint):
    """EC2's token buckets (``/_guardrails/throttle``): ``throttle.on(buckets=None)`` turns
    them on with AWS's sizes and resets the counts; off again after the test."""
    switch = FaultSwitch(endpoint, "throttle")

    def on(buckets=None):
        status, body = switch._call("PUT", {"enabled": True, "buckets": buckets or {}})
        assert status == 200, body

    switch.on = on
    switch.read = lambda: switch._call("GET")[1]
    switch.clear()
    yield switch
    switch.clear()


def shutdown_from_inside(endpoint, instance_ids, reason_code=None, region=REGION, account="000000000000"):
    """Stop running instances as an OS shutdown (default) or a Spot interruption would."""
    body = {"instance_ids": instance_ids, "region": region, "account_id": account}
    if reason_code:
        body["reason_code"] = reason_code
    request = urllib.request.Request(
        f"{endpoint}/_guardrails/shutdown", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# A minimal restart function: the harness tests of the executor, IAM enforcement and the
# invoke permission run it where the collection's own function would add nothing.
RESTART_SOURCE = """
import boto3

ec2 = boto3.client("ec2")


def handler(event, context):
    instance_id = event["detail"]["instance-id"]
    ec2.start_instances(InstanceIds=[instance_id])
    print(f"restarted {instance_id}")
    return {"started": instance_id}
"""
