"""Audit checks, drill timing and summaries of stop_protection_verify (module_utils/audit.py, drill.py, iam_eval.py)."""

import json
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from fakes import Paged
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    audit,
    drill,
    iam_eval,
    iam_policy,
    reads,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    plan as planning,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
RULE_ARN = "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.1"
ID = "i-0123456789abcdef0"


SWEEP_ARN = "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.sweep"


def deployment(mode="instance_ids", **overrides):
    rule = {
        "name": "EC2Protect.1",
        "arn": RULE_ARN,
        "state": "ENABLED",
        "listed_ids": {ID} if mode == "instance_ids" else None,
        "matches_stopped": True,
        "matches_running": False,
        "targets_function": True,
    }
    rule.update(overrides.pop("rule", {}))
    sweep = {
        "name": "EC2Protect.sweep",
        "arn": SWEEP_ARN,
        "state": "ENABLED",
        "targets_function": True,
        "kind": "sweep",
    }
    sweep.update(overrides.pop("sweep", {}))
    env = {
        "PROTECTION_MODE": mode,
        "BYPASS_TAG_KEY": "StopProtectionBypass",
        "SUSPENDED_TAG_KEY": "StopProtectionSuspended",
        "SWEEP_MINUTES": "5",
    }
    if mode == "tag":
        env.update(PROTECTION_TAG_KEY="StopProtection", PROTECTION_TAG_VALUE="enabled")
    base = {
        "function": {"State": "Active", "LastUpdateStatus": "Successful"},
        "mode": mode,
        "env": env,
        # the role's one statement per region: a pattern over the deployment's rule names
        "policy_sources": {"arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*"},
        "invoke_config": {"maximum_retry_attempts": 2},
        "rules": [rule],
        "sweep_rule": sweep,
        "function_arn": FUNCTION_ARN,
        "warnings": [],
    }
    base.update(overrides)
    return base


def instance(state="running", tags=None):
    return {
        "InstanceId": ID,
        "State": {"Name": state},
        "Tags": [{"Key": k, "Value": val} for k, val in (tags or {}).items()],
    }


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


def test_invoke_sources_reads_events_statements_only():
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": RULE_ARN}},
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}},
            },
            {
                "Effect": "Deny",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:events:eu-west-1:123456789012:rule/x"}},
            },
        ]
    }
    assert iam_eval.invoke_sources(policy) == {RULE_ARN}


@pytest.mark.parametrize(
    ("operator", "source", "rule", "admitted"),
    [
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", RULE_ARN, True),
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", SWEEP_ARN, True),
        # another deployment's pattern, or the pre-1.1.0 names: not this rule
        ("ArnLike", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect-*", RULE_ARN, False),
        ("ArnLike", "arn:aws:events:us-east-1:123456789012:rule/EC2Protect.*", RULE_ARN, False),
        ("ArnEquals", RULE_ARN, RULE_ARN, True),
        # Equals takes "*" literally
        ("ArnEquals", "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.*", RULE_ARN, False),
    ],
)
def test_invocation_admitted_follows_the_condition_operator(operator, source, rule, admitted):
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Condition": {operator: {"AWS:SourceArn": source}},
            }
        ]
    }
    assert iam_eval.invocation_admitted(iam_eval.invoke_sources(policy), rule) is admitted


def test_sample_event_is_a_stopped_state_change():
    event = json.loads(audit.sample_event(ID, "eu-west-1", "123456789012"))
    assert event["detail"] == {"instance-id": ID, "state": "stopped"}
    assert event["detail-type"] == "EC2 Instance State-change Notification"


# --- drill with a scripted EC2 and a fake clock ---------------------------------------------------


class ScriptedEc2(Paged):
    """StopInstances answers `stopping`; each describe returns the next scripted states."""

    def __init__(self, script):
        self.script = list(script)
        self.stopped = []
        self.started = []
        self.describes = 0

    def start_instances(self, aws_retry, InstanceIds):
        self.started.append(list(InstanceIds))

    def stop_instances(self, aws_retry, InstanceIds):
        self.stopped.append(list(InstanceIds))
        return {
            "StoppingInstances": [
                {"InstanceId": i, "CurrentState": {"Name": "stopping"}} for i in InstanceIds
            ]
        }

    def describe_instances(self, aws_retry=False, Filters=()):
        self.describes += 1
        wanted = Filters[0]["Values"]
        states = self.script.pop(0) if self.script else {}
        return {
            "Reservations": [
                {
                    "Instances": [
                        {"InstanceId": i, "State": {"Name": s}} for i, s in states.items() if i in wanted
                    ]
                }
            ]
        }


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def entries(*states):
    return [
        {"instance_id": f"i-{n:017x}", "region": "eu-west-1", "state": s, "protected": True, "problems": []}
        for n, s in enumerate(states, start=1)
    ]


