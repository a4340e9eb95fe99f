# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which of the resources named like a deployment exist, and whether they are the deployment's.

protect and unprotect change or delete a function, rule, alarm, role, policy or log group
only when it is ours; a resource of that name that someone else made stops the run before
any change, named in the error. What counts as ours:

- function, role, managed policy, log group: tagged ``ManagedBy: guardrails.ec2`` (every
  one the role creates is). The log group ``/aws/lambda/<name>`` also counts when the
  deployment's own function exists: Lambda itself creates it, untagged, when the function
  logs after the group was deleted.
- rule and alarm (amazon.aws's modules cannot tag them): a description that starts with
  ``guardrails.ec2 stop protection``, and for a rule no target but the deployment's function.
"""

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.iam import (
    AnsibleIAMError,
    get_iam_role,
    list_iam_role_attached_policies,
)
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    DESCRIPTION_PREFIX,
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    TAMPER_KINDS,
    TOPIC_TARGET_ID,
    function_arn,
    iam_arn,
    owner_tagged,
    policy_index,
    regional_names,
    resource_names,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import marked_instances
from ansible_collections.guardrails.ec2.plugins.module_utils.resource_reads import (
    alarm_state,
    described_alarms,
    function_state,
    read_function,
    read_function_policy,
    read_invoke_config,
    read_metric_filter,
    read_policy_versions,
    read_reserved_concurrency,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import missing_metric_filter

# The kinds of ``present``: the names of what exists, by kind.
PRESENT_KINDS = ("function", "log_group", "alarm", "rule", "role", "policy")


def _missing(kind, name):
    return {"kind": kind, "name": name, "exists": False, "ours": True, "reason": ""}


def _found(kind, name, ours, reason):
    return {"kind": kind, "name": name, "exists": True, "ours": ours, "reason": "" if ours else reason}


NOT_TAGGED = f"it has no tag {OWNER_TAG_KEY}={OWNER_TAG_VALUE}"


def judge_function(name, config):
    """The function's ownership entry (``config``: ``resource_reads.read_function``'s)."""
    if config is None:
        return _missing("function", name)
    return _found("function", name, owner_tagged(config["Tags"]), NOT_TAGGED)


def read_log_group(logs, group):
    """The log group's state ``{"exists", "retention", "tags"}``."""
    reply = logs.describe_log_groups(aws_retry=True, logGroupNamePrefix=group)
    found = next((entry for entry in reply.get("logGroups", []) if entry["logGroupName"] == group), None)
    if found is None:
        return {"exists": False, "retention": None, "tags": {}}
    arn = found["arn"][:-2] if found["arn"].endswith(":*") else found["arn"]
    tags = logs.list_tags_for_resource(aws_retry=True, resourceArn=arn).get("tags") or {}
    return {"exists": True, "retention": found.get("retentionInDays"), "tags": tags}


def judge_log_group(group, state, function_is_ours):
    """The log group's ownership entry: tagged as ours, or beside the deployment's own function."""
    if not state["exists"]:
        return _missing("log group", group)
    return _found("log group", group, function_is_ours or owner_tagged(state["tags"]), NOT_TAGGED)


def read_alarms(cloudwatch, alarms):
    """For each alarm name, in one call: its ownership entry and the alarm as described
    (None when missing)."""
    described = described_alarms(cloudwatch, alarms)
    result = []
    for alarm in alarms:
        found = described.get(alarm)
        if found is None:
            result.append((_missing("alarm", alarm), None))
            continue
        ours = (found.get("AlarmDescription") or "").startswith(DESCRIPTION_PREFIX)
        entry = _found("alarm", alarm, ours, f"its description does not start with {DESCRIPTION_PREFIX!r}")
        result.append((entry, found))
    return result


def _topic_of_tamper_rule(rule, target):
    """A tamper rule's second target: the notification topic, under its own id."""
    return rule.get("kind") in TAMPER_KINDS and target["id"] == TOPIC_TARGET_ID and ":sns:" in target["arn"]


