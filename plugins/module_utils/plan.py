# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The plan of a deployment, from inventory: the instances and their regions and accounts,
one deployment per account and region, and per region the rules, role and policy names.
Everything the role renders comes from the plan alone. Pure: no AWS calls."""

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
    validate_account_id,
    validate_arn,
    validate_assume_roles,
    validate_automation_principals,
    validate_function_settings,
    validate_instance_id,
    validate_kms_key_arns,
    validate_name,
    validate_region,
    validate_resource_tags,
    validate_restart_policy,
    validate_tag,
)

# The inventory host that deploys with the play's own credentials; one more host per
# account of stop_protection_assume_roles.
OWN_ACCOUNT_HOST = "localhost"


def instance_accounts(hosts, explicit_ids):
    """``{instance_id: account id}`` for the instances whose account the inventory names:
    ``account_id`` (or the aws_ec2 plugin's ``owner_id``) of a host, ``account_id`` of an
    explicit ``{instance_id, region, account_id}`` entry."""
    found = {}
    if explicit_ids:
        for position, entry in enumerate(explicit_ids):
            if isinstance(entry, dict) and entry.get("account_id") not in (None, ""):
                source = f"account_id of stop_protection_instance_ids[{position}]"
                found[entry.get("instance_id")] = validate_account_id(entry["account_id"], source)
        return found
    for hostname, hostvars in hosts:
        account = hostvars.get("account_id") or hostvars.get("owner_id")
        if account not in (None, ""):
            found[hostvars.get("instance_id")] = validate_account_id(account, f"account of host {hostname}")
    return found


def plan_deployments(instances, accounts, assume_roles, tag_mode=False, regions=()):
    """One deployment per account and region: ``[{"host", "account_id", "assume_role_arn",
    "region", "regions", "instance_ids"}]``, so that every pair deploys in parallel.

    ``instances`` are ``(instance_id, region, source)`` from ``collect_instances``;
    ``accounts`` from ``instance_accounts``. Instances of an account named in
    ``assume_roles`` go to that account's deployments (its role is assumed); all others to
    those with the play's own credentials. ``regions`` (the extra regions, and the default
    one where it counts) are deployed or cleaned in every account that tag mode covers (the
    own one, and in tag mode each listed account). Hosts are named ``own-<region>`` and
    ``<account>-<region>``. With nothing selected at all, one deployment ``localhost``
    keeps the run's own settings, so that the role reports what is missing.
    """
    assume_roles = validate_assume_roles(assume_roles)
    pairs = {}
    covering = [None, *assume_roles] if tag_mode else [None]
    for account in covering:
        for region in regions:
            pairs.setdefault((account, region), [])
    for instance_id, region, _source in instances:
        account = accounts.get(instance_id)
        key = account if account in assume_roles else None
        pairs.setdefault((key, region), []).append({"instance_id": instance_id, "region": region})
    if not pairs:
        return [
            {
                "host": OWN_ACCOUNT_HOST,
                "account_id": "",
                "assume_role_arn": "",
                "region": "",
                "regions": None,
                "instance_ids": [],
            }
        ]
    return [
        {
            "host": f"{account or 'own'}-{region}",
            "account_id": account or "",
            "assume_role_arn": assume_roles.get(account, ""),
            "region": region,
            "regions": [region],
            "instance_ids": pairs[(account, region)],
        }
        for account, region in sorted(pairs, key=lambda key: (key[0] is not None, key[0] or "", key[1]))
    ]


def collect_instances(hosts, explicit_ids, default_region, known_regions=None):
    """``[(instance_id, region, source)]`` from inventory hosts or an explicit list.

    ``hosts`` are ``(inventory_hostname, hostvars)`` pairs; each names its instance in
    ``instance_id`` and its region in ``placement.region``, else ``region``, else the default.
    ``explicit_ids`` (when given) wins over the hosts: strings, or dicts with
    ``instance_id`` and optional ``region``.
    """
    found = []
    if isinstance(explicit_ids, str):
        # -e stop_protection_instance_ids=i-1,i-2 arrives as a string: read it as Ansible's
        # list type reads one (comma-separated), never character by character.
        explicit_ids = [part.strip() for part in explicit_ids.split(",") if part.strip()]
    if explicit_ids:
        for position, entry in enumerate(explicit_ids):
            source = f"stop_protection_instance_ids[{position}]"
            if isinstance(entry, dict):
                instance_id, region = entry.get("instance_id"), entry.get("region") or default_region
            else:
                instance_id, region = entry, default_region
            found.append((validate_instance_id(instance_id, source), region, source))
    else:
        for hostname, hostvars in hosts:
            source = f"host {hostname}"
            instance_id = hostvars.get("instance_id")
            if instance_id is None:
                raise ProtectionError(f"{source} has no instance_id hostvar")
            placement = hostvars.get("placement") or {}
            region = placement.get("region") if isinstance(placement, dict) else None
            region = region or hostvars.get("region") or default_region
            found.append((validate_instance_id(instance_id, source), region, source))
    for instance_id, region, source in found:
        if not region:
            raise ProtectionError(
                f"{source} ({instance_id}) names no region and stop_protection_region is not set"
            )
        validate_region(region, known_regions, source=f"region of {source}")
    seen = {}
    duplicates = []
    for instance_id, _region, source in found:
        if instance_id in seen:
            duplicates.append(f"{instance_id} ({seen[instance_id]} and {source})")
        else:
            seen[instance_id] = source
    if duplicates:
        raise ProtectionError("instance ids listed more than once: " + "; ".join(duplicates))
    return found


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

    ``instances`` are ``(instance_id, region, source)`` from ``collect_instances``.
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
