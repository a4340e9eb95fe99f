#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: stop_protection_deployment_info
short_description: Read what exists of a stop-protection deployment in one region, and whose it is
version_added: 1.0.0
description:
  - Reads, in one region, every resource named like the deployment that the
    M(guardrails.ec2.stop_protection) role creates there - function, log group, alarm,
    rules - and that region's IAM role and managed policies, and says for each whether it
    exists and whether it belongs to the deployment.
  - The function, role, policies and log group belong to it when tagged
    C(ManagedBy=guardrails.ec2); the log group also when the deployment's own function
    exists (Lambda recreates a deleted log group without tags). Rules and the alarm, which
    amazon.aws cannot tag, belong to it when their description starts with
    C(guardrails.ec2 stop protection), and a rule only when it targets nothing but the
    deployment's function.
  - The role runs it for every region before it changes anything, and stops with
    RV(foreign) in the error when a resource of another owner has one of the names.
  - Warns when the account-wide role C(<name>Role) of a pre-release deployment still exists.
  - Also looks up the instances to protect (O(instance_ids)) and returns the caller's account
    and partition, so that protect needs no other read before it writes.
  - Read only; also in check mode.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  name:
    description:
      - Base name of the deployment (C(stop_protection_name)).
    type: str
    default: EC2Protect
  policies:
    description:
      - Names of the managed policies the run will write for this region. Empty means
        C(<name>-<region>). Policies of the deployment attached to the region's role are
        read as well.
    type: list
    elements: str
    default: []
  keep:
    description:
      - Names of the rules the deployment needs now; the others are returned in RV(stale).
      - Deprecated, to be removed in 2.0.0; the role no longer uses it. Compare RV(rules) with the
        rules you need instead.
    type: list
    elements: str
    default: []
  instance_ids:
    description:
      - Instances to look up in the same read (one C(DescribeInstanceStatus) per 100 and one
        C(DescribeTags) for Auto Scaling membership), returned in
        RV(instances). Empty means none.
    type: list
    elements: str
    default: []
  warn_managed:
    description:
      - Warn about listed instances that belong to an Auto Scaling group.
    type: bool
    default: false
  warn_shutdown_terminate:
    description:
      - Warn about listed instances whose C(InstanceInitiatedShutdownBehavior) is C(terminate).
      - Read (one C(DescribeInstanceAttribute) each) only for the instances that no rule of the
        deployment names yet - those that join the protection in this run; the audit of
        M(guardrails.ec2.stop_protection_verify) reports it for every instance.
    type: bool
    default: false
  others:
    description:
      - Also list the other deployments of this collection on the region's default bus
        (RV(other_deployments)), and warn about each of O(instance_ids) that one of them
        protects already (two functions would restart it, each with its own budget).
    type: bool
    default: false
    version_added: 1.1.0
  targets:
    description:
      - ARNs of the SNS topic and SQS queue the deployment sends to (notification topic,
        failure destination); those that do not exist are returned in RV(missing_targets).
    type: list
    elements: str
    default: []
    version_added: 1.1.0
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the deployment in eu-west-1
  guardrails.ec2.stop_protection_deployment_info:
    name: EC2Protect
    region: eu-west-1
  register: deployment

- name: Stop when another owner's resource has one of the names
  ansible.builtin.assert:
    that: deployment.foreign | length == 0
    fail_msg: "Not ours: {{ deployment.foreign | join('; ') }}"
"""

RETURN = r"""
account:
  description: The caller's account.
  returned: always
  type: str
  sample: "123456789012"
partition:
  description: The caller's partition.
  returned: always
  type: str
  sample: aws
resources:
  description: Every resource looked for, whether it exists and whether it is the deployment's.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: C(function), C(log group), C(alarm), C(rule), C(role) or C(policy).
      type: str
      sample: function
    name:
      description: Resource name.
      type: str
      sample: EC2Protect
    exists:
      description: Whether it exists.
      type: bool
      sample: true
    ours:
      description: Whether it belongs to the deployment (true when it does not exist).
      type: bool
      sample: true
    reason:
      description: Why it is not the deployment's; empty when it is.
      type: str
      sample: it has no tag ManagedBy=guardrails.ec2
present:
  description:
    - The names of the resources of RV(resources) that exist, by kind (each key always there) - what
      unprotect removes.
  returned: always
  type: dict
  contains:
    function:
      description: The function, when it exists.
      type: list
      elements: str
    log_group:
      description: The log group, when it exists.
      type: list
      elements: str
    alarm:
      description: The attention and heartbeat alarms that exist.
      type: list
      elements: str
    rule:
      description: The deployment's rules.
      type: list
      elements: str
    role:
      description: The region's execution role, when it exists.
      type: list
      elements: str
    policy:
      description: The region's managed policies that exist.
      type: list
      elements: str
  sample: {"function": ["EC2Protect"], "log_group": ["/aws/lambda/EC2Protect"], "alarm": ["EC2Protect-attention"],
           "rule": ["EC2Protect.1"], "role": ["EC2Protect-eu-west-1"], "policy": ["EC2Protect-eu-west-1"]}
