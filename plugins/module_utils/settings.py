# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The stop_protection role's variables, read once into the settings a plan is built from.

This is the one place that names a role variable for planning: the role hands the plan
filters its ``stop_protection_*`` variables as one dict, and ``role_settings`` turns them
into the keyword arguments of ``plan.build_plan`` (``PLAN_DEFAULTS`` names them all).
Values that come as strings (``-e name=value``) become the int or bool the variable is;
anything else is left for the validation to name. Pure: no AWS calls."""

from ansible.module_utils.parsing.convert_bool import BOOLEANS, boolean

from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    MODE_INSTANCE_IDS,
    ProtectionError,
)

# build_plan's settings and their defaults, which are the role's (defaults/main.yml).
PLAN_DEFAULTS = {
    "name": "EC2Protect",
    "selector": MODE_INSTANCE_IDS,
    "instance_ids": None,
    "region": None,
    "regions": None,
    "tag_key": None,
    "tag_value": None,
    "bypass_tag_key": "StopProtectionBypass",
    "attribution": False,
    "notification_topic_arn": None,
    "failure_destination_arn": None,
    "require_instances": True,
    "kms_key_arns": None,
    "restart_policy": None,
    "inventory_group": "stop_protected",
    "resource_tags": None,
    "function": None,
    "automation_principals": None,
}

# The role variable of each plan setting that has one of the same name.
PLAIN = (
    "name",
    "selector",
    "instance_ids",
    "regions",
    "tag_key",
    "tag_value",
    "bypass_tag_key",
    "notification_topic_arn",
    "failure_destination_arn",
    "kms_key_arns",
    "inventory_group",
    "resource_tags",
    "automation_principals",
)
BOOLS = ("attribution",)

# Keys of the restart policy and of the function settings, by role variable. int or bool:
# how a string value is read.
RESTART_POLICY = {
    "restart_limit": ("stop_protection_restart_limit", int),
    "restart_window_seconds": ("stop_protection_restart_window_seconds", int),
    "history_tag_key": ("stop_protection_restart_history_tag_key", None),
    "suspended_tag_key": ("stop_protection_suspended_tag_key", None),
    "skip_auto_scaling": ("stop_protection_skip_auto_scaling", bool),
    "skip_spot_interruptions": ("stop_protection_skip_spot_interruptions", bool),
    "restart_hibernated": ("stop_protection_restart_hibernated", bool),
    "retry_attempts": ("stop_protection_retry_attempts", int),
    "sweep_minutes": ("stop_protection_sweep_minutes", int),
    "alarm_period_seconds": ("stop_protection_alarm_period_seconds", int),
}
FUNCTION = {
    "runtime": ("stop_protection_lambda_runtime", None),
    "timeout": ("stop_protection_lambda_timeout", int),
    "memory_mb": ("stop_protection_lambda_memory_mb", int),
    "max_event_age_seconds": ("stop_protection_max_event_age_seconds", int),
    "log_retention_days": ("stop_protection_log_retention_days", int),
    "restart_together": ("stop_protection_restart_together", bool),
}

PREFIX = "stop_protection_"


def _read(value, kind):
    """``value`` as ``kind`` when it is a string that reads as one (``-e`` gives strings);
    otherwise as given, for the validation to accept or name."""
    if not isinstance(value, str) or kind is None:
        return value
    text = value.strip()
    if kind is int and text.lstrip("-").isdigit():
        return int(text)
    if kind is bool and text.lower() in BOOLEANS:
        return boolean(text)
    return value


def _group(variables, spec):
    return {
        key: _read(variables[variable], kind)
        for key, (variable, kind) in spec.items()
        if variables.get(variable) is not None
    }


def role_settings(variables, deployment=None, environment_region=None):
    """``build_plan``'s settings from the role's variables (``{name: value}``, each name with
    its ``stop_protection_`` prefix; missing ones take ``PLAN_DEFAULTS``).

    ``deployment`` is the deployment host's ``stop_protection__deployment``
    (``inventory.plan_deployments``): its instances, region and regions replace the variables'.
    ``environment_region`` (``AWS_REGION`` or ``AWS_DEFAULT_REGION``) is the region when
    ``stop_protection_region`` is empty."""
    if not isinstance(variables, dict):
        raise ProtectionError(f"the role's variables must be a dict, got {type(variables).__name__}")
    settings = dict(PLAN_DEFAULTS)
    for key in PLAIN:
        if variables.get(PREFIX + key) is not None:
            settings[key] = variables[PREFIX + key]
    for key in BOOLS:
        if variables.get(PREFIX + key) is not None:
            settings[key] = _read(variables[PREFIX + key], bool)
    settings["region"] = variables.get(PREFIX + "region") or environment_region or None
    settings["require_instances"] = variables.get(PREFIX + "state", "present") == "present"
    settings["restart_policy"] = _group(variables, RESTART_POLICY)
    settings["function"] = _group(variables, FUNCTION)
    # Not the plan's: the deployments' (inventory.plan_deployments).
    settings["assume_roles"] = variables.get(PREFIX + "assume_roles")
    if deployment:
        settings["instance_ids"] = deployment.get("instance_ids") or []
        settings["region"] = deployment.get("region") or settings["region"]
        if deployment.get("regions") is not None:
            settings["regions"] = deployment["regions"]
    return settings


def keyword_settings(keywords):
    """``build_plan``'s settings from the plan filter's keyword arguments (its 1.0.0 form);
    an unknown keyword is an error that names it."""
    unknown = sorted(set(keywords) - set(PLAN_DEFAULTS))
    if unknown:
        raise ProtectionError(f"unknown stop_protection_plan option(s): {', '.join(unknown)}")
    return dict(PLAN_DEFAULTS, **keywords)
