"""make bench: rollout and recovery of guardrails.ec2 beside Cloud Custodian, on one LocalStack.

Measures, alternating ours and the peer's where both apply, BENCH_REPEATS times each
(default 3), and reports min/median/max plus ratios (the machine is shared and noisy;
ratios within one run are what compare):

1. rollout: an empty one-task playbook (Ansible's floor), then protect.yml cold and no-op
   for N = 1, 100, 1000 instances and tag mode, with
   stock Ansible and again with Mitogen for Ansible (its strategy plugin, installed for the
   bench only); `custodian run` of the equivalent policy (tag filter, start action), cold
   and no-op;
2. recovery: stop -> running for one instance (first after deploy, then warm), and for 20
   and 100 instances stopped in one call, ours and the peer's;
3. function cost: package size, cold init and duration per invocation from REPORT lines;
4. audit: stop_protection_verify over 1000 instances;
5. scale: one cold protect and one no-op at 25,000 instances (289 rules), with the size of
   the function's resource policy (one invoke statement per region, whatever the rules);
6. mass stop: 100 and then 1000 protected instances stopped in one call with EC2's token
   buckets on (the harness's throttle, AWS's sizes), ours and then the peer's: seconds
   until the last is running, the function's EC2 calls per restarted instance, ``failed``
   decisions, instances not running after 10 minutes, beside the floor the buckets allow;
   between the two, the same deployment switched to the queue design that was not shipped
   (EventBridge -> SQS -> the function through an event source mapping, ``queue_handler.py``),
   with one stop timed on each.

Writes bench-results/<timestamp>.json and .md (git-ignored) and checks the targets of
the README's "Performance" section, saying which were missed. BENCH_STEPS (comma list of
rollout, recovery, cost, audit, scale, mass; default all) runs only some steps. A bench
stopped by SIGTERM stops the LocalStack it started (and its function processes).
"""

import io
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import contextlib

from lab import (
    PINNED_INTERPRETER,
    REGION,
    REPORT,
    ROOT,
    clients,
    decisions,
    emulator,
    naming,
    reports,
    run_instances,
    run_playbook,
    time_recovery,
)

