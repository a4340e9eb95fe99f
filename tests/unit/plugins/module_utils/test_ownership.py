"""protect and unprotect touch only what is theirs (module_utils/ownership.py), against moto."""

import io
import json
import threading
import time
import zipfile

import boto3
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import ownership as o

REGION = "eu-west-1"
ACCOUNT = "123456789012"
OURS = {"ManagedBy": "guardrails.ec2"}
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:EC2Protect"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
}


@pytest.fixture(name="aws")
def fixture_aws(retrying):
    with mock_aws():
        yield {
            service: retrying(boto3.client(service, region_name=REGION))
            for service in ("lambda", "logs", "cloudwatch", "events", "iam")
        }


def read(aws, policies=()):
    clients = dict(aws)
    return o.read_ownership(clients, "EC2Protect", REGION, ACCOUNT, "aws", policies)


def code():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def deploy(aws, function_tags=None, role_tags=None, policy_tags=None, group_tags=None, function=True):
    """What the role creates in one region, with the given tags (default: the owner tag)."""
    function_tags, role_tags, policy_tags, group_tags = (
        dict(OURS) if tags is None else tags for tags in (function_tags, role_tags, policy_tags, group_tags)
    )
    iam = aws["iam"]
    role = iam.create_role(
        RoleName=f"EC2Protect-{REGION}",
        AssumeRolePolicyDocument=json.dumps(TRUST),
        Tags=[{"Key": k, "Value": v} for k, v in role_tags.items()],
    )["Role"]
    policy = iam.create_policy(
        PolicyName=f"EC2Protect-{REGION}",
        PolicyDocument=json.dumps(DOCUMENT),
        Tags=[{"Key": k, "Value": v} for k, v in policy_tags.items()],
    )["Policy"]
    iam.attach_role_policy(RoleName=role["RoleName"], PolicyArn=policy["Arn"])
    aws["logs"].create_log_group(logGroupName="/aws/lambda/EC2Protect", tags=group_tags)
    if function:
        aws["lambda"].create_function(
            FunctionName="EC2Protect",
            Runtime="python3.13",
            Role=role["Arn"],
            Handler="stop_protection_handler.handler",
            Code={"ZipFile": code()},
            Tags=function_tags,
        )
    events = aws["events"]
    events.put_rule(
        Name="EC2Protect-1",
        EventPattern=json.dumps({"source": ["aws.ec2"]}),
        Description="guardrails.ec2 stop protection: 1 instances",
    )
    events.put_targets(Rule="EC2Protect-1", Targets=[{"Id": "EC2Protect", "Arn": FUNCTION_ARN}])
    for alarm in ("attention", "heartbeat"):
        aws["cloudwatch"].put_metric_alarm(
            AlarmName=f"EC2Protect-{alarm}",
            AlarmDescription=f"guardrails.ec2 stop protection EC2Protect: {alarm}",
            MetricName=f"EC2Protect-{alarm}",
            Namespace="guardrails.ec2",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )


def test_nothing_deployed_is_nothing_foreign(aws):
    found = read(aws)
    assert found["foreign"] == []
    assert found["function"] is None
    assert {(entry["kind"], entry["exists"]) for entry in found["resources"]} == {
        ("function", False),
        ("log group", False),
        ("alarm", False),
        ("role", False),
        ("policy", False),
    }
    assert found["present"] == {
        kind: [] for kind in ("function", "log_group", "alarm", "rule", "role", "policy")
    }
    assert found["found"] is False  # unprotect says it found nothing of this name here


def test_what_the_role_deployed_is_ours(aws):
    deploy(aws)
    found = read(aws)
    assert found["foreign"] == []
    assert all(entry["exists"] and entry["ours"] for entry in found["resources"])
    assert [entry["kind"] for entry in found["resources"]] == [
        "function",
        "log group",
        "alarm",
        "alarm",
        "rule",
        "role",
        "policy",
    ]
    assert found["function"]["Role"].endswith(f":role/EC2Protect-{REGION}")
    # What unprotect removes, by kind: names, not "kind name" strings to match.
    assert {kind: len(names) for kind, names in found["present"].items()} == {
        "function": 1,
        "log_group": 1,
        "alarm": 2,
        "rule": 1,
        "role": 1,
        "policy": 1,
    }
    assert found["present"]["role"] == [f"EC2Protect-{REGION}"] and found["found"] is True


@pytest.mark.parametrize(
    ("untagged", "expected"),
    [
        ("function_tags", "function EC2Protect in eu-west-1: it has no tag ManagedBy=guardrails.ec2"),
        ("role_tags", "role EC2Protect-eu-west-1: it has no tag ManagedBy=guardrails.ec2"),
        ("policy_tags", "policy EC2Protect-eu-west-1: it has no tag ManagedBy=guardrails.ec2"),
    ],
)
def test_an_untagged_resource_is_named(aws, untagged, expected):
    deploy(aws, **{untagged: {"ManagedBy": "terraform"}})
    assert read(aws)["foreign"] == [expected]


