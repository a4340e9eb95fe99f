# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Audit and drill logic of stop_protection_verify, as functions of boto3-style clients.

Clients are wrapped with AWSRetry by the module (calls pass ``aws_retry=True``); tests pass
stand-ins with the same methods.
"""

import json
import math
import re
import statistics
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from fnmatch import fnmatchcase

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.guardrails.ec2.plugins.module_utils.protection import (
    MODE_TAG,
    STATE_CHANGE_DETAIL_TYPE,
    ProtectionError,
    function_arn,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules

# DescribeInstances accepts at most 200 values in one filter.
DESCRIBE_BATCH = 200
# StopInstances takes many ids at once; keep each call of a drill reasonable.
STOP_BATCH = 100
ATTRIBUTE_WORKERS = 8


# --- reading -------------------------------------------------------------------------------


def describe_filtered(describe, filter_name, values):
    """Every reply page of an EC2 ``Describe*`` call filtered on ``filter_name``, in
    batches of 200 values (a filter on ids does not fail the batch on an unknown id)."""
    for start in range(0, len(values), DESCRIBE_BATCH):
        kwargs = {"Filters": [{"Name": filter_name, "Values": values[start : start + DESCRIBE_BATCH]}]}
        while True:
            reply = describe(aws_retry=True, **kwargs)
            yield reply
            if not reply.get("NextToken"):
                break
            kwargs["NextToken"] = reply["NextToken"]


def describe_instances(ec2, instance_ids):
    """``{instance_id: instance}`` for those that exist; unknown ids are simply absent."""
    return {
        instance["InstanceId"]: instance
        for reply in describe_filtered(ec2.describe_instances, "instance-id", instance_ids)
        for reservation in reply.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    }


def tagged_instance_ids(ec2, key, value):
    """Ids of the instances of the client's region that carry tag ``key=value`` and are not
    terminated, sorted."""
    found = set()
    kwargs = {
        "Filters": [
            {"Name": f"tag:{key}", "Values": [value]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    }
    while True:
        reply = ec2.describe_instances(aws_retry=True, **kwargs)
        found.update(
            instance["InstanceId"]
            for reservation in reply.get("Reservations", [])
            for instance in reservation.get("Instances", [])
        )
        if not reply.get("NextToken"):
            return sorted(found)
        kwargs["NextToken"] = reply["NextToken"]


def instance_attributes(ec2, instance_ids, stop_protection=True):
    """``{instance_id: {"disable_api_stop": bool, "shutdown_behavior": "stop" | "terminate"}}``.

    AWS's own stop protection (unless ``stop_protection`` is false), and what a shutdown
    inside the OS does. DescribeInstanceAttribute has no batch form and reads one attribute
    per call: one or two calls per instance, in parallel.
    """

    def one(instance_id):
        found = {}
        if stop_protection:
            stop = ec2.describe_instance_attribute(
                aws_retry=True, InstanceId=instance_id, Attribute="disableApiStop"
            )
            found["disable_api_stop"] = bool((stop.get("DisableApiStop") or {}).get("Value"))
        behavior = ec2.describe_instance_attribute(
            aws_retry=True, InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        found["shutdown_behavior"] = (behavior.get("InstanceInitiatedShutdownBehavior") or {}).get(
            "Value", "stop"
        )
        return instance_id, found

    with ThreadPoolExecutor(max_workers=ATTRIBUTE_WORKERS) as pool:
        return dict(pool.map(one, instance_ids))


def tags_of(instance):
    return {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", []) or []}


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
            "resources": [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": state},
        }
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
        "instance_arn_prefix": f"arn:{partition}:ec2:{region}:{account}:instance/",
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
            concurrency_setting = lam.get_function_concurrency(aws_retry=True, FunctionName=name)
        except is_boto3_error_code(("AccessDenied", "AccessDeniedException")):
            deployment["warnings"].append(
                "Could not read the function's reserved concurrency (lambda:GetFunctionConcurrency); not checked."
            )
        else:
            deployment["reserved_concurrency"] = concurrency_setting.get("ReservedConcurrentExecutions")
        try:
            deployment["invoke_config"] = lam.get_function_event_invoke_config(
                aws_retry=True, FunctionName=name
            )
        except is_boto3_error_code("ResourceNotFoundException"):
            deployment["invoke_config"] = None
    listed = list_deployment_rules(events, name)
    rules = [rule for rule in listed if rule["kind"] == "state_change"]
    sweep = next((rule for rule in listed if rule["kind"] == "sweep"), None)
    if sweep is not None:
        sweep["targets_function"] = _targets(sweep, deployment["function_arn"])
    deployment["sweep_rule"] = sweep
    for rule in rules:
        pattern = json.loads(rule.get("event_pattern") or "{}")
        listed = (pattern.get("detail") or {}).get("instance-id")
        rule["listed_ids"] = set(listed) if isinstance(listed, list) else None
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


def _decoded(document):
    """A policy document as a dict: boto3 decodes IAM's URL-encoded JSON; be lenient if not."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    return document


