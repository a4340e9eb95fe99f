#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: stop_protection_verify
short_description: Audit stop protection, or drill the stop and restart loop
version_added: 1.0.0
description:
  - In C(audit) mode (the default) checks, without changing anything, that each listed
    instance is protected by the deployment the M(guardrails.ec2.stop_protection) role
    made. The instance exists; a rule of the deployment covers it (the rule exists, is
    C(ENABLED), targets the function, and EventBridge's own C(TestEventPattern) says its
    pattern matches a C(stopped) event - and not a C(running) one; in tag mode the
    instance carries the protection tag); the function is C(Active), its resource policy
    lets that rule invoke it, and its asynchronous invocation settings exist; the policies of
    the function's role allow C(ec2:StartInstances) on the instance and no policy of the
    role denies it; each encrypted EBS volume's KMS key is enabled and, when customer-managed,
    the role may C(kms:CreateGrant) on it; no bypass or suspended tag is set; the instance is
    not stopped and its OS shutdown does not terminate it; the function's reserved
    concurrency is not 0; the sweep rule the function expects is in place. It also reports
    whether AWS's own stop protection (C(DisableApiStop)) is on.
  - Fails when any listed instance is unprotected, naming each one and why.
  - In C(drill) mode it then stops the listed running instances in batches of
    O(max_concurrent), waits until each is running again, and times both halves.
    Instances the audit finds unprotected are refused unless O(force=true). Instances not
    running at the start, or with C(DisableApiStop), are reported, not stopped. Fails when
    any drilled instance the audit found protected has not recovered within O(timeout);
    the drill then starts it again itself and stops drilling unless O(continue_on_failure=true).
  - The protection mode, tags and bypass tag are read from the deployed function, so the
    module needs only the base name.
  - Works on the instances of one region (O(region)); run it once per region.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  name:
    description:
      - Base name of the deployment (C(stop_protection_name)).
    type: str
    default: EC2Protect
  instance_ids:
    description:
      - Instances to audit or drill, all in O(region).
      - Empty, for a deployment in tag mode - every instance of O(region) that carries its
        protection tag and is not terminated. The module fails when it finds none, and for
        a deployment in instance-id mode, so that an audit never passes over nothing.
    type: list
    elements: str
    default: []
  code_sha256:
    description:
      - CodeSha256 of the package the role deploys (M(guardrails.ec2.lambda_package)
        returns it). When set, a function whose code differs makes every instance
        unprotected - someone changed it, or protect has not run since an upgrade.
    type: str
  restart_together:
    description:
      - The deployment reserves a concurrency of 1 for its function, so that a mass stop is
        restarted together (the role's C(stop_protection_restart_together)). When set, a
        function with another reserved concurrency (not 0, which makes every instance
        unprotected) is warned of.
    type: bool
    version_added: 1.1.0
  mode:
    description:
      - C(audit) changes nothing; C(drill) stops the instances and watches them come back.
    type: str
    choices: [audit, drill]
    default: audit
  timeout:
    description:
      - Drill, seconds from the stop until every instance must be running again.
    type: int
    default: 600
  force:
    description:
      - Drill instances the audit finds unprotected too. The drill starts them again itself
        at the end of their batch, and fails like any drill in which the protection did not
        restart an instance (use it to see what an unprotected instance does).
    type: bool
    default: false
  max_concurrent:
    description:
      - Drill, how many instances to stop at once - a number, or a percentage of the
        instances to drill such as C(25%) (at least one). The next batch is stopped only
        once every instance of the previous one is running again or its timeout passed.
    type: raw
    default: 1
  continue_on_failure:
    description:
      - Drill, go on with the next batch after an instance did not come back. By default
        the drill stops there, so that broken protection strands one batch, not a fleet.
    type: bool
    default: false
  check_stop_protection_attribute:
    description:
      - Read each instance's C(DisableApiStop) and C(InstanceInitiatedShutdownBehavior) attributes
        (two calls per instance; AWS has no batch form). An instance whose OS shutdown
        terminates it is reported unprotected; a drill skips instances with C(DisableApiStop).
    type: bool
    default: true
notes:
  - In check mode a drill stops nothing; it reports which instances it would stop.
  - A drill never leaves an instance stopped. Any drilled instance that is not running when
    its batch's O(timeout) passes is started by the drill itself, reported with
    C(restored_by_drill=true), and the drill fails. Instances with AWS's stop protection
    (C(DisableApiStop)) cannot be stopped; they are skipped and reported, not errors.
  - An interrupted drill (Ctrl-C, a killed controller) can leave the instances of the
    batch it was watching stopped if the protection did not restart them - at most
    O(max_concurrent) of them. An audit afterwards reports each as C(stopped), with the reason.
  - The role's permission is judged from its managed and inline policies, with IAM
    wildcards and resource-tag conditions; other conditions never count against an
    instance, and permissions boundaries and SCPs are not evaluated. Reading them needs
    C(iam:ListAttachedRolePolicies), C(iam:GetPolicy), C(iam:GetPolicyVersion),
    C(iam:ListRolePolicies) and C(iam:GetRolePolicy); without them the module warns and
    skips this check. The volume check needs C(ec2:DescribeVolumes) and C(kms:DescribeKey),
    one call per 200 volumes and one per distinct key; without them it warns and skips.
  - Rule coverage is proved once per rule with C(TestEventPattern) and then by the
    instance ids the pattern names, so an audit of 1,000 instances costs a handful of
    calls per rule, not per instance.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Audit the protection of two instances
  guardrails.ec2.stop_protection_verify:
    instance_ids:
      - i-0123456789abcdef0
      - i-0fedcba9876543210
    region: eu-west-1

- name: Drill - stop them and time the restart
  guardrails.ec2.stop_protection_verify:
    instance_ids: "{{ groups['stop_protected'] | map('extract', hostvars, 'instance_id') | list }}"
    mode: drill
    timeout: 300
    region: eu-west-1
  register: drill

- name: Show the slowest recovery
  ansible.builtin.debug:
    msg: "{{ drill.summary.recovery_seconds.max }} s"

- name: Prove that an unprotected instance stays stopped
  guardrails.ec2.stop_protection_verify:
    instance_ids: [i-00aa11bb22cc33dd4]
    mode: drill
    force: true
    timeout: 30
    region: eu-west-1
  register: unprotected
  failed_when: unprotected.instances[0].recovered
"""

RETURN = r"""
passed:
  description:
    - Whether every instance is protected (audit) and every drilled protected instance came
      back by itself (drill). Set on success and on these failures, so that a task run with
      C(failed_when) can still tell.
  returned: when the audit ran
  type: bool
  sample: true
management_trails:
  description:
    - With attribution or tamper rules deployed, the names of the CloudTrail trails that log
      the region's management write events (those rules see nothing without one; an empty
      list also gives a warning). Null when not checked.
  returned: when the audit ran
  type: list
  elements: str
  sample: [organization-trail]
