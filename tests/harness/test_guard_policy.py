"""The guard policy (playbooks/guard_policy.yml) keeps an insider from disarming the
protection, and lets the automation run protect, verify and unprotect.

The harness does not evaluate service control policies; the document is applied as an IAM
user's policy beside an Allow of everything, which IAM evaluates the same way for these
Deny statements (an explicit Deny wins).
"""

import json
import subprocess

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION, unique, wait_for
from playbook_runs import (
    playbook_command,
    playbook_env,
    protect_vars,
    read_decisions,
    run_playbook,
)

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def guarded_users(aws, tmp_path):
    """``make(name, kind) -> credentials``: an IAM user allowed everything, with the guard
    policy of deployment ``name`` attached; ``kind`` "automation" is the one it exempts."""
    iam = aws("iam")
    made = []

    def guard_document(name, ids):
        path = tmp_path / "guard.json"
        settings = protect_vars(name, ids) | {
            "stop_protection_guard_policy_path": str(path),
            "stop_protection_automation_principals": [f"arn:aws:iam::*:user/{name}-automation"],
        }
        result = subprocess.run(
            playbook_command("guard_policy.yml", settings),
            env=playbook_env(""),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        return path.read_text()

    def make(name, kind, document):
        user = f"{name}-{kind}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="everything", PolicyDocument=json.dumps(ALLOW_ALL))
        arn = iam.create_policy(PolicyName=user, PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        made.append((user, arn, key["AccessKeyId"]))
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    make.guard_document = guard_document
    yield make
    for user, arn, key_id in made:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        iam.delete_user_policy(UserName=user, PolicyName="everything")
        iam.detach_user_policy(UserName=user, PolicyArn=arn)
        iam.delete_user(UserName=user)
        iam.delete_policy(PolicyArn=arn)


def run_as(credentials, endpoint, playbook, extra_vars):
    return run_playbook(playbook, endpoint, extra_vars, timeout=600, credentials=credentials)


def refused(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return None


def test_the_guard_policy_stops_an_insider_and_lets_the_automation_through(
    aws, endpoint, instances, guarded_users
):
    name = unique("Guarded")
    (instance_id,) = instances(1)
    settings = protect_vars(
        name,
        [instance_id],
        stop_protection_keep_logs=False,
        # The tamper rules too: a refused attempt is still reported.
        stop_protection_automation_principals=[f"arn:aws:iam::*:user/{name}-automation"],
    )
    document = guarded_users.guard_document(name, [instance_id])
    automation = guarded_users(name, "automation", document)
    insider = guarded_users(name, "insider", document)
    try:
        result = run_as(automation, endpoint, "protect.yml", settings)
        assert result.returncode == 0, result.stdout[-3000:]

        session = boto3.Session(
            aws_access_key_id=insider["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=insider["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        events, lam, iam, ec2 = (
            session.client(s, endpoint_url=endpoint) for s in ("events", "lambda", "iam", "ec2")
        )
        role, policy = f"{name}-{REGION}", f"arn:aws:iam::000000000000:policy/{name}-{REGION}"
        assert refused(events.disable_rule, Name=f"{name}.1") == "AccessDeniedException"
        assert refused(lam.put_function_concurrency, FunctionName=name, ReservedConcurrentExecutions=0) == (
            "AccessDeniedException"
        )
        assert refused(iam.detach_role_policy, RoleName=role, PolicyArn=policy) == "AccessDenied"
        bypass = [{"Key": "StopProtectionBypass", "Value": "leaving"}]
        assert refused(ec2.create_tags, Resources=[instance_id], Tags=bypass) == "UnauthorizedOperation"
        # Everything else stays allowed: the Deny statements aim at the deployment only.
        assert refused(ec2.create_tags, Resources=[instance_id], Tags=[{"Key": "Team", "Value": "x"}]) is None
        assert aws("events").describe_rule(Name=f"{name}.1")["State"] == "ENABLED"

        def attempts():
            return {
                (line["event_name"], line.get("refused"))
                for line in read_decisions(aws("logs"), name)
                if line["action"] == "tamper"
            }

        expected = {
            ("DisableRule", "AccessDeniedException"),
            ("PutFunctionConcurrency20171031", "AccessDeniedException"),
            ("CreateTags", "UnauthorizedOperation"),
        }
        assert wait_for(lambda: expected <= attempts(), timeout=30, interval=1), attempts()

        for playbook in ("verify.yml", "unprotect.yml"):
            result = run_as(automation, endpoint, playbook, settings)
            assert result.returncode == 0, f"{playbook}:\n{result.stdout[-3000:]}"
    finally:
        run_as({}, endpoint, "unprotect.yml", settings)