RESULTS = ROOT / "bench-results"
WORK = ROOT / ".build" / "bench"
CUSTODIAN = ROOT / ".venv" / "c7n" / "bin" / "custodian"
MITOGEN = ROOT / ".venv" / "mitogen"
SCALE_INSTANCES = int(os.environ.get("BENCH_SCALE_INSTANCES", "25000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
ALL_STEPS = ("rollout", "recovery", "cost", "audit", "scale", "mass")
MASS_SIZES = (100, 1000)
# An instance not running this long after the mass stop is lost.
MASS_TIMEOUT = 600
# BENCH_STEPS=rollout,scale runs only those steps (the report and targets cover what ran).
STEPS = [step for step in os.environ.get("BENCH_STEPS", ",".join(ALL_STEPS)).split(",") if step]
NAME = "BenchProtect"
PEER_TAG = "BenchPeer"
PEER_FUNCTION = "custodian-bench-restart-stopped"
PEER_POLICY = f"""policies:
  - name: bench-restart-stopped
    resource: ec2
    mode:
      type: ec2-instance-state
      events: [stopped]
      role: arn:aws:iam::000000000000:role/CustodianBenchRole
    filters:
      - "tag:{PEER_TAG}": enabled
    actions:
      - start
"""
LOG = WORK / "bench.log"


def say(text=""):
    print(text, flush=True)


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


# --- ours ------------------------------------------------------------------------------------


def protect_vars(ids=None, selector="instance_ids"):
    # The bench restarts one instance more often than the default budget allows in an hour
    # (3): it measures how fast a restart is, not the budget.
    variables = {
        "stop_protection_name": NAME,
        "stop_protection_region": REGION,
        "stop_protection_restart_limit": 20,
        "stop_protection_restart_together": True,
    }
    if selector == "tag":
        variables.update(stop_protection_selector="tag", stop_protection_tag_key="BenchTag")
    else:
        variables["stop_protection_instance_ids"] = ids
    return variables


def ours_rollout(label, variables):
    cold, noop, noop_changes = [], [], []
    for _ in range(REPEATS):
        seconds, _changed = run_playbook("protect.yml", LOG, extra_vars=variables)
        cold.append(seconds)
        seconds, changed = run_playbook("protect.yml", LOG, extra=["--diff", "-v"], extra_vars=variables)
        if changed != 0:
            # A no-op that changes something is a finding, not a reason to stop measuring.
            say(f"  ours {label:>10}: the no-op rerun reported changed={changed} (details in {LOG.name})")
            noop_changes.append(changed)
        noop.append(seconds)
        run_playbook("unprotect.yml", LOG, extra_vars=variables)
    say(f"  ours {label:>10}: cold {stats(cold)['median']:.1f} s, no-op {stats(noop)['median']:.1f} s")
    return {"cold": stats(cold), "noop": stats(noop), "noop_changes": noop_changes}


@contextlib.contextmanager
def mitogen():
    """Playbooks run with Mitogen's linear strategy (the user's choice; see the README)."""
    saved = {key: os.environ.get(key) for key in ("ANSIBLE_STRATEGY_PLUGINS", "ANSIBLE_STRATEGY")}
    os.environ.update(
        ANSIBLE_STRATEGY_PLUGINS=str(MITOGEN / "ansible_mitogen" / "plugins" / "strategy"),
        ANSIBLE_STRATEGY="mitogen_linear",
    )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Ansible's own floor: what any playbook run costs on this machine (interpreter start,
# inventory, one task), against which a no-op rerun is measured.
EMPTY_PLAYBOOK = """---
- name: One task and nothing else
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say nothing
      ansible.builtin.debug:
        msg: nothing
"""


def empty_playbook(label=""):
    """An empty one-task playbook, run as the protect runs are, REPEATS times."""
    path = ROOT / ".build" / "bench" / "empty.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EMPTY_PLAYBOOK)
    runs = [run_playbook(str(path), LOG)[0] for _ in range(REPEATS)]
    say(f"  empty one-task playbook{label}: {stats(runs)['median']:.1f} s")
    return stats(runs)


def rollouts(fleet, label=""):
    return {
        "empty": empty_playbook(label),
        "n1": ours_rollout(f"N=1{label}", protect_vars(fleet[:1])),
        "n100": ours_rollout(f"N=100{label}", protect_vars(fleet[:100])),
        "n1000": ours_rollout(f"N=1000{label}", protect_vars(fleet)),
        "tag": ours_rollout(f"tag{label}", protect_vars(selector="tag")),
    }


def scale(ec2, lam, events, fleet):
    """One cold protect and one no-op over SCALE_INSTANCES instances (Mitogen: the stock run
    takes minutes of module processes), then the rule count and the function policy's size."""
    ids = fleet + run_instances(ec2, max(0, SCALE_INSTANCES - len(fleet)))
    # The shutdown-behaviour warning reads one attribute per instance (7 s per 1,000 here):
    # off, so that this step measures the rules and the function policy.
    variables = protect_vars(ids) | {"stop_protection_warn_shutdown_terminate": False}
    with mitogen():
        cold, _changed = run_playbook("protect.yml", LOG, extra_vars=variables)
        noop, changed = run_playbook("protect.yml", LOG, extra_vars=variables)
    names = naming.resource_names(NAME)
    rules = [
        rule
        for page in events.get_paginator("list_rules").paginate(NamePrefix=names["rule_prefix"])
        for rule in page["Rules"]
        if naming.rule_kind(NAME, rule["Name"])
    ]
    policy = lam.get_policy(FunctionName=names["function"])["Policy"]
    result = {
        "instances": len(ids),
        "rules": len(rules),
        "cold_mitogen": cold,
        "noop_mitogen": noop,
        "noop_changes": changed,
        "statements": len(json.loads(policy)["Statement"]),
        "policy_bytes": len(policy),
    }
    run_playbook("unprotect.yml", LOG, extra_vars=variables)
    say(
        f"  {len(ids)} instances, {len(rules)} rules: cold {cold:.1f} s, no-op {noop:.1f} s (Mitogen); "
        f"function policy {result['statements']} statement(s), {len(policy)} bytes"
    )
    return result


# --- the peer --------------------------------------------------------------------------------


PERMISSIONS_PROBE = """
import json, sys
import yaml
from c7n.config import Config
from c7n.loader import PolicyLoader
from c7n.resources import load_resources
load_resources(("aws.ec2",))
policies = PolicyLoader(Config.empty()).load_data(yaml.safe_load(open(sys.argv[1])), sys.argv[1])
print(json.dumps(sorted({p for policy in policies for p in policy.get_permissions()})))
"""


def peer_permissions(policy_file):
    """The IAM actions Cloud Custodian computes for the peer's policy."""
    python = CUSTODIAN.with_name("python")
    result = subprocess.run(
        [str(python), "-c", PERMISSIONS_PROBE, str(policy_file)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def custodian(policy_file):
    began = time.monotonic()
    result = subprocess.run(
        [str(CUSTODIAN), "run", "-s", str(WORK / "custodian-out"), "--region", REGION, str(policy_file)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    with open(LOG, "a") as handle:
        handle.write(f"\n$ custodian run\n{result.stdout}{result.stderr}")
    if result.returncode:
        raise SystemExit(f"bench: custodian run failed; see {LOG}")
    return time.monotonic() - began


def remove_peer(lam, events):
    for rule in events.list_rules(NamePrefix="custodian-")["Rules"]:
        targets = [t["Id"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]]
        if targets:
            events.remove_targets(Rule=rule["Name"], Ids=targets)
        events.delete_rule(Name=rule["Name"])
    with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=PEER_FUNCTION)


def peer_rollout(policy_file, lam, events):
    cold, noop = [], []
    for _ in range(REPEATS):
        cold.append(custodian(policy_file))
        noop.append(custodian(policy_file))
        remove_peer(lam, events)
    say(f"  peer {'tag':>10}: cold {stats(cold)['median']:.1f} s, no-op {stats(noop)['median']:.1f} s")
    return {"cold": stats(cold), "noop": stats(noop)}


# --- recovery ----------------------------------------------------------------------------------


def recovery(ec2, label, groups):
    """groups: {size: [ids]}; single-instance first (cold) then warm; then bursts."""
    single = groups[1]
    first = time_recovery(ec2, single)[single[0]]
    warm = [time_recovery(ec2, single)[single[0]] for _ in range(max(3, REPEATS))]
    result = {"single_first": first, "single_warm": stats(warm)}
    for size in (20, 100):
        slowest, lost = [], 0
        for _ in range(REPEATS):
            times = time_recovery(ec2, groups[size])
            lost += sum(1 for t in times.values() if t is None)
            slowest.append(max((t for t in times.values() if t is not None), default=None))
        result[f"burst_{size}"] = {"slowest": stats(slowest), "lost": lost}
    say(
        f"  {label}: single first {first:.2f} s, warm median {result['single_warm']['median']:.2f} s, "
        f"20 at once {result['burst_20']['slowest']['median']:.2f} s, 100 at once {result['burst_100']['slowest']['median']:.2f} s"
    )
    return result


# --- mass stop under EC2's token buckets -------------------------------------------------------
# AWS's defaults ("Request throttling for the Amazon EC2 API"), as the harness applies them.
START_REQUESTS = (5, 2)  # StartInstances request bucket: size, refill per second
START_RESOURCES = (1000, 2)  # StartInstances resource bucket: instances, refill per second
OURS_BATCH = 100  # instances per StartInstances of ours (the function's START_BATCH)


def start_floor(count, per_call):
    """Seconds the StartInstances buckets need, at least, to start ``count`` instances
    ``per_call`` at a time, from full buckets."""
    calls = math.ceil(count / per_call)
    by_requests = max(0, calls - START_REQUESTS[0]) / START_REQUESTS[1]
    by_resources = max(0, count - START_RESOURCES[0]) / START_RESOURCES[1]
    return max(by_requests, by_resources)


def throttle(method, body=None):
    request = urllib.request.Request(
        f"{os.environ['AWS_ENDPOINT_URL']}/_guardrails/throttle",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def function_ec2_calls():
    """EC2 calls not signed with the bench's own key: the functions' role sessions."""
    counts = throttle("GET")["calls_by_access_key"]
    return sum(sum(calls.values()) for key, calls in counts.items() if key != os.environ["AWS_ACCESS_KEY_ID"])


def failed_lines(logs, function):
    return sum(1 for line in decisions(logs, function) if line.get("action") == "failed")


def first_invocation_after(logs, function, epoch, ids=None):
    """Seconds from ``epoch`` (the stop) to the start of the first invocation that handled
    it (what the event delivery took), or None. An invocation's lines are written when it
    ends. With ``ids`` (ours): the earliest decision for one of them, less its duration.
    Without (the peer): the earliest REPORT line, less its duration, of an invocation that
    began after the stop (events of an earlier row may still be retried)."""
    group = f"/aws/lambda/{function}"
    starts = []
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=int(epoch * 1000))
    for page in pages:
        for event in page.get("events", []):
            message, stamp = event["message"], event["timestamp"] / 1000
            if ids is not None and message.startswith("{"):
                line = json.loads(message)
                if line.get("instance_id") in ids and "duration_ms" in line:
                    starts.append(stamp - line["duration_ms"] / 1000)
            elif ids is None and (match := REPORT.search(message)):
                starts.append(stamp - float(match.group(1)) / 1000)
    starts = [start for start in starts if start >= epoch]
    return round(min(starts) - epoch, 2) if starts else None


def mass_stop(ec2, logs, function, ids, per_call, failures):
    """Stop ``ids`` in one call with the buckets on (fresh); the row's numbers."""
    throttle("PUT", {"enabled": True})
    before = failures()
    stopped_at = time.time()
    try:
        times = time_recovery(ec2, ids, timeout=MASS_TIMEOUT, interval=1)
        calls = function_ec2_calls()
    finally:
        throttle("DELETE")
    back = [t for t in times.values() if t is not None]
    return {
        "instances": len(ids),
        "first_invocation": first_invocation_after(
            logs, function, stopped_at, set(ids) if per_call > 1 else None
        ),
        # Only when every instance came back: otherwise "more than MASS_TIMEOUT".
        "last_back": max(back) if len(back) == len(ids) else None,
        "lost": len(ids) - len(back),
        "ec2_calls": calls,
        "calls_per_restart": round(calls / len(back), 3) if back else None,
        "failed": failures() - before,
        "floor": start_floor(len(ids), per_call),
    }


QUEUE_HANDLER = Path(__file__).resolve().parent / "queue_handler.py"
QUEUE_BATCH = 1000  # messages per invocation (SQS allows up to 10,000 with a batching window)
QUEUE_WINDOW_SECONDS = 1  # what the window adds to a single stop
QUEUE_CONCURRENCY = 2  # the mapping's smallest maximum concurrency
QUEUE_VISIBILITY_SECONDS = 360  # six times the function's timeout, as AWS advises


def queue_package():
    """The shipped handler and the queue design's entry point, in one package."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.write(
            ROOT / "roles/stop_protection/files/stop_protection_handler.py", "stop_protection_handler.py"
        )
        package.write(QUEUE_HANDLER, "queue_handler.py")
    return buffer.getvalue()


@contextlib.contextmanager
def queue_design(lam, events, fleet_rules):
    """The bench's deployment switched to the queue design: its state-change rules target an
    SQS queue that admits only them, an event source mapping hands the function batches, and
    the function is unreserved (the mapping's concurrency bounds it). Put back afterwards."""
    sqs, iam = clients("sqs", "iam")
    names = naming.resource_names(NAME)
    function, role = names["function"], naming.regional_names(NAME, REGION)["role"]
    config = lam.get_function_configuration(FunctionName=function)
    arn = config["FunctionArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{NAME}-stops", Attributes={"VisibilityTimeout": str(QUEUE_VISIBILITY_SECONDS)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_arns = [rule["Arn"] for rule in fleet_rules]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": queue_arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                        }
                    ],
                }
            )
        },
    )
    iam.put_role_policy(
        RoleName=role,
        PolicyName="BenchQueue",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                        "Resource": queue_arn,
                    }
                ],
            }
        ),
    )
    reserved = lam.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions")
    lam.delete_function_concurrency(FunctionName=function)
    lam.update_function_code(FunctionName=function, ZipFile=queue_package())
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    lam.update_function_configuration(FunctionName=function, Handler="queue_handler.handler")
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    for rule in fleet_rules:
        events.put_targets(Rule=rule["Name"], Targets=[{"Id": "queue", "Arn": queue_arn}])
        events.remove_targets(Rule=rule["Name"], Ids=[function])
    mapping = lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=function,
        BatchSize=QUEUE_BATCH,
        MaximumBatchingWindowInSeconds=QUEUE_WINDOW_SECONDS,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": QUEUE_CONCURRENCY},
    )["UUID"]
    wait_for_mapping(lam, mapping, "Enabled")
    try:
        yield
    finally:
        lam.delete_event_source_mapping(UUID=mapping)
        for rule in fleet_rules:
            events.put_targets(Rule=rule["Name"], Targets=[{"Id": function, "Arn": arn}])
            events.remove_targets(Rule=rule["Name"], Ids=["queue"])
        sqs.delete_queue(QueueUrl=queue_url)
        iam.delete_role_policy(RoleName=role, PolicyName="BenchQueue")
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=reserved)