def test_an_untagged_log_group_is_ours_only_beside_our_function(aws):
    deploy(aws, group_tags={"Team": "x"})
    assert read(aws)["foreign"] == []  # Lambda recreates a deleted group without tags
    aws["lambda"].delete_function(FunctionName="EC2Protect")
    assert read(aws)["foreign"] == [
        "log group /aws/lambda/EC2Protect in eu-west-1: it has no tag ManagedBy=guardrails.ec2"
    ]


def test_a_rule_of_another_owner_is_named(aws):
    deploy(aws)
    aws["events"].put_rule(
        Name="EC2Protect-2", EventPattern=json.dumps({"source": ["aws.ec2"]}), Description="team rule"
    )
    aws["events"].put_targets(
        Rule="EC2Protect-1", Targets=[{"Id": "queue", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:audit"}]
    )
    assert read(aws)["foreign"] == [
        f"rule EC2Protect-1 in eu-west-1: it also targets arn:aws:sqs:{REGION}:{ACCOUNT}:audit",
        "rule EC2Protect-2 in eu-west-1: its description does not start with 'guardrails.ec2 stop protection'",
    ]


def test_an_alarm_of_another_owner_is_named(aws):
    deploy(aws)
    aws["cloudwatch"].put_metric_alarm(
        AlarmName="EC2Protect-attention",
        MetricName="x",
        Namespace="y",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    assert read(aws)["foreign"] == [
        "alarm EC2Protect-attention in eu-west-1: its description does not start with 'guardrails.ec2 stop protection'"
    ]


def test_planned_and_attached_policies_are_all_checked(aws):
    deploy(aws)
    iam = aws["iam"]
    spare = iam.create_policy(PolicyName=f"EC2Protect-{REGION}.2", PolicyDocument=json.dumps(DOCUMENT))[
        "Policy"
    ]
    iam.attach_role_policy(RoleName=f"EC2Protect-{REGION}", PolicyArn=spare["Arn"])
    iam.create_policy(PolicyName=f"EC2Protect-{REGION}.3", PolicyDocument=json.dumps(DOCUMENT))
    found = read(aws, policies=[f"EC2Protect-{REGION}", f"EC2Protect-{REGION}.3"])
    assert [entry["name"] for entry in found["resources"] if entry["kind"] == "policy"] == [
        f"EC2Protect-{REGION}",
        f"EC2Protect-{REGION}.3",
        f"EC2Protect-{REGION}.2",
    ]
    assert found["foreign"] == [
        f"policy EC2Protect-{REGION}.3: it has no tag ManagedBy=guardrails.ec2",
        f"policy EC2Protect-{REGION}.2: it has no tag ManagedBy=guardrails.ec2",
    ]


def test_the_account_wide_role_of_a_pre_release_deployment_is_reported(aws):
    assert read(aws)["legacy"] == []
    aws["iam"].create_role(
        RoleName="EC2ProtectRole",
        AssumeRolePolicyDocument=json.dumps(TRUST),
        Tags=[{"Key": "ManagedBy", "Value": "guardrails.ec2"}],
    )
    assert read(aws)["legacy"] == ["EC2ProtectRole"]


class DeniedLegacyRole:
    """IAM as a deployer sees it whose policy covers <name>-* roles only."""

    def __init__(self, iam):
        self._iam = iam

    def __getattr__(self, name):
        return getattr(self._iam, name)

    def get_role(self, RoleName, **kwargs):
        if RoleName == "EC2ProtectRole":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not yours"}}, "GetRole")
        return self._iam.get_role(RoleName=RoleName, **kwargs)


def test_a_deployer_that_may_not_read_the_pre_release_role_reads_on(retrying):
    """The deployer policy covers <name>-* roles: a refused read of <name>Role is no error."""
    with mock_aws():
        iam = retrying(boto3.client("iam", region_name=REGION))
        clients = {
            service: retrying(boto3.client(service, region_name=REGION))
            for service in ("lambda", "logs", "cloudwatch", "events")
        }
        clients["iam"] = DeniedLegacyRole(iam)
        found = o.read_ownership(clients, "EC2Protect", REGION, ACCOUNT, "aws")
        assert found["legacy"] == []

        # Any other refusal still fails the read.
        def refused(**kwargs):
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "not that"}}, "GetRole")

        clients["iam"] = DeniedLegacyRole(iam)
        clients["iam"].get_role = refused
        with pytest.raises(Exception, match="not that"):
            o.read_ownership(clients, "EC2Protect", REGION, ACCOUNT, "aws")


