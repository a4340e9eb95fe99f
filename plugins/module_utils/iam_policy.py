# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The least-privilege managed policies of a region's restart function."""

import json
import re

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    function_arn,
    instance_arn,
    log_group_arn,
    partition_of,
    policy_name,
    rule_source_pattern,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import pack_json_array
from ansible_collections.guardrails.ec2.plugins.module_utils.plan import restarts_together
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    ARN,
    DEFAULT_RESTART_POLICY,
    MODE_INSTANCE_IDS,
    MODE_TAG,
    ProtectionError,
)

# IAM managed policies may hold this many characters, white space not counted.
MAX_MANAGED_POLICY_CHARS = 6144


# IAM attaches at most this many managed policies to one role (default quota).
MAX_POLICIES_PER_ROLE = 10


def policy_length(document):
    """Characters IAM counts against the managed-policy limit (white space excluded)."""
    return len(re.sub(r"\s+", "", json.dumps(document)))


def build_policies(plan, account, partition="aws", region=None):
    """The least-privilege managed policies of one region (``region``, or the plan's only one)
    of a plan from ``build_plan``: they go to that region's own role. Every setting comes from
    the plan (``settings``: the tag, the topic, the failure destination, attribution, the KMS
    keys; ``restart_policy``).

    Returns ``(policies, scope)``: ``policies`` is a list of ``{"name", "document"}``, the
    first named like the region's role and holding every statement, the others
    (``<name>-<region>.2`` ...) only more instance ARNs for ``ec2:StartInstances`` when one
    policy cannot hold them all. ``scope`` is ``instances`` (StartInstances on each protected instance ARN),
    ``region`` (on every instance ARN of the protected regions, when the ARNs would not
    fit in the policies a role can hold) or ``tag`` (on instances carrying the tag).
    StartInstances is never allowed on ``*``.
    """
    settings = plan.get("settings") or {}
    tag_key, tag_value = settings.get("tag_key"), settings.get("tag_value")
    notification_topic_arn = settings.get("notification_topic_arn")
    failure_destination_arn = settings.get("failure_destination_arn")
    attribution = settings.get("attribution", False)
    kms_key_arns = settings.get("kms_key_arns") or ()
    entries = [entry for entry in plan["regions"] if region is None or entry["region"] == region]
    if len(entries) != 1:
        raise ProtectionError(
            f"no region {region!r} in the plan" if region else "name the region: the plan has several"
        )
    plan = dict(plan, regions=entries)
    name = plan["names"]["function"]
    base = entries[0]["policy"]
    regions = [entries[0]["region"]]
    statements = []

    def start_statement(resources):
        # CreateTags records the restart budget on the instance itself; the Deny below
        # limits it to the budget's two tag keys.
        return {
            "Sid": "StartProtectedInstances",
            "Effect": "Allow",
            "Action": ["ec2:StartInstances", "ec2:CreateTags"],
            "Resource": resources,
        }

    def document(items):
        return {"Version": "2012-10-17", "Statement": items}

    start = start_statement([])
    if plan["mode"] == MODE_TAG:
        scope = "tag"
        start["Resource"] = [instance_arn(partition, region, account, "*") for region in regions]
        start["Condition"] = {"StringEquals": {f"aws:ResourceTag/{tag_key}": tag_value}}
    else:
        scope = "instances"
        start["Resource"] = [
            instance_arn(partition, entry["region"], account, instance_id)
            for entry in plan["regions"]
            for instance_id in entry["instance_ids"]
        ]
    statements.append(start)
    budget = plan.get("restart_policy") or DEFAULT_RESTART_POLICY
    statements.append(
        {
            "Sid": "TagOnlyTheRestartBudget",
            "Effect": "Deny",
            "Action": "ec2:CreateTags",
            "Resource": "*",
            "Condition": {
                "ForAnyValue:StringNotEquals": {
                    "aws:TagKeys": [budget["history_tag_key"], budget["suspended_tag_key"]]
                }
            },
        }
    )
    statements.append(
        {"Sid": "ReadInstanceState", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}
    )
    statements.append(
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [
                log_group_arn(partition, region, account, plan["names"]["log_group"]) + ":*"
                for region in regions
            ],
        }
    )
    # Lambda creates the function's log group with the function's role when it is missing:
    # a deleted group comes back at the next invocation, so decision lines are not lost
    # (retention and the metric filter come back with the next protect run).
    statements.append(
        {
            "Sid": "RecreateOwnLogGroup",
            "Effect": "Allow",
            "Action": "logs:CreateLogGroup",
            "Resource": [
                log_group_arn(partition, region, account, plan["names"]["log_group"]) for region in regions
            ],
        }
    )
    # With restart_together the function starts a burst of stops together only while its
    # reserved concurrency is 1 (one container at a time); it reads that setting of its own.
    if restarts_together(plan):
        statements.append(
            {
                "Sid": "ReadOwnConcurrency",
                "Effect": "Allow",
                "Action": "lambda:GetFunctionConcurrency",
                "Resource": [function_arn(partition, region, account, name) for region in regions],
            }
        )
    if notification_topic_arn:
        statements.append(
            {
                "Sid": "NotifyTopic",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": notification_topic_arn,
            }
        )
    if failure_destination_arn:
        service = ARN.fullmatch(failure_destination_arn).group("service")
        action = "sqs:SendMessage" if service == "sqs" else "sns:Publish"
        statements.append(
            {
                "Sid": "SendFailedEvents",
                "Effect": "Allow",
                "Action": action,
                "Resource": failure_destination_arn,
            }
        )
    if kms_key_arns:
        # Starting an instance whose EBS volumes use a customer-managed key makes EC2 create
        # a grant on that key on the caller's behalf; allow only grants EC2 itself asks for.
        statements.append(
            {
                "Sid": "StartWithEncryptedVolumes",
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": sorted(kms_key_arns),
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            }
        )
    messaging = sorted(
        {
            ARN.fullmatch(arn).group("service")
            for arn in (notification_topic_arn, failure_destination_arn)
            if arn
        }
    )
    if kms_key_arns and messaging:
        # A topic or queue encrypted with a customer-managed key takes a message only from a
        # publisher that may use the key (Lambda sends to the failure destination with the
        # function's role): only through SNS or SQS of this region, never directly.
        statements.append(
            {
                "Sid": "SendToEncryptedTopicsAndQueues",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": sorted(kms_key_arns),
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": [
                            f"{service}.{region}.amazonaws.com" for service in messaging for region in regions
                        ]
                    }
                },
            }
        )
    own_rules = [rule_source_pattern(partition, region, account, name) for region in regions]
    if budget["sweep_minutes"] or (
        plan["mode"] == MODE_INSTANCE_IDS and (attribution or restarts_together(plan))
    ):
        # Attribution, the sweep and a batch of restarts read the instance ids from the
        # deployment's own rules, and the sweep checks that they are enabled and target the
        # function.
        statements.append(
            {"Sid": "ReadOwnRules", "Effect": "Allow", "Action": "events:DescribeRule", "Resource": own_rules}
        )
    if budget["sweep_minutes"]:
        # Self-repair: each sweep enables its own rules again and puts its target back when
        # someone disarmed them; on the deployment's rules only.
        statements.append(
            {
                "Sid": "RepairOwnRules",
                "Effect": "Allow",
                "Action": ["events:EnableRule", "events:ListTargetsByRule", "events:PutTargets"],
                "Resource": own_rules,
            }
        )
    first = document(statements)
    if scope != "instances" or policy_length(first) <= MAX_MANAGED_POLICY_CHARS:
        return [{"name": policy_name(base, 1), "document": first}], scope

    # Too many instance ARNs for one policy: the first policy takes what fits beside the
    # other statements, further policies hold only StartInstances on the rest.
    arns = start["Resource"]
    start["Resource"] = []
    room_first = MAX_MANAGED_POLICY_CHARS - policy_length(first)
    empty_extra = policy_length(document([start_statement([])]))
    head = pack_json_array(arns, 0, room_first)[0] if arns and len(json.dumps(arns[0])) <= room_first else []
    rest = pack_json_array(arns[len(head) :], empty_extra, MAX_MANAGED_POLICY_CHARS)
    if 1 + len(rest) <= MAX_POLICIES_PER_ROLE:
        start["Resource"] = head
        if not head:
            statements.remove(start)
        policies = [{"name": policy_name(base, 1), "document": first}]
        policies.extend(
            {"name": policy_name(base, index), "document": document([start_statement(group)])}
            for index, group in enumerate(rest, start=2)
        )
        return policies, "instances"

    # More ARNs than a role's policies can hold: allow the protected regions' instances of
    # this account instead (still never "*").
    start["Resource"] = [instance_arn(partition, region, account, "*") for region in regions]
    return [{"name": policy_name(base, 1), "document": first}], "region"


# Every account id has 12 digits: policies rendered for this one split exactly where those
# of the real account do.
ANY_ACCOUNT = "000000000000"


def policy_names(plan, region=None):
    """``{region: [policy names]}``: the managed policies each region will have, known before
    the account is (the read checks that none of those names is someone else's); with
    ``region``, of that region only (its policies alone are built)."""
    return {
        entry["region"]: [
            policy["name"]
            for policy in build_policies(plan, ANY_ACCOUNT, partition_of(entry["region"]), entry["region"])[0]
        ]
        for entry in plan["regions"]
        if region is None or entry["region"] == region
    }
