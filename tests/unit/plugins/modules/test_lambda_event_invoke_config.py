"""guardrails.ec2.lambda_event_invoke_config: compare, put and delete async invoke settings."""

from unittest import mock

import pytest
from botocore.exceptions import ClientError
from fakes import lambda_with, not_found

from ansible_collections.guardrails.ec2.plugins.module_utils import drift
from ansible_collections.guardrails.ec2.plugins.modules import lambda_event_invoke_config as m


@pytest.mark.parametrize(
    ("current", "changed"),
    [
        (None, True),
        (
            {
                "maximum_retry_attempts": 2,
                "maximum_event_age_in_seconds": 3600,
                "on_failure_destination_arn": None,
            },
            False,
        ),
        (
            {
                "maximum_retry_attempts": 0,
                "maximum_event_age_in_seconds": 3600,
                "on_failure_destination_arn": None,
            },
            True,
        ),
        (
            {
                "maximum_retry_attempts": 2,
                "maximum_event_age_in_seconds": 60,
                "on_failure_destination_arn": None,
            },
            True,
        ),
        (
            {
                "maximum_retry_attempts": 2,
                "maximum_event_age_in_seconds": 3600,
                "on_failure_destination_arn": "x",
            },
            True,
        ),
    ],
)
def test_differs(current, changed):
    desired = m.desired_config(
        {
            "maximum_retry_attempts": 2,
            "maximum_event_age_in_seconds": 3600,
            "on_failure_destination_arn": "",
            "reserved_concurrency": None,
        }
    )
    assert bool(drift.invoke_config_drift(current, desired)) is changed


def test_put_sends_the_destination_or_clears_it():
    client = mock.MagicMock()
    m.put_config(client, "f", None, {"maximum_retry_attempts": 1, "maximum_event_age_in_seconds": 60,
                                     "on_failure_destination_arn": "arn:aws:sqs:eu-west-1:123456789012:q"})  # fmt: skip
    kwargs = client.put_function_event_invoke_config.call_args.kwargs
    assert kwargs["DestinationConfig"] == {
        "OnFailure": {"Destination": "arn:aws:sqs:eu-west-1:123456789012:q"}
    }
    m.put_config(client, "f", "live", {"maximum_retry_attempts": 1, "maximum_event_age_in_seconds": 60,
                                       "on_failure_destination_arn": None})  # fmt: skip
    kwargs = client.put_function_event_invoke_config.call_args.kwargs
    assert kwargs["DestinationConfig"] == {"OnFailure": {}, "OnSuccess": {}}
    assert kwargs["Qualifier"] == "live"


@pytest.mark.parametrize(
    ("qualifier", "expected_call"),
    [(None, {"FunctionName": "f"}), ("live", {"FunctionName": "f", "Qualifier": "live"})],
)
def test_delete_tolerates_missing_settings(qualifier, expected_call):
    client = mock.MagicMock()
    client.delete_function_event_invoke_config.side_effect = not_found()
    assert m.delete_config(client, "f", qualifier) is None
    client.delete_function_event_invoke_config.assert_called_once_with(aws_retry=True, **expected_call)


def test_delete_raises_other_errors():
    client = mock.MagicMock()
    client.delete_function_event_invoke_config.side_effect = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DeleteFunctionEventInvokeConfig"
    )
    with pytest.raises(ClientError):
        m.delete_config(client, "f", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [({"maximum_retry_attempts": 3}, "got 3"), ({"maximum_event_age_in_seconds": 30}, "got 30")],
)
def test_out_of_range_values_fail_before_any_call(run_module, args, message):
    with mock.patch.object(m.AnsibleAWSModule, "client") as make_client:
        result = run_module(m, {"function_name": "f", "region": "eu-west-1", **args})
    assert result["failed"] is True
    assert message in result["msg"]
    make_client.assert_not_called()


def test_check_mode_reports_without_changing(run_module):
    client = lambda_with(None)
    with mock.patch.object(m.AnsibleAWSModule, "client", return_value=client):
        result = run_module(m, {"function_name": "f", "region": "eu-west-1", "_ansible_check_mode": True})
    assert result["changed"] is True
    client.put_function_event_invoke_config.assert_not_called()