def marker_pages(call, **kwargs):
    """Every reply page of an IAM list call (Marker / IsTruncated paging)."""
    while True:
        reply = call(aws_retry=True, **kwargs)
        yield reply
        if not reply.get("IsTruncated"):
            break
        kwargs["Marker"] = reply["Marker"]


def role_policy_documents(iam, role_arn):
    """The identity policy documents of a role: its attached managed policies (default
    versions) and its inline policies."""
    role = role_arn.rsplit("/", 1)[-1]
    documents = []
    for reply in marker_pages(iam.list_attached_role_policies, RoleName=role):
        for attached in reply.get("AttachedPolicies", []):
            policy = iam.get_policy(aws_retry=True, PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(
                aws_retry=True, PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
            )
            documents.append(_decoded(version["PolicyVersion"]["Document"]))
    for reply in marker_pages(iam.list_role_policies, RoleName=role):
        for policy_name in reply.get("PolicyNames", []):
            inline = iam.get_role_policy(aws_retry=True, RoleName=role, PolicyName=policy_name)
            documents.append(_decoded(inline["PolicyDocument"]))
    return documents


def _as_list(value):
    return value if isinstance(value, list) else [value]


class RolePermissions:
    """Whether a role's identity policies let it call an action on a resource.

    Evaluates Allow and Deny statements with their Action/NotAction, Resource/NotResource
    (IAM wildcards) and resource-tag conditions (``aws:ResourceTag/<key>``,
    ``ec2:ResourceTag/<key>`` with the String operators). A condition it cannot evaluate
    counts as met for an Allow and as not met for a Deny, so an unknown condition never
    makes an instance look unprotected. Permissions boundaries, SCPs and key policies are
    not evaluated. Statements are prepared once per action, so each check costs a set
    lookup plus the wildcard patterns.
    """

    def __init__(self, role_arn, documents):
        self.role = role_arn.rsplit("/", 1)[-1]
        self._documents = documents
        self._prepared = {}

    def _statements(self, action):
        action = action.lower()
        if action not in self._prepared:
            prepared = []
            for document in self._documents:
                for statement in _as_list((document or {}).get("Statement", [])):
                    if not isinstance(statement, dict) or not self._names_action(statement, action):
                        continue
                    negated = "NotResource" in statement
                    resources = _as_list(statement.get("NotResource" if negated else "Resource", []))
                    exact = {r for r in resources if "*" not in r and "?" not in r}
                    patterns = [r for r in resources if r not in exact]
                    prepared.append(
                        (statement.get("Effect"), negated, exact, patterns, statement.get("Condition") or {})
                    )
            self._prepared[action] = prepared
        return self._prepared[action]

    @staticmethod
    def _names_action(statement, action):
        if "Action" in statement:
            return any(fnmatchcase(action, a.lower()) for a in _as_list(statement["Action"]))
        if "NotAction" in statement:
            return not any(fnmatchcase(action, a.lower()) for a in _as_list(statement["NotAction"]))
        return False

    @staticmethod
    def _condition(condition, tags):
        """True, False, or None when the condition holds something this cannot evaluate."""
        verdict = True
        for operator, entries in condition.items():
            op = operator.lower()
            for key, values in (entries or {}).items():
                lowered = key.lower()
                if not lowered.startswith(("aws:resourcetag/", "ec2:resourcetag/")):
                    verdict = None
                    continue
                tag = tags.get(key.split("/", 1)[1])
                values = [str(value) for value in _as_list(values)]
                if op.endswith("ifexists"):
                    if tag is None:
                        continue  # IAM: ...IfExists on a missing key is met
                    op = op.removesuffix("ifexists")
                # IAM: on a missing key the positive operators fail and the negated ones hold.
                if op == "stringequals":
                    met = tag in values
                elif op == "stringnotequals":
                    met = tag is None or tag not in values
                elif op == "stringlike":
                    met = tag is not None and any(fnmatchcase(tag, value) for value in values)
                elif op == "stringnotlike":
                    met = tag is None or not any(fnmatchcase(tag, value) for value in values)
                elif op == "stringequalsignorecase":
                    met = tag is not None and tag.lower() in [value.lower() for value in values]
                else:
                    verdict = None
                    continue
                if not met:
                    return False
        return verdict

    def check(self, action, resource, tags=None):
        """``allowed``, ``denied`` (an explicit Deny applies) or ``not-allowed``."""
        allowed = False
        for effect, negated, exact, patterns, condition in self._statements(action):
            named = resource in exact or any(fnmatchcase(resource, p) for p in patterns)
            if named == negated:
                continue
            holds = self._condition(condition, tags or {})
            if effect == "Deny" and holds is True:
                return "denied"
            if effect == "Allow" and holds is not False:
                allowed = True
        return "allowed" if allowed else "not-allowed"


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
            for reply in describe_filtered(ec2.describe_volumes, "volume-id", volume_ids)
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


def invoke_sources(policy):
    """``AWS:SourceArn`` values of the statements that let EventBridge invoke the function
    (events.amazonaws.com, lambda:InvokeFunction), as ``fnmatch`` patterns: those of
    ``ArnLike``/``StringLike`` as written, those of ``ArnEquals``/``StringEquals`` escaped."""
    sources = set()
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else principal
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if statement.get("Effect") != "Allow" or service != "events.amazonaws.com":
            continue
        if not {"lambda:InvokeFunction", "lambda:*"} & set(actions):
            continue
        for operator, condition in (statement.get("Condition") or {}).items():
            arns = condition.get("AWS:SourceArn") or condition.get("aws:SourceArn") or []
            for arn in arns if isinstance(arns, list) else [arns]:
                sources.add(arn if "like" in operator.lower() else _glob_escape(arn))
    return sources


def _glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def invocation_admitted(sources, rule_arn):
    """Whether one of ``invoke_sources`` admits the rule."""
    return any(fnmatchcase(rule_arn, source) for source in sources)


# --- audit ---------------------------------------------------------------------------------------


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
):
    """One entry per instance; what could not be checked is appended to ``warnings``.

    No ``instance_ids``: in tag mode, every instance of the region that carries the
    deployment's protection tag; otherwise ``ProtectionError``, as when none is found, so
    that an audit never passes over nothing. ``code_sha256`` is the hash of the package the
    role deploys: a function with other code protects nothing this collection vouches for.
    """
    warnings = [] if warnings is None else warnings
    deployment = read_deployment(clients, name, region, account, partition)
    deployment["expected_code_sha256"] = code_sha256
    warnings.extend(deployment["warnings"])
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