def test_drill_times_both_halves_with_one_stop_call_and_batched_polls():
    a, b = "i-00000000000000001", "i-00000000000000002"
    ec2 = ScriptedEc2(
        [
            {a: "stopping", b: "stopped"},
            {a: "stopped", b: "pending"},
            {a: "pending", b: "running"},
            {a: "running"},
        ]
    )
    clock = Clock()
    result = drill.drill(
        ec2,
        entries("running", "running"),
        timeout=60,
        max_concurrent=2,
        clock=clock,
        sleep=clock.sleep,
        poll_interval=1,
    )
    assert ec2.stopped == [[a, b]]
    assert ec2.describes == 4
    first, second = result
    assert (first["seconds_to_stopped"], first["seconds_to_running"], first["recovered"]) == (2.0, 4.0, True)
    assert (second["seconds_to_stopped"], second["seconds_to_running"], second["recovered"]) == (
        1.0,
        3.0,
        True,
    )


def test_drill_reports_instances_that_do_not_come_back():
    a = "i-00000000000000001"
    ec2 = ScriptedEc2([{a: "stopped"}] * 100)
    clock = Clock()
    (entry,) = drill.drill(
        ec2, entries("running"), timeout=5, clock=clock, sleep=clock.sleep, poll_interval=1
    )
    assert entry["recovered"] is False
    assert entry["seconds_to_stopped"] == 1.0
    assert "Not running again within 5 seconds" in entry["problems"][-2]
    assert ec2.started == [[a]] and entry["restored_by_drill"] is True


def test_drill_leaves_instances_that_are_not_running_alone():
    ec2 = ScriptedEc2([])
    result = drill.drill(ec2, entries("stopped"), timeout=5, clock=Clock(), sleep=lambda _s: None)
    assert ec2.stopped == []
    assert result[0]["drilled"] is False
    assert "was stopped, not running" in result[0]["problems"][0]


def test_summary_counts_and_recovery_statistics():
    items = entries("running", "running", "running", "stopped")
    for item, seconds in zip(items, [1.0, 3.0, 2.0], strict=False):
        item.update(drilled=True, recovered=True, seconds_to_running=seconds)
    items[3].update(drilled=False, recovered=None, protected=False)
    summary = drill.summarise(items, "drill")
    assert summary == {
        "instances": 4,
        "protected": 3,
        "unprotected": 1,
        "drilled": 3,
        "recovered": 3,
        "not_recovered": 0,
        "restored_by_drill": 0,
        "skipped_stop_protection": 0,
        "recovery_seconds": {"min": 1.0, "median": 2.0, "max": 3.0},
    }
    assert drill.summarise(items, "audit") == {"instances": 4, "protected": 3, "unprotected": 1}


class Fleet(Paged):
    """A stateful EC2: each instance comes back ``polls`` describes after its stop, or never (None)."""

    def __init__(self, comes_back, refuse_stop=()):
        self.comes_back = dict(comes_back)
        self.refuse_stop = set(refuse_stop)
        self.state = dict.fromkeys(self.comes_back, "running")
        self.countdown = {}
        self.stopped, self.started = [], []

    def stop_instances(self, aws_retry, InstanceIds):
        refused = self.refuse_stop & set(InstanceIds)
        if refused:
            raise ClientError(
                {
                    "Error": {
                        "Code": "OperationNotPermitted",
                        "Message": f"{sorted(refused)} may not be stopped",
                    }
                },
                "StopInstances",
            )
        self.stopped.append(list(InstanceIds))
        for instance_id in InstanceIds:
            self.state[instance_id] = "stopped"
            self.countdown[instance_id] = self.comes_back[instance_id]
        return {
            "StoppingInstances": [
                {"InstanceId": i, "CurrentState": {"Name": "stopping"}} for i in InstanceIds
            ]
        }

    def start_instances(self, aws_retry, InstanceIds):
        self.started.append(list(InstanceIds))
        for instance_id in InstanceIds:
            self.state[instance_id] = "pending"

    def describe_instances(self, aws_retry=False, Filters=()):
        for instance_id, left in self.countdown.items():
            if left is not None and self.state[instance_id] == "stopped":
                self.countdown[instance_id] = left - 1
                if left - 1 <= 0:
                    self.state[instance_id] = "running"
        wanted = Filters[0]["Values"]
        return {
            "Reservations": [
                {
                    "Instances": [
                        {"InstanceId": i, "State": {"Name": self.state[i]}} for i in wanted if i in self.state
                    ]
                }
            ]
        }


