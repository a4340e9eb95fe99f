# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-side: report what a protect run changes in a region as Ansible's diff."""

from ansible.plugins.action import ActionBase

from ansible_collections.guardrails.ec2.plugins.module_utils.diff import region_diff


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        rules = args.get("rules") or {}
        found = region_diff(
            args["region"],
            args.get("state") or {},
            args["desired"],
            args.get("drift") or {},
            rules_write=rules.get("write") or [],
            rules_stale=rules.get("stale") or [],
            deployed_rules=args.get("deployed_rules") or [],
        )
        # Shown like debug output (the lines), and with --diff as before/after.
        result.update(changed=bool(found["diff"]), diff=found["diff"], msg=found["lines"])
        result["_ansible_verbose_always"] = True
        return result
