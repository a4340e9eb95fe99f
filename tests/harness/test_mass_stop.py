"""A mass stop under EC2's API rate limits (LocalStack, with the harness's token buckets).

Someone stops every protected instance in one call. EC2 refills StartInstances' request
bucket with 2 tokens a second after a burst of 5 ("Request throttling for the Amazon EC2
API"): one start per instance would take half a second each past the fifth, and most
would run out of retries. The function restarts them together instead.
"""

import sys
import time

from conftest import ROOT, instance_states, unique, wait_for
from playbook_runs import protect_vars, run_playbook

sys.path.insert(0, str(ROOT / "tools"))
from lab import coalesced, decisions

COUNT = 100
TEST_KEY = "test"


def function_calls(throttle):
    """EC2 calls the function made (its role session's keys), by API."""
    calls = {}
    for key, by_action in throttle.read()["calls_by_access_key"].items():
        if key != TEST_KEY:
            for action, count in by_action.items():
                calls[action] = calls.get(action, 0) + count
    return calls


def test_a_mass_stop_under_throttling_comes_back_with_ec2_calls_per_batch(aws, endpoint, instances, throttle):
    """100 protected instances stopped in one call, EC2 throttling as on AWS: every instance
    runs again, each with one ``started`` decision and none ``failed``; each stop event left
    one line; the function's EC2 calls are a handful per batch, not three per instance."""
    ec2 = aws("ec2")
    ids = instances(COUNT)
    name = unique("MassStop")
    result = run_playbook(
        "protect.yml", endpoint, protect_vars(name, ids, stop_protection_restart_together=True)
    )
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        throttle.on()
        began = time.monotonic()
        ec2.stop_instances(InstanceIds=ids)
        assert wait_for(
            lambda: set(instance_states(ec2, ids).values()) == {"running"}, timeout=120, interval=1
        ), instance_states(ec2, ids)
        back_after = time.monotonic() - began
        lines = wait_for(
            lambda: len(found := decisions(aws("logs"), name)) >= COUNT and found, timeout=30, interval=1
        )
        assert sorted(line["instance_id"] for line in lines) == sorted(ids), lines
        assert {line["action"] for line in lines} == {"started"}, [
            line for line in lines if line["action"] != "started"
        ]
        # The other events find their instance decided (throttled invocations wait in Lambda's queue).
        notes = wait_for(
            lambda: len(found := coalesced(aws("logs"), name)) >= COUNT - 1 and found, timeout=90, interval=2
        )
        assert notes and {note["decision"] for note in notes} == {"started"}
        calls = function_calls(throttle)
        assert calls.get("StartInstances", 0) >= 1, calls
        assert sum(calls.values()) <= 0.2 * COUNT, (calls, back_after)
    finally:
        throttle.clear()
        assert run_playbook("unprotect.yml", endpoint, protect_vars(name, ids)).returncode == 0