def judge_rule(rule, arn):
    """Ownership entry of a listed rule (``rules.list_deployment_rules`` with targets)."""
    strangers = [
        target["arn"]
        for target in rule.get("targets") or []
        if target["arn"] not in (arn, f"{arn}:$LATEST") and not _topic_of_tamper_rule(rule, target)
    ]
    if not (rule.get("description") or "").startswith(DESCRIPTION_PREFIX):
        return _found(
            "rule", rule["name"], False, f"its description does not start with {DESCRIPTION_PREFIX!r}"
        )
    if strangers:
        return _found("rule", rule["name"], False, f"it also targets {', '.join(strangers)}")
    return _found("rule", rule["name"], True, "")


def read_role(iam, role):
    """The role's ownership entry, the names of its attached managed policies, and its state
    ``{"exists", "trust", "description", "attached" (ARNs), "tags"}``."""
    found = get_iam_role(iam, role)
    if found is None:
        return _missing("role", role), [], {"exists": False}
    attached = list_iam_role_attached_policies(iam, role)
    tags = boto3_tag_list_to_ansible_dict(found.get("Tags") or [])
    state = {
        "exists": True,
        "trust": found.get("AssumeRolePolicyDocument"),
        "description": found.get("Description"),
        "attached": [entry["PolicyArn"] for entry in attached],
        "tags": tags,
    }
    names = [entry["PolicyName"] for entry in attached]
    return _found("role", role, owner_tagged(tags), NOT_TAGGED), names, state


def read_policy(iam, arn_prefix, policy):
    """The policy's ownership entry and its state ``{"exists", "default_version", "versions", "tags"}``."""
    try:
        found = iam.get_policy(aws_retry=True, PolicyArn=arn_prefix + policy)["Policy"]
    except is_boto3_error_code("NoSuchEntity"):
        return _missing("policy", policy), {"exists": False}
    tags = boto3_tag_list_to_ansible_dict(found.get("Tags") or [])
    state = {
        "exists": True,
        "default_version": found.get("DefaultVersionId"),
        "versions": read_policy_versions(iam, arn_prefix + policy),
        "tags": tags,
    }
    return _found("policy", policy, owner_tagged(tags), NOT_TAGGED), state


# Threads of one region's read: its independent chains of calls run side by side (boto3
# clients are thread-safe), so the read costs about its longest chain, not the sum of its
# calls. Within IAM and EventBridge, a few more for the policies and the rules' targets.
READ_WORKERS = 10
ITEM_WORKERS = 4


def _read_logs(logs, names):
    """The log group's state and its two metric filters (none when the group is missing)."""
    log_group = read_log_group(logs, names["log_group"])
    filters = {
        key: read_metric_filter(logs, names["log_group"], names[alarm])
        if log_group["exists"]
        else missing_metric_filter()
        for key, alarm in (("metric_filter", "attention"), ("heartbeat_filter", "heartbeat"))
    }
    return log_group, filters


def _read_iam(iam, iam_names, partition, account, policies):
    """The region's role and managed policies (those the run writes, and those of the
    deployment attached to the role): ``(entries, role_state, {policy: state})``. The
    policies the run writes are read beside the role; those only attached, after it."""
    arn_prefix = iam_arn(partition, account, "policy", "")
    wanted = list(policies or [iam_names["policy"]])
    with ThreadPoolExecutor(max_workers=ITEM_WORKERS) as pool:
        reads = {policy: pool.submit(read_policy, iam, arn_prefix, policy) for policy in wanted}
        role_entry, attached, role_state = read_role(iam, iam_names["role"])
        for found in attached:
            if policy_index(iam_names["policy"], found) and found not in reads:
                reads[found] = pool.submit(read_policy, iam, arn_prefix, found)
        entries, states = [role_entry], {}
        for policy, read in reads.items():
            policy_entry, states[policy] = read.result()
            entries.append(policy_entry)
    return entries, role_state, states


def _read_legacy_role(iam, name):
    """The account-wide role of a pre-release deployment, ``<name>Role``."""
    try:
        role, _attached, _state = read_role(iam, f"{name}Role")
    except AnsibleIAMError as exc:
        # amazon.aws's iam helpers wrap botocore's error. The deployer's policy covers only
        # <name>-* roles: nothing to report then.
        denied = is_boto3_error_code(("AccessDenied", "AccessDeniedException"), e=exc.exception)
        if not isinstance(exc.exception, denied):
            raise
        role = _missing("role", f"{name}Role")
    return role