CONFIG = {
    "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
    "MaximumRetryAttempts": 2,
    "MaximumEventAgeInSeconds": 21600,
}


@pytest.mark.parametrize(("have", "want"), [(None, 1), (5, 1), (1, -1)])
def test_reserved_concurrency_is_set_or_removed_alone(run_module, have, want):
    client = lambda_with(CONFIG, reserved=have)
    with mock.patch.object(m.AnsibleAWSModule, "client", return_value=client):
        result = run_module(m, {"function_name": "f", "region": "eu-west-1", "reserved_concurrency": want})
    assert result["changed"] is True
    client.put_function_event_invoke_config.assert_not_called()  # the other settings are in sync
    if want == -1:
        client.delete_function_concurrency.assert_called_once_with(aws_retry=True, FunctionName="f")
    else:
        client.put_function_concurrency.assert_called_once_with(
            aws_retry=True, FunctionName="f", ReservedConcurrentExecutions=want
        )


@pytest.mark.parametrize(("have", "want"), [(1, 1), (None, -1), (7, None)])
def test_reserved_concurrency_in_sync_or_unmanaged_changes_nothing(run_module, have, want):
    client = lambda_with(CONFIG, reserved=have)
    args = {"function_name": "f", "region": "eu-west-1"}
    if want is not None:
        args["reserved_concurrency"] = want
    with mock.patch.object(m.AnsibleAWSModule, "client", return_value=client):
        result = run_module(m, args)
    assert result["changed"] is False
    client.put_function_concurrency.assert_not_called()
    client.delete_function_concurrency.assert_not_called()


def test_an_account_that_cannot_reserve_more_warns_and_changes_nothing(run_module):
    """Lambda keeps a minimum of unreserved concurrency (a new account's quota of 10 leaves
    nothing to reserve): the function stays unreserved, the run goes on with a warning."""
    client = lambda_with(CONFIG)
    client.put_function_concurrency.side_effect = ClientError(
        {
            "Error": {
                "Code": "InvalidParameterValueException",
                "Message": "Specified ReservedConcurrentExecutions for function decreases account's "
                "UnreservedConcurrentExecution below its minimum value of [10].",
            }
        },
        "PutFunctionConcurrency",
    )
    with mock.patch.object(m.AnsibleAWSModule, "client", return_value=client):
        result = run_module(m, {"function_name": "f", "region": "eu-west-1", "reserved_concurrency": 1})
    assert result["changed"] is False and "failed" not in result
    assert any("minimum value of [10]" in warning for warning in result["warnings"])


@pytest.mark.parametrize(("args", "message"), [
    ({"reserved_concurrency": 0}, "0 would stop every invocation"),
    ({"reserved_concurrency": -2}, "got -2"),
    ({"reserved_concurrency": 1, "qualifier": "live"}, "omit qualifier"),
])  # fmt: skip
def test_bad_reserved_concurrency_fails_before_any_call(run_module, args, message):
    with mock.patch.object(m.AnsibleAWSModule, "client") as make_client:
        result = run_module(m, {"function_name": "f", "region": "eu-west-1", **args})
    assert result["failed"] is True and message in result["msg"]
    make_client.assert_not_called()


def test_check_mode_reports_a_reservation_without_making_it(run_module):
    client = lambda_with(CONFIG)
    with mock.patch.object(m.AnsibleAWSModule, "client", return_value=client):
        result = run_module(
            m,
            {
                "function_name": "f",
                "region": "eu-west-1",
                "reserved_concurrency": 1,
                "_ansible_check_mode": True,
            },
        )
    assert result["changed"] is True and result["event_invoke_config"]["reserved_concurrency"] == 1
    client.put_function_concurrency.assert_not_called()


def test_the_module_imports_no_planning(loaded_by):
    """A generic module loads what it reads and compares, not the role's planner: imports run
    one way (reads → drift), so a change to planning never reaches this module."""
    prefix = "ansible_collections.guardrails.ec2.plugins.module_utils."
    loaded = loaded_by("ansible_collections.guardrails.ec2.plugins.modules.lambda_event_invoke_config")
    assert [name[len(prefix) :] for name in loaded if name.startswith(prefix)] == [
        "drift",
        "naming",
        "patterns",
        "resource_reads",
        "state_shape",
    ]
