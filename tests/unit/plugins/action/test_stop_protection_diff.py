"""The stop_protection_diff action (plugins/action/stop_protection_diff.py): a region's
changes as Ansible's diff and as lines, on the controller, in check mode too."""

from unittest import mock

from ansible.playbook.play_context import PlayContext

from ansible_collections.guardrails.ec2.plugins.action.stop_protection_diff import ActionModule

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:P"


def run(args, check_mode=False):
    task = mock.MagicMock(args=args, async_val=0, check_mode=check_mode, diff=True)
    task.action = "guardrails.ec2.stop_protection_diff"
    action = ActionModule(task, mock.MagicMock(), PlayContext(), mock.MagicMock(), mock.MagicMock(), None)
    return action.run(task_vars={})


def rule(name, *ids):
    return {
        "name": name,
        "pattern": {"source": ["aws.ec2"], "detail": {"state": ["stopped"], "instance-id": list(ids)}},
        "instance_ids": list(ids),
        "kind": "state_change",
    }


def test_a_rule_that_changes_is_a_diff_and_lines_naming_the_instances():
    deployed = [
        dict(rule("P.1", "i-000000000000000aa"), event_pattern=rule("P.1", "i-000000000000000aa")["pattern"])
    ]
    written = dict(rule("P.1", "i-000000000000000aa", "i-000000000000000ba"), drift=["pattern"])
    result = run(
        {
            "region": "eu-west-1",
            "desired": {"function_arn": FUNCTION, "rule_target_id": "P", "policies": []},
            "rules": {"write": [written], "stale": []},
            "deployed_rules": deployed,
        }
    )
    assert result["changed"] is True
    assert result["diff"], result
    assert any("i-000000000000000ba" in line for line in result["msg"]), result["msg"]
    assert result["_ansible_verbose_always"] is True


def test_nothing_to_change_is_no_diff():
    result = run(
        {"region": "eu-west-1", "desired": {"function_arn": FUNCTION, "policies": []}}, check_mode=True
    )
    assert (result["changed"], result["diff"], result["msg"]) == (False, [], [])
