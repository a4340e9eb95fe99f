#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: stop_protection_rule_info
short_description: List the EventBridge rules of a stop-protection deployment
version_added: 1.0.0
description:
  - Lists the rules that the M(guardrails.ec2.stop_protection) role created for one base
    name in one region, with their targets, so that rules an earlier, larger deployment
    left behind can be removed.
  - Only the shard rules C(<name>.<n>), C(<name>.attribution), C(<name>.sweep) and the
    tamper rules C(<name>.tamper), C(<name>.tamper-log), C(<name>.tamper-ec2) and
    C(<name>.tamper-iam) belong to a deployment, and the same named with C(-) as written before 1.1.0 (returned with
    C(legacy=true)); rules of another deployment whose name starts the same
    (C(<name>-2.1)) are not listed.
deprecated:
  removed_in: 2.0.0
  why: The M(guardrails.ec2.stop_protection) role no longer uses it.
  alternative: >-
    Use M(guardrails.ec2.stop_protection_deployment_info): its RV(guardrails.ec2.stop_protection_deployment_info#module:rules)
    are the same rules, with their targets.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  name:
    description:
      - Base name of the deployment (C(stop_protection_name)).
    type: str
    default: EC2Protect
  keep:
    description:
      - Names of the rules the deployment needs now; the others are returned in RV(stale).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find rules no longer needed
  guardrails.ec2.stop_protection_rule_info:
    name: EC2Protect
    region: eu-west-1
    keep: [EC2Protect.1, EC2Protect.2, EC2Protect.sweep]
  register: rules

- name: Show them
  ansible.builtin.debug:
    msg: "{{ rules.stale | map(attribute='name') }}"
"""

RETURN = r"""
rules:
  description: The deployment's rules, shard rules first in number order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Rule name.
      type: str
      sample: EC2Protect.1
    arn:
      description: Rule ARN.
      type: str
      sample: arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.1
    state:
      description: C(ENABLED) or C(DISABLED).
      type: str
      sample: ENABLED
    event_pattern:
      description: The rule's event pattern, as a JSON string.
      type: str
      sample: '{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["stopped"]}}'
    schedule_expression:
      description: The sweep rule's schedule, null for the others.
      type: str
      sample: rate(5 minutes)
    index:
      description: Shard number, or null for the attribution and sweep rules.
      type: int
      sample: 1
    kind:
      description: C(state_change), C(attribution) or C(sweep).
      type: str
      sample: state_change
    targets:
      description: The rule's targets.
      type: list
      elements: dict
      sample: [{"id": "EC2Protect", "arn": "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"}]
stale:
  description: The rules in RV(rules) whose names are not in O(keep).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "EC2Protect.3", "arn": "arn:aws:events:eu-west-1:123456789012:rule/EC2Protect.3"}]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.rules import list_deployment_rules


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", default="EC2Protect"),
            keep=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    client = module.client("events", retry_decorator=AWSRetry.jittered_backoff())
    try:
        rules = list_deployment_rules(client, module.params["name"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Couldn't list the rules of {module.params['name']}")
    keep = set(module.params["keep"])
    module.exit_json(changed=False, rules=rules, stale=[rule for rule in rules if rule["name"] not in keep])


if __name__ == "__main__":
    main()