alarms:
  description:
    - The state of the deployment's two alarms in the region, null for one that does not exist
      (no alarms, or no sweep for the heartbeat); null when they could not be read. An alarm
      in ALARM also gives a warning that says what it means.
  returned: when the audit ran
  type: dict
  contains:
    attention:
      description: C(<name>-attention), on decisions that need a person.
      type: dict
      sample: {"name": "EC2Protect-attention", "state": "OK", "reason": "Threshold Crossed", "since": "2026-12-06 17:00:00+00:00"}
    heartbeat:
      description:
        - C(<name>-heartbeat), the dead-man's switch. C(ALARM) when no sweep completed for two
          sweep intervals, whatever disarmed it.
      type: dict
      sample: {"name": "EC2Protect-heartbeat", "state": "ALARM", "reason": "Threshold Crossed", "since": "2026-12-06 17:00:00+00:00"}
instances:
  description: One entry per listed instance, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
      sample: i-0123456789abcdef0
    region:
      description: Its region.
      type: str
      sample: eu-west-1
    state:
      description: Its state when the audit read it; null when it does not exist.
      type: str
      sample: running
    protected:
      description: Whether a working rule of the deployment covers it and nothing disarms it.
      type: bool
      sample: true
    problems:
      description: Why it is not protected, or what the drill saw; plain sentences.
      type: list
      elements: str
      sample: ["Bypass tag StopProtectionBypass is set ('maintenance'): the instance will be left stopped."]
    rules:
      description: The deployment's rules that name the instance (or, in tag mode, match by tag).
      type: list
      elements: str
      sample: [EC2Protect.1]
    aws_stop_protection:
      description: Whether AWS's own stop protection (DisableApiStop) is on; null when not read.
      type: bool
      sample: false
    drilled:
      description: Drill, whether it was stopped.
      returned: in drill mode
      type: bool
      sample: true
    recovered:
      description: Drill, whether it was running again within the timeout; null when not drilled.
      returned: in drill mode
      type: bool
      sample: true
    restored_by_drill:
      description: Drill, whether the drill itself had to start it again (the protection did not).
      returned: in drill mode
      type: bool
      sample: false
    skipped:
      description: Drill, why it was not stopped - C(DisableApiStop) when AWS's stop protection is set.
      returned: when skipped in drill mode
      type: str
      sample: DisableApiStop
    seconds_to_stopped:
      description: Drill, seconds from the stop call until it was seen stopped.
      returned: in drill mode
      type: float
      sample: 0.41
    seconds_to_running:
      description: Drill, seconds from the stop call until it was seen running again.
      returned: in drill mode
      type: float
      sample: 1.32
