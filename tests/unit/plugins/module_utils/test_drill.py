"""module_utils/drill.py: a drill against a scripted EC2 and a fake clock."""

import pytest
from botocore.exceptions import ClientError
from fakes import Paged
from verify_helpers import entries

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    drill,
    drill_batches,
)


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
    assert drill_batches.summarise(result, "drill")["restored_by_drill"] == 2


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
    assert drill_batches.summarise([first, second], "drill")["skipped_stop_protection"] == 1


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


def test_batch_by_batch_the_drill_merges_to_what_one_run_reports():
    """The role drills each batch with its own module run; merged, the result is that of one
    run: the batch that failed is reported, later batches say why they were not drilled."""
    a, b, c = ids_of(3)
    whole_fleet = Fleet({a: None, b: 1, c: 1})
    whole = run_drill(whole_fleet, fleet_entries(3))
    planned = fleet_entries(3)
    batches = drill_batches.plan_batches([dict(e, problems=[]) for e in planned], 1)
    assert [[e["instance_id"] for e in batch] for batch in batches] == [[a], [b], [c]]
    first = run_drill(Fleet({a: None}), fleet_entries(1))  # only the first batch runs: it fails
    merged, summary, failure = drill_batches.merge(planned, [{"instances": first}], timeout=5)
    assert [(e["drilled"], e["recovered"], e["restored_by_drill"]) for e in merged] == [
        (e["drilled"], e["recovered"], e["restored_by_drill"]) for e in whole
    ]
    assert [e["problems"][-1] for e in merged[1:]] == [e["problems"][-1] for e in whole[1:]]
    assert summary == drill_batches.summarise(whole, "drill")
    assert failure == drill_batches.verdict(whole, 5)
    assert failure.startswith("The drill failed: 1 of 1 drilled instances were not restarted")
