#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: stop_protection_diff
short_description: Say what a protect run changes in one region, as Ansible's diff
version_added: 1.1.0
description:
  - Runs on the controller (an action plugin) and calls no AWS API. From what
    M(guardrails.ec2.stop_protection_deployment_info) read and what the role renders for a
    region, it returns one before/after diff per resource that differs (shown with
    C(--diff)) and one line per change, naming the instance ids that join or leave each
    rule and each managed policy's C(ec2:StartInstances).
  - Reports C(changed) exactly when something differs, in check mode too, so that
    C(--check --diff) previews a run. A building block of the M(guardrails.ec2.stop_protection) role.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  region:
    description: The region.
    type: str
    required: true
  state:
    description: The region's C(state) as M(guardrails.ec2.stop_protection_deployment_info) returns it.
    type: dict
    default: {}
  desired:
    description: What the role writes in the region (C(desired) of the P(guardrails.ec2.stop_protection_rollout#filter) filter).
    type: dict
    required: true
  drift:
    description:
      - Per resource, its differences (C(drift) of the P(guardrails.ec2.stop_protection_rollout#filter) filter); C(policies) lists
        the managed policies that differ, each as planned with its C(drift).
    type: dict
    default: {}
  rules:
    description: C(write) and C(stale) rules (C(rules) of the P(guardrails.ec2.stop_protection_rollout#filter) filter).
    type: dict
    default: {}
  deployed_rules:
    description: The region's rules as deployed (C(rules) of M(guardrails.ec2.stop_protection_deployment_info)).
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: all
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
"""

EXAMPLES = r"""
- name: Show what differs in eu-west-1
  guardrails.ec2.stop_protection_diff:
    region: eu-west-1
    state: "{{ read.state }}"
    desired: "{{ desired }}"
    drift: "{{ drift }}"
    rules: "{{ rules }}"
    deployed_rules: "{{ read.rules }}"
"""

RETURN = r"""
msg:
  description: One line per change, and per rule and managed policy whose instances change.
  returned: always
  type: list
  elements: str
  sample:
    - "eu-west-1 policy EC2Protect-eu-west-1: no version has the planned document"
    - "eu-west-1 policy EC2Protect-eu-west-1 (ec2:StartInstances): instances joining i-0123456789abcdef0"
    - "eu-west-1 rule EC2Protect.1: instances joining i-0123456789abcdef0; leaving i-0fedcba9876543210"
diff:
  description: One C(before)/C(after) entry per resource that differs (JSON text; empty for one to create or remove).
  returned: always
  type: list
  elements: dict
  sample:
    - before_header: rule EC2Protect.1 in eu-west-1 (deployed)
      after_header: rule EC2Protect.1 in eu-west-1 (planned)
      before: ""
      after: "{...}"
"""
