# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The guard policy of a deployment: Deny statements for every call that disarms it, for
every principal but the deployment's automation (and, for rule repair and the restart
budget's tags, the function's own role).

Modelled on AWS Control Tower's mandatory controls, which deny changes to its own rules,
functions and roles to every principal but its execution role (``ArnNotLike
aws:PrincipalARN``). The documents are valid as service control policies (each within
5,120 characters, split when they are not) and as the Deny statements of a permissions
boundary. Standard library only.
"""

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    resource_names,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    ALARM_ACTIONS,
    FUNCTION_ACTIONS,
    LOG_ACTIONS,
    POLICY_ACTIONS,
    ROLE_ACTIONS,
    RULE_ACTIONS,
    TAG_ACTIONS,
    TOPIC_ACTIONS,
    compact_json,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError

# AWS Organizations: the maximum size of a service control policy.
SCP_LIMIT = 5120


def _unless(principals):
    return {"ArnNotLike": {"aws:PrincipalARN": principals}}


def guard_statements(name, automation_principals, tag_keys, budget_tag_keys, topic_arn=None, partition="aws"):
    """The Deny statements of deployment ``name`` (every region: ``*``).

    ``automation_principals``: ARN patterns of the principals that run protect, verify and
    unprotect; ``tag_keys``: the protection and bypass tag keys (only automation may set or
    remove them); ``budget_tag_keys``: the restart budget's two tags (automation and the
    function's role). Setting an instance's ``DisableApiStop`` off is denied on instances
    carrying a protection tag key in tag mode; in instance-id mode see ``instance_arns``.
    """
    automation = validate_principals(automation_principals)
    names = resource_names(name)
    function_role = f"arn:{partition}:iam::*:role/{name}-*"
    everyone_but_automation = _unless(automation)
    arn = f"arn:{partition}"
    statements = [
        {
            "Sid": "GuardTheRules",
            "Effect": "Deny",
            "Action": RULE_ACTIONS,
            "Resource": f"{arn}:events:*:*:rule/{names['rule_prefix']}*",
            "Condition": everyone_but_automation,
        },
        {
            # The sweep puts a removed target back with the function's role.
            "Sid": "GuardTheRuleTargets",
            "Effect": "Deny",
            "Action": "events:PutTargets",
            "Resource": f"{arn}:events:*:*:rule/{names['rule_prefix']}*",
            "Condition": _unless([*automation, function_role]),
        },
        {
            "Sid": "GuardTheFunction",
            "Effect": "Deny",
            "Action": FUNCTION_ACTIONS,
            "Resource": [f"{arn}:lambda:*:*:function:{name}", f"{arn}:lambda:*:*:function:{name}:*"],
            "Condition": everyone_but_automation,
        },
        {
            "Sid": "GuardTheRolesAndPolicies",
            "Effect": "Deny",
            "Action": ROLE_ACTIONS + POLICY_ACTIONS,
            "Resource": [f"{arn}:iam::*:role/{name}-*", f"{arn}:iam::*:policy/{name}-*"],
            "Condition": everyone_but_automation,
        },
        {
            "Sid": "GuardTheLogsAndAlarms",
            "Effect": "Deny",
            "Action": LOG_ACTIONS + ALARM_ACTIONS,
            "Resource": [
                f"{arn}:logs:*:*:log-group:{names['log_group']}",
                f"{arn}:logs:*:*:log-group:{names['log_group']}:*",
                f"{arn}:cloudwatch:*:*:alarm:{name}-*",
            ],
            "Condition": everyone_but_automation,
        },
        {
            "Sid": "GuardTheProtectionTags",
            "Effect": "Deny",
            "Action": TAG_ACTIONS,
            "Resource": f"{arn}:ec2:*:*:instance/*",
            "Condition": {
                "ForAnyValue:StringEquals": {"aws:TagKeys": sorted(tag_keys)},
                **everyone_but_automation,
            },
        },
        {
            "Sid": "GuardTheBudgetTags",
            "Effect": "Deny",
            "Action": TAG_ACTIONS,
            "Resource": f"{arn}:ec2:*:*:instance/*",
            "Condition": {
                "ForAnyValue:StringEquals": {"aws:TagKeys": sorted(budget_tag_keys)},
                **_unless([*automation, function_role]),
            },
        },
    ]
    if topic_arn:
        statements.append(
            {
                "Sid": "GuardTheTopic",
                "Effect": "Deny",
                "Action": TOPIC_ACTIONS,
                "Resource": [topic_arn, f"{topic_arn}:*"],
                "Condition": everyone_but_automation,
            }
        )
    return statements


def stop_protection_off_statements(automation_principals, instance_arns=(), tag_key=None, tag_value=None):
    """Deny turning AWS's stop protection off (``ec2:ModifyInstanceAttribute``) on the
    protected instances: by their ARNs, or by the protection tag in tag mode."""
    condition = _unless(validate_principals(automation_principals))
    if tag_key:
        return [
            {
                "Sid": "GuardStopProtection",
                "Effect": "Deny",
                "Action": "ec2:ModifyInstanceAttribute",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{tag_key}": tag_value}, **condition},
            }
        ]
    if not instance_arns:
        return []
    return [
        {
            "Sid": "GuardStopProtection",
            "Effect": "Deny",
            "Action": "ec2:ModifyInstanceAttribute",
            "Resource": sorted(instance_arns),
            "Condition": condition,
        }
    ]


def validate_principals(principals, variable="stop_protection_automation_principals"):
    if isinstance(principals, str) or not isinstance(principals, (list, tuple)) or not principals:
        raise ProtectionError(
            f"{variable} must list the ARN patterns of the principals that run protect, verify and "
            f"unprotect (the guard policy denies everyone else), got {principals!r}"
        )
    for principal in principals:
        if not isinstance(principal, str) or not principal.startswith("arn:"):
            raise ProtectionError(f"{variable} entry {principal!r} is not an ARN pattern (arn:aws:iam::...)")
    return list(principals)


def size(document):
    """Characters of a document as written (compact JSON), against the SCP limit."""
    return len(compact_json(document))


def documents(statements, limit=SCP_LIMIT):
    """The statements packed into as few documents as fit ``limit`` each, in order. A
    statement too large alone is split by its resources (instance ARNs); one that still
    does not fit is an error."""
    pieces = []
    for statement in statements:
        pieces.extend(_split(statement, limit))
    found, current = [], []
    for statement in pieces:
        if current and size(_document([*current, statement])) > limit:
            found.append(_document(current))
            current = []
        current.append(statement)
    if current:
        found.append(_document(current))
    return found


def _document(statements):
    return {"Version": "2012-10-17", "Statement": statements}


def _split(statement, limit):
    if size(_document([statement])) <= limit:
        return [statement]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    if len(resources) < 2:
        raise ProtectionError(f"guard statement {statement['Sid']} alone exceeds {limit} characters")
    half = len(resources) // 2
    first, second = dict(statement, Resource=resources[:half]), dict(statement, Resource=resources[half:])
    first["Sid"], second["Sid"] = f"{statement['Sid']}A", f"{statement['Sid']}B"
    return _split(first, limit) + _split(second, limit)
