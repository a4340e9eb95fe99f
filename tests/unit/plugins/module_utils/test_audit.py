"""module_utils/audit.py: whether each instance is protected, and why not."""

import boto3
import pytest
from moto import mock_aws
from verify_helpers import (
    ARN_PREFIX,
    CMK,
    FUNCTION_ARN,
    ID,
    ROLE_ARN,
    RULE_ARN,
    deployment,
    generated,
    instance,
)

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    audit,
    iam_eval,
    iam_policy,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    plan as planning,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError


def test_a_fully_wired_instance_is_protected():
    entry = audit.audit_instance(ID, instance(), deployment(), "eu-west-1", attribute=False)
    assert entry == {
        "instance_id": ID,
        "region": "eu-west-1",
        "state": "running",
        "protected": True,
        "problems": [],
        "rules": ["EC2Protect.1"],
        "aws_stop_protection": False,
    }


@pytest.mark.parametrize(
    ("inst", "dep", "expected"),
    [
        (None, deployment(), "does not exist"),
        (instance("terminated"), deployment(), "is terminated"),
        (instance(), deployment(rules=[]), "No rule of this deployment names the instance"),
        (instance(), deployment(rule={"state": "DISABLED"}), "Rule EC2Protect.1 is DISABLED"),
        (instance(), deployment(rule={"matches_stopped": False}), "does not match a stopped event"),
        (instance(), deployment(rule={"matches_running": True}), "also matches running events"),
        (instance(), deployment(rule={"targets_function": False}), "does not target the function"),
        (instance(), deployment(policy_sources=set()), "resource policy does not let rule EC2Protect.1"),
        (instance(), deployment(invoke_config=None), "no asynchronous invocation settings"),
        (instance(), deployment(function=None), f"Function {FUNCTION_ARN} does not exist"),
        (instance(), deployment(function={"State": "Failed"}), "Function is Failed"),
        (
            instance(tags={"StopProtectionBypass": "patching"}),
            deployment(),
            "Bypass tag StopProtectionBypass is set",
        ),
        (instance(), deployment(mode="tag"), "does not carry the protection tag StopProtection=enabled"),
        (instance("stopped"), deployment(), "Instance is stopped: the protection has not started it again"),
        (instance("stopping"), deployment(), "Instance is stopping"),
        (instance(), deployment(reserved_concurrency=0), "reserved concurrency is 0"),
        (instance(), deployment(sweep_rule=None), "The sweep rule is missing: a lost stop event"),
        (instance(), deployment(sweep={"state": "DISABLED"}), "Sweep rule EC2Protect.sweep is DISABLED"),
        (instance(), deployment(sweep={"targets_function": False}), "does not target the function"),
        (
            instance(),
            deployment(policy_sources={RULE_ARN}),
            "does not let sweep rule EC2Protect.sweep invoke it",
        ),
        (
            instance(tags={"StopProtectionSuspended": "2026-11-27T10:00:00Z 3 restarts within 3600 s"}),
            deployment(),
            "Suspended (2026-11-27T10:00:00Z 3 restarts within 3600 s): its restart budget is spent",
        ),
    ],
)
def test_each_gap_makes_the_instance_unprotected_and_says_why(inst, dep, expected):
    entry = audit.audit_instance(ID, inst, dep, "eu-west-1")
    assert entry["protected"] is False
    assert any(expected in problem for problem in entry["problems"]), entry["problems"]


def test_no_sweep_expected_means_none_checked():
    dep = deployment(sweep_rule=None)
    dep["env"]["SWEEP_MINUTES"] = "0"
    assert audit.audit_instance(ID, instance(), dep, "eu-west-1")["protected"] is True


def test_reserved_concurrency_above_zero_or_unset_is_fine():
    for setting in (None, 5):
        entry = audit.audit_instance(ID, instance(), deployment(reserved_concurrency=setting), "eu-west-1")
        assert entry["protected"] is True


