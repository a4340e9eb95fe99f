# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The audit of stop_protection_verify: whether each instance is protected, and why not.

Clients are wrapped with AWSRetry by the module (calls pass ``aws_retry=True``); tests pass
stand-ins with the same methods.
"""

import json
from datetime import UTC, datetime

try:
    from botocore.exceptions import ClientError
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.guardrails.ec2.plugins.module_utils.iam_eval import (
    RolePermissions,
    invocation_admitted,
    invoke_sources,
    role_policy_documents,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    TAMPER_KINDS,
    function_arn,
    instance_arn,
    resource_names,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import (
    STATE_CHANGE_DETAIL_TYPE,
    listed_instance_ids,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import (
    describe_filtered,
    describe_instances,
    instance_attributes,
    missing_targets,
    tagged_instance_ids,
    tags_of,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.resource_reads import (
    UNRESERVED,
    described_alarms,
    read_invoke_config,
    read_reserved_concurrency,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import MODE_TAG, ProtectionError


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


WATCHING_KINDS = ("attribution", *TAMPER_KINDS)


def records_management_writes(selectors):
    """Whether a trail's event selectors (``GetEventSelectors``) record management write
    events: no selectors at all is CloudTrail's default (every management event)."""
    advanced = selectors.get("AdvancedEventSelectors")
    if advanced:
        for selector in advanced:
            fields = {field["Field"]: field for field in selector.get("FieldSelectors") or []}
            if "Management" not in (fields.get("eventCategory") or {}).get("Equals", []):
                continue
            read_only = fields.get("readOnly")
            if (
                read_only is None
                or "false" in read_only.get("Equals", [])
                or "true" in read_only.get("NotEquals", [])
            ):
                return True
        return False
    basic = selectors.get("EventSelectors")
    if not basic:
        return True
    return any(
        selector.get("IncludeManagementEvents", True)
        and selector.get("ReadWriteType", "All") in ("All", "WriteOnly")
        for selector in basic
    )


def management_trails(cloudtrail, region):
    """Names of the trails that log this region's management write events now (trails of
    the region and multi-region trails, an organization's included)."""
    found = []
    for trail in cloudtrail.describe_trails(aws_retry=True, includeShadowTrails=True).get("trailList") or []:
        if trail.get("HomeRegion") != region and not trail.get("IsMultiRegionTrail"):
            continue
        arn = trail.get("TrailARN") or trail["Name"]
        if not cloudtrail.get_trail_status(aws_retry=True, Name=arn).get("IsLogging"):
            continue
        if records_management_writes(cloudtrail.get_event_selectors(aws_retry=True, TrailName=arn)):
            found.append(trail["Name"])
    return found


def check_trails(clients, deployment, region, warnings, report):
    """The deployment's attribution and tamper rules see nothing without a trail that
    records management events: say whether one does (``report["management_trails"]``)."""
    if not deployment.get("watching_rules") or "cloudtrail" not in clients:
        return
    try:
        trails = management_trails(clients["cloudtrail"], region)
    except ClientError as exc:
        warnings.append(
            f"Could not check for a CloudTrail trail ({exc.response['Error']['Code']}: cloudtrail:DescribeTrails, "
            "cloudtrail:GetTrailStatus, cloudtrail:GetEventSelectors); the attribution and tamper rules need one."
        )
        return
    report["management_trails"] = trails
    if not trails:
        warnings.append(
            f"No CloudTrail trail logs management events in {region}: the rules "
            f"{', '.join(deployment['watching_rules'])} will see no calls (create a trail that records "
            "management events, read and write, or at least write)."
        )


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
    try:
        config = lam.get_function_configuration(aws_retry=True, FunctionName=name)
    except is_boto3_error_code("ResourceNotFoundException"):
        config = None
    if config:
        deployment["function"] = config
        deployment["env"] = (config.get("Environment") or {}).get("Variables") or {}
        deployment["mode"] = deployment["env"].get("PROTECTION_MODE", "instance_ids")
        try:
            policy = json.loads(lam.get_policy(aws_retry=True, FunctionName=name)["Policy"])
        except is_boto3_error_code("ResourceNotFoundException"):
            policy = {"Statement": []}
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


def test_pattern(events, pattern, event):
    if not pattern:
        return False
    return bool(events.test_event_pattern(aws_retry=True, EventPattern=pattern, Event=event).get("Result"))


