"""module_utils/state_shape.py: the "none" values of a region's state, the same for the
reader that returns them, the render that asks for them and the drift that compares them."""

from unittest import mock

from fakes import lambda_with

from ansible_collections.guardrails.ec2.plugins.module_utils import drift, resource_reads, state_shape


def test_no_reserved_concurrency_reads_as_unreserved():
    assert resource_reads.read_reserved_concurrency(lambda_with(reserved=None), "f") == state_shape.UNRESERVED
    assert resource_reads.read_reserved_concurrency(lambda_with(reserved=1), "f") == 1


def test_unreserved_cannot_be_taken_for_a_reservation():
    """Lambda reserves 0 (a function that never runs) or more: the "none" value is none of them."""
    assert state_shape.UNRESERVED < 0


def test_a_missing_metric_filter_is_what_the_reader_finds_when_there_is_none():
    logs = mock.MagicMock()
    logs.describe_metric_filters.return_value = {"metricFilters": []}
    assert resource_reads.read_metric_filter(logs, "group", "name") == state_shape.missing_metric_filter()


def test_a_missing_metric_filter_is_no_drift_when_none_is_wanted_and_drift_when_one_is():
    assert drift.metric_filter_drift(state_shape.missing_metric_filter(), None, None) == []
    wanted = {"pattern": "x", "transformation": {}}
    assert drift.metric_filter_drift(state_shape.missing_metric_filter(), "name", wanted) == [
        "0 metric filters named name*, want exactly name"
    ]


def test_each_missing_metric_filter_is_a_new_value():
    """A caller that fills one in must not change the next region's."""
    first = state_shape.missing_metric_filter()
    first["transformation"]["metricName"] = "changed"
    assert state_shape.missing_metric_filter()["transformation"] == {}