def test_tag_mode_with_the_tag_is_protected():
    entry = audit.audit_instance(
        ID, instance(tags={"StopProtection": "enabled"}), deployment(mode="tag"), "eu-west-1"
    )
    assert entry["protected"] is True


def test_audit_names_the_role_that_may_not_start_the_instance():
    dep = deployment(start_permission=iam_eval.RolePermissions(ROLE_ARN, []), instance_arn_prefix=ARN_PREFIX)
    entry = audit.audit_instance(ID, instance(), dep, "eu-west-1")
    assert entry["protected"] is False
    assert entry["problems"] == [
        f"No policy of the function's role EC2ProtectRole allows ec2:StartInstances on {ARN_PREFIX}{ID}."
    ]
    dep["start_permission"] = iam_eval.RolePermissions(ROLE_ARN, generated())
    assert audit.audit_instance(ID, instance(), dep, "eu-west-1")["protected"] is True


AWS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000"


def permissions_with(kms_key_arns):

    plan = planning.build_plan("EC2Protect", instances=[(ID, "eu-west-1", "x")], bypass_tag_key="B")
    policies, _scope = iam_policy.build_policies(
        dict(plan, settings=dict(plan["settings"], kms_key_arns=kms_key_arns)), "123456789012"
    )
    return iam_eval.RolePermissions(ROLE_ARN, [policy["document"] for policy in policies])


@pytest.mark.parametrize(
    ("volume", "kms_key_arns", "expected"),
    [
        ({"key_arn": CMK, "key_manager": "CUSTOMER", "key_state": "Enabled"}, [CMK], None),
        ({"key_arn": AWS_KEY, "key_manager": "AWS", "key_state": "Enabled"}, [], None),
        (
            {"key_arn": CMK, "key_manager": "CUSTOMER", "key_state": "Enabled"},
            [],
            "may not kms:CreateGrant on it, so the instance cannot be started (list the key in stop_protection_kms_key_arns)",
        ),
        (
            {"key_arn": CMK, "key_manager": "CUSTOMER", "key_state": "PendingDeletion"},
            [CMK],
            "which is PendingDeletion",
        ),
    ],
)
def test_encrypted_volumes_need_an_enabled_key_the_role_may_grant_on(volume, kms_key_arns, expected):
    dep = deployment(start_permission=permissions_with(kms_key_arns), instance_arn_prefix=ARN_PREFIX)
    entry = audit.audit_instance(ID, instance(), dep, "eu-west-1", volumes=[{"volume_id": "vol-1", **volume}])
    if expected is None:
        assert entry["protected"] is True, entry["problems"]
    else:
        assert entry["protected"] is False
        assert any(expected in problem and "vol-1" in problem for problem in entry["problems"]), entry[
            "problems"
        ]


def test_an_instance_whose_shutdown_terminates_it_is_not_protected():
    entry = audit.audit_instance(ID, instance(), deployment(), "eu-west-1", shutdown_behavior="terminate")
    assert entry["protected"] is False
    assert "InstanceInitiatedShutdownBehavior is terminate" in entry["problems"][0]
    assert audit.audit_instance(ID, instance(), deployment(), "eu-west-1", shutdown_behavior="stop")[
        "protected"
    ]


def test_code_other_than_the_package_is_not_protection():
    changed = deployment(
        function={"State": "Active", "LastUpdateStatus": "Successful", "CodeSha256": "edited="},
        expected_code_sha256="packaged=",
    )
    entry = audit.audit_instance(ID, instance(), changed, "eu-west-1")
    assert entry["protected"] is False
    assert entry["problems"] == [
        "The function's code (CodeSha256 edited=) is not the code this collection deploys (packaged=): "
        "it was changed, or protect has not run since an upgrade."
    ]
    same = deployment(
        function={"State": "Active", "LastUpdateStatus": "Successful", "CodeSha256": "packaged="},
        expected_code_sha256="packaged=",
    )
    assert audit.audit_instance(ID, instance(), same, "eu-west-1")["protected"] is True


