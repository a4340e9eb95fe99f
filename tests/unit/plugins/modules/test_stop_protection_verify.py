"""guardrails.ec2.stop_protection_verify: bad input fails before any AWS call, naming the value."""

import collections
from unittest import mock

import pytest

from ansible_collections.guardrails.ec2.plugins.modules import stop_protection_verify as m


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"instance_ids": ["i-123"]}, "instance_ids[0] 'i-123' is not an EC2 instance id"),
        ({"instance_ids": ["i-0123456789abcdef0", "sg-0123"]}, "instance_ids[1] 'sg-0123'"),
        (
            {"instance_ids": ["i-0123456789abcdef0", "i-0123456789abcdef0"]},
            "more than once: i-0123456789abcdef0",
        ),
        ({"instance_ids": ["i-0123456789abcdef0"], "timeout": 0}, "timeout must be at least 1 second, got 0"),
        ({"instance_ids": ["i-0123456789abcdef0"], "mode": "chaos"}, "mode"),
        ({"instance_ids": ["i-0123456789abcdef0"], "force": "sometimes"}, "force"),
        ({"instance_ids": ["i-0123456789abcdef0"], "max_concurrent": "0%"}, "max_concurrent"),
    ],
)
def test_bad_input_fails_before_any_client_exists(run_module, args, message):
    with mock.patch.object(m, "session_clients") as make_client:
        result = run_module(m, {"region": "eu-west-1", **args})
    assert result["failed"] is True
    assert message in result["msg"]
    make_client.assert_not_called()


def test_unprotected_message_names_each_instance_and_why():
    entries = [
        {"instance_id": "i-1", "protected": True, "problems": []},
        {
            "instance_id": "i-2",
            "protected": False,
            "problems": ["No rule of this deployment names the instance."],
        },
        {
            "instance_id": "i-3",
            "protected": False,
            "problems": ["Bypass tag X is set ('y').", "Function is Failed, not Active."],
        },
    ]
    assert m.unprotected_message(entries) == (
        "i-2: No rule of this deployment names the instance.; "
        "i-3: Bypass tag X is set ('y'). Function is Failed, not Active."
    )


@pytest.mark.parametrize(
    ("protected", "recovered", "passed", "said"),
    [
        (True, True, True, None),
        (True, False, False, "i-0123456789abcdef0 (started again by the drill)"),
        # force=true: an unprotected instance that stayed stopped fails the drill too.
        (False, False, False, "i-0123456789abcdef0 (not protected; started again by the drill)"),
    ],
)
def test_a_drill_passes_only_when_the_protection_restarted_every_drilled_instance(
    run_module, protected, recovered, passed, said
):
    entry = {"instance_id": "i-0123456789abcdef0", "protected": protected, "state": "running", "problems": []}

    def drill(_ec2, entries, *_args, **_kwargs):
        entries[0].update(
            drilled=True,
            recovered=recovered,
            restored_by_drill=not recovered,
            seconds_to_stopped=1.0,
            seconds_to_running=2.0 if recovered else None,
        )
        return entries

    sts = mock.Mock(
        get_caller_identity=mock.Mock(
            return_value={"Account": "1" * 12, "Arn": "arn:aws:iam::111111111111:user/x"}
        )
    )
    with (
        mock.patch.object(m, "session_clients", return_value=collections.defaultdict(mock.Mock, sts=sts)),
        mock.patch.object(m, "audit", return_value=[entry]),
        mock.patch.object(m, "alarm_states", return_value={"attention": None, "heartbeat": None}),
        mock.patch.object(m, "drill", side_effect=drill),
    ):
        result = run_module(
            m, {"region": "eu-west-1", "instance_ids": [entry["instance_id"]], "mode": "drill", "force": True}
        )
    assert result["passed"] is passed and result.get("failed", False) is not passed
    if said:
        assert result["msg"].startswith("The drill failed: 1 of 1 drilled instances were not restarted")
        assert result["msg"].endswith(said)