found:
  description: Whether anything of the deployment exists in the region (RV(present) is not all empty).
  returned: always
  type: bool
  sample: true
foreign:
  description: One sentence per existing resource that is not the deployment's.
  returned: always
  type: list
  elements: str
  sample: ["function EC2Protect in eu-west-1: it has no tag ManagedBy=guardrails.ec2"]
rules:
  description:
    - The deployment's rules, shard rules first in number order - each with C(name), C(arn), C(kind)
      (C(state_change), C(attribution), C(sweep) or a tamper kind), C(index), C(legacy), C(state),
      C(description), C(event_pattern), C(schedule_expression) and C(targets) (C(id), C(arn), C(extra)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "EC2Protect.1", "kind": "state_change", "index": 1, "state": "ENABLED"}]
state:
  description:
    - What the read-once rollout compares with the plan (see the M(guardrails.ec2.stop_protection)
      role), one key per resource.
    - C(log_group) - C(exists), C(retention), C(tags).
    - C(metric_filter), C(heartbeat_filter) - the metric filter named like each alarm - C(count),
      C(name), C(pattern), C(transformation).
    - C(function) - the function as M(amazon.aws.lambda) compares it, by that module's
      parameter names (C(role), C(handler), C(description), C(timeout), C(memory_size),
      C(runtime), C(environment_variables), C(tags)), with C(vpc_id) and C(code_sha256); null
      when there is no function.
    - C(function_policy) - C(statement) (the invoke statement for the rules), C(size) of the
      function's resource policy and C(statements) with the size of each (Lambda allows 20 KB).
    - C(statement) - the invoke statement for the rules, or null; a policy statement as Lambda
      stores it (C(Sid), C(Effect), ...).
    - C(invoke_config) - the asynchronous invocation settings and C(reserved_concurrency) (-1
      when none is reserved), in M(guardrails.ec2.lambda_event_invoke_config)'s return shape.
    - C(alarm), C(heartbeat) - each alarm as M(amazon.aws.cloudwatch_metric_alarm) compares it,
      by that module's parameter names (C(name), C(description), C(metric_name), C(namespace),
      C(statistic), C(comparison), C(threshold), C(period), C(evaluation_periods),
      C(treat_missing_data), C(alarm_actions), C(insufficient_data_actions), C(ok_actions));
      any other field C(DescribeAlarms) returns in snake_case, because the module compares it
      too; or null.
    - C(role) - C(exists), C(trust), C(description), C(attached) (policy ARNs), C(tags).
    - C(policies) - per managed policy name, C(exists), C(default_version), C(versions) (C(id),
      C(document)) and C(tags).
    - C(api_stop_marked) - the instances whose stop protection (C(DisableApiStop)) protect set.
  returned: always
  type: dict
  version_added: 1.1.0
  sample:
    log_group: {"exists": true, "retention": 30, "tags": {"ManagedBy": "guardrails.ec2"}}
    metric_filter: {"count": 1, "name": "EC2Protect-attention", "pattern": "{ ($.action = \"failed\") }", "transformation": {}}
    statement: {"Sid": "guardrails-ec2-rules", "Effect": "Allow"}
    function_policy: {"size": 342, "statements": [{"sid": "guardrails-ec2-rules", "size": 290}]}
    invoke_config: {"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": 21600, "on_failure_destination_arn": null, "reserved_concurrency": 1}
    role: {"exists": true, "description": "guardrails.ec2 stop protection - restart function in eu-west-1", "attached": [], "tags": {}}
    api_stop_marked: []
stale:
  description: The rules in RV(rules) whose names are not in O(keep) (deprecated with O(keep), to be removed in 2.0.0).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "EC2Protect.3"}]
instances:
  description:
    - The instances of O(instance_ids) - C(states) (id to state), C(missing) (ids EC2 does not
      know), C(auto_scaling_groups) (id to group) and C(shutdown_terminates) (ids newly joining
      the protection whose shutdown terminates them, read only with O(warn_shutdown_terminate)).
  returned: always
  type: dict
  sample: {"states": {"i-0123456789abcdef0": "running"}, "missing": [], "auto_scaling_groups": {}, "shutdown_terminates": []}
