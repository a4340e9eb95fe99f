# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading a deployment's EventBridge rules, shared by the rule_info and verify modules."""

from ansible_collections.guardrails.ec2.plugins.module_utils.protection import (
    ATTRIBUTION_SUFFIX,
    SWEEP_SUFFIX,
    rule_index,
)


def list_deployment_rules(client, name, with_targets=True):
    """The rules of deployment ``name`` in the client's region, shard rules first by number.

    Only ``<name>-<n>``, ``<name>-attribution`` and ``<name>-sweep`` count: a deployment called
    ``<name>-2`` has rules ``<name>-2-1``... and is never mistaken for ours.
    ``client`` is an events client wrapped with AWSRetry (calls use ``aws_retry=True``).
    """
    rules = []
    token = None
    while True:
        kwargs = {"NamePrefix": f"{name}-"}
        if token:
            kwargs["NextToken"] = token
        reply = client.list_rules(aws_retry=True, **kwargs)
        for rule in reply.get("Rules", []):
            index = rule_index(name, rule["Name"])
            kinds = {f"{name}{ATTRIBUTION_SUFFIX}": "attribution", f"{name}{SWEEP_SUFFIX}": "sweep"}
            if index is None and rule["Name"] not in kinds:
                continue
            entry = {
                "name": rule["Name"],
                "arn": rule["Arn"],
                "state": rule.get("State"),
                "description": rule.get("Description"),
                "event_pattern": rule.get("EventPattern"),
                "schedule_expression": rule.get("ScheduleExpression"),
                "index": index,
                "kind": "state_change" if index is not None else kinds[rule["Name"]],
            }
            if with_targets:
                entry["targets"] = list_targets(client, rule["Name"])
            rules.append(entry)
        token = reply.get("NextToken")
        if not token:
            break
    rules.sort(key=lambda rule: (rule["index"] is None, rule["index"] or 0))
    return rules


def list_targets(client, rule):
    targets = []
    token = None
    while True:
        kwargs = {"Rule": rule}
        if token:
            kwargs["NextToken"] = token
        reply = client.list_targets_by_rule(aws_retry=True, **kwargs)
        targets.extend({"id": target["Id"], "arn": target["Arn"]} for target in reply.get("Targets", []))
        token = reply.get("NextToken")
        if not token:
            return targets
