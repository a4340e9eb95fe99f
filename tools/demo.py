"""make demo: protect a few instances on LocalStack, drill the loop, print what happened.

Starts its own LocalStack (state under .build/demo, so a running development emulator is
left alone), creates four instances, protects three of them with playbooks/protect.yml
from a static inventory, drills them with playbooks/verify.yml, stops the fourth to show
that an unprotected instance stays stopped, removes everything with
playbooks/unprotect.yml, and stops LocalStack.

Run by the Makefile with the Ansible environment's Python.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".build" / "demo"
REGION = "us-east-1"
NAME = "EC2Protect"
sys.path.insert(0, str(ROOT / "tools" / "localstack"))
import launcher  # noqa: E402


def say(text=""):
    print(text, flush=True)


def run_playbook(name, inventory, log, extra=()):
    """Run a playbook as a user would; its full output goes to the demo log."""
    began = time.monotonic()
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory),
        str(ROOT / "playbooks" / name),
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    if result.returncode:
        raise SystemExit(f"demo: {name} failed (exit {result.returncode}); see {log}")
    changed = re.findall(r"changed=(\d+)", result.stdout)
    return time.monotonic() - began, int(changed[-1]) if changed else None


def write_inventory(path, protected):
    lines = ["all:", "  children:", "    stop_protected:", "      hosts:"]
    for number, instance_id in enumerate(protected, start=1):
        lines += [
            f"        web-{number}:",
            f"          instance_id: {instance_id}",
            f"          region: {REGION}",
        ]
    path.write_text("\n".join(lines) + "\n")


def decisions(logs):
    group = f"/aws/lambda/{NAME}"
    found = []
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
        )
        found += [json.loads(e["message"]) for e in events["events"] if e["message"].startswith("{")]
    return found


def main():
    DEMO.mkdir(parents=True, exist_ok=True)
    log = DEMO / "demo.log"
    log.write_text("")
    harness = launcher.Harness(
        DEMO / "localstack", ROOT / ".venv" / "localstack", ROOT / ".venv" / "lambda-runtime"
    )
    say("guardrails.ec2 demo: keep chosen EC2 instances running")
    say("=" * 56)
    began = time.monotonic()
    endpoint = harness.start(None, {})
    say(f"LocalStack (host mode) ready at {endpoint} in {time.monotonic() - began:.1f} s")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION=REGION,
    )
    try:
        session = boto3.Session(region_name=REGION)
        ec2, logs = session.client("ec2"), session.client("logs")
        reply = ec2.run_instances(ImageId="ami-12345678", MinCount=4, MaxCount=4, InstanceType="t3.micro")
        ids = [item["InstanceId"] for item in reply["Instances"]]
        protected, bystander = ids[:3], ids[3]
        inventory = DEMO / "inventory.yml"
        write_inventory(inventory, protected)
        say(f"Created 4 instances; the inventory {inventory.relative_to(ROOT)} lists 3 of them.")

        seconds, changed = run_playbook("protect.yml", inventory, log)
        say(
            f"\nplaybooks/protect.yml: protected {len(protected)} instances in {seconds:.1f} s ({changed} changes)"
        )
        seconds, changed = run_playbook("protect.yml", inventory, log)
        say(f"playbooks/protect.yml again: changed={changed} in {seconds:.1f} s")

        report = DEMO / "drill.json"
        seconds, _changed = run_playbook(
            "verify.yml",
            inventory,
            log,
            ["-e", "stop_protection_verify_mode=drill", "-e", f"stop_protection_verify_report_path={report}"],
        )
        (region,) = json.loads(report.read_text())
        say(f"\nplaybooks/verify.yml (drill): stopped all {len(protected)} at once ({seconds:.1f} s in all)")
        for entry in region["instances"]:
            outcome = "running again" if entry["recovered"] else "NOT back"
            say(
                f"  {entry['instance_id']}  stopped after {entry['seconds_to_stopped']:.1f} s, "
                f"{outcome} after {entry['seconds_to_running']:.1f} s"
            )

        ec2.stop_instances(InstanceIds=[bystander])
        time.sleep(5)
        state = ec2.describe_instances(InstanceIds=[bystander])["Reservations"][0]["Instances"][0]["State"][
            "Name"
        ]
        say(f"\nUnprotected {bystander} stopped by hand: still {state} 5 s later (no rule names it).")

        lines = decisions(logs)
        say(f"\nThe function's log holds {len(lines)} decisions, one JSON line each, for example:")
        if lines:
            say("  " + json.dumps(lines[0], sort_keys=True))

        seconds, _changed = run_playbook("unprotect.yml", inventory, log)
        left = [f["FunctionName"] for f in session.client("lambda").list_functions()["Functions"]]
        say(
            f"\nplaybooks/unprotect.yml: removed everything in {seconds:.1f} s (functions left: {left or 'none'})"
        )
    finally:
        harness.stop(quiet=True)
        say(f"\nLocalStack stopped. Full playbook output: {log.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