summary:
  description: Counts over all instances.
  returned: always
  type: dict
  contains:
    instances:
      description: Instances listed.
      type: int
      sample: 3
    protected:
      description: Instances protected.
      type: int
      sample: 2
    unprotected:
      description: Instances not protected.
      type: int
      sample: 1
    drilled:
      description: Drill, instances stopped.
      returned: in drill mode
      type: int
      sample: 2
    recovered:
      description: Drill, drilled instances running again in time.
      returned: in drill mode
      type: int
      sample: 2
    not_recovered:
      description: Drill, drilled instances not running again in time.
      returned: in drill mode
      type: int
      sample: 0
    restored_by_drill:
      description: Drill, drilled instances the drill itself started again.
      returned: in drill mode
      type: int
      sample: 0
    skipped_stop_protection:
      description: Drill, running instances not drilled because AWS's stop protection is set.
      returned: in drill mode
      type: int
      sample: 0
    recovery_seconds:
      description: Drill, min, median and max of RV(instances[].seconds_to_running) over recovered instances.
      returned: in drill mode
      type: dict
      sample: {"min": 0.9, "median": 1.1, "max": 1.6}
would_stop:
  description: Check mode drill, the instances it would have stopped.
  returned: in check mode with O(mode=drill)
  type: list
  elements: str
  sample: [i-0123456789abcdef0]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.arn import parse_aws_arn
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.audit import audit
from ansible_collections.guardrails.ec2.plugins.module_utils.audit_reads import alarm_states
from ansible_collections.guardrails.ec2.plugins.module_utils.clients import session_clients
from ansible_collections.guardrails.ec2.plugins.module_utils.drill import drill
from ansible_collections.guardrails.ec2.plugins.module_utils.drill_batches import (
    concurrency,
    summarise,
    verdict,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    ProtectionError,
    validate_instance_id,
)


def validate(module):
    ids = module.params["instance_ids"]
    try:
        for position, instance_id in enumerate(ids):
            validate_instance_id(instance_id, source=f"instance_ids[{position}]")
    except ProtectionError as exc:
        module.fail_json(msg=str(exc))
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        module.fail_json(msg=f"instance_ids lists these more than once: {', '.join(duplicates)}")
    if module.params["timeout"] < 1:
        module.fail_json(msg=f"timeout must be at least 1 second, got {module.params['timeout']}")
    try:
        concurrency(module.params["max_concurrent"], max(len(ids), 1))
    except ProtectionError as exc:
        module.fail_json(msg=str(exc))


