# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The plan of a deployment: validated input, regions, rules and shards, the alarm and the
function's environment.

Pure functions without AWS calls, shared by the role's filter plugin, the modules and the
unit tests. Names are ``naming.py``'s, event patterns ``patterns.py``'s, the IAM policies
``iam_policy.py``'s.
"""

import re

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    ATTRIBUTION_SUFFIX,
    DESCRIPTION_PREFIX,
    MAX_NAME_CHARS,
    MAX_RESOURCE_NAME_CHARS,
    METRIC_NAMESPACE,
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    RULE_SEPARATOR,
    regional_names,
    resource_names,
    rule_name,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    IAM_EVENTS_REGION,
    MAX_EVENT_PATTERN_CHARS,
    attribution_pattern,
    pattern_instance_ids,
    shard_instance_ids,
    state_change_pattern,
    sweep_schedule,
    tamper_patterns,
)

MODE_INSTANCE_IDS = "instance_ids"
MODE_TAG = "tag"


# Default quota of rules on one event bus.
MAX_RULES_PER_BUS = 300
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
# The restart history tag holds one 10-digit time per restart in the window: 256 characters
# hold 23; 20 leaves room and is far beyond any sensible budget.
MAX_RESTART_LIMIT = 20
RESTART_WINDOW_SECONDS = (60, 7 * 24 * 3600)
# What the restart function does, and the defaults of the role's variables.
DEFAULT_RESTART_POLICY = {
    "restart_limit": 3,
    "restart_window_seconds": 3600,
    "history_tag_key": "StopProtectionRestarts",
    "suspended_tag_key": "StopProtectionSuspended",
    "skip_auto_scaling": True,
    "skip_spot_interruptions": True,
    "restart_hibernated": False,
    "retry_attempts": 2,
    "sweep_minutes": 5,
    "alarm_period_seconds": 300,
}
# Decisions that need a person: one metric filter counts them, one alarm fires on any. A
# restart whose budget could not be written (budget_error: the instance may then restart
# forever) and a notice that could not be sent (notify-failed: e.g. a topic's KMS key the
# role may not use) count too, so that the alarm never goes quiet with the notices; and so do
# calls that disarm the deployment (tamper) and the sweep's repairs of them.
ATTENTION_PATTERN = (
    '{ ($.action = "failed") || ($.action = "suspended") || ($.action = "notify-failed")'
    ' || ($.action = "tamper") || ($.action = "tamper-repaired") || ($.action = "repair-failed")'
    ' || ($.budget_error = "*") }'
)
MAX_SWEEP_MINUTES = 1440

# The function and its log group, and the defaults of the role's variables.
DEFAULT_FUNCTION_SETTINGS = {
    "runtime": "python3.13",
    "timeout": 60,
    "memory_mb": 128,
    "max_event_age_seconds": 3600,
    "log_retention_days": 30,
    "restart_together": True,
}
RUNTIMES = ("python3.12", "python3.13")
FUNCTION_RANGES = {
    "timeout": ("stop_protection_lambda_timeout", 10, 900),
    "memory_mb": ("stop_protection_lambda_memory_mb", 128, 10240),
    "max_event_age_seconds": ("stop_protection_max_event_age_seconds", 60, 21600),
}

LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
# Lambda function names are the strictest of the names derived from the base name.
BASE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
REGION = re.compile(r"^(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d$")
ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>\d{12}):(?P<resource>.+)$"
)


# Any ARN, also those without a region or account (S3's), to say which service one names.
ANY_ARN = re.compile(r"^arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):[a-z0-9-]*:(?:\d{12})?:.+$")


class ProtectionError(ValueError):
    """Bad input, with a message that names the bad value."""


# --- names -----------------------------------------------------------------------------


# --- event patterns and sharding ---------------------------------------------------------


# --- validation ----------------------------------------------------------------------------


def validate_name(name):
    if not isinstance(name, str) or not BASE_NAME.fullmatch(name):
        raise ProtectionError(
            f"stop_protection_name {name!r} is invalid: use letters, digits, '-' and '_' only "
            "(it names the Lambda function, whose name allows nothing else)"
        )
    if len(name) > MAX_NAME_CHARS:
        raise ProtectionError(
            f"stop_protection_name {name!r} is {len(name)} characters long; at most {MAX_NAME_CHARS} fit, "
            f"because rule '{name}{ATTRIBUTION_SUFFIX}' and function names allow 64"
        )
    return name


def validate_region(region, known_regions=None, source="region"):
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise ProtectionError(f"{source} {region!r} is not an AWS region name (like 'eu-west-1')")
    if known_regions and region not in known_regions:
        raise ProtectionError(f"{source} {region!r} is not a region AWS knows")
    return region


def validate_instance_id(instance_id, source="instance id"):
    if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
        raise ProtectionError(
            f"{source} {instance_id!r} is not an EC2 instance id (i- followed by 8 or 17 hex digits)"
        )
    return instance_id


def validate_resource_tags(tags, variable="stop_protection_resource_tags"):
    """The tags for every resource, with the owner tag added; it may not be changed."""
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        raise ProtectionError(f"{variable} must be a mapping of tag keys to values, got {tags!r}")
    for key, value in tags.items():
        if not isinstance(value, str):
            raise ProtectionError(f"{variable}[{key!r}] must be a string, got {value!r}")
        validate_tag(key, value, variable=f"{variable} key")
    if tags.get(OWNER_TAG_KEY, OWNER_TAG_VALUE) != OWNER_TAG_VALUE:
        raise ProtectionError(
            f"{variable}[{OWNER_TAG_KEY!r}] is {tags[OWNER_TAG_KEY]!r}; it must be {OWNER_TAG_VALUE!r} (or left out): "
            "protect and unprotect change only resources that carry it"
        )
    return dict(tags, **{OWNER_TAG_KEY: OWNER_TAG_VALUE})


def validate_tag(key, value=None, variable="stop_protection_tag_key"):
    if not isinstance(key, str) or not key.strip():
        raise ProtectionError(f"{variable} must be a non-empty tag key, got {key!r}")
    if len(key) > MAX_TAG_KEY_CHARS:
        raise ProtectionError(f"{variable} {key!r} is longer than {MAX_TAG_KEY_CHARS} characters")
    if key.lower().startswith("aws:"):
        raise ProtectionError(f"{variable} {key!r} uses the reserved prefix 'aws:'")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE_CHARS):
        raise ProtectionError(
            f"tag value {value!r} for {key!r} must be a string of at most {MAX_TAG_VALUE_CHARS} characters"
        )
    return key


def _whole(value):
    """An int, and not a bool (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_restart_policy(settings, protection_tag_key=None, bypass_tag_key=None):
    """The restart budget and skip rules, with every value checked; defaults filled in."""
    policy = dict(DEFAULT_RESTART_POLICY)
    policy.update({key: value for key, value in (settings or {}).items() if value is not None})
    unknown = sorted(set(policy) - set(DEFAULT_RESTART_POLICY))
    if unknown:
        raise ProtectionError(f"unknown restart settings: {', '.join(unknown)}")
    limit = policy["restart_limit"]
    if not _whole(limit) or not 1 <= limit <= MAX_RESTART_LIMIT:
        raise ProtectionError(f"stop_protection_restart_limit must be 1-{MAX_RESTART_LIMIT}, got {limit!r}")
    window = policy["restart_window_seconds"]
    low, high = RESTART_WINDOW_SECONDS
    if not _whole(window) or not low <= window <= high:
        raise ProtectionError(f"stop_protection_restart_window_seconds must be {low}-{high}, got {window!r}")
    minutes = policy["sweep_minutes"]
    if not _whole(minutes) or not 0 <= minutes <= MAX_SWEEP_MINUTES:
        raise ProtectionError(
            f"stop_protection_sweep_minutes must be 0 (no sweep) to {MAX_SWEEP_MINUTES}, got {minutes!r}"
        )
    period = policy["alarm_period_seconds"]
    if not _whole(period) or not (period in (0, 10, 30) or (period % 60 == 0 and 60 <= period <= 86400)):
        raise ProtectionError(
            "stop_protection_alarm_period_seconds must be 0 (no alarm), 10, 30 or a multiple of 60 "
            f"up to 86400, got {period!r}"
        )
    attempts = policy["retry_attempts"]
    if not _whole(attempts) or attempts not in (0, 1, 2):
        raise ProtectionError(f"stop_protection_retry_attempts must be 0, 1 or 2, got {attempts!r}")
    for key, variable in (
        ("history_tag_key", "stop_protection_restart_history_tag_key"),
        ("suspended_tag_key", "stop_protection_suspended_tag_key"),
    ):
        validate_tag(policy[key], variable=variable)
        if policy[key] in (protection_tag_key, bypass_tag_key):
            raise ProtectionError(
                f"{variable} {policy[key]!r} must differ from the protection and bypass tag keys"
            )
    if policy["history_tag_key"] == policy["suspended_tag_key"]:
        raise ProtectionError(
            f"stop_protection_restart_history_tag_key and stop_protection_suspended_tag_key are both "
            f"{policy['history_tag_key']!r}; they must differ"
        )
    for key in ("skip_auto_scaling", "skip_spot_interruptions", "restart_hibernated"):
        if not isinstance(policy[key], bool):
            raise ProtectionError(f"stop_protection_{key} must be true or false, got {policy[key]!r}")
    return policy


def validate_function_settings(settings):
    """The function's runtime, timeout, memory, event age, log retention and whether it
    restarts a burst of stops together, with every value checked; defaults filled in."""
    found = dict(DEFAULT_FUNCTION_SETTINGS)
    found.update({key: value for key, value in (settings or {}).items() if value is not None})
    unknown = sorted(set(found) - set(DEFAULT_FUNCTION_SETTINGS))
    if unknown:
        raise ProtectionError(f"unknown function settings: {', '.join(unknown)}")
    for key, (variable, low, high) in FUNCTION_RANGES.items():
        value = found[key]
        if not _whole(value) or not low <= value <= high:
            raise ProtectionError(f"{variable} must be {low}-{high}, got {value!r}")
    if found["log_retention_days"] not in LOG_RETENTION_DAYS or not _whole(found["log_retention_days"]):
        raise ProtectionError(
            "stop_protection_log_retention_days must be one of "
            f"{', '.join(map(str, LOG_RETENTION_DAYS))}, got {found['log_retention_days']!r}"
        )
    if not isinstance(found["restart_together"], bool):
        raise ProtectionError(
            f"stop_protection_restart_together must be true or false, got {found['restart_together']!r}"
        )
    if found["runtime"] not in RUNTIMES:
        raise ProtectionError(
            f"stop_protection_lambda_runtime must be one of {', '.join(RUNTIMES)}, got {found['runtime']!r}"
        )
    return found


def validate_arn(arn, services, variable):
    """An ARN of one of ``services`` (e.g. ``("sqs", "sns")``), or None."""
    if arn in (None, ""):
        return None
    accepted = ", ".join(services)
    named = ANY_ARN.fullmatch(arn) if isinstance(arn, str) else None
    if not named:
        raise ProtectionError(f"{variable} {arn!r} is not an ARN; it must be the ARN of one of: {accepted}")
    if named.group("service") not in services:
        raise ProtectionError(
            f"{variable} {arn!r} is a {named.group('service')} ARN; it must be one of: {accepted}"
        )
    if not ARN.fullmatch(arn):
        raise ProtectionError(
            f"{variable} {arn!r} names no region or account; a {named.group('service')} ARN has both"
        )
    return arn


def validate_kms_key_arns(arns, variable="stop_protection_kms_key_arns"):
    """KMS key ARNs (``arn:<partition>:kms:<region>:<account>:key/<key id>``), as a list.

    IAM authorises kms:CreateGrant against the key's ARN: an alias or a bare key id in a
    policy's Resource would match nothing, so both are refused here.
    """
    if arns in (None, ""):
        return []
    if not isinstance(arns, (list, tuple)):
        raise ProtectionError(f"{variable} must be a list of KMS key ARNs, got {arns!r}")
    for position, arn in enumerate(arns):
        match = ARN.fullmatch(arn) if isinstance(arn, str) else None
        if not match or match.group("service") != "kms" or not match.group("region"):
            raise ProtectionError(
                f"{variable}[{position}] {arn!r} is not a KMS key ARN "
                "(arn:aws:kms:<region>:<account>:key/<key id>)"
            )
        if not match.group("resource").startswith("key/") or len(match.group("resource")) == len("key/"):
            raise ProtectionError(
                f"{variable}[{position}] {arn!r} names an alias or no key; "
                "IAM matches kms:CreateGrant against the key ARN (arn:...:key/<key id>)"
            )
    duplicates = sorted({arn for arn in arns if arns.count(arn) > 1})
    if duplicates:
        raise ProtectionError(f"{variable} lists {', '.join(duplicates)} more than once")
    return list(arns)


ACCOUNT_ID = re.compile(r"^\d{12}$")
# The inventory host that deploys with the play's own credentials; one more host per
# account of stop_protection_assume_roles.
OWN_ACCOUNT_HOST = "localhost"


def validate_account_id(account, source):
    account = str(account) if isinstance(account, int) else account
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise ProtectionError(f"{source} {account!r} is not an AWS account id (12 digits)")
    return account


def validate_assume_roles(roles, variable="stop_protection_assume_roles"):
    """``{account id: role ARN}``: the role to assume to deploy in each account."""
    if not roles:
        return {}
    if not isinstance(roles, dict):
        raise ProtectionError(f"{variable} must map account ids to role ARNs, got {roles!r}")
    checked = {}
    for account, arn in roles.items():
        account = validate_account_id(account, f"{variable} key")
        match = ARN.fullmatch(arn) if isinstance(arn, str) else None
        if not match or match.group("service") != "iam" or not match.group("resource").startswith("role/"):
            raise ProtectionError(f"{variable}[{account!r}] {arn!r} is not an IAM role ARN")
        if match.group("account") != account:
            raise ProtectionError(
                f"{variable}[{account!r}] {arn!r} is a role of account {match.group('account')}, not {account}"
            )
        checked[account] = arn
    return checked


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
    validate_kms_key_arns(kms_key_arns)
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
            "kms_key_arns": sorted(validate_kms_key_arns(kms_key_arns)),
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


RULE_DESCRIPTION = DESCRIPTION_PREFIX + ": {}"


def validate_automation_principals(principals, variable="stop_protection_automation_principals"):
    """ARN patterns of the principals that run protect, verify and unprotect (may be empty:
    then no tamper rules). EventBridge's wildcard refuses consecutive ``*``."""
    if principals is None:
        return []
    if isinstance(principals, str) or not isinstance(principals, (list, tuple)):
        raise ProtectionError(f"{variable} must be a list of ARN patterns, got {principals!r}")
    for principal in principals:
        if not isinstance(principal, str) or not principal.startswith("arn:") or "**" in principal:
            raise ProtectionError(
                f"{variable} entry {principal!r} is not an ARN pattern (arn:aws:iam::<account>:role/<name>, "
                "* for any characters, never **)"
            )
    return sorted(set(principals))


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


def alarm_settings(names, period, topic_arn):
    """The metric filter and alarm on decisions that need a person (``ATTENTION_PATTERN``),
    or None when turned off."""
    if not period:
        return None
    return {
        "name": names["attention"],
        "log_group": names["log_group"],
        "pattern": ATTENTION_PATTERN,
        "namespace": METRIC_NAMESPACE,
        "period": period,
        "actions": [topic_arn] if topic_arn else [],
    }


# The sweep's closing line (stop_protection_handler.handle_sweep).
HEARTBEAT_PATTERN = '{ $.action = "swept" }'
# The heartbeat alarm looks at one sweep interval, missing data breaching. CloudWatch
# evaluates an alarm over a range wider than its evaluation periods and fills in missing
# points only when that range holds fewer real ones than the periods ("Configuring how
# CloudWatch alarms treat missing data", CloudWatch user guide): the alarm fires once the
# whole range, about three sweep intervals, passed without a heartbeat; one late or lost
# scheduled sweep never fires it.
HEARTBEAT_EVALUATION_PERIODS = 1


def heartbeat_settings(names, sweep_minutes, alarm_period, topic_arn):
    """The dead-man's switch: a metric filter counts the sweep's ``swept`` lines, an alarm
    fires when none arrived for about three sweep intervals (``HEARTBEAT_EVALUATION_PERIODS``),
    missing data counting as breaching. None without a sweep or with alarms turned off."""
    if not sweep_minutes or not alarm_period:
        return None
    return {
        "name": names["heartbeat"],
        "log_group": names["log_group"],
        "pattern": HEARTBEAT_PATTERN,
        "namespace": METRIC_NAMESPACE,
        "period": sweep_minutes * 60,
        "evaluation_periods": HEARTBEAT_EVALUATION_PERIODS,
        "actions": [topic_arn] if topic_arn else [],
    }


# --- The function's environment ----------------------------------------------------------------


def restarts_together(plan):
    """Whether the function restarts a burst of stops together (``restart_together``, on by
    default): then it reserves a concurrency of 1 and reads every stopped protected instance."""
    return ((plan.get("settings") or {}).get("function") or {}).get("restart_together", True)


def lambda_environment(plan, tag_key, tag_value, bypass_tag_key, notification_topic_arn, attribution):
    """The function's configuration: environment variables only."""
    env = {"PROTECTION_MODE": plan["mode"], "BYPASS_TAG_KEY": bypass_tag_key}
    if plan["mode"] == MODE_TAG:
        env.update(PROTECTION_TAG_KEY=tag_key, PROTECTION_TAG_VALUE=tag_value)
    if notification_topic_arn:
        env["NOTIFICATION_TOPIC_ARN"] = notification_topic_arn
    budget = plan.get("restart_policy") or DEFAULT_RESTART_POLICY
    if attribution or budget["sweep_minutes"] or (plan["mode"] != MODE_TAG and restarts_together(plan)):
        # Attribution, the sweep and a batch of restarts read the protected ids from the
        # rules; the sweep also repairs them.
        env["RULE_NAME_PREFIX"] = plan["names"]["rule_prefix"]
    if restarts_together(plan):
        env["RESTART_TOGETHER"] = "true"
    env.update(
        RESTART_LIMIT=str(budget["restart_limit"]),
        RESTART_WINDOW_SECONDS=str(budget["restart_window_seconds"]),
        RESTART_HISTORY_TAG_KEY=budget["history_tag_key"],
        SUSPENDED_TAG_KEY=budget["suspended_tag_key"],
        SKIP_AUTO_SCALING=str(budget["skip_auto_scaling"]).lower(),
        SKIP_SPOT_INTERRUPTIONS=str(budget["skip_spot_interruptions"]).lower(),
        RESTART_HIBERNATED=str(budget["restart_hibernated"]).lower(),
        MAX_RETRY_ATTEMPTS=str(budget["retry_attempts"]),
        SWEEP_MINUTES=str(budget["sweep_minutes"]),
    )
    return env


def plan_environment(plan):
    """The function's environment from the plan's own settings (``lambda_environment``)."""
    settings = plan["settings"]
    return lambda_environment(
        plan,
        settings["tag_key"],
        settings["tag_value"],
        settings["bypass_tag_key"],
        settings["notification_topic_arn"],
        settings["attribution"],
    )
