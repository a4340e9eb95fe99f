"""IAM is enforced for the principals the product creates: IAM users and role sessions.

The harness evaluates their identity policies on every request (LocalStack community only
stores them); the root test credentials stay unrestricted. Each test here fails when the
harness lets the call through.
"""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import (
    ASSUME_LAMBDA,
    REGION,
    RESTART_SOURCE,
    allow,
    instance_arn,
    instance_states,
    state_pattern,
    unique,
    wait_for,
    zip_source,
)

TAG_DENY = {
    "Sid": "OnlyAutomationChangesStopProtectionTags",
    "Effect": "Deny",
    "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
    "Resource": "arn:aws:ec2:*:*:instance/*",
    "Condition": {
        "ForAnyValue:StringEquals": {"aws:TagKeys": ["StopProtection", "StopProtectionBypass"]},
        "ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/platform-automation"},
    },
}
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def document(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def refused(call, **kwargs):
    """The error code and message AWS would answer, or None when the call went through."""
    try:
        call(**kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["Error"]["Message"]
    return None


@pytest.fixture
def principals(aws, endpoint):
    """IAM users and role sessions with given policies; clients signed with their keys."""
    iam = aws("iam")
    made = []

    def session_for(credentials):
        return boto3.Session(region_name=REGION, **credentials)

    def user(policy=None, managed=None):
        name = unique("harness-user")
        iam.create_user(UserName=name)
        made.append(("user", name))
        if policy:
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(policy))
        if managed:
            arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(managed))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
            made.append(("policy", (name, arn)))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return session_for(
            {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        )

    def role(policy, name=None):
        name = name or unique("harness-role")
        trust = document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        made.append(("role", name))
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(policy))
        credentials = aws("sts").assume_role(RoleArn=arn, RoleSessionName="harness")["Credentials"]
        return session_for(
            {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        )

    def client(session, service):
        return session.client(service, endpoint_url=endpoint)

    yield type(
        "Principals",
        (),
        {"user": staticmethod(user), "role": staticmethod(role), "client": staticmethod(client)},
    )
    # Users and roles first: a managed policy can only be deleted once detached.
    for kind, name in sorted(made, key=lambda item: item[0] == "policy"):
        if kind == "user":
            for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            for policy_name in iam.list_user_policies(UserName=name)["PolicyNames"]:
                iam.delete_user_policy(UserName=name, PolicyName=policy_name)
            for attached in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
                iam.detach_user_policy(UserName=name, PolicyArn=attached["PolicyArn"])
            iam.delete_user(UserName=name)
        elif kind == "role":
            iam.delete_role_policy(RoleName=name, PolicyName="inline")
            iam.delete_role(RoleName=name)
        else:
            iam.delete_policy(PolicyArn=name[1])


def test_function_role_without_start_permission_cannot_restart(
    aws, make_function, instances, rule_to_function
):
    """The executor signs the function's calls as its role session; IAM then decides."""
    ec2, lam, sqs = aws("ec2"), aws("lambda"), aws("sqs")
    allowed, forbidden = instances(2)
    name, arn = make_function(
        RESTART_SOURCE,
        policy=allow(("ec2:StartInstances", instance_arn(allowed))),
    )
    queue_url = sqs.create_queue(QueueName=unique("harness-failed"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    rule_to_function(state_pattern([allowed, forbidden]), name, arn)
    try:
        ec2.stop_instances(InstanceIds=[allowed, forbidden])
        assert wait_for(lambda: instance_states(ec2, [allowed])[allowed] == "running", timeout=30)

        def failure_record():
            reply = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
            return [json.loads(m["Body"]) for m in reply.get("Messages", [])]

        (record,) = wait_for(failure_record, timeout=30, interval=0)
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestPayload"]["detail"]["instance-id"] == forbidden
        assert "UnauthorizedOperation" in record["responsePayload"]["errorMessage"]
        assert instance_states(ec2, [forbidden])[forbidden] == "stopped"
    finally:
        sqs.delete_queue(QueueUrl=queue_url)


def test_root_test_credentials_stay_unrestricted(aws):
    assert aws("iam").list_roles()["Roles"] is not None
    assert aws("lambda").list_functions()["Functions"] is not None


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        ("ec2", "describe_instances", "UnauthorizedOperation"),
        ("lambda", "list_functions", "AccessDeniedException"),
        ("logs", "describe_log_groups", "AccessDeniedException"),
        ("events", "list_rules", "AccessDeniedException"),
        ("sns", "list_topics", "AccessDenied"),
        ("iam", "list_roles", "AccessDenied"),
    ],
)
def test_refusals_carry_aws_error_codes(principals, service, call, code):
    client = principals.client(principals.user(), service)
    error = refused(getattr(client, call))
    assert error is not None and error[0] == code
    assert f"is not authorized to perform: {service}:" in error[1]


def test_caller_identity_needs_no_permission(principals):
    session = principals.user()
    assert ":user/harness-user-" in principals.client(session, "sts").get_caller_identity()["Arn"]


def test_instance_arns_and_resource_tags_scope_start_and_stop(aws, principals, instances):
    team_a, team_b, untagged = instances(3)
    aws("ec2").create_tags(Resources=[team_a], Tags=[{"Key": "Team", "Value": "a"}])
    aws("ec2").create_tags(Resources=[team_b], Tags=[{"Key": "Team", "Value": "b"}])
    policy = document(
        {
            "Effect": "Allow",
            "Action": "ec2:StopInstances",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/Team": "a"}},
        },
        {"Effect": "Allow", "Action": "ec2:Start*", "Resource": instance_arn(untagged)},
    )
    ec2 = principals.client(principals.user(managed=policy), "ec2")
    assert refused(ec2.stop_instances, InstanceIds=[team_a]) is None
    assert refused(ec2.stop_instances, InstanceIds=[team_b])[0] == "UnauthorizedOperation"
    assert refused(ec2.stop_instances, InstanceIds=[untagged])[0] == "UnauthorizedOperation"
    # One refused instance refuses the whole call, as on AWS.
    assert refused(ec2.stop_instances, InstanceIds=[team_a, team_b])[0] == "UnauthorizedOperation"
    aws("ec2").stop_instances(InstanceIds=[untagged])
    assert refused(ec2.start_instances, InstanceIds=[untagged]) is None
    assert refused(ec2.start_instances, InstanceIds=[team_a])[0] == "UnauthorizedOperation"


def test_explicit_deny_not_action_and_not_resource(principals, instances):
    first, second = instances(2)
    policy = document(
        ALLOW_ALL,
        {"Effect": "Deny", "NotAction": ["ec2:Describe*", "ec2:StopInstances"], "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:StopInstances", "NotResource": instance_arn(first)},
    )
    session = principals.user(policy)
    ec2 = principals.client(session, "ec2")
    assert refused(ec2.describe_instances) is None
    assert refused(ec2.stop_instances, InstanceIds=[first]) is None
    code, message = refused(ec2.stop_instances, InstanceIds=[second])
    assert code == "UnauthorizedOperation" and "explicit deny" in message
    assert refused(principals.client(session, "lambda").list_functions)[0] == "AccessDeniedException"


def test_negated_operator_on_a_missing_key_is_met(aws, principals, instances):
    owned, unowned = instances(2)
    aws("ec2").create_tags(Resources=[owned], Tags=[{"Key": "Owner", "Value": "ops"}])
    policy = document(
        ALLOW_ALL,
        {
            "Effect": "Deny",
            "Action": "ec2:StopInstances",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"ec2:ResourceTag/Owner": "ops"}},
        },
    )
    ec2 = principals.client(principals.user(policy), "ec2")
    assert refused(ec2.stop_instances, InstanceIds=[owned]) is None
    assert refused(ec2.stop_instances, InstanceIds=[unowned])[0] == "UnauthorizedOperation"