def unprotected_message(entries):
    return "; ".join(f"{e['instance_id']}: {' '.join(e['problems'])}" for e in entries if not e["protected"])


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", default="EC2Protect"),
            instance_ids=dict(type="list", elements="str", default=[]),
            code_sha256=dict(type="str"),
            restart_together=dict(type="bool"),
            mode=dict(type="str", choices=["audit", "drill"], default="audit"),
            timeout=dict(type="int", default=600),
            force=dict(type="bool", default=False),
            max_concurrent=dict(type="raw", default=1),
            continue_on_failure=dict(type="bool", default=False),
            check_stop_protection_attribute=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    validate(module)
    params = module.params
    retry = AWSRetry.jittered_backoff()
    # One boto3 session for all clients: each service model is loaded once.
    clients = session_clients(
        module,
        ("ec2", "lambda", "events", "iam", "kms", "sns", "sqs", "cloudwatch", "cloudtrail", "sts"),
        retry,
    )
    region = module.region
    warnings = []
    report = {"management_trails": None}
    try:
        identity = clients["sts"].get_caller_identity(aws_retry=True)
        account, partition = identity["Account"], parse_aws_arn(identity["Arn"])["partition"]
        entries = audit(
            clients,
            params["name"],
            params["instance_ids"],
            region,
            account,
            partition,
            check_attribute=params["check_stop_protection_attribute"],
            warnings=warnings,
            code_sha256=params["code_sha256"],
            report=report,
            restart_together=params["restart_together"],
        )
        try:
            alarms = alarm_states(clients["cloudwatch"], params["name"], warnings)
        except is_boto3_error_code(("AccessDenied", "AccessDeniedException")):
            alarms = None
            warnings.append(
                "Could not read the deployment's alarms (cloudwatch:DescribeAlarms); their state was not checked."
            )
    except ProtectionError as exc:
        module.fail_json(msg=str(exc), passed=False)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Couldn't audit stop protection {params['name']} in {region}")
    for warning in warnings:
        module.warn(warning)
    # What the audit read, in every result from here on.
    read = {"instances": entries, "alarms": alarms, "management_trails": report["management_trails"]}

    if params["mode"] == "audit":
        summary = summarise(entries, "audit")
        if summary["unprotected"]:
            module.fail_json(
                msg=f"{summary['unprotected']} of {summary['instances']} instances are not protected: "
                + unprotected_message(entries),
                passed=False,
                **read,
                summary=summary,
            )
        module.exit_json(
            changed=False,
            passed=True,
            **read,
            summary=summary,
        )

    unprotected = [e for e in entries if not e["protected"]]
    if unprotected and not params["force"]:
        module.fail_json(
            msg="Refusing to drill unprotected instances (force=true drills them anyway): "
            + unprotected_message(entries),
            passed=False,
            **read,
            summary=summarise(entries, "audit"),
        )
    if module.check_mode:
        would_stop = [e["instance_id"] for e in entries if e["state"] == "running"]
        module.exit_json(
            changed=bool(would_stop),
            passed=True,
            **read,
            summary=summarise(entries, "audit"),
            would_stop=would_stop,
        )
    try:
        drill(
            clients["ec2"],
            entries,
            params["timeout"],
            max_concurrent=params["max_concurrent"],
            continue_on_failure=params["continue_on_failure"],
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Couldn't stop the instances for the drill")
    summary = summarise(entries, "drill")
    changed = summary["drilled"] > 0
    # Every drilled instance must come back by the protection, forced or not: a forced drill
    # of an unprotected instance that stayed stopped is a failed drill, said as such.
    failure = verdict(entries, params["timeout"])
    if failure:
        module.fail_json(
            msg=failure,
            changed=changed,
            passed=False,
            **read,
            summary=summary,
        )
    module.exit_json(
        changed=changed,
        passed=True,
        **read,
        summary=summary,
    )


if __name__ == "__main__":
    main()
