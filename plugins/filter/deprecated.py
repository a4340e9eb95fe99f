# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters released in 1.0.0 that the role no longer uses, kept until 2.0.0 (deprecated in
``meta/runtime.yml``): ``stop_protection_rollout`` renders a region's policies, environment
and rules to write at once. ``stop_protection_reshard``, also deprecated, stays beside
``rollout`` in ``stop_protection.py``, which calls it."""

from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.module_utils import drift, environment, iam_policy, validate


def _with_settings(plan, settings):
    """The plan with ``settings`` (role variables, "" where unset) in place of its own."""
    unset_empty = {key: value if value not in ("", None) else None for key, value in settings.items()}
    return dict(plan, settings=dict(plan.get("settings") or {}, **unset_empty))


def stop_protection_policies(plan, account, partition="aws", **settings):
    """``{region: {policies, scope}}``: each region's managed policies, for its own role
    (``iam_policy.build_policies``), with ``settings`` (``tag_key``, ``tag_value``,
    ``notification_topic_arn``, ``failure_destination_arn``, ``attribution``,
    ``kms_key_arns``) in place of the plan's own."""
    merged = _with_settings(plan, settings)
    # The plan's own keys were checked when it was built; keys given here are not yet.
    try:
        merged["settings"]["kms_key_arns"] = validate.validate_kms_key_arns(
            merged["settings"].get("kms_key_arns")
        )
    except validate.ProtectionError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    found = {}
    for entry in plan["regions"]:
        policies, scope = iam_policy.build_policies(merged, account, partition, entry["region"])
        found[entry["region"]] = {"policies": policies, "scope": scope}
    return found


def stop_protection_environment(plan, **settings):
    """The function's environment variables (``environment.function_environment``), with
    ``settings`` (``tag_key``, ``tag_value``, ``bypass_tag_key``, ``notification_topic_arn``,
    ``attribution``) in place of the plan's own. Deprecated: the role renders the
    environment with ``stop_protection_rollout``."""
    return environment.function_environment(_with_settings(plan, settings))


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
