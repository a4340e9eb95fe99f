"""docs/deployer-policy.json is enough to protect, audit, drill and unprotect, and needed.

Every part is deployed: sweep and heartbeat alarm (with the first sweep protect runs), the
tamper rules with the topic as their second target, topic and failure queue.

The playbooks run as an IAM user that holds only that policy, with IAM enforced by the
harness (including iam:PassRole when the function is handed its role, and Lambda calls on
a published version judged on the qualified ARN, as AWS does).
"""

import json
import subprocess

import pytest
from botocore.exceptions import ClientError
from conftest import ROOT, instance_states, shutdown_from_inside, unique, wait_for
from playbook_runs import playbook_command, playbook_env, protect_vars

POLICY = ROOT / "docs" / "deployer-policy.json"


@pytest.fixture
def deployer(aws):
    """``make(document) -> env``: an IAM user holding only ``document``, as playbook environment."""
    iam = aws("iam")
    made = []

    def make(document):
        name = unique("deployer")
        iam.create_user(UserName=name)
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made.append((name, arn, key["AccessKeyId"]))
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    yield make
    for name, arn, key_id in made:
        iam.delete_access_key(UserName=name, AccessKeyId=key_id)
        iam.detach_user_policy(UserName=name, PolicyArn=arn)
        iam.delete_user(UserName=name)
        iam.delete_policy(PolicyArn=arn)


def policy_for(name, drop_sid=None):
    """The documented policy for deployment ``name`` (the document is written for EC2Protect)."""
    document = json.loads(POLICY.read_text().replace("EC2Protect", name))
    document["Statement"] = [s for s in document["Statement"] if s["Sid"] != drop_sid]
    return document


def run_as(credentials, endpoint, playbook, extra_vars, region_in_environment=True):
    env = playbook_env(endpoint) | credentials
    if not region_in_environment:
        for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            env.pop(variable, None)
    return subprocess.run(
        playbook_command(playbook, extra_vars),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_documented_policy_protects_audits_drills_and_unprotects(aws, endpoint, instances, deployer):
    name = unique("Deployer")
    ids = instances(1)
    credentials = deployer(policy_for(name))
    # A topic and a failure queue: protect and the audit check that both exist.
    topic = aws("sns").create_topic(Name=name)["TopicArn"]
    queue_url = aws("sqs").create_queue(QueueName=name)["QueueUrl"]
    queue = aws("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # As a first-time user writes it: the region only with the instances, none in the
    # environment, so every AWS task (IAM's too) must take the region of its deployment.
    settings = protect_vars(
        name,
        [{"instance_id": instance_id, "region": "us-east-1"} for instance_id in ids],
        stop_protection_region="",
        stop_protection_notification_topic_arn=topic,
        stop_protection_failure_destination_arn=queue,
        stop_protection_sweep_minutes=5,
        stop_protection_keep_logs=False,
        # The tamper rules, with the topic as their second target.
        stop_protection_automation_principals=["arn:aws:iam::*:user/deployer-*"],
        stop_protection_restart_together=True,
    )
    steps = [
        ("protect.yml", settings),
        ("verify.yml", settings),
        (
            "verify.yml",
            settings | {"stop_protection_verify_mode": "drill", "stop_protection_verify_timeout": 60},
        ),
        # Restarting together turned off: the reservation goes (DeleteFunctionConcurrency).
        ("protect.yml", settings | {"stop_protection_restart_together": False}),
        ("unprotect.yml", settings),
    ]
    try:
        for playbook, extra_vars in steps:
            result = run_as(credentials, endpoint, playbook, extra_vars, region_in_environment=False)
            assert result.returncode == 0, f"{playbook} {extra_vars}:\n{result.stdout[-4000:]}"
            if playbook == "protect.yml":
                reserved = aws("lambda").get_function_concurrency(FunctionName=name)
                together = extra_vars["stop_protection_restart_together"]
                assert reserved.get("ReservedConcurrentExecutions") == (1 if together else None), reserved
        assert name not in [
            function["FunctionName"] for function in aws("lambda").list_functions()["Functions"]
        ]
    finally:
        aws("sns").delete_topic(TopicArn=topic)
        aws("sqs").delete_queue(QueueUrl=queue_url)


def test_without_pass_role_the_function_cannot_be_deployed(aws, endpoint, instances, deployer):
    name = unique("NoPass")
    ids = instances(1)
    credentials = deployer(policy_for(name, drop_sid="HandTheRolesOnlyToTheFunction"))
    settings = protect_vars(name, ids, stop_protection_iam_propagation_retries=0)
    try:
        result = run_as(credentials, endpoint, "protect.yml", settings)
        assert result.returncode != 0
        assert "iam:PassRole" in result.stdout, result.stdout[-3000:]
    finally:
        cleanup = run_as({}, endpoint, "unprotect.yml", settings | {"stop_protection_keep_logs": False})
        assert cleanup.returncode == 0, cleanup.stdout[-3000:]


def test_aws_stop_protection_is_set_reported_and_cleared_only_where_protect_set_it(
    aws, endpoint, instances, deployer, tmp_path
):
    """stop_protection_disable_api_stop, run by the documented deployer: API stops refused,
    an OS shutdown still restarted, unprotect clears only what protect set."""
    name = unique("ApiStop")
    mine, theirs = instances(2)
    ec2 = aws("ec2")
    ec2.modify_instance_attribute(InstanceId=theirs, DisableApiStop={"Value": True})
    credentials = deployer(policy_for(name))
    settings = protect_vars(
        name, [mine, theirs], stop_protection_disable_api_stop=True, stop_protection_keep_logs=False
    )

    def attribute(instance_id):
        reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiStop")
        return reply["DisableApiStop"]["Value"]

    def marker(instance_id):
        (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return {tag["Key"] for tag in reservation["Instances"][0].get("Tags", [])} & {
            f"guardrails.ec2/{name}/disable-api-stop"
        }

    try:
        result = run_as(credentials, endpoint, "protect.yml", settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert (attribute(mine), attribute(theirs)) == (True, True)
        assert (bool(marker(mine)), bool(marker(theirs))) == (True, False)
        rerun = run_as(credentials, endpoint, "protect.yml", settings)
        assert "changed=0" in rerun.stdout.rsplit("PLAY RECAP", 1)[-1], rerun.stdout[-3000:]

        with pytest.raises(ClientError, match="OperationNotPermitted"):
            ec2.stop_instances(InstanceIds=[mine])
        # What the attribute cannot refuse, the protection restarts.
        status, _reply = shutdown_from_inside(endpoint, [mine])
        assert status == 200
        assert wait_for(lambda: instance_states(ec2, [mine])[mine] == "running", timeout=60, interval=1)

        report = tmp_path / "audit.json"
        audit = run_as(
            credentials,
            endpoint,
            "verify.yml",
            settings | {"stop_protection_verify_report_path": str(report)},
        )
        assert audit.returncode == 0, audit.stdout[-3000:]
        (region,) = json.loads(report.read_text())
        assert {entry["instance_id"]: entry["aws_stop_protection"] for entry in region["instances"]} == {
            mine: True,
            theirs: True,
        }
    finally:
        result = run_as(credentials, endpoint, "unprotect.yml", settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert (attribute(mine), attribute(theirs)) == (False, True)
        assert not marker(mine)
        ec2.modify_instance_attribute(InstanceId=theirs, DisableApiStop={"Value": False})