def test_a_tamper_rule_may_also_target_the_topic_and_no_other_rule_may():
    arn = FUNCTION_ARN
    topic = "arn:aws:sns:eu-west-1:123456789012:alerts"
    targets = [{"id": "EC2Protect", "arn": arn}, {"id": "notify", "arn": topic}]
    base = {"description": "guardrails.ec2 stop protection: tamper", "targets": targets}
    assert o.judge_rule(dict(base, name="EC2Protect.tamper", kind="tamper"), arn)["ours"] is True
    shard = o.judge_rule(dict(base, name="EC2Protect.1", kind="state_change"), arn)
    assert (shard["ours"], shard["reason"]) == (False, f"it also targets {topic}")
    queue = [
        {"id": "EC2Protect", "arn": arn},
        {"id": "notify", "arn": "arn:aws:sqs:eu-west-1:123456789012:q"},
    ]
    assert (
        o.judge_rule(dict(base, name="EC2Protect.tamper", kind="tamper", targets=queue), arn)["ours"] is False
    )


class Overlap:
    """Hooks into the read's clients (botocore's events, so paginated calls count too): each
    call takes a little while, and the calls in flight at once are recorded, so that a test
    can tell calls made side by side from calls made in turn."""

    def __init__(self, clients, seconds=0.05):
        self.lock, self.flight, self.overlaps, self.seconds = threading.Lock(), [], [], seconds
        for client in clients.values():
            events = client._client.meta.events
            events.register("before-call.*.*", self._before)
            events.register("after-call.*.*", self._after)

    @staticmethod
    def _name(model):
        return f"{model.service_model.service_name}.{xform_name(model.name)}"

    def _before(self, model, **_kwargs):
        with self.lock:
            self.overlaps.append((self._name(model), set(self.flight)))
            self.flight.append(self._name(model))
        time.sleep(self.seconds)

    def _after(self, model, **_kwargs):
        with self.lock:
            self.flight.remove(self._name(model))

    def together(self, one, other):
        """Whether a call ``one`` and a call ``other`` were ever in flight at the same time."""
        return any(
            (name == one and other in flight) or (name == other and one in flight)
            for name, flight in self.overlaps
        )


def test_a_region_is_read_in_parallel_chains_not_call_by_call(aws):
    """The function's policy and asynchronous settings are read beside the function, the
    policies beside the role, a policy's versions and the rules' targets beside each other: the read costs about its
    longest chain of calls (AWS answers each in tens of milliseconds)."""
    deploy(aws)
    aws["events"].put_rule(
        Name="EC2Protect.sweep",
        ScheduleExpression="rate(5 minutes)",
        Description="guardrails.ec2 stop protection",
    )
    aws["events"].put_targets(Rule="EC2Protect.sweep", Targets=[{"Id": "EC2Protect", "Arn": FUNCTION_ARN}])
    aws["iam"].create_policy_version(
        PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/EC2Protect-{REGION}", PolicyDocument=json.dumps(DOCUMENT)
    )
    overlap = Overlap(aws)
    found = o.read_ownership(aws, "EC2Protect", REGION, ACCOUNT, "aws", [f"EC2Protect-{REGION}"])
    assert found["foreign"] == [] and found["state"]["invoke_config"] is None
    assert found["state"]["function_policy"] == {"statement": None, "size": 0, "statements": []}
    assert overlap.together("lambda.get_function", "lambda.get_policy")
    assert overlap.together("lambda.get_function", "lambda.get_function_event_invoke_config")
    assert overlap.together("lambda.get_function", "lambda.get_function_concurrency")
    assert overlap.together("iam.get_role", "iam.get_policy")
    assert overlap.together("iam.get_policy_version", "iam.get_policy_version")
    assert overlap.together("events.list_targets_by_rule", "events.list_targets_by_rule")


class DeniedFunctionReads:
    """A Lambda client that may read functions but not their policy, asynchronous settings or
    concurrency: what a read beside a missing function must not depend on."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        if name in ("get_policy", "get_function_event_invoke_config", "get_function_concurrency"):

            def denied(**_kwargs):
                raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, name)

            return denied
        return getattr(self._client, name)


def test_the_reads_beside_a_missing_function_do_not_decide_the_read(aws):
    """The function's policy and settings are read beside the function; when it does not
    exist, what those reads return, an error included, is not looked at."""
    clients = dict(aws, **{"lambda": DeniedFunctionReads(aws["lambda"])})
    found = o.read_ownership(clients, "EC2Protect", REGION, ACCOUNT, "aws")
    assert found["function"] is None
    assert (found["state"]["function_policy"], found["state"]["invoke_config"]) == (None, None)