def single_stops(ec2, instance_id):
    """Seconds from one stop until the instance runs again (no throttling), REPEATS times."""
    return stats([time_recovery(ec2, [instance_id], timeout=120)[instance_id] for _ in range(REPEATS)])


def wait_for_mapping(lam, mapping, state, timeout=60):
    deadline = time.time() + timeout
    while lam.get_event_source_mapping(UUID=mapping)["State"] != state:
        if time.time() > deadline:
            raise RuntimeError(f"event source mapping {mapping} not {state} after {timeout} s")
        time.sleep(1)


def state_change_rules(events):
    """The bench deployment's state-change rules (its shards)."""
    pages = events.get_paginator("list_rules").paginate(NamePrefix=NAME)
    return [
        rule
        for page in pages
        for rule in page["Rules"]
        if (naming.rule_kind(NAME, rule["Name"]) or ("",))[0] == "state_change"
    ]


def mass_stops(ec2, lam, events, logs, fleet, policy_file):
    """Ours over the fleet (the peer removed: its rule would see our stops too), then the
    same deployment switched to the queue design, then the peer over instances carrying its
    tag."""
    remove_peer(lam, events)
    throttled_ec2 = clients("ec2", config=Config(retries={"mode": "adaptive", "max_attempts": 10}))[0]
    run_playbook("protect.yml", LOG, extra_vars=protect_vars(fleet))
    function = naming.resource_names(NAME)["function"]
    result = {"ours": {}, "queue": {}, "peer": {}}

    def measure(design):
        """The mass stops, then one stop, as the deployment stands now."""
        for size in MASS_SIZES:
            row = mass_stop(
                throttled_ec2, logs, function, fleet[:size], OURS_BATCH, lambda: failed_lines(logs, function)
            )
            result[design][f"n{size}"] = row
            say(f"  {design}, {size} at once: {row}")
        result[design]["single"] = single_stops(ec2, fleet[-1])
        say(f"  {design}, one stop: {result[design]['single']}")

    measure("ours")
    with queue_design(lam, events, state_change_rules(events)):
        measure("queue")
    run_playbook("unprotect.yml", LOG, extra_vars=protect_vars(fleet))
    tagged = run_instances(ec2, max(MASS_SIZES), {PEER_TAG: "enabled"})
    custodian(policy_file)
    for size in MASS_SIZES:
        # The peer's function logs no decisions: its failures are the instances not back.
        row = mass_stop(throttled_ec2, logs, PEER_FUNCTION, tagged[:size], 1, lambda: 0)
        row["failed"] = None
        result["peer"][f"n{size}"] = row
        say(f"  peer, {size} at once: {row}")
    remove_peer(lam, events)
    return result