def fleet_entries(count, **overrides):
    items = entries(*["running"] * count)
    for item in items:
        item.update(overrides)
    return items


def run_drill(fleet, items, **kwargs):
    clock = Clock()
    return drill.drill(fleet, items, timeout=5, clock=clock, sleep=clock.sleep, poll_interval=1, **kwargs)


def ids_of(count):
    return [f"i-{n:017x}" for n in range(1, count + 1)]


def test_drill_stops_one_instance_at_a_time_by_default():
    fleet = Fleet(dict.fromkeys(ids_of(3), 2))
    result = run_drill(fleet, fleet_entries(3))
    assert fleet.stopped == [[i] for i in ids_of(3)]
    assert [e["recovered"] for e in result] == [True] * 3
    assert fleet.started == []


@pytest.mark.parametrize(
    ("setting", "batches"), [(2, [2, 2]), ("50%", [2, 2]), ("25%", [1, 1, 1, 1]), ("100%", [4])]
)
def test_drill_batches_by_number_or_percentage(setting, batches):
    fleet = Fleet(dict.fromkeys(ids_of(4), 1))
    run_drill(fleet, fleet_entries(4), max_concurrent=setting)
    assert [len(batch) for batch in fleet.stopped] == batches


def test_drill_stops_after_the_first_instance_that_does_not_come_back_and_restores_it():
    a, b, c = ids_of(3)
    fleet = Fleet({a: 1, b: None, c: 1})
    first, second, third = run_drill(fleet, fleet_entries(3))
    assert fleet.stopped == [[a], [b]]  # c is never stopped
    assert fleet.started == [[b]]  # the drill started b itself
    assert (second["recovered"], second["restored_by_drill"]) == (False, True)
    assert "Started again by the drill itself" in second["problems"][-1]
    assert (third["drilled"], third["recovered"]) == (False, None)
    assert b in third["problems"][-1] and "continue_on_failure=false" in third["problems"][-1]
    assert first["recovered"] is True and not first["restored_by_drill"]


def test_drill_goes_on_when_asked_and_still_restores_every_failure():
    a, b, c = ids_of(3)
    fleet = Fleet({a: None, b: 1, c: None})
    result = run_drill(fleet, fleet_entries(3), continue_on_failure=True)
    assert fleet.stopped == [[a], [b], [c]]
    assert fleet.started == [[a], [c]]
    assert [e["restored_by_drill"] for e in result] == [True, False, True]
    assert drill.summarise(result, "drill")["restored_by_drill"] == 2


def test_forced_unprotected_instances_are_restored_without_ending_the_drill():
    a, b = ids_of(2)
    fleet = Fleet({a: None, b: 1})
    items = fleet_entries(2)
    items[0]["protected"] = False  # drilled with force=true to show it stays stopped
    first, second = run_drill(fleet, items)
    assert fleet.stopped == [[a], [b]]
    assert first["restored_by_drill"] is True and second["recovered"] is True


@pytest.mark.parametrize("how", ["attribute", "refused"])
def test_stop_protected_instances_are_skipped_not_errors(how):
    a, b = ids_of(2)
    fleet = Fleet({a: 1, b: 1}, refuse_stop=[a] if how == "refused" else [])
    items = fleet_entries(2)
    if how == "attribute":
        items[0]["aws_stop_protection"] = True
    first, second = run_drill(fleet, items, max_concurrent=2)
    assert first["skipped"] == "DisableApiStop" and first["drilled"] is False and first["recovered"] is None
    assert "DisableApiStop" in first["problems"][-1]
    assert second["recovered"] is True
    assert drill.summarise([first, second], "drill")["skipped_stop_protection"] == 1


