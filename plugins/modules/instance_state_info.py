#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: instance_state_info
short_description: Look up the state of many EC2 instances at once
version_added: 1.0.0
description:
  - Reports the state of each listed instance, and which ones do not exist, in one task
    however long the list - 100 ids per C(DescribeInstanceStatus) call, which answers with the
    state alone; a batch holding an unknown id is looked up with C(DescribeInstances) filtered
    on the ids, which skips unknown ids. Auto Scaling membership comes from C(DescribeTags).
  - Unlike M(amazon.aws.ec2_instance_info) it returns only the states, so that checking a
    thousand instances stays quick, and an unknown id does not fail the call.
deprecated:
  removed_in: 2.0.0
  why: The M(guardrails.ec2.stop_protection) role no longer uses it.
  alternative: >-
    Use M(amazon.aws.ec2_instance_info), or M(guardrails.ec2.stop_protection_deployment_info)
    with O(guardrails.ec2.stop_protection_deployment_info#module:instance_ids).
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  instance_ids:
    description:
      - Instances to look up.
    type: list
    elements: str
    required: true
  warn_managed:
    description:
      - Warn, naming each, about instances whose lifecycle an Auto Scaling group owns (tag
        C(aws:autoscaling:groupName)), since stop protection leaves those stopped by default.
    type: bool
    default: false
  warn_shutdown_terminate:
    description:
      - Warn, naming each, about instances whose C(InstanceInitiatedShutdownBehavior) is
        C(terminate) - a shutdown inside the OS terminates them, which no restart undoes.
      - Costs one C(DescribeInstanceAttribute) call per instance (AWS has no batch form),
        made in parallel.
    type: bool
    default: false
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Check that the instances exist
  guardrails.ec2.instance_state_info:
    instance_ids: [i-0123456789abcdef0, i-0fedcba9876543210]
    region: eu-west-1
  register: found
  failed_when: found.missing | length > 0
"""

RETURN = r"""
states:
  description: State of every instance found, by instance id.
  returned: always
  type: dict
  sample: {"i-0123456789abcdef0": "running"}
auto_scaling_groups:
  description: The Auto Scaling group of each listed instance that belongs to one.
  returned: always
  type: dict
  sample: {"i-0123456789abcdef0": "web"}
shutdown_terminates:
  description: Listed instances whose OS shutdown terminates them (only with O(warn_shutdown_terminate)).
  returned: always
  type: list
  elements: str
  sample: [i-0123456789abcdef0]
missing:
  description: Listed instances that do not exist in the region.
  returned: always
  type: list
  elements: str
  sample: [i-0fedcba9876543210]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.reads import instance_warnings, look_up_instances


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_ids=dict(type="list", elements="str", required=True),
            warn_managed=dict(type="bool", default=False),
            warn_shutdown_terminate=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    ids = module.params["instance_ids"]
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    try:
        found = look_up_instances(client, ids, ids if module.params["warn_shutdown_terminate"] else ())
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Couldn't describe the instances")
    for warning in instance_warnings(found, module.params["warn_managed"]):
        module.warn(warning)
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