def function_cost(lam, logs, function):
    config = lam.get_function(FunctionName=function)["Configuration"]
    lines = reports(logs, function)
    return {
        "package_bytes": config["CodeSize"],
        "init_ms": stats([init for _, init in lines if init is not None]),
        "duration_ms": stats([duration for duration, _ in lines]),
        "invocations": len(lines),
    }


IMPORT_PROBE = """
import time
began = time.perf_counter()
import stop_protection_handler
stop_protection_handler.client("ec2")
print((time.perf_counter() - began) * 1000)
"""


def handler_import_ms(runs=5):
    """Import of our handler plus its EC2 client creation, in a fresh Python each time (a cold start's share)."""
    env = dict(
        os.environ,
        AWS_REGION=REGION,
        PYTHONPATH=f"{ROOT / 'roles/stop_protection/files'}:{ROOT / '.venv/lambda-runtime'}",
    )
    python = str(ROOT / ".venv" / "localstack" / "bin" / "python")
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [python, "-c", IMPORT_PROBE], capture_output=True, text=True, env=env, check=True
        )
        samples.append(float(result.stdout.strip()))
    return stats(samples)


def audit_seconds(ids, check_attribute):
    args = json.dumps(
        {
            "name": NAME,
            "instance_ids": ids,
            "region": REGION,
            "check_stop_protection_attribute": check_attribute,
        }
    )
    command = [
        str(Path(sys.executable).with_name("ansible")),
        "localhost",
        "-c",
        "local",
        *PINNED_INTERPRETER,
    ]
    command += ["-m", "guardrails.ec2.stop_protection_verify", "-a", args]
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"bench: audit failed:\n{result.stdout[-2000:]}")
    return time.monotonic() - began