@pytest.mark.parametrize(
    ("setting", "count", "expected"),
    [(1, 10, 1), ("3", 10, 3), ("10%", 10, 1), ("10%", 5, 1), ("50%", 9, 4), ("100%", 7, 7)],
)
def test_concurrency_accepts_numbers_and_percentages(setting, count, expected):
    assert drill.concurrency(setting, count) == expected


@pytest.mark.parametrize("setting", [0, -1, "0%", "150%", "many", "", None])
def test_concurrency_rejects_bad_values_naming_them(setting):
    with pytest.raises(ProtectionError, match=f"got {setting!r}".replace("(", r"\(")):
        drill.concurrency(setting, 10)


# --- the role's permission to start the instance -------------------------------------------------

ROLE_ARN = "arn:aws:iam::123456789012:role/EC2ProtectRole"
ARN_PREFIX = "arn:aws:ec2:eu-west-1:123456789012:instance/"


def generated(instance_ids=(ID,), **kwargs):
    """The policy documents the role deploys for these instances."""

    if kwargs.get("mode") == "tag":
        plan = planning.build_plan(
            "EC2Protect", mode="tag", regions=["eu-west-1"], tag_key="K", tag_value="V", bypass_tag_key="B"
        )
        policies, _scope = iam_policy.build_policies(plan, "123456789012", tag_key="K", tag_value="V")
    else:
        plan = planning.build_plan(
            "EC2Protect", instances=[(i, "eu-west-1", "x") for i in instance_ids], bypass_tag_key="B"
        )
        policies, _scope = iam_policy.build_policies(plan, "123456789012")
    return [policy["document"] for policy in policies]


def test_the_generated_policy_allows_exactly_the_listed_instances():
    permission = iam_eval.RolePermissions(ROLE_ARN, generated())
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {}) == "allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + "i-0fffffffffffffff0", {}) == "not-allowed"
    assert (
        permission.check("ec2:StartInstances", "arn:aws:ec2:us-east-1:123456789012:instance/" + ID)
        == "not-allowed"
    )


def test_spilled_policies_allow_every_instance():
    instance_ids = [f"i-{index:017x}" for index in range(300)]
    documents = generated(instance_ids)
    assert len(documents) > 2
    permission = iam_eval.RolePermissions(ROLE_ARN, documents)
    assert {permission.check("ec2:StartInstances", ARN_PREFIX + i, {}) for i in instance_ids} == {"allowed"}
    # Without the policies that hold the later ARNs, those instances are not allowed.
    partial = iam_eval.RolePermissions(ROLE_ARN, documents[:1])
    assert partial.check("ec2:StartInstances", ARN_PREFIX + instance_ids[-1], {}) == "not-allowed"


def test_tag_mode_policy_allows_only_tagged_instances():
    permission = iam_eval.RolePermissions(ROLE_ARN, generated(mode="tag"))
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {"K": "V"}) == "allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {"K": "other"}) == "not-allowed"
    assert permission.check("ec2:StartInstances", ARN_PREFIX + ID, {}) == "not-allowed"


