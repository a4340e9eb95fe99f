# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the role's verify and guard entry points: a drill split into batches and merged
back, the report of a verify run, the guard policy's documents."""

import os

from ansible.errors import AnsibleFilterError

from ansible_collections.guardrails.ec2.plugins.module_utils import drill_batches, guard, validate


def _seconds(value):
    return "-" if value is None else f"{value:.1f} s"


def stop_protection_verify_report(result):
    """A looped stop_protection_verify result as readable lines, plus whether it passed."""
    region = (result.get("stop_protection__region") or {}).get("region", "?")
    summary = result.get("summary") or {}
    lines = []
    for entry in result.get("instances") or []:
        if "drilled" in entry and entry.get("drilled"):
            outcome = "back" if entry.get("recovered") else "NOT back"
            if entry.get("restored_by_drill"):
                outcome += ", started again by the drill"
            line = (
                f"{entry['instance_id']} ({region}): {outcome} - stopped after {_seconds(entry.get('seconds_to_stopped'))}, "
                f"running after {_seconds(entry.get('seconds_to_running'))}"
            )
        else:
            status = "protected" if entry.get("protected") else "NOT protected"
            line = f"{entry['instance_id']} ({region}): {status}, {entry.get('state') or 'missing'}"
        if entry.get("problems"):
            line += " - " + " ".join(entry["problems"])
        lines.append(line)
    if "recovered" in summary:
        times = summary.get("recovery_seconds") or {}
        lines.append(
            f"{region}: {summary['recovered']} of {summary['drilled']} drilled instances back"
            + (
                f", {summary['restored_by_drill']} started again by the drill"
                if summary.get("restored_by_drill")
                else ""
            )
            + f"; recovery min {_seconds(times.get('min'))}, median {_seconds(times.get('median'))}, "
            f"max {_seconds(times.get('max'))}"
        )
    elif summary:
        lines.append(
            f"{region}: {summary.get('protected', 0)} of {summary.get('instances', 0)} instances protected"
        )
    # The role registers with failed_when: false (every region is reported before the run
    # fails), which overwrites "failed": the module's own verdict is "passed".
    failed = bool(result.get("failed")) or result.get("passed") is not True
    return {
        "region": region,
        "ok": not failed,
        "msg": result.get("msg", "") if failed else "",
        "summary": summary,
        "instances": result.get("instances") or [],
        "lines": lines or [f"{region}: {result.get('msg', 'no result')}"],
    }


def stop_protection_report_path(path):
    """``path`` (``~`` expanded) made absolute against the directory ansible-playbook runs
    in (the controller's working directory), not the playbook's or the collection's folder."""
    return os.path.abspath(os.path.expanduser(path))


def _planned_regions(planned):
    """The region results of a looped stop_protection_verify in check mode that may be drilled."""
    for result in planned.get("results") or []:
        if result.get("passed") is True and "instances" in result:
            yield result["stop_protection__region"]["region"], result


def stop_protection_drill_batches(planned, max_concurrent=1):
    """The batches of a drill, from the audit that precedes it (stop_protection_verify in
    check mode, looped over the regions): ``[{region, number, of, instance_ids}]``, in the
    order the module's own drill would stop them, so that each batch is one task iteration
    that shows its outcome as the drill goes."""
    try:
        found = []
        for region, result in _planned_regions(planned):
            batches = drill_batches.plan_batches(drill_batches.fresh(result["instances"]), max_concurrent)
            found.extend(
                {
                    "region": region,
                    "number": number,
                    "of": len(batches),
                    "instance_ids": [e["instance_id"] for e in batch],
                }
                for number, batch in enumerate(batches, start=1)
            )
        return found
    except validate.ProtectionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def stop_protection_drill_merge(planned, batches, timeout, continue_on_failure=False):
    """The looped result of the drill as one module run per region would return it: each
    planned region's ``instances``, ``summary``, ``passed`` and ``msg`` from its ``batches``
    (results of stop_protection_verify per batch, each with its ``stop_protection__batch``).
    Regions the audit refused stay as they are."""
    results = []
    for result in planned.get("results") or []:
        region = (result.get("stop_protection__region") or {}).get("region")
        if result.get("passed") is not True or "instances" not in result:
            results.append(result)
            continue
        own = [b for b in batches or [] if (b.get("stop_protection__batch") or {}).get("region") == region]
        instances, summary, failure = drill_batches.merge(
            result["instances"], own, timeout, continue_on_failure
        )
        results.append(
            {
                "stop_protection__region": result["stop_protection__region"],
                "changed": any(e.get("drilled") for e in instances),
                "passed": failure is None,
                "failed": failure is not None,
                "msg": failure or "",
                "instances": instances,
                "summary": summary,
            }
        )
    return {"results": results}


def stop_protection_guard_policy(plan, automation_principals, path, protection_tag_key=None):
    """The guard policy of the plan's deployment as files to write: ``[{"path", "document"}]``,
    one document when it fits an SCP's 5,120 characters (``path``), else ``<path>.1``, ... .
    ``protection_tag_key`` (the tag a dynamic inventory selects by) is guarded in instance-id
    mode too."""
    try:
        settings, budget = plan["settings"], plan["restart_policy"]
        tag_mode = plan["mode"] == validate.MODE_TAG
        keys = {settings["tag_key"] or protection_tag_key, settings["bypass_tag_key"]}
        statements = guard.guard_statements(
            plan["name"],
            automation_principals,
            tag_keys=sorted(key for key in keys if key),
            budget_tag_keys=[budget["history_tag_key"], budget["suspended_tag_key"]],
            topic_arn=settings["notification_topic_arn"],
        )
        statements += guard.stop_protection_off_statements(
            automation_principals,
            instance_arns=[
                f"arn:aws:ec2:{entry['region']}:*:instance/{instance_id}"
                for entry in plan["regions"]
                for instance_id in entry["instance_ids"]
            ],
            tag_key=settings["tag_key"] if tag_mode else None,
            tag_value=settings["tag_value"] if tag_mode else None,
        )
        found = guard.documents(statements)
    except validate.ProtectionError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    if len(found) == 1:
        return [{"path": stop_protection_report_path(path), "document": found[0]}]
    return [
        {"path": stop_protection_report_path(f"{path}.{index}"), "document": document}
        for index, document in enumerate(found, start=1)
    ]


class FilterModule:
    def filters(self):
        return {
            "stop_protection_verify_report": stop_protection_verify_report,
            "stop_protection_report_path": stop_protection_report_path,
            "stop_protection_drill_batches": stop_protection_drill_batches,
            "stop_protection_drill_merge": stop_protection_drill_merge,
            "stop_protection_guard_policy": stop_protection_guard_policy,
        }