def test_a_tag_deny_holds_for_people_not_for_automation(principals, instances):
    (instance_id,) = instances(1)
    policy = document(ALLOW_ALL, TAG_DENY)
    person = principals.client(principals.user(policy), "ec2")
    automation = principals.client(principals.role(policy, name=unique("platform-automation")), "ec2")
    bypass = [{"Key": "StopProtectionBypass", "Value": "maintenance"}]

    assert refused(person.create_tags, Resources=[instance_id], Tags=bypass)[0] == "UnauthorizedOperation"
    assert refused(person.create_tags, Resources=[instance_id], Tags=[{"Key": "Team", "Value": "a"}]) is None
    # The snippet names the role platform-automation exactly; a role of another name is refused.
    assert refused(automation.create_tags, Resources=[instance_id], Tags=bypass)[0] == "UnauthorizedOperation"
    named = principals.client(principals.role(policy, name="platform-automation"), "ec2")
    assert refused(named.create_tags, Resources=[instance_id], Tags=bypass) is None


def test_tag_keys_with_for_all_values(principals, instances):
    (instance_id,) = instances(1)
    policy = document(
        {
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["StopProtectionSuspended"]}},
        }
    )
    ec2 = principals.client(principals.role(policy), "ec2")
    suspended = [{"Key": "StopProtectionSuspended", "Value": "2026-11-27T00:00:00Z restart budget"}]
    assert refused(ec2.create_tags, Resources=[instance_id], Tags=suspended) is None
    mixed = [*suspended, {"Key": "Other", "Value": "x"}]
    assert refused(ec2.create_tags, Resources=[instance_id], Tags=mixed)[0] == "UnauthorizedOperation"


