# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The drill of stop_protection_verify: stop instances, time their way back, never leave one stopped."""

import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.guardrails.ec2.plugins.module_utils.drill_batches import (
    not_brought_back,
    plan_batches,
    stop_after,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.reads import describe_instances

# StopInstances takes many ids at once; keep each call of a drill reasonable.
STOP_BATCH = 100


def drill(
    ec2,
    entries,
    timeout,
    max_concurrent=1,
    continue_on_failure=False,
    clock=time.monotonic,
    sleep=time.sleep,
    poll_interval=0.25,
):
    """Stop the running instances in batches and time stop -> running again for each.

    A batch holds ``max_concurrent`` instances (a number or a percentage). After a batch
    in which a protected instance did not come back, no further batch is stopped unless
    ``continue_on_failure``. Whatever the outcome, every drilled instance that is not
    running when its batch ends is started by the drill itself (``restored_by_drill``),
    so a drill never leaves an instance stopped. Instances with AWS's stop protection
    (``DisableApiStop``) cannot be stopped and are skipped.

    Entries gain ``drilled``, ``recovered``, ``restored_by_drill``, ``seconds_to_stopped``
    and ``seconds_to_running``.
    """
    batches = plan_batches(entries, max_concurrent)
    for index, batch in enumerate(batches):
        try:
            _drill_batch(ec2, batch, timeout, clock, sleep, poll_interval)
        finally:
            # Also when stopping or polling raised: nothing this drill stopped stays stopped.
            _restore(ec2, batch, sleep)
        failed = not_brought_back(batch)
        if failed and not continue_on_failure:
            stop_after(failed, [e for later in batches[index + 1 :] for e in later])
            break
    return entries


def _drill_batch(ec2, targets, timeout, clock, sleep, poll_interval):
    by_id = {entry["instance_id"]: entry for entry in targets}
    started = clock()
    for start in range(0, len(targets), STOP_BATCH):
        batch = [entry["instance_id"] for entry in targets[start : start + STOP_BATCH]]
        stopping = _stop(ec2, batch, by_id)
        now = clock() - started
        for item in stopping:
            entry = by_id[item["InstanceId"]]
            entry["drilled"] = True
            if item["CurrentState"]["Name"] == "stopped":
                entry["seconds_to_stopped"] = round(now, 3)
    waiting = {entry["instance_id"] for entry in targets if entry["drilled"]}
    deadline = started + timeout
    while waiting and clock() < deadline:
        sleep(poll_interval)
        now = clock() - started
        states = {
            iid: inst["State"]["Name"] for iid, inst in describe_instances(ec2, sorted(waiting)).items()
        }
        for instance_id in list(waiting):
            entry, state = by_id[instance_id], states.get(instance_id)
            if state in ("stopped", "pending", "running") and entry["seconds_to_stopped"] is None:
                # Seen stopped, or already on its way back: it stopped by now at the latest.
                entry["seconds_to_stopped"] = round(now, 3)
            if state == "running":
                entry["seconds_to_running"] = round(now, 3)
                entry["recovered"] = True
                waiting.discard(instance_id)
            elif state in ("terminated", "shutting-down", None):
                entry["recovered"] = False
                entry["problems"].append(f"Instance became {state or 'missing'} during the drill.")
                waiting.discard(instance_id)
    for instance_id in waiting:
        entry = by_id[instance_id]
        entry["recovered"] = False
        entry["problems"].append(f"Not running again within {timeout} seconds of the stop.")
    for entry in targets:
        if not entry["drilled"] and not entry.get("skipped"):
            entry["recovered"] = False
            entry["problems"].append("StopInstances did not report this instance as stopping.")


def _stop(ec2, instance_ids, by_id):
    """StopInstances; instances AWS refuses to stop (``DisableApiStop``) are skipped, not errors.

    AWS refuses the whole call for one such instance, so a refused call is repeated one
    instance at a time. Returns the ``StoppingInstances`` items.
    """
    try:
        return ec2.stop_instances(aws_retry=True, InstanceIds=instance_ids).get("StoppingInstances", [])
    except is_boto3_error_code("OperationNotPermitted"):
        if len(instance_ids) > 1:
            return [item for instance_id in instance_ids for item in _stop(ec2, [instance_id], by_id)]
    entry = by_id[instance_ids[0]]
    entry["skipped"] = "DisableApiStop"
    entry["problems"].append("Not drilled: AWS refused to stop it (stop protection, DisableApiStop).")
    return []


def _restore(ec2, batch, sleep, attempts=60, delay=2.0):
    """Start again the drilled instances of a batch that the protection did not bring back.

    An instance still ``stopping`` is waited for (StartInstances refuses it until it is
    ``stopped``), up to ``attempts`` polls ``delay`` seconds apart.
    """
    pending = [entry for entry in batch if entry["drilled"] and not entry["recovered"]]
    for attempt in range(attempts):
        if not pending:
            return
        states = {
            iid: inst["State"]["Name"]
            for iid, inst in describe_instances(ec2, [entry["instance_id"] for entry in pending]).items()
        }
        still_stopping = []
        for entry in pending:
            state = states.get(entry["instance_id"])
            if state == "stopping":
                still_stopping.append(entry)
            elif state == "stopped":
                try:
                    ec2.start_instances(aws_retry=True, InstanceIds=[entry["instance_id"]])
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    entry["problems"].append(f"The drill could not start it again ({exc}): start it by hand.")
                    continue
                entry["restored_by_drill"] = True
                entry["problems"].append("Started again by the drill itself, not by the protection.")
        pending = still_stopping
        if pending and attempt + 1 < attempts:
            sleep(delay)
    for entry in pending:
        entry["problems"].append(f"Still stopping after {attempts * delay:.0f} seconds: start it by hand.")