def launch(ec2, tags, count=1):
    spec = (
        [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": val} for k, val in tags.items()]}]
        if tags
        else []
    )
    reply = ec2.run_instances(ImageId="ami-12345678", MinCount=count, MaxCount=count, TagSpecifications=spec)
    return [found["InstanceId"] for found in reply["Instances"]]


def test_tag_mode_audit_without_ids_audits_every_tagged_instance(monkeypatch, retrying):
    monkeypatch.setattr(audit, "read_deployment", lambda *args: deployment(mode="tag"))
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        tagged = launch(ec2, {"StopProtection": "enabled"}, count=2)
        stopped = launch(ec2, {"StopProtection": "enabled"})
        ec2.stop_instances(InstanceIds=stopped)
        gone = launch(ec2, {"StopProtection": "enabled"})
        ec2.terminate_instances(InstanceIds=gone)
        launch(ec2, {"StopProtection": "disabled"})
        launch(ec2, None)
        entries = audit.audit(
            {"ec2": retrying(ec2)},
            "EC2Protect",
            [],
            "eu-west-1",
            "123456789012",
            "aws",
            check_attribute=False,
        )
    assert sorted(entry["instance_id"] for entry in entries) == sorted(tagged + stopped)
    by_id = {entry["instance_id"]: entry for entry in entries}
    assert [by_id[i]["protected"] for i in tagged] == [True, True]
    assert by_id[stopped[0]]["protected"] is False  # found, and reported: it is stopped


@pytest.mark.parametrize(
    ("found", "tagged", "message"),
    [
        (
            deployment(mode="tag"),
            False,
            "No instance in eu-west-1 carries the protection tag StopProtection=enabled",
        ),
        (deployment(), True, "EC2Protect in eu-west-1 protects the instances its rules list; name them"),
        (
            deployment(function=None),
            True,
            "No instances to audit: name them, or deploy EC2Protect in eu-west-1",
        ),
    ],
)
def test_an_audit_never_passes_over_nothing(monkeypatch, retrying, found, tagged, message):
    monkeypatch.setattr(audit, "read_deployment", lambda *args: found)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        if tagged:
            launch(ec2, {"StopProtection": "enabled"})
        with pytest.raises(ProtectionError, match=message):
            audit.audit({"ec2": retrying(ec2)}, "EC2Protect", [], "eu-west-1", "123456789012", "aws")


@pytest.mark.parametrize(
    ("read", "reserved", "restart_together", "warned"),
    [
        (True, None, True, "reserved concurrency is not set, not 1"),
        (True, 5, True, "reserved concurrency is 5, not 1"),
        (True, 1, True, None),
        (True, 0, True, None),  # a problem of every instance, not a warning
        (True, None, False, None),  # the deployment does not restart together
        (False, None, True, None),  # not read: its own warning says so
    ],
)
def test_a_reserved_concurrency_other_than_one_is_warned_of_when_the_deployment_restarts_together(
    monkeypatch, retrying, read, reserved, restart_together, warned
):
    found = deployment(reserved_concurrency=reserved)
    if read:
        found["reserved_concurrency_read"] = True
    monkeypatch.setattr(audit, "read_deployment", lambda *args: found)
    warnings = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        ids = launch(ec2, None)
        audit.audit(
            {"ec2": retrying(ec2)},
            "EC2Protect",
            ids,
            "eu-west-1",
            "123456789012",
            "aws",
            check_attribute=False,
            warnings=warnings,
            restart_together=restart_together,
        )
    concurrency = [warning for warning in warnings if "reserved concurrency" in warning]
    assert concurrency == ([] if warned is None else [concurrency[0]])
    if warned:
        assert warned in concurrency[0] and "mass stop" in concurrency[0]