# --- drill ---------------------------------------------------------------------------------------


def concurrency(max_concurrent, count):
    """How many instances one batch of a drill stops: a number, or a percentage of ``count``."""
    text = str(max_concurrent).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.floor(count * percent / 100))
        number = int(text)
        if number < 1:
            raise ValueError
        return number
    except ValueError:
        raise ProtectionError(
            f"max_concurrent must be a positive number or a percentage (1%-100%), got {max_concurrent!r}"
        ) from None


def drill(
    ec2,
    entries,
    timeout,
    max_concurrent=1,
    continue_on_failure=False,
    clock=time.monotonic,
    sleep=time.sleep,
    poll_interval=0.25,
):
    """Stop the running instances in batches and time stop -> running again for each.

    A batch holds ``max_concurrent`` instances (a number or a percentage). After a batch
    in which a protected instance did not come back, no further batch is stopped unless
    ``continue_on_failure``. Whatever the outcome, every drilled instance that is not
    running when its batch ends is started by the drill itself (``restored_by_drill``),
    so a drill never leaves an instance stopped. Instances with AWS's stop protection
    (``DisableApiStop``) cannot be stopped and are skipped.

    Entries gain ``drilled``, ``recovered``, ``restored_by_drill``, ``seconds_to_stopped``
    and ``seconds_to_running``.
    """
    targets = []
    for entry in entries:
        entry.update(
            drilled=False,
            recovered=None,
            restored_by_drill=False,
            seconds_to_stopped=None,
            seconds_to_running=None,
        )
        if entry["state"] != "running":
            entry["problems"].append(
                f"Not drilled: the instance was {entry['state'] or 'missing'}, not running."
            )
        elif entry.get("aws_stop_protection"):
            entry["skipped"] = "DisableApiStop"
            entry["problems"].append(
                "Not drilled: AWS stop protection (DisableApiStop) is set, so StopInstances would be refused."
            )
        else:
            targets.append(entry)
    size = concurrency(max_concurrent, len(targets)) if targets else 1
    batches = [targets[start : start + size] for start in range(0, len(targets), size)]
    for index, batch in enumerate(batches):
        try:
            _drill_batch(ec2, batch, timeout, clock, sleep, poll_interval)
        finally:
            # Also when stopping or polling raised: nothing this drill stopped stays stopped.
            _restore(ec2, batch, sleep)
        failed = [e for e in batch if e["drilled"] and e["protected"] and not e["recovered"]]
        if failed and not continue_on_failure:
            for entry in (e for later in batches[index + 1 :] for e in later):
                entry["problems"].append(
                    "Not drilled: the drill stopped after "
                    + ", ".join(e["instance_id"] for e in failed)
                    + " did not come back (continue_on_failure=false)."
                )
            break
    return entries