# --- report -------------------------------------------------------------------------------------


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def targets(data):
    checks = []
    if "rollout" in data:
        checks += rollout_targets(data)
    if "recovery" in data:
        checks += recovery_targets(data)
    if "scale" in data:
        checks.append(("function policy at the largest scale <= 1 statement", data["scale"]["statements"], 1))
    if "mass" in data:
        checks += mass_targets(data)
    return [
        {"target": name, "value": value, "limit": limit, "met": value is not None and value <= limit}
        for name, value, limit in checks
    ]


def rollout_targets(data):
    rollout, fast, peer = data["rollout"], data["rollout_mitogen"], data["peer_rollout"]

    def median(group, key, kind):
        return group[key][kind]["median"]

    floor = [
        (
            f"no-op N={count} <= 2.5 x an empty one-task playbook (stock)",
            ratio(median(rollout, key, "noop"), rollout["empty"]["median"]),
            2.5,
        )
        for count, key in ((1, "n1"), (100, "n100"))
    ]
    return [
        *floor,
        (
            "no-op <= 0.4 x cold (N=100, stock)",
            ratio(median(rollout, "n100", "noop"), median(rollout, "n100", "cold")),
            0.4,
        ),
        (
            "N=1000 cold <= 1.6 x N=1 cold (stock)",
            ratio(median(rollout, "n1000", "cold"), median(rollout, "n1", "cold")),
            1.6,
        ),
        (
            "N=1000 cold <= 1.3 x N=1 cold (Mitogen)",
            ratio(median(fast, "n1000", "cold"), median(fast, "n1", "cold")),
            1.3,
        ),
        (
            "tag no-op <= 2 x the peer's no-op (stock)",
            ratio(median(rollout, "tag", "noop"), peer["noop"]["median"]),
            2.0,
        ),
        (
            "tag no-op <= 1.5 x the peer's no-op (Mitogen)",
            ratio(median(fast, "tag", "noop"), peer["noop"]["median"]),
            1.5,
        ),
    ]


