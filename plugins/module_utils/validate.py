# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validation of the role's variables: every check that fails before any change, each with
a message that names the bad value, and the defaults the variables start from (the
accounts of the inventory and the roles to assume are checked where they are read,
``inventory.py``). Pure: no AWS calls."""

import re

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    ATTRIBUTION_SUFFIX,
    MAX_NAME_CHARS,
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
)

MODE_INSTANCE_IDS = "instance_ids"
MODE_TAG = "tag"

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
