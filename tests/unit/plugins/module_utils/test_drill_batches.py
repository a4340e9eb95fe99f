"""module_utils/drill_batches.py: a drill's batches, summary and verdict."""

import pytest
from verify_helpers import entries

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    drill_batches,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError


def test_summary_counts_and_recovery_statistics():
    items = entries("running", "running", "running", "stopped")
    for item, seconds in zip(items, [1.0, 3.0, 2.0], strict=False):
        item.update(drilled=True, recovered=True, seconds_to_running=seconds)
    items[3].update(drilled=False, recovered=None, protected=False)
    summary = drill_batches.summarise(items, "drill")
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
    assert drill_batches.summarise(items, "audit") == {"instances": 4, "protected": 3, "unprotected": 1}


@pytest.mark.parametrize(
    ("setting", "count", "expected"),
    [(1, 10, 1), ("3", 10, 3), ("10%", 10, 1), ("10%", 5, 1), ("50%", 9, 4), ("100%", 7, 7)],
)
def test_concurrency_accepts_numbers_and_percentages(setting, count, expected):
    assert drill_batches.concurrency(setting, count) == expected


@pytest.mark.parametrize("setting", [0, -1, "0%", "150%", "many", "", None])
def test_concurrency_rejects_bad_values_naming_them(setting):
    with pytest.raises(ProtectionError, match=f"got {setting!r}".replace("(", r"\(")):
        drill_batches.concurrency(setting, 10)


def test_batches_follow_max_concurrent_and_leave_out_what_cannot_be_drilled():
    items = entries("running", "stopped", "running", "running")
    items[2]["aws_stop_protection"] = True
    batches = drill_batches.plan_batches(items, 2)
    assert [[e["instance_id"] for e in batch] for batch in batches] == [
        [items[0]["instance_id"], items[3]["instance_id"]]
    ]
    assert items[1]["problems"] == ["Not drilled: the instance was stopped, not running."]
    assert "DisableApiStop" in items[2]["problems"][0]
