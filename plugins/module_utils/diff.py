# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a protect run changes in one region, as Ansible diffs (before/after), with the
instance ids that join or leave each rule and each managed policy.

Pure: it takes the region's read state (``stop_protection_deployment_info``), what the
region renders (``render.render_region``), the drift (``drift.region_drift``) and the rules to
write and to remove (``rules`` of ``stop_protection_rollout``), and calls no AWS API.
"""

import json

from ansible_collections.guardrails.ec2.plugins.module_utils.drift import invoke_statement
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import listed_instance_ids

START_STATEMENT = "StartProtectedInstances"


def _text(value):
    """A resource as the diff shows it: sorted, indented JSON; nothing for a missing one."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def _pattern(text):
    """An event pattern as a mapping, so that the diff shows it line by line."""
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def policy_instance_ids(document):
    """Instance ids the policy lets the function start (its instance ARNs; ``*`` is none)."""
    found = set()
    for statement in (document or {}).get("Statement") or []:
        if statement.get("Sid") != START_STATEMENT:
            continue
        resources = statement.get("Resource") or []
        for arn in resources if isinstance(resources, list) else [resources]:
            instance_id = arn.rsplit(":instance/", 1)[-1] if ":instance/" in arn else "*"
            if instance_id != "*":
                found.add(instance_id)
    return found


def rule_instance_ids(pattern):
    """Instance ids a rule's pattern (text as deployed, or a mapping as planned) names."""
    return set(listed_instance_ids(pattern if isinstance(pattern, str) else json.dumps(pattern)) or ())


def membership(what, before, after):
    """One line naming the ids that join and leave ``what``, or None when none do."""
    joining, leaving = sorted(after - before), sorted(before - after)
    if not joining and not leaving:
        return None
    said = []
    if joining:
        said.append(f"joining {', '.join(joining)}")
    if leaving:
        said.append(f"leaving {', '.join(leaving)}")
    return f"{what}: instances {'; '.join(said)}"


def _default_document(current):
    current = current or {}
    for version in current.get("versions") or []:
        if version.get("id") == current.get("default_version"):
            return version.get("document")
    return None


def _rule_view(rule, target_id=None, target_arn=None):
    if rule is None:
        return None
    if target_id is None:  # as deployed
        return {
            "description": rule.get("description"),
            "event_pattern": _pattern(rule.get("event_pattern")),
            "schedule": rule.get("schedule_expression"),
            "state": rule.get("state"),
            "targets": [{"id": t.get("id"), "arn": t.get("arn")} for t in rule.get("targets") or []],
        }
    return {
        "description": rule.get("description"),
        "event_pattern": _pattern(rule.get("pattern")),
        "schedule": rule.get("schedule"),
        "state": "ENABLED",
        "targets": [{"id": target_id, "arn": target_arn}],
    }


def _views(key, state, desired):
    """(before, after) of one resource of ``drift.region_drift``, in comparable shapes."""
    if key == "role":
        current, role = state.get("role") or {}, desired["role"]
        before = (
            {
                "trust": current.get("trust"),
                "description": current.get("description"),
                "managed_policies": sorted(current.get("attached") or []),
                "tags": current.get("tags") or {},
            }
            if current.get("exists")
            else None
        )
        after = {
            "trust": role["trust"],
            "description": role["description"],
            "managed_policies": sorted(role["policy_arns"]),
            "tags": desired["tags"],
        }
        return before, after
    if key == "log_group":
        current, group = state.get("log_group") or {}, desired["log_group"]
        before = {"retention": current.get("retention"), "tags": current.get("tags") or {}}
        return (before if current.get("exists") else None), {
            "retention": group["retention"],
            "tags": group["tags"],
        }
    if key == "statement":
        return state.get("statement"), invoke_statement(desired)
    if key in ("metric_filter", "heartbeat_filter"):
        current = state.get(key) or {}
        return (current if current.get("count") else None), desired.get(key)
    # function, alarm, heartbeat, invoke_config: the read state has the desired shape already.
    return state.get(key), desired.get(key)


def region_diff(region, state, desired, drift, rules_write=(), rules_stale=(), deployed_rules=()):
    """``{"diff": [Ansible diff entries], "lines": [one line per change]}`` for ``region``.

    Each resource with drift gets one entry ``{before_header, after_header, before, after}``
    (JSON text; empty for a resource to create or remove); each rule to write or remove one
    too. ``lines`` say the drift of each resource and, for every rule and managed policy,
    the instance ids that join or leave it.
    """
    entries, lines = [], []

    def add(what, before, after, said):
        entries.append(
            {
                "before_header": f"{what} in {region} (deployed)",
                "after_header": f"{what} in {region} (planned)",
                "before": _text(before),
                "after": _text(after),
            }
        )
        lines.append(f"{region} {what}: {said}")

    for policy in drift.get("policies") or ():
        current = (state.get("policies") or {}).get(policy["name"])
        before = _default_document(current) if current and current.get("exists") else None
        add(f"policy {policy['name']}", before, policy["document"], "; ".join(policy["drift"]))
        moved = membership(
            f"{region} policy {policy['name']} (ec2:StartInstances)",
            policy_instance_ids(before),
            policy_instance_ids(policy["document"]),
        )
        if moved:
            lines.append(moved)
    for key, differences in drift.items():
        if key == "policies" or not differences:
            continue
        before, after = _views(key, state, desired)
        add(key, before, after, "; ".join(differences))
    deployed = {rule["name"]: rule for rule in deployed_rules or ()}
    for rule in rules_write or ():
        current = deployed.get(rule["name"])
        # The patterns themselves are in the diff; the line names the instances instead.
        said = [
            "event pattern differs" if item.startswith("event pattern:") else item
            for item in rule.get("drift") or ["differs"]
        ]
        add(
            f"rule {rule['name']}",
            _rule_view(current),
            _rule_view(rule, desired["rule_target_id"], desired["function_arn"]),
            "; ".join(said),
        )
        moved = membership(
            f"{region} rule {rule['name']}",
            rule_instance_ids(current.get("event_pattern")) if current else set(),
            rule_instance_ids(rule.get("pattern")) if rule.get("pattern") else set(),
        )
        if moved:
            lines.append(moved)
    for rule in rules_stale or ():
        add(f"rule {rule['name']}", _rule_view(rule), None, "removed")
        moved = membership(
            f"{region} rule {rule['name']}", rule_instance_ids(rule.get("event_pattern")), set()
        )
        if moved:
            lines.append(moved)
    return {"diff": entries, "lines": lines}
