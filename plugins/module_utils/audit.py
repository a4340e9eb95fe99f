# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The audit of stop_protection_verify: whether each instance is protected, and why not.

``audit_reads`` reads the deployment once and ``trails`` checks CloudTrail; the judgement of
each instance is here. Clients are wrapped with AWSRetry by the module (calls pass
``aws_retry=True``); tests pass stand-ins with the same methods.
"""

from ansible_collections.guardrails.ec2.plugins.module_utils.audit_reads import read_deployment, volume_keys
from ansible_collections.guardrails.ec2.plugins.module_utils.iam_eval import invocation_admitted
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import (
    describe_instances,
    instance_attributes,
    tagged_instance_ids,
    tags_of,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.trails import check_trails
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import MODE_TAG, ProtectionError


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
