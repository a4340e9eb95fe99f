# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that turn the stop_protection role's variables into a validated deployment plan."""

import difflib

from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    drift,
    iam_policy,
    inventory,
    naming,
    package,
    render,
    shards,
    validate,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    plan as planning,
)
from ansible_collections.guardrails.ec2.plugins.module_utils import (
    settings as settings_from,
)

# The settings build_plan takes as they are; name, selector, instance ids and regions it
# gets worked out here.
PLANNED = (
    "tag_key",
    "tag_value",
    "bypass_tag_key",
    "attribution",
    "notification_topic_arn",
    "failure_destination_arn",
    "require_instances",
    "kms_key_arns",
    "restart_policy",
    "inventory_group",
    "resource_tags",
    "function",
    "automation_principals",
)


def _failed(exc, errors):
    """Bad input: raised (``errors="raise"``), or returned as ``{"error": message}`` for a
    task that fails with the message alone."""
    if errors == "return":
        return {"error": str(exc)}
    raise AnsibleFilterError(str(exc)) from exc


def _settings(variables, deployment, environment_region, keywords):
    """The plan's settings: from the role's variables (``settings.role_settings``), or the
    filter's keyword arguments of 1.0.0 (``settings.keyword_settings``), not both."""
    if variables is None:
        return settings_from.keyword_settings(keywords)
    if keywords:
        raise validate.ProtectionError(
            f"give the role's variables or the settings as options, not both: {', '.join(sorted(keywords))}"
        )
    return settings_from.role_settings(variables, deployment, environment_region)


def stop_protection_plan(
    hosts, variables=None, deployment=None, environment_region=None, errors="raise", **keywords
):
    """The validated plan (``plan.build_plan``) of the inventory ``hosts`` and the settings:
    the role's ``variables`` as one dict (the role's way), or the 1.0.0 keyword options."""
    known = inventory.known_regions()
    try:
        settings = _settings(variables, deployment, environment_region, keywords)
        region, selector = settings["region"], settings["selector"]
        if region:
            validate.validate_region(region, known, source="stop_protection_region")
        pairs = [(host.get("inventory_hostname", "?"), host) for host in hosts or []]
        # Tag mode protects by tag, but instances named in the inventory still tell the
        # regions to deploy to and what stop_protection_verify should check.
        instances = []
        if selector == validate.MODE_INSTANCE_IDS or pairs or settings["instance_ids"]:
            instances = inventory.collect_instances(pairs, settings["instance_ids"] or [], region, known)
        return planning.build_plan(
            settings["name"],
            mode=selector,
            instances=instances,
            regions=inventory.extra_regions(
                settings["regions"], region, selector == validate.MODE_TAG, settings["require_instances"]
            ),
            known_regions=known,
            **{key: settings[key] for key in PLANNED},
        )
    except validate.ProtectionError as exc:
        return _failed(exc, errors)


def stop_protection_deployments(
    hosts,
    instance_ids=None,
    region=None,
    regions=None,
    selector=validate.MODE_INSTANCE_IDS,
    assume_roles=None,
    require_instances=True,
    errors="raise",
    variables=None,
    environment_region=None,
):
    """One deployment per account and region (``inventory.plan_deployments``): the hosts
    the playbooks add to run the role once per pair, in parallel. With ``variables`` (the
    role's variables as one dict) the settings come from them, as for ``stop_protection_plan``."""
    known = inventory.known_regions()
    try:
        if variables is not None:
            settings = settings_from.role_settings(variables, environment_region=environment_region)
            instance_ids, region, regions = settings["instance_ids"], settings["region"], settings["regions"]
            selector, assume_roles = settings["selector"], settings["assume_roles"]
            require_instances = settings["require_instances"]
        # Checked even when every instance names its own region: a bad setting is an error
        # whether or not this run happens to use it.
        if region:
            validate.validate_region(region, known, source="stop_protection_region (or AWS_REGION)")
        pairs = [(host.get("inventory_hostname", "?"), host) for host in hosts or []]
        instances = (
            inventory.collect_instances(pairs, instance_ids or [], region, known)
            if (pairs or instance_ids)
            else []
        )
        accounts = inventory.instance_accounts(pairs, instance_ids or [])
        tag_mode = selector == validate.MODE_TAG
        extra = inventory.extra_regions(regions, region, tag_mode, require_instances)
        for entry in extra:
            validate.validate_region(entry, known, source="stop_protection_regions entry")
        return inventory.plan_deployments(instances, accounts, assume_roles, tag_mode=tag_mode, regions=extra)
    except validate.ProtectionError as exc:
        return _failed(exc, errors)


def stop_protection_reshard(entry, plan, deployed_rules, function_arn=None):
    """``{rules, stale}`` of one plan region against its deployed rules: shards kept stable
    (``shards.reshard_region``). With ``function_arn`` also ``write``: the rules that differ
    from the deployed ones (``drift.rules_to_write``), each with its ``drift``. Deprecated as
    a filter (``meta/runtime.yml``): the role plans its rules with ``stop_protection_rollout``,
    which calls this."""
    try:
        result = shards.reshard_region(plan, entry, deployed_rules)
    except validate.ProtectionError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    if function_arn:
        result["write"] = drift.rules_to_write(
            result["rules"], deployed_rules, plan["names"]["function"], function_arn
        )
    return result