def _drill_batch(ec2, targets, timeout, clock, sleep, poll_interval):
    by_id = {entry["instance_id"]: entry for entry in targets}
    started = clock()
    for start in range(0, len(targets), STOP_BATCH):
        batch = [entry["instance_id"] for entry in targets[start : start + STOP_BATCH]]
        stopping = _stop(ec2, batch, by_id)
        now = clock() - started
        for item in stopping:
            entry = by_id[item["InstanceId"]]
            entry["drilled"] = True
            if item["CurrentState"]["Name"] == "stopped":
                entry["seconds_to_stopped"] = round(now, 3)
    waiting = {entry["instance_id"] for entry in targets if entry["drilled"]}
    deadline = started + timeout
    while waiting and clock() < deadline:
        sleep(poll_interval)
        now = clock() - started
        states = {
            iid: inst["State"]["Name"] for iid, inst in describe_instances(ec2, sorted(waiting)).items()
        }
        for instance_id in list(waiting):
            entry, state = by_id[instance_id], states.get(instance_id)
            if state in ("stopped", "pending", "running") and entry["seconds_to_stopped"] is None:
                # Seen stopped, or already on its way back: it stopped by now at the latest.
                entry["seconds_to_stopped"] = round(now, 3)
            if state == "running":
                entry["seconds_to_running"] = round(now, 3)
                entry["recovered"] = True
                waiting.discard(instance_id)
            elif state in ("terminated", "shutting-down", None):
                entry["recovered"] = False
                entry["problems"].append(f"Instance became {state or 'missing'} during the drill.")
                waiting.discard(instance_id)
    for instance_id in waiting:
        entry = by_id[instance_id]
        entry["recovered"] = False
        entry["problems"].append(f"Not running again within {timeout} seconds of the stop.")
    for entry in targets:
        if not entry["drilled"] and not entry.get("skipped"):
            entry["recovered"] = False
            entry["problems"].append("StopInstances did not report this instance as stopping.")