def read_ownership(clients, name, region, account, partition, policies=()):
    """What exists of deployment ``name`` in ``region`` (and of that region's IAM role and
    policies), whether each is ours, and the deployment's rules.

    ``policies`` are the managed policy names the run will write; the role's attached
    policies of the deployment are read too. Returns ``{"resources", "present", "found",
    "foreign", "rules", "function", "legacy", "state"}``; ``foreign`` holds one sentence per
    resource that is not ours, ``present`` the names of what exists by kind.
    """
    names = resource_names(name)
    iam_names = regional_names(name, region)
    arn = function_arn(partition, region, account, names["function"])
    lam = clients["lambda"]
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        function_read = pool.submit(read_function, lam, names["function"])
        # Read beside the function, not after it: for a missing function each answers
        # ResourceNotFound, and what they return is dropped below.
        policy_read = pool.submit(read_function_policy, lam, names["function"], names["invoke_statement"])
        invoke_read = pool.submit(read_invoke_config, lam, names["function"], concurrency=False)
        reserved_read = pool.submit(read_reserved_concurrency, lam, names["function"])
        logs_read = pool.submit(_read_logs, clients["logs"], names)
        marked = pool.submit(
            lambda: marked_instances(clients["ec2"], names["api_stop_marker"]) if "ec2" in clients else []
        )
        alarms = pool.submit(read_alarms, clients["cloudwatch"], [names["attention"], names["heartbeat"]])
        listed_rules = pool.submit(list_deployment_rules, clients["events"], name)
        iam = pool.submit(_read_iam, clients["iam"], iam_names, partition, account, policies)
        legacy_role = pool.submit(_read_legacy_role, clients["iam"], name)
        function = function_read.result()
        function_entry = judge_function(names["function"], function)
        log_group, filters = logs_read.result()
        # For a missing function the answers (or errors) of its reads are not looked at.
        function_policy = invoke_config = None
        if function is not None:
            function_policy = policy_read.result()
            invoke_config = invoke_read.result()
            if invoke_config is not None:
                invoke_config["reserved_concurrency"] = reserved_read.result()
        # What the read-once rollout compares with the plan (drift.py).
        state = {
            "log_group": log_group,
            **filters,
            "function_policy": function_policy,
            "invoke_config": invoke_config,
        }
        state["statement"] = (state["function_policy"] or {}).get("statement")
        log_group_entry = judge_log_group(
            names["log_group"], log_group, function is not None and function_entry["ours"]
        )
        (attention_entry, attention), (heartbeat_entry, heartbeat) = alarms.result()
        rules = listed_rules.result()
        iam_entries, state["role"], state["policies"] = iam.result()
        # Where protect turned AWS's stop protection on (instance_stop_protection's marker).
        state["api_stop_marked"] = marked.result()
        legacy_role = legacy_role.result()
    resources = [function_entry, log_group_entry, attention_entry, heartbeat_entry]
    state["alarm"], state["heartbeat"] = alarm_state(attention), alarm_state(heartbeat)
    state["function"] = function_state(function, (function or {}).get("Tags"))
    resources.extend(judge_rule(rule, arn) for rule in rules)
    resources.extend(iam_entries)
    foreign = [
        f"{entry['kind']} {entry['name']}"
        + ("" if entry["kind"] in ("role", "policy") else f" in {region}")
        + f": {entry['reason']}"
        for entry in resources
        if not entry["ours"]
    ]
    legacy = [legacy_role["name"]] if legacy_role["exists"] and legacy_role["ours"] else []
    present = {kind: [] for kind in PRESENT_KINDS}
    for entry in resources:
        if entry["exists"]:
            present[entry["kind"].replace(" ", "_")].append(entry["name"])
    return {
        "resources": resources,
        "present": present,
        "found": any(present.values()),
        "foreign": foreign,
        "rules": rules,
        "function": function,
        "legacy": legacy,
        "state": state,
    }