def recovery_targets(data):
    ours_rec, peer_rec = data["recovery"]["ours"], data["recovery"]["peer"]
    return [
        (
            "warm single recovery <= the peer's (ours/peer)",
            ratio(ours_rec["single_warm"]["median"], peer_rec["single_warm"]["median"]),
            1.0,
        ),
        (
            "100 at once: slowest <= 2 x slowest of 20",
            ratio(ours_rec["burst_100"]["slowest"]["median"], ours_rec["burst_20"]["slowest"]["median"]),
            2.0,
        ),
    ]


def s(entry):
    return (
        f"{entry['min']:.2f} / {entry['median']:.2f} / {entry['max']:.2f}"
        if entry["median"] is not None
        else "-"
    )


def markdown(data):
    lines = [
        f"Run {data['started']} on LocalStack {data['localstack']}, {data['repeats']} repetitions, "
        f"steps {', '.join(data['steps'])}; seconds as min / median / max.",
        "",
        "| measure | guardrails.ec2 | with Mitogen | Cloud Custodian | ours/peer (stock, Mitogen) |",
        "|---|---|---|---|---|",
    ]
    if "rollout" in data:
        lines += rollout_rows(data)
    if "scale" in data:
        big = data["scale"]
        lines.append(
            f"| {big['instances']} instances, {big['rules']} rules: cold / no-op (Mitogen, once) | | "
            f"{big['cold_mitogen']:.1f} / {big['noop_mitogen']:.1f} | | |"
        )
        lines.append(
            f"| function resource policy at {big['rules']} rules | {big['statements']} statement(s), "
            f"{big['policy_bytes']} bytes | | | |"
        )
    if "recovery" in data:
        lines += recovery_rows(data)
    if "cost" in data:
        lines += cost_rows(data)
    if "mass" in data:
        lines += mass_rows(data)
    if "audit" in data:
        lines.append(
            f"| audit of 1000 instances (with / without DisableApiStop reads) | {data['audit']['with_attribute']:.1f} / {data['audit']['without_attribute']:.1f} | | | |"
        )
    lines += ["", "| target | value | limit | met |", "|---|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {t['limit']} | {'yes' if t['met'] else '**no**'} |"
        for t in data["targets"]
    ]
    return "\n".join(lines) + "\n"


def rollout_rows(data):
    rollout, fast, peer = data["rollout"], data["rollout_mitogen"], data["peer_rollout"]
    lines = []
    lines.append(
        f"| empty one-task playbook (Ansible's floor) | {s(rollout['empty'])} | {s(fast['empty'])} | | |"
    )
    for kind, what in (("cold", "rollout cold"), ("noop", "no-op rerun")):
        for key, label in (("n1", "N=1"), ("n100", "N=100"), ("n1000", "N=1000")):
            lines.append(f"| {what}, {label} | {s(rollout[key][kind])} | {s(fast[key][kind])} | | |")
        lines.append(
            f"| {what}, tag mode / tag policy | {s(rollout['tag'][kind])} | {s(fast['tag'][kind])} | {s(peer[kind])} | "
            f"{ratio(rollout['tag'][kind]['median'], peer[kind]['median'])}, "
            f"{ratio(fast['tag'][kind]['median'], peer[kind]['median'])} |"
        )
    return lines


def recovery_rows(data):
    ours_rec, peer_rec = data["recovery"]["ours"], data["recovery"]["peer"]
    lines = []
    lines.append(
        f"| recovery, first stop after deploy | {ours_rec['single_first']:.2f} | | {peer_rec['single_first']:.2f} | "
        f"{ratio(ours_rec['single_first'], peer_rec['single_first'])} |"
    )
    lines.append(
        f"| recovery, warm single | {s(ours_rec['single_warm'])} | | {s(peer_rec['single_warm'])} | "
        f"{ratio(ours_rec['single_warm']['median'], peer_rec['single_warm']['median'])} |"
    )
    for size in (20, 100):
        o, p = ours_rec[f"burst_{size}"], peer_rec[f"burst_{size}"]
        lines.append(
            f"| {size} stopped at once, slowest back (lost) | {s(o['slowest'])} ({o['lost']}) | | {s(p['slowest'])} ({p['lost']}) | "
            f"{ratio(o['slowest']['median'], p['slowest']['median'])} |"
        )
    return lines


def last_back(row):
    """Seconds until the last instance ran again; MASS_TIMEOUT when some never did (a bound)."""
    return row["last_back"] if row["last_back"] is not None else MASS_TIMEOUT