@pytest.mark.parametrize(
    ("statement", "tags", "expected"),
    [
        ({"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}, {}, "denied"),
        ({"Effect": "Deny", "Action": "ec2:Start*", "Resource": ARN_PREFIX + "*"}, {}, "denied"),
        ({"Effect": "Deny", "NotAction": "ec2:Describe*", "Resource": "*"}, {}, "denied"),
        ({"Effect": "Deny", "Action": "ec2:StopInstances", "Resource": "*"}, {}, "allowed"),
        ({"Effect": "Deny", "Action": "ec2:*", "NotResource": ARN_PREFIX + ID}, {}, "allowed"),
        # A condition on a tag is evaluated; one on anything else never counts against the instance.
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/Frozen": "yes"}}},
            {"Frozen": "yes"},
            "denied",
        ),
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/Frozen": "yes"}}},
            {},
            "allowed",
        ),
        (
            {"Effect": "Deny", "Action": "ec2:*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            {},
            "allowed",
        ),
    ],
)  # fmt: skip
def test_explicit_denies_and_conditions(statement, tags, expected):
    documents = [*generated(), {"Version": "2012-10-17", "Statement": [statement]}]
    assert (
        iam_eval.RolePermissions(ROLE_ARN, documents).check("ec2:StartInstances", ARN_PREFIX + ID, tags)
        == expected
    )


def test_an_allow_with_a_condition_it_cannot_evaluate_still_counts():
    document = {
        "Statement": {
            "Effect": "Allow",
            "Action": ["ec2:StartInstances"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"Bool": {"aws:ViaAWSService": "false"}},
        }
    }
    assert (
        iam_eval.RolePermissions(ROLE_ARN, [document]).check("ec2:StartInstances", ARN_PREFIX + ID, {})
        == "allowed"
    )


def test_audit_names_the_role_that_may_not_start_the_instance():
    dep = deployment(start_permission=iam_eval.RolePermissions(ROLE_ARN, []), instance_arn_prefix=ARN_PREFIX)
    entry = audit.audit_instance(ID, instance(), dep, "eu-west-1")
    assert entry["protected"] is False
    assert entry["problems"] == [
        f"No policy of the function's role EC2ProtectRole allows ec2:StartInstances on {ARN_PREFIX}{ID}."
    ]
    dep["start_permission"] = iam_eval.RolePermissions(ROLE_ARN, generated())
    assert audit.audit_instance(ID, instance(), dep, "eu-west-1")["protected"] is True


class PagedIam(Paged):
    SERVICE = "iam"

    """IAM stand-in: two pages of attached policies, one inline policy returned as text."""

    def __init__(self):
        self.calls = []

    def list_attached_role_policies(self, aws_retry=False, RoleName=None, Marker=None):
        self.calls.append(("list_attached_role_policies", RoleName, Marker))
        if Marker is None:
            return {"AttachedPolicies": [{"PolicyArn": "arn:p1"}], "IsTruncated": True, "Marker": "m"}
        return {"AttachedPolicies": [{"PolicyArn": "arn:p2"}], "IsTruncated": False}

    def get_policy(self, aws_retry, PolicyArn):
        return {"Policy": {"DefaultVersionId": "v3"}}

    def get_policy_version(self, aws_retry, PolicyArn, VersionId):
        assert VersionId == "v3"
        return {"PolicyVersion": {"Document": {"Statement": [{"Sid": PolicyArn}]}}}

    def list_role_policies(self, aws_retry=False, RoleName=None, Marker=None):
        return {"PolicyNames": ["inline"], "IsTruncated": False}

    def get_role_policy(self, aws_retry, RoleName, PolicyName):
        return {"PolicyDocument": "%7B%22Statement%22%3A%5B%7B%22Sid%22%3A%22inline%22%7D%5D%7D"}


def test_role_policy_documents_reads_every_page_and_inline_policies():
    iam = PagedIam()
    documents = iam_eval.role_policy_documents(iam, ROLE_ARN)
    assert [d["Statement"][0]["Sid"] for d in documents] == ["arn:p1", "arn:p2", "inline"]
    assert iam.calls == [
        ("list_attached_role_policies", "EC2ProtectRole", None),
        ("list_attached_role_policies", "EC2ProtectRole", "m"),
    ]


# --- encrypted volumes ----------------------------------------------------------------------------

CMK = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
AWS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000"


class VolumeEc2(Paged):
    def __init__(self, volumes):
        self.volumes = volumes
        self.calls = 0

    def describe_volumes(self, aws_retry=False, Filters=()):
        self.calls += 1
        wanted = set(Filters[0]["Values"])
        return {"Volumes": [v for v in self.volumes if v["VolumeId"] in wanted]}


class Kms:
    def __init__(self, keys):
        self.keys = keys
        self.asked = []

    def describe_key(self, aws_retry, KeyId):
        self.asked.append(KeyId)
        return {"KeyMetadata": self.keys[KeyId]}


def with_volumes(*volume_ids):
    inst = instance()
    inst["BlockDeviceMappings"] = [
        {"DeviceName": f"/dev/sd{i}", "Ebs": {"VolumeId": v}} for i, v in enumerate(volume_ids)
    ]
    return inst


def test_volume_keys_reads_each_key_once_and_skips_unencrypted_volumes():
    ec2 = VolumeEc2(
        [
            {"VolumeId": "vol-1", "Encrypted": True, "KmsKeyId": CMK},
            {"VolumeId": "vol-2", "Encrypted": True, "KmsKeyId": CMK},
            {"VolumeId": "vol-3", "Encrypted": False},
        ]
    )
    kms = Kms({CMK: {"Arn": CMK, "KeyManager": "CUSTOMER", "KeyState": "Enabled"}})
    found = audit.volume_keys(ec2, kms, {ID: with_volumes("vol-1", "vol-2", "vol-3")}, [])
    assert [volume["volume_id"] for volume in found[ID]] == ["vol-1", "vol-2"]
    assert kms.asked == [CMK]
    assert ec2.calls == 1


def permissions_with(kms_key_arns):

    plan = planning.build_plan("EC2Protect", instances=[(ID, "eu-west-1", "x")], bypass_tag_key="B")
    policies, _scope = iam_policy.build_policies(plan, "123456789012", kms_key_arns=kms_key_arns)
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


def test_describe_filtered_batches_by_200_and_follows_next_token():
    calls = []

    class Volumes(Paged):
        def describe_volumes(self, Filters, NextToken=None):
            calls.append((len(Filters[0]["Values"]), NextToken))
            page = [{"VolumeId": f"{len(Filters[0]['Values'])}-{NextToken}"}]
            return {"Volumes": page, **({"NextToken": "second"} if NextToken is None else {})}

    replies = list(
        reads.describe_filtered(Volumes(), "describe_volumes", "volume-id", [f"vol-{n}" for n in range(250)])
    )
    assert calls == [(200, None), (200, "second"), (50, None), (50, "second")]
    # One reply per batch, its pages merged.
    assert [[v["VolumeId"] for v in reply["Volumes"]] for reply in replies] == [
        ["200-None", "200-second"],
        ["50-None", "50-second"],
    ]


NEGATED_DENIES = [
    ("StringNotEquals", "ops", {}, "denied"),  # IAM: a negated operator on a missing key is met
    ("StringNotEquals", "ops", {"Owner": "ops"}, "allowed"),
    ("StringNotEquals", "ops", {"Owner": "dev"}, "denied"),
    ("StringNotLike", "op*", {}, "denied"),
    ("StringNotLike", "op*", {"Owner": "ops"}, "allowed"),
    ("StringEqualsIfExists", "dev", {}, "denied"),  # ...IfExists on a missing key is met
    ("StringEqualsIfExists", "dev", {"Owner": "ops"}, "allowed"),
    ("StringNotEqualsIfExists", "ops", {}, "denied"),
    ("StringEquals", "dev", {}, "allowed"),  # a positive operator on a missing key fails
]


@pytest.mark.parametrize(("operator", "value", "tags", "expected"), NEGATED_DENIES)
def test_deny_conditions_on_missing_tags_follow_iam(operator, value, tags, expected):
    documents = [
        {"Statement": [{"Effect": "Allow", "Action": "ec2:StartInstances", "Resource": "*"}]},
        {
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "ec2:StartInstances",
                    "Resource": "*",
                    "Condition": {operator: {"ec2:ResourceTag/Owner": value}},
                }
            ]
        },
    ]
    assert (
        iam_eval.RolePermissions(ROLE_ARN, documents).check("ec2:StartInstances", ARN_PREFIX + ID, tags)
        == expected
    )


