"""Helpers shared by make demo and make bench: an emulator of their own, playbook runs,
and reading what the functions logged.

Run with the Ansible environment's Python (boto3 and ansible-playbook beside it).
"""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
sys.path.insert(0, str(ROOT / "tools" / "localstack"))
import launcher  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The collection's names (standard library only): tools look for exactly what the role creates.
naming = _load("guardrails_naming", ROOT / "plugins" / "module_utils" / "naming.py")

MAX_ARGUMENT_CHARS = 100_000

REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms.*?(?:Init Duration: ([\d.]+) ms)?$")


@contextmanager
def emulator(state_dir, settings=None):
    """A LocalStack of our own under ``state_dir``; the AWS_* environment points at it."""
    harness = launcher.Harness(
        Path(state_dir), ROOT / ".venv" / "localstack", ROOT / ".venv" / "lambda-runtime"
    )
    began = time.monotonic()
    endpoint = harness.start(None, settings or {})
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION=REGION,
    )
    try:
        yield endpoint, time.monotonic() - began
    finally:
        harness.stop(quiet=True)


def clients(*services, config=None):
    session = boto3.Session(region_name=REGION)
    return [session.client(service, config=config) for service in services]


# Pins localhost's interpreter to the one running Ansible: never rely on discovery, which
# takes the first `python3.x` on PATH (a pyenv shim with no version selected fails there).
PINNED_INTERPRETER = ("-e", "ansible_python_interpreter={{ ansible_playbook_python }}")


def playbook_command(name, inventory="localhost,", extra=(), extra_vars=None):
    """The ansible-playbook command line for playbooks/<name>, run as a user would."""
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory),
        str(ROOT / "playbooks" / name),
        *PINNED_INTERPRETER,
        *extra,
    ]
    if extra_vars is not None:
        text = json.dumps(extra_vars)
        if len(text) > MAX_ARGUMENT_CHARS:
            # Linux refuses a single argument over 128 KiB (25,000 instance ids are 550 KB):
            # hand those over as a file, named by its content.
            path = ROOT / ".build" / "extra-vars" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            text = f"@{path}"
        command += ["-e", text]
    return command


def run_playbook(name, log, inventory="localhost,", extra=(), extra_vars=None):
    """Run playbooks/<name> as a user would; returns (seconds, changed count). Output goes to ``log``."""
    command = playbook_command(name, inventory, extra, extra_vars)
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - began
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(command)[:500]}\n{result.stdout}{result.stderr}")
    if result.returncode:
        raise SystemExit(f"{name} failed (exit {result.returncode}); see {log}")
    # One recap line per host (one host per account and region): count them all.
    changed = re.findall(r"changed=(\d+)", result.stdout.rsplit("PLAY RECAP", 1)[-1])
    return seconds, sum(int(found) for found in changed) if changed else None


def run_instances(ec2, count, tags=None):
    spec = {"ImageId": "ami-12345678", "InstanceType": "t3.micro"}
    if tags:
        spec["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    ids = []
    while len(ids) < count:
        batch = min(500, count - len(ids))
        ids += [
            i["InstanceId"] for i in ec2.run_instances(MinCount=batch, MaxCount=batch, **spec)["Instances"]
        ]
    return ids


def states(ec2, ids):
    found = {}
    for start in range(0, len(ids), 200):
        reply = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids[start : start + 200]}])
        found.update(
            {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}
        )
    return found


def time_recovery(ec2, ids, timeout=300, interval=0.1):
    """Stop ``ids`` in one call; seconds until each is seen running again (None: not back)."""
    began = time.monotonic()
    ec2.stop_instances(InstanceIds=ids)
    back = {}
    while len(back) < len(ids) and time.monotonic() - began < timeout:
        time.sleep(interval)
        now = time.monotonic() - began
        for instance_id, state in states(ec2, [i for i in ids if i not in back]).items():
            if state == "running":
                back[instance_id] = now
    return {instance_id: back.get(instance_id) for instance_id in ids}


def log_lines(logs, function):
    group = f"/aws/lambda/{function}"
    lines = []
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
        )
        lines += [event["message"].rstrip("\n") for event in events["events"]]
    return lines


# The sweep's closing line: the heartbeat its alarm counts, not a decision.
HEARTBEAT = "swept"
COALESCED = "coalesced"


def json_lines(logs, function):
    return [json.loads(line) for line in log_lines(logs, function) if line.startswith("{")]


def decisions(logs, function):
    """The function's decision lines: heartbeats left out, and the notes of stop events
    whose instance was decided with an earlier event's batch (``coalesced``)."""
    return [line for line in json_lines(logs, function) if line.get("action") not in (HEARTBEAT, COALESCED)]


def coalesced(logs, function):
    return [line for line in json_lines(logs, function) if line.get("action") == COALESCED]


def heartbeats(logs, function):
    return [line for line in json_lines(logs, function) if line.get("action") == HEARTBEAT]


def reports(logs, function):
    """(duration ms, init ms or None) of every REPORT line of a function."""
    found = []
    for line in log_lines(logs, function):
        match = REPORT.search(line)
        if match:
            found.append((float(match.group(1)), float(match.group(2)) if match.group(2) else None))
    return found
