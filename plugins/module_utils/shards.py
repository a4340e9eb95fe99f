# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The EventBridge rules of one region: the state-change shards (stable across reruns), the
attribution, sweep and tamper rules, and the event bus's quota. Pure: no AWS calls."""

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    DESCRIPTION_PREFIX,
    RULE_SEPARATOR,
    rule_name,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    IAM_EVENTS_REGION,
    MAX_EVENT_PATTERN_CHARS,
    pattern_instance_ids,
    shard_instance_ids,
    state_change_pattern,
    tamper_patterns,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    MODE_TAG,
    ProtectionError,
)

# Default quota of rules on one event bus.
MAX_RULES_PER_BUS = 300
RULE_DESCRIPTION = DESCRIPTION_PREFIX + ": {}"


def tamper_rules(name, region, automation_principals, tag_keys, topic_arn):
    """The rules that report calls disarming the deployment in ``region`` by anyone but
    the automation (``patterns.tamper_patterns``); each also targets the topic, when set,
    so that deleting the function does not silence them."""
    found = tamper_patterns(
        name, region, automation_principals, tag_keys, topic_arn, iam=region == IAM_EVENTS_REGION
    )
    rules = []
    for kind, pattern in found.items():
        if len(pattern) > MAX_EVENT_PATTERN_CHARS:
            raise ProtectionError(
                f"the {kind} rule of {name} in {region} would have a pattern of {len(pattern)} characters, "
                f"EventBridge allows {MAX_EVENT_PATTERN_CHARS}: list fewer or shorter "
                "stop_protection_automation_principals"
            )
        rules.append(
            {
                "name": f"{name}{RULE_SEPARATOR}{kind}",
                "pattern": pattern,
                "instance_ids": [],
                "kind": kind,
                "description": rule_description([], kind),
                "topic_arn": topic_arn or None,
            }
        )
    return rules


def rule_description(instance_ids, kind):
    """What a rule's description says: how many instances it names, else its kind. Rules
    count as the deployment's when it starts with ``guardrails.ec2 stop protection``."""
    return RULE_DESCRIPTION.format(f"{len(instance_ids)} instances" if instance_ids else kind)


def shard_rules(name, mode, instance_ids, current=()):
    """The rules that match ``stopped`` events of a region: one for all (tag mode) or one
    per shard of ``instance_ids``, numbered from 1; ``current`` as in ``shard_instance_ids``."""
    if mode == MODE_TAG:
        return [
            {
                "name": rule_name(name, 1),
                "pattern": state_change_pattern(),
                "instance_ids": [],
                "kind": "tagged instances",
                "description": rule_description([], "tagged instances"),
            }
        ]
    return [
        {
            "name": rule_name(name, index),
            "pattern": state_change_pattern(shard),
            "instance_ids": shard,
            "kind": "instances",
            "description": rule_description(shard, "instances"),
        }
        for index, shard in enumerate(shard_instance_ids(instance_ids, current=current), start=1)
    ]


def check_rule_capacity(name, region, rules, instance_count):
    """Fail before any change when a region's rules exceed the event bus's rule quota.

    The function's resource policy does not grow with the rules: one statement admits them
    all (``rule_source_pattern``).
    """
    if len(rules) > MAX_RULES_PER_BUS:
        raise ProtectionError(
            f"{instance_count} instances in {region} need {len(rules)} rules, more than the {MAX_RULES_PER_BUS} "
            "an event bus holds by default; use stop_protection_selector: tag (one rule for any number of instances)"
        )


def reshard_region(plan, entry, deployed_rules):
    """The region's planned rules with the shards kept stable against ``deployed_rules``
    (``rules.list_deployment_rules`` output), and the deployed rules no longer needed.

    Rules named as before 1.1.0 (``legacy``) are always stale; their shards seed the new
    ones unless a run already wrote new shard rules (a migration cut short).

    Returns ``{"rules", "stale"}``.
    """
    shards = [rule for rule in deployed_rules or [] if rule.get("kind") == "state_change"]
    if any(not rule.get("legacy") for rule in shards):
        shards = [rule for rule in shards if not rule.get("legacy")]
    current = [
        pattern_instance_ids(rule.get("event_pattern"))
        for rule in sorted(shards, key=lambda rule: rule.get("index") or 0)
    ]
    shards = shard_rules(plan["name"], plan["mode"], entry["instance_ids"], current=current)
    rules = shards + [
        rule for rule in entry["rules"] if rule["kind"] not in ("instances", "tagged instances")
    ]
    check_rule_capacity(
        plan["name"], entry["region"], [rule["name"] for rule in rules], len(entry["instance_ids"])
    )
    names = {rule["name"] for rule in rules}
    stale = [rule for rule in deployed_rules or [] if rule["name"] not in names]
    return {"rules": rules, "stale": stale}