def test_an_instance_whose_shutdown_terminates_it_is_not_protected():
    entry = audit.audit_instance(ID, instance(), deployment(), "eu-west-1", shutdown_behavior="terminate")
    assert entry["protected"] is False
    assert "InstanceInitiatedShutdownBehavior is terminate" in entry["problems"][0]
    assert audit.audit_instance(ID, instance(), deployment(), "eu-west-1", shutdown_behavior="stop")[
        "protected"
    ]


def test_instance_attributes_reads_stop_protection_and_shutdown_behavior(retrying):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        plain, guarded = (
            ec2.run_instances(
                ImageId="ami-12345678",
                MinCount=1,
                MaxCount=1,
                InstanceInitiatedShutdownBehavior=behavior,
                **extra,
            )["Instances"][0]["InstanceId"]
            for behavior, extra in (("terminate", {}), ("stop", {"DisableApiStop": True}))
        )
        found = reads.instance_attributes(retrying(ec2), [plain, guarded])
    assert found == {
        plain: {"disable_api_stop": False, "shutdown_behavior": "terminate"},
        guarded: {"disable_api_stop": True, "shutdown_behavior": "stop"},
    }


class FleetThatCannotStart(Fleet):
    """The drill's own StartInstances fails (no capacity); stops work."""

    def start_instances(self, aws_retry, InstanceIds):
        raise ClientError(
            {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "no capacity"}}, "StartInstances"
        )


