# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A drill's plan and verdict, pure: which instances it stops in which batches, what it says
of those it cannot drill, and how the batches' results merge into one region's drill.

``drill`` carries the plan out against EC2; the ``stop_protection_drill_*`` filters use
these on the controller to split a region's drill into batches and merge them back.
No AWS SDK here.
"""

import math
import statistics

from ansible_collections.guardrails.ec2.plugins.module_utils.validate import ProtectionError


def concurrency(max_concurrent, count):
    """How many instances one batch of a drill stops: a number, or a percentage of ``count``."""
    text = str(max_concurrent).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.floor(count * percent / 100))
        number = int(text)
        if number < 1:
            raise ValueError
        return number
    except ValueError:
        raise ProtectionError(
            f"max_concurrent must be a positive number or a percentage (1%-100%), got {max_concurrent!r}"
        ) from None


def not_brought_back(entries):
    """The protected instances a drill stopped that the protection did not bring back."""
    return [e for e in entries if e.get("drilled") and e["protected"] and not e["recovered"]]


def fresh(entries):
    """Copies of audited entries that a drill can mark without touching the originals."""
    return [dict(entry, problems=list(entry.get("problems") or [])) for entry in entries]


def plan_batches(entries, max_concurrent):
    """The batches a drill stops, in order; every entry gains the drill's fields, and those
    that cannot be drilled (not running, AWS stop protection) say why in ``problems``."""
    targets = []
    for entry in entries:
        entry.update(
            drilled=False,
            recovered=None,
            restored_by_drill=False,
            seconds_to_stopped=None,
            seconds_to_running=None,
        )
        if entry["state"] != "running":
            entry["problems"].append(
                f"Not drilled: the instance was {entry['state'] or 'missing'}, not running."
            )
        elif entry.get("aws_stop_protection"):
            entry["skipped"] = "DisableApiStop"
            entry["problems"].append(
                "Not drilled: AWS stop protection (DisableApiStop) is set, so StopInstances would be refused."
            )
        else:
            targets.append(entry)
    size = concurrency(max_concurrent, len(targets)) if targets else 1
    return [targets[start : start + size] for start in range(0, len(targets), size)]


def stop_after(failed, left):
    """Say in each of ``left`` that the drill stopped after ``failed`` did not come back."""
    for entry in left:
        entry["problems"].append(
            "Not drilled: the drill stopped after "
            + ", ".join(e["instance_id"] for e in failed)
            + " did not come back (continue_on_failure=false)."
        )


def verdict(entries, timeout):
    """``None`` when every drilled instance was restarted by the protection, else the message
    of a failed drill, naming each instance and what happened to it (forced or not)."""
    drilled = [e for e in entries if e.get("drilled")]
    missing = [e for e in drilled if not e["recovered"]]
    if not missing:
        return None
    return (
        f"The drill failed: {len(missing)} of {len(drilled)} drilled instances were not restarted "
        f"by the protection within {timeout} seconds: "
        + ", ".join(e["instance_id"] + outcome(e) for e in missing)
    )


def outcome(entry):
    """What happened to a drilled instance that the protection did not bring back."""
    said = [] if entry["protected"] else ["not protected"]
    said.append("started again by the drill" if entry.get("restored_by_drill") else "left stopped")
    return f" ({'; '.join(said)})"


def merge(planned, batches, timeout, continue_on_failure=False):
    """One region's drill from its parts: ``planned`` is the audit that preceded it (the
    module in check mode: ``instances``), ``batches`` the results of drilling each batch
    (in order; a batch not run is absent). Returns ``(instances, summary, failure message
    or None)`` as one drill of the region would. A batch whose module run failed outright
    (no instances: an AWS error, a refusal) fails the region with its message, whatever the
    other batches showed."""
    drilled = {e["instance_id"]: e for result in batches for e in result.get("instances") or []}
    entries = fresh(planned)
    order = plan_batches(entries, 1)  # marks what cannot be drilled; one entry a "batch"
    merged = [drilled.get(entry["instance_id"], entry) for entry in entries]
    failed = not_brought_back(merged)
    if failed and not continue_on_failure:
        stop_after(failed, [e for (e,) in order if e["instance_id"] not in drilled])
    failure = verdict(merged, timeout)
    broken = [result.get("msg") or "a drill batch failed" for result in batches if "instances" not in result]
    if broken:
        failure = "; ".join(broken + ([failure] if failure else []))
    return merged, summarise(merged, "drill"), failure


def summarise(entries, mode):
    summary = {
        "instances": len(entries),
        "protected": sum(1 for e in entries if e["protected"]),
        "unprotected": sum(1 for e in entries if not e["protected"]),
    }
    if mode == "drill":
        drilled = [e for e in entries if e.get("drilled")]
        times = sorted(e["seconds_to_running"] for e in drilled if e.get("recovered"))
        summary.update(
            drilled=len(drilled),
            restored_by_drill=sum(1 for e in drilled if e.get("restored_by_drill")),
            skipped_stop_protection=sum(1 for e in entries if e.get("skipped") == "DisableApiStop"),
            recovered=sum(1 for e in drilled if e.get("recovered")),
            not_recovered=sum(1 for e in drilled if not e.get("recovered")),
            recovery_seconds={
                "min": times[0] if times else None,
                "median": round(statistics.median(times), 3) if times else None,
                "max": times[-1] if times else None,
            },
        )
    return summary