def versus_peer(ours, peer, key):
    """ours/peer for ``key``; where the peer restarted nothing, ours is ahead (0)."""
    if peer[key] is None:
        return 0.0 if ours[key] is not None else None
    return ratio(ours[key], peer[key])


def mass_rows(data):
    lines = []
    for size in MASS_SIZES:
        o, p = data["mass"]["ours"][f"n{size}"], data["mass"]["peer"][f"n{size}"]

        def back(row):
            return f"{row['last_back']:.1f}" if row["last_back"] is not None else f"> {MASS_TIMEOUT}"

        lines.append(
            f"| mass stop, N={size}: last back, s (floor: ours / one start per instance) | {back(o)} "
            f"({o['floor']:.1f}) | | {back(p)} ({p['floor']:.1f}) | {ratio(last_back(o), last_back(p))} |"
        )
        lines.append(
            f"| mass stop, N={size}: first invocation began after the stop, s (event delivery) | {o['first_invocation']} | | "
            f"{p['first_invocation']} | |"
        )
        lines.append(
            f"| mass stop, N={size}: EC2 calls per restart, failed, lost | {o['calls_per_restart']}, {o['failed']}, "
            f"{o['lost']} | | {p['calls_per_restart']}, -, {p['lost']} | "
            f"{versus_peer(o, p, 'calls_per_restart')} |"
        )
        q = (data["mass"].get("queue") or {}).get(f"n{size}")
        if q and size == MASS_SIZES[0]:
            single_o, single_q = data["mass"]["ours"]["single"], data["mass"]["queue"]["single"]
            lines.append(
                f"| one stop, queue design (EventBridge → SQS → function, not shipped) | {s(single_o)} | | "
                f"{s(single_q)} (queue) | {ratio(single_o['median'], single_q['median'])} |"
            )
        if q:
            # The design not shipped, on the same deployment and buckets: ours against it.
            lines.append(
                f"| mass stop, N={size}, queue design (EventBridge → SQS → function, not shipped): last back, s; "
                f"EC2 calls per restart, failed, lost | {back(o)}; {o['calls_per_restart']}, {o['failed']}, "
                f"{o['lost']} | | {back(q)}; {q['calls_per_restart']}, {q['failed']}, {q['lost']} (queue) | "
                f"{ratio(last_back(o), last_back(q))} |"
            )
    return lines


def mass_targets(data):
    checks = []
    warm = (data.get("recovery") or {}).get("ours", {}).get("single_warm", {}).get("median")
    for size in MASS_SIZES:
        o, p = data["mass"]["ours"][f"n{size}"], data["mass"]["peer"][f"n{size}"]
        # The buckets' floor, or (where they allow everything at once) one warm restart.
        floor = max(o["floor"], warm or 0)
        checks += [
            (f"mass stop N={size}: lost", o["lost"], 0),
            (f"mass stop N={size}: failed decisions", o["failed"], 0),
            (
                f"mass stop N={size}: last back <= 1.5 x floor ({floor:.1f} s)",
                ratio(last_back(o), floor),
                1.5,
            ),
            (f"mass stop N={size}: last back, ours/peer", ratio(last_back(o), last_back(p)), 1.0),
            (
                f"mass stop N={size}: EC2 calls per restart, ours/peer",
                versus_peer(o, p, "calls_per_restart"),
                1.0,
            ),
        ]
    checks.append(
        ("mass stop N=1000: EC2 calls per restart", data["mass"]["ours"]["n1000"]["calls_per_restart"], 0.2)
    )
    return checks


def cost_rows(data):
    ours_cost, peer_cost = data["cost"]["ours"], data["cost"]["peer"]
    lines = []
    lines.append(
        f"| function package, bytes | {ours_cost['package_bytes']} | | {peer_cost['package_bytes']} | "
        f"{ratio(ours_cost['package_bytes'], peer_cost['package_bytes'])} |"
    )
    lines.append(
        f"| cold init, ms | {s(ours_cost['init_ms'])} | | {s(peer_cost['init_ms'])} | "
        f"{ratio(ours_cost['init_ms']['median'], peer_cost['init_ms']['median'])} |"
    )
    lines.append(f"| handler import + client creation, ms | {s(ours_cost['import_and_clients_ms'])} | | | |")
    lines.append(
        f"| duration per invocation, ms | {s(ours_cost['duration_ms'])} | | {s(peer_cost['duration_ms'])} | "
        f"{ratio(ours_cost['duration_ms']['median'], peer_cost['duration_ms']['median'])} |"
    )
    return lines