def stop_protection_rollout(
    plan, entry, account, partition, existing, code_sha256=None, trust_policy=None, disable_api_stop=False
):
    """One region's protect, planned at once: ``desired`` (``render.render_region``: policies
    and their scope, role, function with its environment, alarms, log group, metric filters,
    invoke statement, async settings, ARNs), ``rules`` (``stop_protection_reshard`` with ``write``),
    ``drift`` (``drift.region_drift`` against the region's read, ``existing``), and
    ``changes``: whether any write task has
    anything to do (a rerun that changes nothing skips them all at once), with ``differs``:
    whether a resource or rule differs (what the role's diff task shows)."""
    desired = render.render_region(plan, entry["region"], account, partition, code_sha256, trust_policy)
    rules = stop_protection_reshard(entry, plan, existing["rules"], desired["function_arn"])
    state = existing["state"]
    differences = drift.region_drift(state, desired)
    differs = bool(any(differences.values()) or rules["write"] or rules["stale"])
    # AWS's stop protection: set (and checked) on every run while asked for, cleared where
    # protect set it once it is not.
    changes = differs or bool(disable_api_stop or state.get("api_stop_marked"))
    return {"desired": desired, "rules": rules, "drift": differences, "differs": differs, "changes": changes}


def stop_protection_policy_names(plan, region=None):
    """``{region: [managed policy names]}``, known before the account (``iam_policy.policy_names``);
    with ``region``, of that region only."""
    return iam_policy.policy_names(plan, region)


def stop_protection_package_sha256(paths):
    """``CodeSha256`` of the package that ``lambda_package`` builds from ``paths``, computed
    on the controller (``package.package_sha256``)."""
    try:
        return package.package_sha256(paths)
    except (OSError, ValueError) as exc:
        raise AnsibleFilterError(f"Couldn't read the function sources: {exc}") from exc


def stop_protection_policy_room(state, desired, name):
    """Statement ids of rules named as before 1.1.0 to remove before the region's one invoke
    statement is added, so that the function's policy stays within Lambda's 20 KB
    (``drift.statements_to_make_room``)."""
    return drift.statements_to_make_room(name, state.get("function_policy"), desired)


def stop_protection_summary(plan, account, partition, iam=None, rules=None):
    """What the role deployed, per region: the role's ``stop_protection_summary`` output.

    ``iam`` maps each region to its rendered ``{"scope", "policies"}`` (policy names, or the
    ``{"name", ...}`` entries ``stop_protection_rollout`` renders; default: rendered from the
    plan here); ``rules`` maps each region to the names of its rules as deployed (default: as
    planned).
    """
    iam = dict(iam or {})
    for entry in plan["regions"]:
        if entry["region"] not in iam:
            policies, scope = iam_policy.build_policies(plan, account, partition, entry["region"])
            iam[entry["region"]] = {"policies": policies, "scope": scope}
    return {
        "name": plan["name"],
        "state": "present",
        "mode": plan["mode"],
        "regions": [
            {
                "region": entry["region"],
                "instances": len(entry["instance_ids"]),
                "function_arn": naming.function_arn(
                    partition, entry["region"], account, plan["names"]["function"]
                ),
                "role": entry["role"],
                "policies": [
                    policy["name"] if isinstance(policy, dict) else policy
                    for policy in iam[entry["region"]]["policies"]
                ],
                "policy_scope": iam[entry["region"]]["scope"],
                "rules": (rules or {}).get(entry["region"]) or [rule["name"] for rule in entry["rules"]],
            }
            for entry in plan["regions"]
        ],
    }


# Variables the role sets for the playbooks that run it (outputs), beside its inputs.
ROLE_OUTPUTS = ("stop_protection_summary", "stop_protection_verify_results")


def stop_protection_unknown_variables(names, argument_specs):
    """One message per ``stop_protection_*`` variable in ``names`` that no entry point of
    ``argument_specs`` (the role's ``meta/argument_specs.yml``) knows, naming the closest known
    one: a typo is otherwise ignored, and its default silently used."""
    known = set(ROLE_OUTPUTS)
    for entry_point in (argument_specs or {}).values():
        known.update((entry_point or {}).get("options") or {})
    prefix = "stop_protection_"
    # Compared without the prefix every name shares, which would make any two look alike.
    suffixes = sorted(name[len(prefix) :] for name in known)
    messages = []
    for name in sorted(set(names or ())):
        if not name.startswith(prefix) or name.startswith(prefix + "_") or name in known:
            continue
        close = difflib.get_close_matches(name[len(prefix) :], suffixes, n=1, cutoff=0.75)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        messages.append(f"The role does not know the variable {name}: it is ignored{hint}")
    return messages


class FilterModule:
    def filters(self):
        return {
            "stop_protection_plan": stop_protection_plan,
            "stop_protection_deployments": stop_protection_deployments,
            "stop_protection_reshard": stop_protection_reshard,
            "stop_protection_summary": stop_protection_summary,
            "stop_protection_rollout": stop_protection_rollout,
            "stop_protection_policy_names": stop_protection_policy_names,
            "stop_protection_package_sha256": stop_protection_package_sha256,
            "stop_protection_unknown_variables": stop_protection_unknown_variables,
            "stop_protection_policy_room": stop_protection_policy_room,
        }