def _stop(ec2, instance_ids, by_id):
    """StopInstances; instances AWS refuses to stop (``DisableApiStop``) are skipped, not errors.

    AWS refuses the whole call for one such instance, so a refused call is repeated one
    instance at a time. Returns the ``StoppingInstances`` items.
    """
    try:
        return ec2.stop_instances(aws_retry=True, InstanceIds=instance_ids).get("StoppingInstances", [])
    except is_boto3_error_code("OperationNotPermitted"):
        if len(instance_ids) > 1:
            return [item for instance_id in instance_ids for item in _stop(ec2, [instance_id], by_id)]
    entry = by_id[instance_ids[0]]
    entry["skipped"] = "DisableApiStop"
    entry["problems"].append("Not drilled: AWS refused to stop it (stop protection, DisableApiStop).")
    return []


def _restore(ec2, batch, sleep, attempts=60, delay=2.0):
    """Start again the drilled instances of a batch that the protection did not bring back.

    An instance still ``stopping`` is waited for (StartInstances refuses it until it is
    ``stopped``), up to ``attempts`` polls ``delay`` seconds apart.
    """
    pending = [entry for entry in batch if entry["drilled"] and not entry["recovered"]]
    for attempt in range(attempts):
        if not pending:
            return
        states = {
            iid: inst["State"]["Name"]
            for iid, inst in describe_instances(ec2, [entry["instance_id"] for entry in pending]).items()
        }
        still_stopping = []
        for entry in pending:
            state = states.get(entry["instance_id"])
            if state == "stopping":
                still_stopping.append(entry)
            elif state == "stopped":
                try:
                    ec2.start_instances(aws_retry=True, InstanceIds=[entry["instance_id"]])
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    entry["problems"].append(f"The drill could not start it again ({exc}): start it by hand.")
                    continue
                entry["restored_by_drill"] = True
                entry["problems"].append("Started again by the drill itself, not by the protection.")
        pending = still_stopping
        if pending and attempt + 1 < attempts:
            sleep(delay)
    for entry in pending:
        entry["problems"].append(f"Still stopping after {attempts * delay:.0f} seconds: start it by hand.")


def summarise(entries, mode):
    summary = {
        "instances": len(entries),
        "protected": sum(1 for e in entries if e["protected"]),
        "unprotected": sum(1 for e in entries if not e["protected"]),
    }
    if mode == "drill":
        drilled = [e for e in entries if e.get("drilled")]
        times = sorted(e["seconds_to_running"] for e in drilled if e.get("recovered"))
        summary.update(
            drilled=len(drilled),
            restored_by_drill=sum(1 for e in drilled if e.get("restored_by_drill")),
            skipped_stop_protection=sum(1 for e in entries if e.get("skipped") == "DisableApiStop"),
            recovered=sum(1 for e in drilled if e.get("recovered")),
            not_recovered=sum(1 for e in drilled if not e.get("recovered")),
            recovery_seconds={
                "min": times[0] if times else None,
                "median": round(statistics.median(times), 3) if times else None,
                "max": times[-1] if times else None,
            },
        )
    return summary
