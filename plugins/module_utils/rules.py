# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading a deployment's EventBridge rules, shared by the rule_info and verify modules."""

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.amazon.aws.plugins.module_utils.botocore import paginated_query_with_retries

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import (
    DESCRIPTION_PREFIX,
    RULE_SEPARATOR,
    rule_kind,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.patterns import pattern_instance_ids

# ListTargetsByRule calls in flight at once (EventBridge allows 50 per second in the
# largest regions, fewer elsewhere; throttled calls are retried).
TARGET_WORKERS = 4


def list_deployment_rules(client, name, with_targets=True):
    """The rules of deployment ``name`` in the client's region, shard rules first by number.

    Only ``<name>.<n>``, ``<name>.attribution`` and ``<name>.sweep`` count, and the same
    with ``-`` as written before 1.1.0 (returned with ``legacy: true``, so that protect
    replaces them): a deployment called ``<name>-2`` has rules ``<name>-2.1``... and is
    never mistaken for ours.
    ``client`` is an events client; each list is read with its paginator, retried as a whole.
    """
    rules = []
    for rule in paginated_query_with_retries(client, "list_rules", NamePrefix=name).get("Rules", []):
        found = rule_kind(name, rule["Name"])
        if found is None:
            continue
        kind, index, legacy = found
        entry = {
            "name": rule["Name"],
            "arn": rule["Arn"],
            "state": rule.get("State"),
            "description": rule.get("Description"),
            "event_pattern": rule.get("EventPattern"),
            "schedule_expression": rule.get("ScheduleExpression"),
            "role_arn": rule.get("RoleArn"),
            "index": index,
            "kind": kind,
            "legacy": legacy,
        }
        rules.append(entry)
    if with_targets:
        # One ListTargetsByRule per rule, a few at a time: a large deployment has tens of rules.
        with ThreadPoolExecutor(max_workers=TARGET_WORKERS) as pool:
            listed = list(pool.map(lambda entry: list_targets(client, entry["name"]), rules))
        for entry, targets in zip(rules, listed, strict=True):
            entry["targets"] = targets
    rules.sort(key=lambda rule: (rule["legacy"], rule["index"] is None, rule["index"] or 0, rule["name"]))
    return rules


def list_targets(client, rule):
    # "extra": every other field (input, retry policy, ...): the role's targets have none.
    return [
        {
            "id": target["Id"],
            "arn": target["Arn"],
            "extra": {key: value for key, value in target.items() if key not in ("Id", "Arn")},
        }
        for target in paginated_query_with_retries(client, "list_targets_by_rule", Rule=rule).get(
            "Targets", []
        )
    ]


def other_deployments(client, name):
    """``{deployment name: [instance ids]}`` of the other guardrails.ec2 deployments on the
    region's default bus: rules named ``<other>.<n>``/``.sweep``/``.attribution`` whose
    description says they are this collection's (``naming.DESCRIPTION_PREFIX``), with the
    instance ids their patterns name (none in tag mode). Deployment ``name`` is left out.
    """
    found = {}
    for rule in paginated_query_with_retries(client, "list_rules").get("Rules", []):
        base = rule["Name"].split(RULE_SEPARATOR, 1)[0]
        if base == name or not (rule.get("Description") or "").startswith(DESCRIPTION_PREFIX):
            continue
        kind = rule_kind(base, rule["Name"])
        if kind is None or kind[2]:  # not a rule of deployment <base>, or of a release before 1.1
            continue
        ids = found.setdefault(base, [])
        if kind[0] == "state_change":
            ids.extend(pattern_instance_ids(rule.get("EventPattern")))
    return {base: sorted(set(ids)) for base, ids in sorted(found.items())}
