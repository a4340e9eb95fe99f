# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters released in 1.0.0 that the role no longer uses, kept until 2.0.0 (deprecated in
``meta/runtime.yml``): ``stop_protection_rollout`` renders a region's policies, environment
and rules to write at once. ``stop_protection_reshard``, also deprecated, stays beside
``rollout`` in ``stop_protection.py``, which calls it."""

from ansible_collections.guardrails.ec2.plugins.module_utils import drift, environment, iam_policy


def _unset_empty(settings):
    """Role variables default to "" where the module_utils functions expect None."""
    return {key: value if value not in ("", None) else None for key, value in settings.items()}


def _region_policy(plan, account, partition="aws", **settings):
    """``{policies, scope}``: the managed policies for the plan; settings as in ``iam_policy.build_policies``."""
    policies, scope = iam_policy.build_policies(plan, account, partition, **_unset_empty(settings))
    return {"policies": policies, "scope": scope}


def stop_protection_policies(plan, account, partition="aws", **settings):
    """``{region: {policies, scope}}``: each region's managed policies, for its own role;
    settings as in ``iam_policy.build_policies``."""
    return {
        entry["region"]: _region_policy(plan, account, partition, region=entry["region"], **settings)
        for entry in plan["regions"]
    }


def stop_protection_environment(plan, **settings):
    """The function's environment variables (``environment.function_environment``), with
    ``settings`` (``tag_key``, ``tag_value``, ``bypass_tag_key``, ``notification_topic_arn``,
    ``attribution``) in place of the plan's own. Deprecated: the role renders the
    environment with ``stop_protection_rollout``."""
    merged = dict(plan, settings=dict(plan.get("settings") or {}, **_unset_empty(settings)))
    return environment.function_environment(merged)


def stop_protection_rule_changes(planned, existing, function_arn):
    """Names of planned rules that are missing or differ from ``existing`` (``drift.rule_drift``:
    description, pattern, schedule, role, state, targets)."""
    return [
        rule["name"]
        for rule in drift.rules_to_write(planned, existing, function_arn.split(":")[6], function_arn)
    ]


class FilterModule:
    def filters(self):
        return {
            "stop_protection_policies": stop_protection_policies,
            "stop_protection_environment": stop_protection_environment,
            "stop_protection_rule_changes": stop_protection_rule_changes,
        }
