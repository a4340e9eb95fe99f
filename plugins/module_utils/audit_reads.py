# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the audit of stop_protection_verify reads of a deployment, once for all its
instances: the function, its role's permissions, its rules, its alarms and the instances'
encrypted volumes. ``audit`` judges each instance against what these return.

Clients are wrapped with AWSRetry by the module (calls pass ``aws_retry=True``); tests pass
stand-ins with the same methods.
"""

import json
from datetime import UTC, datetime

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.guardrails.ec2.plugins.module_utils.iam_eval import (
    RolePermissions,
    invoke_sources,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    function_arn,
    instance_arn,
    resource_names,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    STATE_CHANGE_DETAIL_TYPE,
    listed_instance_ids,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import describe_filtered, missing_targets
from ansible_collections.guardrails.ec2.plugins.module_utils.resource_reads import (
    described_alarms,
    read_function,
    read_function_policy,
    read_invoke_config,
    read_reserved_concurrency,
    role_policy_documents,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import UNRESERVED
from ansible_collections.guardrails.ec2.plugins.module_utils.trails import WATCHING_KINDS


def sample_event(instance_id, region, account, state="stopped"):
    """A state-change event as EventBridge would deliver it, for TestEventPattern."""
    return json.dumps(
        {
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": STATE_CHANGE_DETAIL_TYPE,
            "source": "aws.ec2",
            "account": account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [instance_arn("aws", region, account, instance_id)],
            "detail": {"instance-id": instance_id, "state": state},
        }
    )


def test_pattern(events, pattern, event):
    if not pattern:
        return False
    return bool(events.test_event_pattern(aws_retry=True, EventPattern=pattern, Event=event).get("Result"))


def read_deployment(clients, name, region, account, partition):
    """Everything the audit needs about the deployment, read once for all instances."""
    lam, events = clients["lambda"], clients["events"]
    deployment = {
        "function": None,
        "mode": None,
        "env": {},
        "policy_sources": set(),
        "invoke_config": None,
        "rules": [],
        "function_arn": function_arn(partition, region, account, name),
        "instance_arn_prefix": instance_arn(partition, region, account, ""),
        "start_permission": None,
        "reserved_concurrency": None,
        "warnings": [],
    }
    # The same reader as protect's (GetFunction).
    config = read_function(lam, name)
    if config:
        deployment["function"] = config
        deployment["env"] = (config.get("Environment") or {}).get("Variables") or {}
        deployment["mode"] = deployment["env"].get("PROTECTION_MODE", "instance_ids")
        # Every statement, through protect's reader of the function's policy.
        policy = read_function_policy(lam, name, document=True)["document"]
        deployment["policy_sources"] = invoke_sources(policy)
        if "iam" in clients and config.get("Role"):
            try:
                documents = role_policy_documents(clients["iam"], config["Role"])
            except is_boto3_error_code(("AccessDenied", "AccessDeniedException")):
                deployment["warnings"].append(
                    f"Could not read the policies of the function's role {config['Role']} "
                    "(iam:ListAttachedRolePolicies, iam:GetPolicy, iam:GetPolicyVersion, "
                    "iam:ListRolePolicies, iam:GetRolePolicy); whether it may start the instances was not checked."
                )
            except is_boto3_error_code("NoSuchEntity"):  # the role is gone: it may start nothing
                deployment["start_permission"] = RolePermissions(config["Role"], [])
            else:
                deployment["start_permission"] = RolePermissions(config["Role"], documents)
        try:
            reserved = read_reserved_concurrency(lam, name)
        except is_boto3_error_code(("AccessDenied", "AccessDeniedException")):
            deployment["warnings"].append(
                "Could not read the function's reserved concurrency (lambda:GetFunctionConcurrency); not checked."
            )
        else:
            deployment["reserved_concurrency"] = None if reserved == UNRESERVED else reserved
            deployment["reserved_concurrency_read"] = True
        # The same reader as protect's (snake_case, lambda_event_invoke_config's shape).
        deployment["invoke_config"] = read_invoke_config(lam, name, concurrency=False)
        destination = (deployment["invoke_config"] or {}).get("on_failure_destination_arn")
        targets = [arn for arn in (deployment["env"].get("NOTIFICATION_TOPIC_ARN"), destination) if arn]
        if targets and "sns" in clients and "sqs" in clients:
            try:
                deployment["missing_targets"] = missing_targets(clients.__getitem__, targets)
            except is_boto3_error_code(("AccessDenied", "AccessDeniedException", "AuthorizationError")):
                deployment["warnings"].append(
                    "Could not check that the notification topic and failure destination exist "
                    "(sns:GetTopicAttributes, sqs:GetQueueUrl); not checked."
                )
    listed = list_deployment_rules(events, name)
    # Rules that see only what a CloudTrail trail records.
    deployment["watching_rules"] = [rule["name"] for rule in listed if rule["kind"] in WATCHING_KINDS]
    rules = [rule for rule in listed if rule["kind"] == "state_change"]
    sweep = next((rule for rule in listed if rule["kind"] == "sweep"), None)
    if sweep is not None:
        sweep["targets_function"] = _targets(sweep, deployment["function_arn"])
    deployment["sweep_rule"] = sweep
    for rule in rules:
        listed = listed_instance_ids(rule.get("event_pattern"))
        rule["listed_ids"] = set(listed) if listed is not None else None
        probe_id = sorted(rule["listed_ids"])[0] if rule["listed_ids"] else "i-0123456789abcdef0"
        rule["matches_stopped"] = test_pattern(
            events, rule["event_pattern"], sample_event(probe_id, region, account)
        )
        # A pattern that also matched "running" would restart nothing useful and fire on every start.
        rule["matches_running"] = test_pattern(
            events, rule["event_pattern"], sample_event(probe_id, region, account, state="running")
        )
        rule["targets_function"] = _targets(rule, deployment["function_arn"])
    deployment["rules"] = rules
    return deployment


def _targets(rule, arn):
    return any(target["arn"] in (arn, arn + ":$LATEST") for target in rule.get("targets", []))


def volume_keys(ec2, kms, instances, warnings):
    """``{instance_id: [{volume_id, key_arn, key_manager, key_state}]}`` for the instances'
    encrypted EBS volumes: a volume whose key is customer-managed needs the function's role
    to be allowed kms:CreateGrant on it, and a disabled key keeps the instance from starting.
    Batched: one DescribeVolumes per 200 volumes, one DescribeKey per distinct key."""
    owner = {
        mapping["Ebs"]["VolumeId"]: instance_id
        for instance_id, instance in instances.items()
        for mapping in instance.get("BlockDeviceMappings", []) or []
        if (mapping.get("Ebs") or {}).get("VolumeId")
    }
    volume_ids = sorted(owner)
    try:
        encrypted = {
            volume["VolumeId"]: volume["KmsKeyId"]
            for reply in describe_filtered(ec2, "describe_volumes", "volume-id", volume_ids)
            for volume in reply.get("Volumes", [])
            if volume.get("Encrypted") and volume.get("KmsKeyId")
        }
    except is_boto3_error_code(("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")):
        warnings.append(
            "Could not read the instances' volumes (ec2:DescribeVolumes); their KMS keys were not checked."
        )
        return {}
    keys = {}
    for key_id in sorted(set(encrypted.values())):
        try:
            keys[key_id] = kms.describe_key(aws_retry=True, KeyId=key_id)["KeyMetadata"]
        except is_boto3_error_code(("AccessDenied", "AccessDeniedException")):
            warnings.append(
                f"Could not describe KMS key {key_id} (kms:DescribeKey); volumes encrypted with it were not checked."
            )
        except is_boto3_error_code("NotFoundException"):
            keys[key_id] = {"Arn": key_id, "KeyManager": "CUSTOMER", "KeyState": "deleted"}
    found = {}
    for volume_id, key_id in sorted(encrypted.items()):
        if key_id in keys:
            metadata = keys[key_id]
            found.setdefault(owner[volume_id], []).append(
                {
                    "volume_id": volume_id,
                    "key_arn": metadata.get("Arn", key_id),
                    "key_manager": metadata.get("KeyManager"),
                    "key_state": metadata.get("KeyState"),
                }
            )
    return found


# What an alarm in ALARM means, for the audit's warning.
ALARM_MEANING = {
    "attention": "a decision needs a person (failed or suspended restart, failed notice, repaired or unrepairable rule); see the function's log",
    "heartbeat": (
        "no sweep has completed for about three sweep intervals: the protection may be disarmed (sweep rule "
        "disabled or deleted, function deleted or throttled, role or log group broken)"
    ),
}


def alarm_states(cloudwatch, name, warnings):
    """The state of the deployment's alarms (``attention``, ``heartbeat``), read in one call:
    ``{kind: {"name", "state", "reason", "since"}}``, None for an alarm that does not exist.
    Each alarm in ALARM adds a warning that says what it means."""
    names = resource_names(name)
    wanted = {kind: names[kind] for kind in ALARM_MEANING}
    described = described_alarms(cloudwatch, list(wanted.values()))
    states = {}
    for kind, alarm_name in wanted.items():
        found = described.get(alarm_name)
        states[kind] = (
            {
                "name": alarm_name,
                "state": found.get("StateValue"),
                "reason": found.get("StateReason"),
                "since": str(found.get("StateUpdatedTimestamp") or "") or None,
            }
            if found
            else None
        )
        if found and found.get("StateValue") == "ALARM":
            warnings.append(f"Alarm {alarm_name} is in ALARM: {ALARM_MEANING[kind]}.")
    return states