def test_a_restore_that_fails_is_reported_with_what_to_do():
    a, b = ids_of(2)
    fleet = FleetThatCannotStart({a: None, b: None})
    first, second = run_drill(fleet, fleet_entries(2), continue_on_failure=True)
    for entry in (first, second):  # every batch is restored, even after an earlier failure
        assert entry["restored_by_drill"] is False
        assert "could not start it again" in entry["problems"][-1]
        assert "InsufficientInstanceCapacity" in entry["problems"][-1]
        assert "start it by hand" in entry["problems"][-1]


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


def test_instance_states_describe_in_full_only_a_batch_with_an_unknown_id(retrying):
    """States come from DescribeInstanceStatus (small replies, 100 ids a call); only a batch
    that EC2 refuses for an unknown id is looked up with the filtered DescribeInstances."""
    with mock_aws():
        client = boto3.client("ec2", region_name="eu-west-1")
        ids = [
            i["InstanceId"]
            for i in client.run_instances(ImageId="ami-12345678", MinCount=250, MaxCount=250)["Instances"]
        ]
        client.terminate_instances(InstanceIds=ids[:1])
        calls = []
        client.meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))
        unknown = "i-0123456789abcdef0"
        states = reads.instance_states(retrying(client), [*ids[:150], unknown, *ids[150:]])
    assert set(states) == set(ids)
    assert states[ids[0]] == "terminated" and states[ids[1]] == "running"
    assert calls == [
        "DescribeInstanceStatus",
        "DescribeInstanceStatus",
        "DescribeInstances",
        "DescribeInstanceStatus",
    ]


# --- a drill batch by batch (the role's verify.yml: one task iteration per batch) ----------


def test_batch_by_batch_the_drill_merges_to_what_one_run_reports():
    """The role drills each batch with its own module run; merged, the result is that of one
    run: the batch that failed is reported, later batches say why they were not drilled."""
    a, b, c = ids_of(3)
    whole_fleet = Fleet({a: None, b: 1, c: 1})
    whole = run_drill(whole_fleet, fleet_entries(3))
    planned = fleet_entries(3)
    batches = drill.plan_batches([dict(e, problems=[]) for e in planned], 1)
    assert [[e["instance_id"] for e in batch] for batch in batches] == [[a], [b], [c]]
    first = run_drill(Fleet({a: None}), fleet_entries(1))  # only the first batch runs: it fails
    merged, summary, failure = drill.merge(planned, [{"instances": first}], timeout=5)
    assert [(e["drilled"], e["recovered"], e["restored_by_drill"]) for e in merged] == [
        (e["drilled"], e["recovered"], e["restored_by_drill"]) for e in whole
    ]
    assert [e["problems"][-1] for e in merged[1:]] == [e["problems"][-1] for e in whole[1:]]
    assert summary == drill.summarise(whole, "drill")
    assert failure == drill.verdict(whole, 5)
    assert failure.startswith("The drill failed: 1 of 1 drilled instances were not restarted")


def test_batches_follow_max_concurrent_and_leave_out_what_cannot_be_drilled():
    items = entries("running", "stopped", "running", "running")
    items[2]["aws_stop_protection"] = True
    batches = drill.plan_batches(items, 2)
    assert [[e["instance_id"] for e in batch] for batch in batches] == [
        [items[0]["instance_id"], items[3]["instance_id"]]
    ]
    assert items[1]["problems"] == ["Not drilled: the instance was stopped, not running."]
    assert "DisableApiStop" in items[2]["problems"][0]