other_deployments:
  description: With O(others), the other deployments of this collection in the region, each with the instance ids its rules name.
  returned: always
  type: dict
  sample: {"WebProtect": ["i-0123456789abcdef0"]}
  version_added: 1.1.0
missing_targets:
  description: Those of O(targets) that do not exist (a notice or failed event sent there would be lost).
  returned: always
  type: list
  elements: str
  sample: ["arn:aws:sns:eu-west-1:123456789012:ops-typo"]
  version_added: 1.1.0
function:
  description: The function's role and code hash, or null when there is no function.
  returned: always
  type: dict
  sample: {"role": "arn:aws:iam::123456789012:role/EC2Protect-eu-west-1", "code_sha256": "n0Rz..."}
"""

from concurrent.futures import ThreadPoolExecutor

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.arn import parse_aws_arn
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.clients import session_clients
from ansible_collections.guardrails.ec2.plugins.module_utils.ownership import read_ownership
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import pattern_instance_ids
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import (
    instance_warnings,
    look_up_instances,
    missing_targets,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.rules import other_deployments


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", default="EC2Protect"),
            policies=dict(type="list", elements="str", default=[]),
            keep=dict(
                type="list",
                elements="str",
                default=[],
                removed_in_version="2.0.0",
                removed_from_collection="guardrails.ec2",
            ),
            instance_ids=dict(type="list", elements="str", default=[]),
            warn_managed=dict(type="bool", default=False),
            warn_shutdown_terminate=dict(type="bool", default=False),
            targets=dict(type="list", elements="str", default=[]),
            others=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    retry = AWSRetry.jittered_backoff()
    # One boto3 session for the region's clients: each service model is loaded once.
    services = ("lambda", "logs", "cloudwatch", "events", "iam", "sts", "ec2")
    clients = session_clients(module, services + (("sns", "sqs") if module.params["targets"] else ()), retry)
    name = module.params["name"]
    instance_ids = module.params["instance_ids"]
    instances = {"states": {}, "missing": [], "auto_scaling_groups": {}, "shutdown_terminates": []}
    missing = []
    others = {}
    try:
        identity = clients["sts"].get_caller_identity(aws_retry=True)
        account, partition = identity["Account"], parse_aws_arn(identity["Arn"])["partition"]
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Other deployments on the bus: independent of this one's resources, read beside them.
            listed_others = (
                pool.submit(other_deployments, clients["events"], name) if module.params["others"] else None
            )
            found = read_ownership(
                clients, name, module.region, account, partition, module.params["policies"]
            )
            others = listed_others.result() if listed_others else others
        if module.params["targets"]:
            missing = missing_targets(clients.__getitem__, module.params["targets"])
        if instance_ids:
            # Instances a rule already names were warned about when they joined.
            protected = {
                instance_id
                for rule in found["rules"]
                if rule["kind"] == "state_change"
                for instance_id in pattern_instance_ids(rule["event_pattern"])
            }
            joining = [i for i in instance_ids if i not in protected]
            instances = look_up_instances(
                clients["ec2"], instance_ids, joining if module.params["warn_shutdown_terminate"] else ()
            )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Couldn't read stop protection {name} in {module.region}")
    except AnsibleAWSError as e:  # amazon.aws's iam helpers wrap the botocore error
        module.fail_json_aws(
            e.exception or e, msg=f"Couldn't read stop protection {name} in {module.region}: {e.message}"
        )
    for warning in instance_warnings(instances, module.params["warn_managed"]):
        module.warn(warning)
    for other, protected in others.items():
        both = sorted(set(protected) & set(instance_ids))
        if both:
            module.warn(
                f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} also protected by the deployment {other} "
                f"in {module.region}: two functions restart {'it' if len(both) == 1 else 'them'}, each with its own "
                "restart budget. Protect each instance in one deployment only."
            )
    for role in found["legacy"]:
        module.warn(
            f"The account-wide role {role} of a pre-release deployment of {name} still exists: each region now has "
            f"its own role ({name}-<region>). Once every region has been protected again, detach and delete {role} "
            f"and its policies {name}, {name}.2, ... by hand."
        )
    keep = set(module.params["keep"])
    function = found["function"]
    module.exit_json(
        changed=False,
        account=account,
        partition=partition,
        resources=found["resources"],
        present=found["present"],
        found=found["found"],
        foreign=found["foreign"],
        rules=found["rules"],
        state=found["state"],
        instances=instances,
        missing_targets=missing,
        other_deployments=others,
        stale=[rule for rule in found["rules"] if rule["name"] not in keep],
        function={"role": function.get("Role"), "code_sha256": function.get("CodeSha256")}
        if function
        else None,
    )


if __name__ == "__main__":
    main()
