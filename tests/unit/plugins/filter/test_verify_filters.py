"""The verify and guard filters (plugins/filter/verify.py): a drill's batches merged back, the report, the guard policy."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.filter import stop_protection as f
from ansible_collections.guardrails.ec2.plugins.filter import verify as v


def planned_region(region, states, passed=True):
    instances = [
        {"instance_id": f"i-{n:017x}", "region": region, "state": s, "protected": True, "problems": []}
        for n, s in enumerate(states, start=1)
    ]
    return {"stop_protection__region": {"region": region}, "passed": passed, "instances": instances}


def test_verify_report_lines():
    result = {
        "stop_protection__region": {"region": "eu-west-1"},
        "instances": [
            {
                "instance_id": "i-1",
                "drilled": True,
                "recovered": True,
                "seconds_to_stopped": 0.4,
                "seconds_to_running": 1.25,
                "problems": [],
            },
            {
                "instance_id": "i-2",
                "drilled": False,
                "protected": False,
                "state": "stopped",
                "problems": ["No rule of this deployment names the instance."],
            },
        ],
        "summary": {
            "drilled": 1,
            "recovered": 1,
            "recovery_seconds": {"min": 1.25, "median": 1.25, "max": 1.25},
        },
        "passed": True,
    }
    report = v.stop_protection_verify_report(result)
    assert report["ok"] is True
    assert report["lines"] == [
        "i-1 (eu-west-1): back - stopped after 0.4 s, running after 1.2 s",
        "i-2 (eu-west-1): NOT protected, stopped - No rule of this deployment names the instance.",
        "eu-west-1: 1 of 1 drilled instances back; recovery min 1.2 s, median 1.2 s, max 1.2 s",
    ]
    failed = v.stop_protection_verify_report(
        result | {"failed": True, "msg": "1 of 2 instances are not protected"}
    )
    assert (failed["ok"], failed["msg"]) == (False, "1 of 2 instances are not protected")


@pytest.mark.parametrize(
    "result",
    [
        # What a loop item looks like under failed_when: false: "failed" overwritten.
        {"failed": False, "failed_when_result": False, "passed": False, "msg": "1 of 1 did not recover"},
        # A module failure before any verdict (credentials, API errors) carries no "passed".
        {"failed": False, "failed_when_result": False, "msg": "Couldn't audit stop protection"},
    ],
)
def test_verify_report_is_not_ok_when_failed_was_masked(result):
    report = v.stop_protection_verify_report(result | {"stop_protection__region": {"region": "eu-west-1"}})
    assert report["ok"] is False
    assert report["msg"] == result["msg"]


def test_verify_report_names_instances_the_drill_restored():
    result = {
        "stop_protection__region": {"region": "eu-west-1"},
        "passed": False,
        "instances": [
            {
                "instance_id": "i-1",
                "drilled": True,
                "recovered": False,
                "restored_by_drill": True,
                "seconds_to_stopped": 0.4,
                "seconds_to_running": None,
                "problems": ["Started again by the drill itself, not by the protection."],
            }
        ],
        "summary": {"drilled": 1, "recovered": 0, "restored_by_drill": 1, "recovery_seconds": {}},
    }
    lines = v.stop_protection_verify_report(result)["lines"]
    assert lines[0].startswith("i-1 (eu-west-1): NOT back, started again by the drill")
    assert lines[-1].startswith("eu-west-1: 0 of 1 drilled instances back, 1 started again by the drill")


def test_report_path_is_relative_to_where_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert v.stop_protection_report_path("out/verify.json") == str(tmp_path / "out" / "verify.json")
    assert v.stop_protection_report_path("/abs/verify.json") == "/abs/verify.json"


def test_drill_batches_come_from_the_audit_before_the_drill():
    planned = {
        "results": [
            planned_region("eu-west-1", ["running"] * 3),
            planned_region("us-east-1", ["running"], False),
        ]
    }
    assert v.stop_protection_drill_batches(planned, "50%") == [
        {"region": "eu-west-1", "number": 1, "of": 3, "instance_ids": ["i-00000000000000001"]},
        {"region": "eu-west-1", "number": 2, "of": 3, "instance_ids": ["i-00000000000000002"]},
        {"region": "eu-west-1", "number": 3, "of": 3, "instance_ids": ["i-00000000000000003"]},
    ]  # 50% of 3 is one at a time; the refused region is not drilled


def test_a_batch_that_failed_outright_fails_its_region():
    planned = {"results": [planned_region("eu-west-1", ["running"])]}
    broken = {"failed": True, "msg": "Couldn't stop the instances for the drill: boom",
              "stop_protection__batch": {"region": "eu-west-1"}}  # fmt: skip
    (result,) = v.stop_protection_drill_merge(planned, [broken], 60)["results"]
    assert result["passed"] is False and result["failed"] is True
    assert result["msg"] == "Couldn't stop the instances for the drill: boom"
    (untouched,) = v.stop_protection_drill_merge(
        {"results": [planned_region("eu-west-1", ["running"], False)]}, [], 60
    )["results"]
    assert untouched["passed"] is False


def test_guard_policy_files_are_one_path_or_numbered_when_split(tmp_path):
    automation = ["arn:aws:iam::*:role/platform-automation"]
    small = f.stop_protection_plan([], instance_ids=["i-0000000000000000a"], region="eu-west-1")
    (only,) = v.stop_protection_guard_policy(
        small, automation, str(tmp_path / "guard.json"), "StopProtection"
    )
    assert only["path"] == str(tmp_path / "guard.json")
    statement = next(s for s in only["document"]["Statement"] if s["Sid"] == "GuardTheProtectionTags")
    assert statement["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"] == [
        "StopProtection",
        "StopProtectionBypass",
    ]
    many = [f"i-{n:017x}" for n in range(300)]
    large = f.stop_protection_plan([], instance_ids=many, region="eu-west-1")
    files = v.stop_protection_guard_policy(large, automation, str(tmp_path / "guard.json"))
    assert [item["path"] for item in files] == [
        str(tmp_path / f"guard.json.{n}") for n in range(1, len(files) + 1)
    ]
    with pytest.raises(AnsibleFilterError, match="stop_protection_automation_principals"):
        v.stop_protection_guard_policy(small, [], "guard.json")
