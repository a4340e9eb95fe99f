#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: instance_stop_protection
short_description: Turn AWS's stop protection (DisableApiStop) of EC2 instances on or off, and remember which
version_added: 1.1.0
description:
  - Sets the C(DisableApiStop) attribute of the listed instances, so that EC2 refuses
    C(StopInstances) on them (from the API and the console). A C(shutdown) inside the
    operating system still stops them; M(guardrails.ec2.stop_protection) restarts those.
  - With O(marker_tag_key), each instance this module turned it on for carries that tag,
    and only those are ever turned off again - on O(state=absent), or on O(state=present)
    once they are no longer listed. An instance that had it on before keeps it.
  - M(amazon.aws.ec2_instance) manages C(termination_protection) but not stop protection.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  instance_ids:
    description:
      - The instances that should have stop protection on (O(state=present)), or, without
        O(marker_tag_key), the instances to turn it off for (O(state=absent)).
    type: list
    elements: str
    default: []
  state:
    description:
      - C(present) turns it on for O(instance_ids) and, with O(marker_tag_key), off for the
        marked instances no longer listed. C(absent) turns it off for the marked instances
        (with O(marker_tag_key)) or for O(instance_ids).
    type: str
    choices: [present, absent]
    default: present
  marker_tag_key:
    description:
      - Tag key that remembers which instances this module turned stop protection on for
        (value C(set)). Omit to manage the attribute of the listed instances only.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - One C(DescribeInstanceAttribute) call per listed instance (EC2 has no batch read of the
    attribute), one C(ModifyInstanceAttribute) per change, one C(CreateTags) or
    C(DeleteTags) for all markers.
  - Supports check mode and diff.
"""

EXAMPLES = r"""
- name: Refuse API and console stops of two instances, remembering which were set here
  guardrails.ec2.instance_stop_protection:
    instance_ids: [i-0123456789abcdef0, i-0fedcba9876543210]
    marker_tag_key: guardrails.ec2/EC2Protect/disable-api-stop

- name: Turn it off again where this deployment turned it on
  guardrails.ec2.instance_stop_protection:
    marker_tag_key: guardrails.ec2/EC2Protect/disable-api-stop
    state: absent
"""

RETURN = r"""
turned_on:
  description: Instances whose stop protection was turned on (in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: [i-0123456789abcdef0]
turned_off:
  description: Instances whose stop protection was turned off (in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: []
instances:
  description: Stop protection of each instance the task looked at, after the task.
  returned: always
  type: dict
  sample: {"i-0123456789abcdef0": true}
"""

import re

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.reads import marked_instances

INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")
MARKER_VALUE = "set"


def read_attribute(ec2, instance_id):
    reply = ec2.describe_instance_attribute(
        aws_retry=True, InstanceId=instance_id, Attribute="disableApiStop"
    )
    return bool((reply.get("DisableApiStop") or {}).get("Value"))


def plan(state, listed, current, marked, marker):
    """``(turn_on, turn_off)`` from what is listed, each listed instance's attribute now
    (``current``) and the marked instances."""
    if state == "present":
        turn_on = [i for i in listed if not current[i]]
        turn_off = [i for i in marked if i not in listed] if marker else []
        return turn_on, turn_off
    return [], (list(marked) if marker else [i for i in listed if current[i]])


def set_attribute(ec2, instance_id, value):
    ec2.modify_instance_attribute(aws_retry=True, InstanceId=instance_id, DisableApiStop={"Value": value})


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_ids=dict(type="list", elements="str", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            marker_tag_key=dict(type="str", no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    listed = list(dict.fromkeys(params["instance_ids"]))
    bad = [i for i in listed if not INSTANCE_ID.fullmatch(i)]
    if bad:
        module.fail_json(msg=f"instance_ids holds values that are not instance ids: {', '.join(bad)}")
    marker = params["marker_tag_key"]
    if marker is not None and (not marker or len(marker) > 128 or marker.lower().startswith("aws:")):
        module.fail_json(
            msg=f"marker_tag_key must be 1-128 characters and not start with 'aws:', got {marker!r}"
        )
    ec2 = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    try:
        current = {i: read_attribute(ec2, i) for i in listed}
        marked = marked_instances(ec2, marker) if marker else []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Couldn't read the stop protection of the instances")
    turn_on, turn_off = plan(params["state"], listed, current, marked, marker)
    before = dict(current, **{i: True for i in marked if i not in current})
    after = dict(before, **{i: True for i in turn_on}, **{i: False for i in turn_off})
    changed = bool(turn_on or turn_off)
    if changed and not module.check_mode:
        try:
            # The attribute first, then the marker: a marker that could not be written
            # leaves the protection on, unremembered (never turned off by mistake).
            for instance_id in turn_on:
                set_attribute(ec2, instance_id, True)
            if marker and turn_on:
                ec2.create_tags(
                    aws_retry=True, Resources=turn_on, Tags=[{"Key": marker, "Value": MARKER_VALUE}]
                )
            for instance_id in turn_off:
                set_attribute(ec2, instance_id, False)
            if marker and turn_off:
                ec2.delete_tags(aws_retry=True, Resources=turn_off, Tags=[{"Key": marker}])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            module.fail_json_aws(e, msg="Couldn't change the stop protection of the instances")
    affected = sorted(set(turn_on) | set(turn_off))
    module.exit_json(
        changed=changed,
        turned_on=turn_on,
        turned_off=turn_off,
        instances=after,
        diff={
            "before": {i: before.get(i, False) for i in affected},
            "after": {i: after[i] for i in affected},
        },
    )


if __name__ == "__main__":
    main()
