"""The role's variables into the plan's settings (plugins/module_utils/settings.py)."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.guardrails.ec2.plugins.module_utils import settings as s
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    DEFAULT_FUNCTION_SETTINGS,
    DEFAULT_RESTART_POLICY,
    ProtectionError,
)

ROLE = Path(__file__).resolve().parents[4] / "roles" / "stop_protection"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
OPTIONS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
    "options"
]

# Role variables that are not the plan's or the deployments': later tasks read them.
NOT_PLANNED = {
    "stop_protection_aws_endpoint_url",
    "stop_protection_disable_api_stop",
    "stop_protection_guard_policy_path",
    "stop_protection_iam_propagation_delay",
    "stop_protection_iam_propagation_retries",
    "stop_protection_keep_logs",
    "stop_protection_warn_shutdown_terminate",
}


class Marker:
    """A value no default has, to find where a variable lands."""

    def __repr__(self):
        return "Marker()"


def _contains(value, marker):
    if value is marker:
        return True
    if isinstance(value, dict):
        return any(_contains(item, marker) for item in value.values())
    return False


def test_the_role_defaults_make_the_settings_of_the_old_keyword_call():
    settings = s.role_settings(DEFAULTS, environment_region="eu-west-1")
    assert settings == {
        "name": "EC2Protect",
        "selector": "instance_ids",
        "instance_ids": [],
        "region": "eu-west-1",
        "regions": [],
        "tag_key": "StopProtection",
        "tag_value": "enabled",
        "bypass_tag_key": "StopProtectionBypass",
        "attribution": False,
        "notification_topic_arn": "",
        "failure_destination_arn": "",
        "require_instances": True,
        "kms_key_arns": [],
        # The role's defaults are the validation's.
        "restart_policy": DEFAULT_RESTART_POLICY,
        "inventory_group": "stop_protected",
        "resource_tags": {"ManagedBy": "guardrails.ec2"},
        "function": DEFAULT_FUNCTION_SETTINGS,
        "automation_principals": [],
        "assume_roles": {},
    }


@pytest.mark.parametrize(
    "variable", sorted(set(OPTIONS) - NOT_PLANNED - {"stop_protection_state", "stop_protection_region"})
)
def test_every_planning_variable_of_the_role_reaches_the_settings(variable):
    """A role variable added to the argument specs is read here or listed as not planned."""
    marker = Marker()
    settings = s.role_settings(dict(DEFAULTS, **{variable: marker}))
    assert _contains(settings, marker), f"{variable} does not reach the plan's settings"


def test_state_and_region_reach_the_settings():
    assert s.role_settings(dict(DEFAULTS, stop_protection_state="absent"))["require_instances"] is False
    assert s.role_settings(dict(DEFAULTS, stop_protection_region="us-west-2"), None, "eu-west-1")[
        "region"
    ] == ("us-west-2")


@pytest.mark.parametrize("variable", sorted(NOT_PLANNED))
def test_variables_that_are_not_planned_leave_the_settings_alone(variable):
    marker = Marker()
    assert not _contains(s.role_settings(dict(DEFAULTS, **{variable: marker})), marker)


def test_strings_from_the_command_line_become_ints_and_bools():
    settings = s.role_settings(
        dict(
            DEFAULTS,
            stop_protection_restart_limit="5",
            stop_protection_skip_auto_scaling="no",
            stop_protection_attribution="true",
            stop_protection_lambda_timeout=" 30 ",
        )
    )
    assert settings["restart_policy"]["restart_limit"] == 5
    assert settings["restart_policy"]["skip_auto_scaling"] is False
    assert settings["attribution"] is True
    assert settings["function"]["timeout"] == 30


def test_a_string_that_is_no_number_is_left_for_the_validation_to_name():
    settings = s.role_settings(dict(DEFAULTS, stop_protection_restart_limit="abc"))
    assert settings["restart_policy"]["restart_limit"] == "abc"


def test_missing_variables_take_the_plan_defaults():
    settings = s.role_settings({})
    assert {key: settings[key] for key in s.PLAN_DEFAULTS if key not in ("restart_policy", "function")} == {
        key: value for key, value in s.PLAN_DEFAULTS.items() if key not in ("restart_policy", "function")
    }
    assert settings["restart_policy"] == {}
    assert settings["function"] == {}


def test_a_deployment_replaces_the_instances_and_regions():
    deployment = {
        "instance_ids": [{"instance_id": "i-0000000000000000a", "region": "us-west-2"}],
        "region": "",
    }
    settings = s.role_settings(
        dict(
            DEFAULTS,
            stop_protection_instance_ids=["i-0000000000000000b"],
            stop_protection_regions=["eu-north-1"],
        ),
        deployment,
        "eu-west-1",
    )
    assert settings["instance_ids"] == deployment["instance_ids"]
    assert settings["region"] == "eu-west-1"
    assert settings["regions"] == ["eu-north-1"]
    settings = s.role_settings(DEFAULTS, dict(deployment, region="ap-south-1", regions=[]), "eu-west-1")
    assert (settings["region"], settings["regions"]) == ("ap-south-1", [])


def test_variables_that_are_no_mapping_are_an_error():
    with pytest.raises(ProtectionError, match="must be a dict, got list"):
        s.role_settings([])


def test_keywords_take_the_plan_defaults_and_unknown_ones_are_named():
    assert s.keyword_settings({"name": "N"}) == dict(s.PLAN_DEFAULTS, name="N")
    with pytest.raises(ProtectionError, match=r"unknown stop_protection_plan option\(s\): naem"):
        s.keyword_settings({"naem": "N"})
