# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The plan of a deployment: from the settings and the instances (``inventory.py``), per region
the rules, role and policy names, and every validated setting. Everything the role renders
comes from the plan alone. Pure: no AWS calls."""

from ansible_collections.guardrails.ec2.plugins.module_utils.alarms import (
    alarm_settings,
    heartbeat_settings,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    MAX_RESOURCE_NAME_CHARS,
    regional_names,
    resource_names,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    attribution_pattern,
    sweep_schedule,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.shards import (
    check_rule_capacity,
    rule_description,
    shard_rules,
    tamper_rules,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    ARN,
    MODE_INSTANCE_IDS,
    MODE_TAG,
    ProtectionError,
    validate_arn,
    validate_automation_principals,
    validate_function_settings,
    validate_kms_key_arns,
    validate_name,
    validate_region,
    validate_resource_tags,
    validate_restart_policy,
    validate_tag,
)


def build_plan(
    name,
    mode=MODE_INSTANCE_IDS,
    instances=(),
    regions=(),
    tag_key=None,
    tag_value=None,
    bypass_tag_key=None,
    attribution=False,
    notification_topic_arn=None,
    failure_destination_arn=None,
    require_instances=True,
    known_regions=None,
    kms_key_arns=(),
    restart_policy=None,
    inventory_group="stop_protected",
    resource_tags=None,
    function=None,
    automation_principals=(),
):
    """What to deploy, per region: validated, sharded, ready for the role's tasks.

    ``instances`` are ``(instance_id, region, source)`` from ``inventory.collect_instances``.
    ``regions`` adds regions without instances (tag mode protects by tag in each; removal
    cleans them up). ``function`` holds the function's settings (``DEFAULT_FUNCTION_SETTINGS``).
    The plan keeps every validated setting (``settings``, ``restart_policy``, ``tags``):
    ``render.render_region`` renders a region from the plan alone.
    """
    validate_name(name)
    if mode not in (MODE_INSTANCE_IDS, MODE_TAG):
        raise ProtectionError(f"stop_protection_selector {mode!r} must be 'instance_ids' or 'tag'")
    if mode == MODE_TAG:
        validate_tag(tag_key, tag_value)
    validate_tag(bypass_tag_key, variable="stop_protection_bypass_tag_key")
    if mode == MODE_TAG and bypass_tag_key == tag_key:
        raise ProtectionError(
            f"the bypass tag key {bypass_tag_key!r} must differ from the protection tag key"
        )
    validate_arn(notification_topic_arn, ("sns",), "stop_protection_notification_topic_arn")
    validate_arn(failure_destination_arn, ("sqs", "sns"), "stop_protection_failure_destination_arn")
    kms_key_arns = sorted(validate_kms_key_arns(kms_key_arns))
    restart_policy = validate_restart_policy(
        restart_policy, tag_key if mode == MODE_TAG else None, bypass_tag_key
    )
    for region in regions:
        validate_region(region, known_regions, source="stop_protection_regions entry")
    tags = validate_resource_tags(resource_tags)
    function = validate_function_settings(function)
    automation_principals = validate_automation_principals(automation_principals)

    by_region = {}
    for instance_id, region, _source in instances:
        by_region.setdefault(region, []).append(instance_id)
    for region in regions:
        by_region.setdefault(region, [])
    if mode == MODE_INSTANCE_IDS and require_instances and not any(by_region.values()):
        raise ProtectionError(
            f"no instances selected: the inventory group {inventory_group!r} (stop_protection_inventory_group) "
            "is empty or missing and stop_protection_instance_ids is empty"
        )

    for arn, variable in (
        (notification_topic_arn, "stop_protection_notification_topic_arn"),
        (failure_destination_arn, "stop_protection_failure_destination_arn"),
    ):
        home = ARN.fullmatch(arn).group("region") if arn else None
        elsewhere = sorted(set(by_region) - {home}) if arn else []
        if elsewhere:
            raise ProtectionError(
                f"{variable} {arn} is in {home}, but instances are protected in "
                f"{', '.join(elsewhere)}: each region's function and alarm can only use a topic or queue of "
                "their own region (deploy one region per run, or leave it empty)"
            )

    names = resource_names(name)
    plan_regions = []
    for region in sorted(by_region):
        ids = sorted(by_region[region])
        iam_names = regional_names(name, region)
        if len(iam_names["role"]) > MAX_RESOURCE_NAME_CHARS:
            raise ProtectionError(
                f"stop_protection_name {name!r} is too long for region {region}: its role "
                f"'{iam_names['role']}' would have {len(iam_names['role'])} characters, IAM allows "
                f"{MAX_RESOURCE_NAME_CHARS}"
            )
        rules = shard_rules(name, mode, ids)
        if attribution:
            rules.append(
                {
                    "name": names["attribution_rule"],
                    "pattern": attribution_pattern(),
                    "instance_ids": [],
                    "kind": "StopInstances callers",
                    "description": rule_description([], "StopInstances callers"),
                }
            )
        if automation_principals:
            rules.extend(
                tamper_rules(
                    name,
                    region,
                    automation_principals,
                    [
                        key
                        for key in (
                            tag_key if mode == MODE_TAG else None,
                            bypass_tag_key,
                            restart_policy["suspended_tag_key"],
                        )
                        if key
                    ],
                    notification_topic_arn,
                )
            )
        if restart_policy["sweep_minutes"]:
            rules.append(
                {
                    "name": names["sweep_rule"],
                    "pattern": None,
                    "schedule": sweep_schedule(restart_policy["sweep_minutes"]),
                    "instance_ids": [],
                    "kind": "sweep",
                    "description": rule_description([], "sweep"),
                }
            )
        check_rule_capacity(name, region, [rule["name"] for rule in rules], len(ids))
        plan_regions.append({"region": region, "instance_ids": ids, "rules": rules, **iam_names})
    return {
        "name": name,
        "mode": mode,
        "names": names,
        "regions": plan_regions,
        "restart_policy": restart_policy,
        "settings": {
            "tag_key": tag_key if mode == MODE_TAG else None,
            "tag_value": tag_value if mode == MODE_TAG else None,
            "bypass_tag_key": bypass_tag_key,
            "attribution": bool(attribution),
            "notification_topic_arn": notification_topic_arn or None,
            "failure_destination_arn": failure_destination_arn or None,
            "kms_key_arns": kms_key_arns,
            "automation_principals": automation_principals,
            "function": function,
        },
        "tags": tags,
        "alarm": alarm_settings(names, restart_policy["alarm_period_seconds"], notification_topic_arn),
        "heartbeat": heartbeat_settings(
            names,
            restart_policy["sweep_minutes"],
            restart_policy["alarm_period_seconds"],
            notification_topic_arn,
        ),
    }


def restarts_together(plan):
    """Whether the function restarts a burst of stops together (``restart_together``, on by
    default): then it reserves a concurrency of 1 and reads every stopped protected instance."""
    return ((plan.get("settings") or {}).get("function") or {}).get("restart_together", True)