def stop_on_sigterm():
    """SIGTERM (a CI limit, kill) unwinds like Ctrl-C: the emulator context stops LocalStack
    and its function processes instead of leaving them running."""

    def unwind(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


def main():
    stop_on_sigterm()
    unknown = sorted(set(STEPS) - set(ALL_STEPS))
    if unknown or ("cost" in STEPS and "recovery" not in STEPS):
        raise SystemExit(
            f"BENCH_STEPS: {', '.join(unknown) or 'cost'} - steps are {', '.join(ALL_STEPS)}; cost needs recovery"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    LOG.write_text("")
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    data = {"started": started, "repeats": REPEATS, "steps": STEPS}
    say(
        f"make bench: {REPEATS} repetitions, steps {', '.join(STEPS)}; playbook output in {LOG.relative_to(ROOT)}"
    )
    with emulator(WORK / "localstack") as (_endpoint, _seconds):
        data["localstack"] = subprocess.run(
            [
                str(ROOT / ".venv/localstack/bin/python"),
                "-c",
                "import importlib.metadata as m; print(m.version('localstack-core'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        data["custodian"] = subprocess.run(
            [str(CUSTODIAN), "version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        ec2, lam, events, logs, iam = clients("ec2", "lambda", "events", "logs", "iam")
        fleet = run_instances(ec2, 1000)
        policy_file = WORK / "custodian-policy.yml"
        if {"rollout", "recovery", "mass"} & set(STEPS):
            iam.create_role(
                RoleName="CustodianBenchRole",
                AssumeRolePolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                ),
            )
            policy_file.write_text(PEER_POLICY)
            # What Cloud Custodian itself says the policy needs (its get_permissions()):
            # without ec2:DescribeInstances its function is refused and restarts nothing.
            iam.put_role_policy(
                RoleName="CustodianBenchRole",
                PolicyName="bench-restart-stopped",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": peer_permissions(policy_file), "Resource": "*"}
                        ],
                    }
                ),
            )
        if "rollout" in STEPS:
            say("1. rollout (protect.yml cold and no-op; custodian run cold and no-op)")
            data["rollout"] = rollouts(fleet)
            with mitogen():
                data["rollout_mitogen"] = rollouts(fleet, " Mitogen")
            data["peer_rollout"] = peer_rollout(policy_file, lam, events)

        if "recovery" in STEPS:
            say("2. recovery (stop -> running; ours on instance ids first, then the peer on its tag)")
            ours_ids = {1: run_instances(ec2, 1), 20: run_instances(ec2, 20), 100: run_instances(ec2, 100)}
            peer_ids = {size: run_instances(ec2, size, {PEER_TAG: "enabled"}) for size in (1, 20, 100)}
            all_ours = [i for ids in ours_ids.values() for i in ids]
            # Ours first, before the peer exists: the peer's rule matches every stopped event in the region,
            # so with both deployed our stops would also keep its function busy (and warm).
            run_playbook("protect.yml", LOG, extra_vars=protect_vars(all_ours))
            data["recovery"] = {"ours": recovery(ec2, "ours", ours_ids)}
            custodian(policy_file)
            data["recovery"]["peer"] = recovery(ec2, "peer", peer_ids)
            data["peer_really_ran"] = sum(1 for _ in reports(logs, PEER_FUNCTION))
            if not data["peer_really_ran"]:
                raise SystemExit("bench: the peer's function never ran")

        if "cost" in STEPS:
            say("3. function cost (REPORT lines)")
            data["cost"] = {
                "ours": function_cost(lam, logs, naming.resource_names(NAME)["function"]),
                "peer": function_cost(lam, logs, PEER_FUNCTION),
            }
            data["cost"]["ours"]["import_and_clients_ms"] = handler_import_ms()

        if "audit" in STEPS:
            say("4. audit of 1000 instances")
            run_playbook("protect.yml", LOG, extra_vars=protect_vars(fleet))
            data["audit"] = {
                "with_attribute": audit_seconds(fleet, True),
                "without_attribute": audit_seconds(fleet, False),
            }
            run_playbook("unprotect.yml", LOG, extra_vars=protect_vars(fleet))

        if "scale" in STEPS:
            say(f"5. scale: {SCALE_INSTANCES} instances")
            data["scale"] = scale(ec2, lam, events, fleet)

        if "mass" in STEPS:
            say("6. mass stop under EC2's token buckets (ours, then the peer)")
            data["mass"] = mass_stops(ec2, lam, events, logs, fleet, policy_file)
    data["targets"] = targets(data)
    (RESULTS / f"{started}.json").write_text(json.dumps(data, indent=2) + "\n")
    table = markdown(data)
    (RESULTS / f"{started}.md").write_text(table)
    (RESULTS / "latest.md").write_text(table)
    say("")
    say(table)
    missed = [t["target"] for t in data["targets"] if not t["met"]]
    say(f"Targets missed: {', '.join(missed)}" if missed else "All targets met.")


if __name__ == "__main__":
    main()
