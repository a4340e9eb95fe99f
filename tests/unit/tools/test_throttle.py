"""The harness's EC2 token buckets (tools/localstack/guardrails_localstack/throttle.py)."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[3] / "tools/localstack/guardrails_localstack/throttle.py"


@pytest.fixture
def throttle():
    spec = importlib.util.spec_from_file_location("throttle_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def admitted(bucket, calls):
    return [bucket.admit("000000000000", "us-east-1", action, request) for action, request in calls]


def test_start_instances_has_five_request_tokens_and_refills_two_a_second(throttle):
    clock = Clock()
    buckets = throttle.Throttle(enabled=True, clock=clock)
    one = ("StartInstances", {"InstanceIds": ["i-1"]})
    assert admitted(buckets, [one] * 6) == [True] * 5 + [False]
    clock.now = 0.5
    assert admitted(buckets, [one] * 2) == [True, False]
    clock.now = 10
    assert admitted(buckets, [one] * 6) == [True] * 5 + [False]
    assert buckets.describe()["calls"] == {"StartInstances": 14}
    assert buckets.describe()["throttled"] == {"StartInstances": 3}


def test_start_instances_takes_one_resource_token_per_instance(throttle):
    """1,000 instances start at once in any number of calls; the next waits for the refill
    of 2 a second, and a refused call takes no tokens."""
    clock = Clock()
    buckets = throttle.Throttle(enabled=True, clock=clock)
    batch = ("StartInstances", {"InstanceIds": [f"i-{n}" for n in range(250)]})
    assert admitted(buckets, [batch] * 4) == [True] * 4
    clock.now = 2  # the request bucket has tokens again; the resource bucket has 4
    assert admitted(buckets, [("StartInstances", {"InstanceIds": ["i-a"] * 5})]) == [False]
    assert admitted(buckets, [("StartInstances", {"InstanceIds": ["i-a"] * 4})]) == [True]


def test_describe_instances_uses_the_smaller_bucket_without_filters_or_pagination(throttle):
    buckets = throttle.Throttle(enabled=True, clock=Clock())
    by_id = ("DescribeInstances", {"InstanceIds": ["i-1"]})
    filtered = ("DescribeInstances", {"Filters": [{"Name": "instance-state-name", "Values": ["stopped"]}]})
    assert admitted(buckets, [by_id] * 51).count(False) == 1  # 50 tokens
    assert admitted(buckets, [filtered] * 101).count(False) == 1  # 100 tokens, a bucket of its own
    assert admitted(buckets, [("CreateTags", {})] * 101).count(False) == 1
    assert admitted(buckets, [("ModifyInstanceAttribute", {})] * 51).count(False) == 1  # mutating: 50


def test_buckets_are_per_account_and_region_and_off_by_default(throttle):
    buckets = throttle.Throttle(clock=Clock())
    one = ("StartInstances", {"InstanceIds": ["i-1"]})
    assert admitted(buckets, [one] * 20) == [True] * 20
    buckets.configure(True)
    assert buckets.describe()["calls"] == {}
    assert admitted(buckets, [one] * 6).count(False) == 1
    assert buckets.admit("000000000000", "eu-west-1", *one)
    assert buckets.admit("111111111111", "us-east-1", *one)


def test_sizes_are_settable_and_checked(throttle):
    buckets = throttle.Throttle(clock=Clock())
    buckets.configure(True, {"StartInstances": {"request": [1, 1]}})
    one = ("StartInstances", {"InstanceIds": ["i-1"]})
    assert admitted(buckets, [one] * 2) == [True, False]
    with pytest.raises(ValueError, match=r"buckets\.StartInstances\.request"):
        buckets.configure(True, {"StartInstances": {"request": [0, 1]}})
    with pytest.raises(ValueError, match=r"buckets\.StartInstances"):
        buckets.configure(True, {"StartInstances": {"other": [1, 1]}})