def audit_instance(
    instance_id, instance, deployment, region, attribute=None, volumes=None, shutdown_behavior=None
):
    """One instance's entry: state, protected, problems (plain sentences)."""
    entry = {"instance_id": instance_id, "region": region, "state": None, "protected": False, "problems": []}
    problems = entry["problems"]
    if instance is None:
        problems.append(f"Instance {instance_id} does not exist in {region}.")
        return entry
    state = instance["State"]["Name"]
    entry["state"] = state
    entry["aws_stop_protection"] = attribute
    if state in ("terminated", "shutting-down"):
        problems.append(f"Instance is {state}; there is nothing left to protect.")
    elif state in ("stopped", "stopping"):
        problems.append(
            f"Instance is {state}: the protection has not started it again (see the function's decision log)."
        )
    if shutdown_behavior == "terminate":
        problems.append(
            "Its InstanceInitiatedShutdownBehavior is terminate: a shutdown inside the OS terminates it, "
            "which no restart can undo (set it to stop)."
        )

    function = deployment["function"]
    if function is None:
        problems.append(f"Function {deployment['function_arn']} does not exist.")
    else:
        if function.get("State") != "Active":
            problems.append(f"Function is {function.get('State')}, not Active.")
        if function.get("LastUpdateStatus") == "Failed":
            problems.append("The function's last update failed.")
        if deployment.get("reserved_concurrency") == 0:
            problems.append("The function's reserved concurrency is 0: it cannot run at all.")
        expected_code = deployment.get("expected_code_sha256")
        if expected_code and function.get("CodeSha256") != expected_code:
            problems.append(
                f"The function's code (CodeSha256 {function.get('CodeSha256')}) is not the code this collection "
                f"deploys ({expected_code}): it was changed, or protect has not run since an upgrade."
            )
        if deployment["invoke_config"] is None:
            problems.append(
                "The function has no asynchronous invocation settings (retries, failure destination)."
            )
        for arn in deployment.get("missing_targets") or ():
            problems.append(f"{arn} does not exist: the notices or failed events sent there are lost.")

    tags = tags_of(instance)
    env = deployment["env"]
    if deployment["mode"] == MODE_TAG:
        key, value = env.get("PROTECTION_TAG_KEY"), env.get("PROTECTION_TAG_VALUE")
        covering = [rule for rule in deployment["rules"] if rule["listed_ids"] is None]
        if tags.get(key) != value:
            problems.append(f"Instance does not carry the protection tag {key}={value}.")
    else:
        covering = [
            rule for rule in deployment["rules"] if rule["listed_ids"] and instance_id in rule["listed_ids"]
        ]
    if not covering:
        problems.append("No rule of this deployment names the instance.")
    working = []
    for rule in covering:
        reasons = []
        if rule.get("state") != "ENABLED":
            reasons.append(f"rule {rule['name']} is {rule.get('state')}")
        if not rule["matches_stopped"]:
            reasons.append(
                f"EventBridge says the pattern of rule {rule['name']} does not match a stopped event"
            )
        if rule["matches_running"]:
            reasons.append(f"the pattern of rule {rule['name']} also matches running events")
        if not rule["targets_function"]:
            reasons.append(f"rule {rule['name']} does not target the function")
        if function is not None and not invocation_admitted(deployment["policy_sources"], rule["arn"]):
            reasons.append(f"the function's resource policy does not let rule {rule['name']} invoke it")
        if reasons:
            problems.append(_sentence("; ".join(reasons)))
        else:
            working.append(rule["name"])
    entry["rules"] = [rule["name"] for rule in covering]
    permission = deployment.get("start_permission")
    if permission is not None:
        arn = deployment["instance_arn_prefix"] + instance_id
        verdict = permission.check("ec2:StartInstances", arn, tags)
        if verdict == "denied":
            problems.append(
                f"A policy of the function's role {permission.role} denies ec2:StartInstances on the instance."
            )
        elif verdict == "not-allowed":
            problems.append(
                f"No policy of the function's role {permission.role} allows ec2:StartInstances on {arn}."
            )
    for volume in volumes or []:
        if volume["key_state"] not in ("Enabled", None):
            problems.append(
                f"Volume {volume['volume_id']} is encrypted with KMS key {volume['key_arn']}, which is "
                f"{volume['key_state']}: the instance cannot start."
            )
        elif (
            volume["key_manager"] == "CUSTOMER"
            and permission is not None
            and permission.check("kms:CreateGrant", volume["key_arn"]) != "allowed"
        ):
            problems.append(
                f"Volume {volume['volume_id']} is encrypted with customer-managed KMS key {volume['key_arn']}; "
                f"the function's role {permission.role} may not kms:CreateGrant on it, so the instance "
                "cannot be started (list the key in stop_protection_kms_key_arns)."
            )
    bypass_key = env.get("BYPASS_TAG_KEY")
    if bypass_key and bypass_key in tags:
        problems.append(
            f"Bypass tag {bypass_key} is set ({tags[bypass_key]!r}): the instance will be left stopped."
        )
    sweep_problem = _sweep_problem(deployment, env)
    if sweep_problem:
        problems.append(sweep_problem)
    suspended_key = env.get("SUSPENDED_TAG_KEY")
    if suspended_key and suspended_key in tags:
        problems.append(
            f"Suspended ({tags[suspended_key]}): its restart budget is spent and it will be left stopped; "
            f"remove tag {suspended_key} once the cause is fixed."
        )
    entry["protected"] = not problems and bool(working)
    return entry