def test_the_audit_reports_both_alarms_and_warns_of_each_in_alarm(retrying):
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        warnings = []
        assert audit.alarm_states(retrying(cloudwatch), "EC2Protect", warnings) == {
            "attention": None,
            "heartbeat": None,
        }
        for kind in ("attention", "heartbeat"):
            cloudwatch.put_metric_alarm(
                AlarmName=f"EC2Protect-{kind}",
                MetricName=f"EC2Protect-{kind}",
                Namespace="guardrails.ec2",
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=2,
                Threshold=1.0,
                ComparisonOperator="LessThanThreshold",
            )
        cloudwatch.set_alarm_state(
            AlarmName="EC2Protect-heartbeat", StateValue="ALARM", StateReason="no sweep"
        )
        cloudwatch.set_alarm_state(AlarmName="EC2Protect-attention", StateValue="OK", StateReason="quiet")
        states = audit.alarm_states(retrying(cloudwatch), "EC2Protect", warnings)
    assert (states["attention"]["state"], states["heartbeat"]["state"]) == ("OK", "ALARM")
    assert states["heartbeat"]["reason"] == "no sweep"
    (warning,) = warnings
    assert warning.startswith(
        "Alarm EC2Protect-heartbeat is in ALARM: no sweep has completed for about three sweep intervals"
    )


@pytest.mark.parametrize(
    ("selectors", "records"),
    [
        ({}, True),  # no selectors: CloudTrail's default, every management event
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]}, True),
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, True),
        ({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]}, False),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, False),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}
                ]
            },
            True,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Management"]},
                            {"Field": "readOnly", "Equals": ["true"]},
                        ]
                    }
                ]
            },
            False,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}
                ]
            },
            False,
        ),
    ],
)
def test_a_trail_counts_when_it_records_management_writes(selectors, records):
    assert audit.records_management_writes(selectors) is records


def test_the_audit_says_whether_a_trail_feeds_the_watching_rules(retrying):
    deployment = {"watching_rules": ["EC2Protect.tamper"]}
    with mock_aws():
        cloudtrail = boto3.client("cloudtrail", region_name="eu-west-1")
        warnings, report = [], {}
        audit.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert report == {"management_trails": []}
        assert warnings[0].startswith(
            "No CloudTrail trail logs management events in eu-west-1: the rules EC2Protect.tamper"
        )
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="trail", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        cloudtrail.create_trail(Name="org", S3BucketName="trail", IsMultiRegionTrail=True)
        audit.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert report == {"management_trails": []}  # created, but not logging yet
        cloudtrail.start_logging(Name="org")
        warnings.clear()
        audit.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert (report, warnings) == ({"management_trails": ["org"]}, [])
    # No rule that watches CloudTrail: nothing to check, nothing said.
    audit.check_trails({"cloudtrail": None}, {"watching_rules": []}, "eu-west-1", warnings, report)


def test_a_trail_check_that_fails_says_so_and_the_audit_goes_on():
    cloudtrail = mock.Mock()
    cloudtrail.describe_trails.side_effect = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeTrails"
    )
    warnings, report = [], {}
    audit.check_trails(
        {"cloudtrail": cloudtrail}, {"watching_rules": ["EC2Protect.tamper"]}, "eu-west-1", warnings, report
    )
    assert report == {}
    assert warnings[0].startswith("Could not check for a CloudTrail trail (AccessDeniedException")


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


def test_the_audit_reads_the_async_settings_and_concurrency_with_protects_reader(monkeypatch, retrying):
    """read_deployment reads the asynchronous settings as protect does (snake_case), checks
    that their failure destination exists, and takes an unreserved function as not set."""
    import io
    import zipfile

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    queue = "arn:aws:sqs:eu-west-1:123456789012:gone"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", "def handler(event, context):\n    return None\n")
    with mock_aws():
        clients = {
            service: retrying(boto3.client(service, region_name="eu-west-1"))
            for service in ("lambda", "events", "iam", "sns", "sqs")
        }
        role = clients["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        clients["lambda"].create_function(
            FunctionName="EC2Protect",
            Runtime="python3.13",
            Role=role,
            Handler="stop_protection_handler.handler",
            Code={"ZipFile": buffer.getvalue()},
        )
        clients["lambda"].put_function_event_invoke_config(
            FunctionName="EC2Protect",
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": queue}},
        )
        found = audit.read_deployment(clients, "EC2Protect", "eu-west-1", "123456789012", "aws")
    assert found["invoke_config"]["maximum_retry_attempts"] == 1
    assert found["invoke_config"]["on_failure_destination_arn"] == queue
    assert "reserved_concurrency" not in found["invoke_config"]
    assert (found["reserved_concurrency"], found["reserved_concurrency_read"]) == (None, True)
    assert found["missing_targets"] == [queue]