def test_what_cannot_be_evaluated_fails_safe(principals, instances):
    (instance_id,) = instances(1)
    unknown = {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}
    allow_with_unknown = document(
        {"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": "*", "Condition": unknown}
    )
    deny_with_unknown = document(
        ALLOW_ALL, {"Effect": "Deny", "Action": "ec2:StopInstances", "Resource": "*", "Condition": unknown}
    )
    for policy in (allow_with_unknown, deny_with_unknown):
        ec2 = principals.client(principals.user(policy), "ec2")
        assert refused(ec2.stop_instances, InstanceIds=[instance_id])[0] == "UnauthorizedOperation"


@pytest.mark.parametrize(
    ("pass_role", "expected"),
    [
        (None, "iam:PassRole"),
        ({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}, "iam:PassRole"),
        ({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}, None),
    ],
)
def test_handing_a_role_to_a_function_needs_pass_role(aws, principals, pass_role, expected):
    """CreateFunction also checks iam:PassRole on the function's role, for Lambda only."""
    iam, name = aws("iam"), unique("passed")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ASSUME_LAMBDA))["Role"]["Arn"]
    statements = [
        {
            "Effect": "Allow",
            "Action": ["lambda:CreateFunction", "lambda:TagResource"],
            "Resource": f"arn:aws:lambda:{REGION}:000000000000:function:{name}",
            # Lambda takes its tags as a map: the condition sees them like EC2's list.
            "Condition": {"StringEquals": {"aws:RequestTag/ManagedBy": "guardrails.ec2"}},
        }
    ]
    if pass_role is not None:
        statements.append(
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role, "Condition": pass_role}
        )
    deployer = principals.client(principals.user(document(*statements)), "lambda")
    try:
        answer = refused(
            deployer.create_function,
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": zip_source("def handler(event, context):\n    return None\n")},
            Tags={"ManagedBy": "guardrails.ec2"},
        )
        if expected is None:
            assert answer is None
        else:
            assert answer[0] == "AccessDeniedException"
            assert expected in answer[1]
    finally:
        if expected is None:
            aws("lambda").delete_function(FunctionName=name)
        iam.delete_role(RoleName=name)


@pytest.mark.parametrize(
    ("resources", "qualified_allowed"),
    [
        (["arn:aws:lambda:*:*:function:{name}"], False),
        (["arn:aws:lambda:*:*:function:{name}", "arn:aws:lambda:*:*:function:{name}:*"], True),
    ],
)
def test_a_call_on_a_version_is_judged_on_the_qualified_arn(aws, principals, resources, qualified_allowed):
    """amazon.aws's lambda module reads a published version back with ``Qualifier``: Lambda
    authorises that on ``function:NAME:1``, which an unqualified ARN does not cover."""
    iam, lam, name = aws("iam"), aws("lambda"), unique("qualified")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ASSUME_LAMBDA))["Role"]["Arn"]
    lam.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": zip_source("def handler(event, context):\n    return None\n")},
        Publish=True,
    )
    try:
        policy = allow((["lambda:GetFunction"], [r.format(name=name) for r in resources]))
        deployer = principals.client(principals.user(policy), "lambda")
        assert refused(deployer.get_function, FunctionName=name) is None
        partial = f"000000000000:function:{name}:1"
        for call in (
            {"FunctionName": name, "Qualifier": "1"},
            {"FunctionName": f"{name}:1"},
            {"FunctionName": partial},
        ):
            answer = refused(deployer.get_function, **call)
            if qualified_allowed:
                assert answer is None, call
            else:
                assert answer[0] == "AccessDeniedException", call
                assert f"function:{name}:1 " in answer[1]
    finally:
        lam.delete_function(FunctionName=name)
        iam.delete_role(RoleName=name)