def _sweep_problem(deployment, env):
    """What is wrong with the sweep the function expects (``SWEEP_MINUTES`` > 0), or None."""
    if deployment["function"] is None or env.get("SWEEP_MINUTES", "0") in ("", "0"):
        return None
    sweep = deployment.get("sweep_rule")
    lost = (
        "a lost stop event, or a restart that failed for longer than Lambda's retries, would leave it stopped"
    )
    if sweep is None:
        return f"The sweep rule is missing: {lost}."
    reasons = []
    if sweep.get("state") != "ENABLED":
        reasons.append(f"sweep rule {sweep['name']} is {sweep.get('state')}")
    if not sweep["targets_function"]:
        reasons.append(f"sweep rule {sweep['name']} does not target the function")
    elif not invocation_admitted(deployment["policy_sources"], sweep["arn"]):
        reasons.append(f"the function's resource policy does not let sweep rule {sweep['name']} invoke it")
    return _sentence("; ".join(reasons) + f": {lost}") if reasons else None


def _sentence(text):
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def audit(
    clients,
    name,
    instance_ids,
    region,
    account,
    partition,
    check_attribute=True,
    warnings=None,
    code_sha256=None,
    report=None,
    restart_together=None,
):
    """One entry per instance; what could not be checked is appended to ``warnings``.

    No ``instance_ids``: in tag mode, every instance of the region that carries the
    deployment's protection tag; otherwise ``ProtectionError``, as when none is found, so
    that an audit never passes over nothing. ``code_sha256`` is the hash of the package the
    role deploys: a function with other code protects nothing this collection vouches for.
    ``restart_together``: the deployment reserves a concurrency of 1 for its function
    (``stop_protection_restart_together``); another value is warned of.
    """
    warnings = [] if warnings is None else warnings
    deployment = read_deployment(clients, name, region, account, partition)
    deployment["expected_code_sha256"] = code_sha256
    warnings.extend(deployment["warnings"])
    reserved = deployment.get("reserved_concurrency")
    if restart_together and deployment.get("reserved_concurrency_read") and reserved not in (0, 1):
        warnings.append(
            f"The function's reserved concurrency is {'not set' if reserved is None else reserved}, not 1: "
            "the events of a mass stop are restarted one instance each, with their own EC2 calls, "
            "until protect runs again (stop_protection_restart_together)."
        )
    check_trails(clients, deployment, region, warnings, {} if report is None else report)
    if not instance_ids:
        if deployment["function"] is None:
            raise ProtectionError(
                f"No instances to audit: name them, or deploy {name} in {region} in tag mode "
                "(its tagged instances are then found)"
            )
        if deployment["mode"] != MODE_TAG:
            raise ProtectionError(
                f"No instances to audit: {name} in {region} protects the instances its rules list; name them"
            )
        key, value = (
            deployment["env"].get("PROTECTION_TAG_KEY"),
            deployment["env"].get("PROTECTION_TAG_VALUE"),
        )
        instance_ids = tagged_instance_ids(clients["ec2"], key, value)
        if not instance_ids:
            raise ProtectionError(
                f"No instance in {region} carries the protection tag {key}={value}: {name} protects nothing there"
            )
    instances = describe_instances(clients["ec2"], list(instance_ids))
    existing = [i for i in instance_ids if i in instances]
    attributes = instance_attributes(clients["ec2"], existing) if check_attribute else {}
    volumes = volume_keys(clients["ec2"], clients["kms"], instances, warnings) if "kms" in clients else {}
    entries = [
        audit_instance(
            i,
            instances.get(i),
            deployment,
            region,
            attributes.get(i, {}).get("disable_api_stop") if check_attribute else None,
            volumes=volumes.get(i),
            shutdown_behavior=attributes.get(i, {}).get("shutdown_behavior"),
        )
        for i in instance_ids
    ]
    return entries


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
