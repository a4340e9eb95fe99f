# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every name and ARN of a deployment, and what marks a resource as the deployment's.

The one owner of names: the role's filters, the modules, the molecule probes and tools
(``tools/``) use these functions instead of spelling a name themselves. Standard library
only, so that the probes and tools can load it from the checkout.
"""

import re

# Rules are named "<name>.<n>", "<name>.attribution", "<name>.sweep": a base name holds no
# dot, so the one invoke permission per region, a SourceArn pattern "rule/<name>.*", admits
# this deployment's rules and no other deployment's ("<name>-2.1" does not match "<name>.*").
RULE_SEPARATOR = "."
# The rules "<name>.tamper", ... that report calls disarming the deployment
# (patterns.tamper_patterns builds one pattern per kind).
TAMPER_KINDS = ("tamper", "tamper-log", "tamper-ec2", "tamper-iam")
# The target id of the notification topic on the tamper rules (their second target).
TOPIC_TARGET_ID = "notify"


# The longest suffix added to the base name: the attribution rule "<name>.attribution".
ATTRIBUTION_SUFFIX = ".attribution"


SWEEP_SUFFIX = ".sweep"


# Rules of releases before 1.1.0 used "-" ("<name>-<n>", "<name>-sweep", ...) and one invoke
# statement each, named like the rule; protect replaces them (see rules.py).
LEGACY_SEPARATOR = "-"


# The statement of the function's resource policy that lets the region's rules invoke it.
INVOKE_STATEMENT_ID = "guardrails-ec2-rules"


# Lambda function, rule and IAM role names allow at most 64 characters.
MAX_RESOURCE_NAME_CHARS = 64


MAX_NAME_CHARS = MAX_RESOURCE_NAME_CHARS - len(ATTRIBUTION_SUFFIX)


# Every resource the role creates carries this tag; protect and unprotect change only
# resources that carry it (see ownership.py).
OWNER_TAG_KEY = "ManagedBy"


OWNER_TAG_VALUE = "guardrails.ec2"


METRIC_NAMESPACE = "guardrails.ec2"


def resource_names(name):
    """Every resource name derived from the one base name that is the same in each region.

    IAM is global, but each region has its own role and policies (``regional_names``):
    a run over some regions never changes what another region's function may do.
    """
    return {
        "function": name,
        "log_group": f"/aws/lambda/{name}",
        "rule_prefix": f"{name}{RULE_SEPARATOR}",
        "attribution_rule": f"{name}{ATTRIBUTION_SUFFIX}",
        "sweep_rule": f"{name}{SWEEP_SUFFIX}",
        "invoke_statement": INVOKE_STATEMENT_ID,
        # Metric filter, metric and alarm for decisions that need a person.
        "attention": f"{name}-attention",
        # Metric filter, metric and alarm on the sweep's heartbeat (the dead-man's switch).
        "heartbeat": f"{name}-heartbeat",
        # Instance tag that remembers where protect turned AWS's stop protection on.
        "api_stop_marker": f"guardrails.ec2/{name}/disable-api-stop",
    }


def regional_names(name, region):
    """The IAM role and the first managed policy of one region: ``<name>-<region>``.

    Region names contain no dot and end in a digit, so neither collides with another
    deployment's role or policies (``policy_name`` adds ``.<n>``).
    """
    return {"role": f"{name}-{region}", "policy": f"{name}-{region}"}


def rule_name(name, index):
    """Rule ``index`` (1-based) of a deployment: ``<name>.<index>``."""
    return f"{name}{RULE_SEPARATOR}{index}"


def policy_name(name, index):
    """Managed policy ``index`` (1-based) of a deployment: ``<name>``, then ``<name>.2``, ...

    The dot cannot occur in a base name, so these never collide with the policy of another
    deployment (``<name>-2`` could be one's base name).
    """
    return name if index == 1 else f"{name}.{index}"


def policy_index(name, candidate):
    """The number of ``candidate`` when it is a managed policy of deployment ``name``, else None."""
    if candidate == name:
        return 1
    match = re.fullmatch(re.escape(name) + r"\.([2-9]|[1-9][0-9]+)", candidate)
    return int(match.group(1)) if match else None


def rule_index(name, candidate, separator=RULE_SEPARATOR):
    """The shard number of ``candidate`` when it is a shard rule of deployment ``name``
    (named with ``separator``), else None."""
    match = re.fullmatch(re.escape(name + separator) + r"([1-9][0-9]*)", candidate)
    return int(match.group(1)) if match else None


def rule_kind(name, candidate):
    """``(kind, index, legacy)`` of a rule of deployment ``name``, or None when it is not one.

    ``kind`` is ``state_change`` (``index`` its shard number), ``attribution``, ``sweep``
    or one of ``TAMPER_KINDS``;
    ``legacy`` marks the names of releases before 1.1.0 (``<name>-1``, ``<name>-sweep``, ...).
    A deployment called ``<name>-2`` has rules ``<name>-2.1`` ... and is never mistaken for
    ours: a base name holds no dot, and its legacy rules ``<name>-2-1`` match nothing here.
    """
    for separator, legacy in ((RULE_SEPARATOR, False), (LEGACY_SEPARATOR, True)):
        index = rule_index(name, candidate, separator)
        if index is not None:
            return "state_change", index, legacy
        for kind in ("attribution", "sweep"):
            if candidate == f"{name}{separator}{kind}":
                return kind, None, legacy
        if not legacy and candidate in {f"{name}{separator}{kind}" for kind in TAMPER_KINDS}:
            return candidate[len(name) + 1 :], None, legacy
    return None


def rule_source_pattern(partition, region, account, name):
    """The ``AWS:SourceArn`` pattern of the region's one invoke permission: every rule of
    deployment ``name`` and no rule of another deployment."""
    return rule_arn(partition, region, account, f"{name}{RULE_SEPARATOR}*")


def function_arn(partition, region, account, name):
    """The unqualified function ARN: a rule targeting a version would never see code updates."""
    return f"arn:{partition}:lambda:{region}:{account}:function:{name}"


def rule_arn(partition, region, account, rule):
    return f"arn:{partition}:events:{region}:{account}:rule/{rule}"


def instance_arn(partition, region, account, instance_id):
    """An instance's ARN (``*`` for every instance of the region and account)."""
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


def log_group_arn(partition, region, account, group):
    """A log group's ARN; ``:*`` added covers its streams."""
    return f"arn:{partition}:logs:{region}:{account}:log-group:{group}"


def iam_arn(partition, account, kind, name):
    """The ARN of an IAM ``role`` or ``policy`` (``kind``) named ``name``."""
    return f"arn:{partition}:iam::{account}:{kind}/{name}"


# Rules and the alarm (which amazon.aws cannot tag) are the deployment's when their
# description starts with this (see ownership.py).
DESCRIPTION_PREFIX = "guardrails.ec2 stop protection"

# Regions whose partition is not "aws", by prefix (longest first).
PARTITION_PREFIXES = (
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("eu-isoe-", "aws-iso-e"),
    ("us-iso-", "aws-iso"),
    ("us-gov-", "aws-us-gov"),
    ("cn-", "aws-cn"),
    ("eusc-", "aws-eusc"),
)


def owner_tagged(tags):
    """Whether ``tags`` (a dict) mark a resource as made by this collection."""
    return (tags or {}).get(OWNER_TAG_KEY) == OWNER_TAG_VALUE


def partition_of(region):
    """The partition of ``region`` (``aws``, ``aws-cn``, ``aws-us-gov``, ...): what ARNs of
    the region start with, known before any AWS call."""
    for prefix, partition in PARTITION_PREFIXES:
        if region.startswith(prefix):
            return partition
    return "aws"
