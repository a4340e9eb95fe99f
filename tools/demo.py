"""make demo: protect a few instances on LocalStack, drill the loop, print what happened.

Starts its own LocalStack (state under .build/demo, so a running development emulator is
left alone), creates four instances, protects three of them with playbooks/protect.yml
from a static inventory, drills them with playbooks/verify.yml, stops the fourth to show
that an unprotected instance stays stopped, removes everything with
playbooks/unprotect.yml, and stops LocalStack.

Run by the Makefile with the Ansible environment's Python.
"""

import json
import time

from lab import REGION, ROOT, clients, decisions, emulator, run_instances, run_playbook

DEMO = ROOT / ".build" / "demo"


def say(text=""):
    print(text, flush=True)


def write_inventory(path, protected):
    lines = ["all:", "  children:", "    stop_protected:", "      hosts:"]
    for number, instance_id in enumerate(protected, start=1):
        lines += [
            f"        web-{number}:",
            f"          instance_id: {instance_id}",
            f"          region: {REGION}",
        ]
    path.write_text("\n".join(lines) + "\n")


def main():
    DEMO.mkdir(parents=True, exist_ok=True)
    log = DEMO / "demo.log"
    log.write_text("")
    say("guardrails.ec2 demo: keep chosen EC2 instances running")
    say("=" * 56)
    with emulator(DEMO / "localstack") as (endpoint, seconds):
        say(f"LocalStack (host mode) ready at {endpoint} in {seconds:.1f} s")
        ec2, logs, lam = clients("ec2", "logs", "lambda")
        ids = run_instances(ec2, 4)
        protected, bystander = ids[:3], ids[3]
        inventory = DEMO / "inventory.yml"
        write_inventory(inventory, protected)
        say(f"Created 4 instances; the inventory {inventory.relative_to(ROOT)} lists 3 of them.")

        seconds, changed = run_playbook("protect.yml", log, inventory)
        say(
            f"\nplaybooks/protect.yml: protected {len(protected)} instances in {seconds:.1f} s ({changed} changes)"
        )
        seconds, changed = run_playbook("protect.yml", log, inventory)
        say(f"playbooks/protect.yml again: changed={changed} in {seconds:.1f} s")

        report = DEMO / "drill.json"
        seconds, _changed = run_playbook(
            "verify.yml",
            log,
            inventory,
            [
                "-e",
                "stop_protection_verify_mode=drill",
                "-e",
                "stop_protection_verify_max_concurrent=100%",
                "-e",
                f"stop_protection_verify_report_path={report}",
            ],
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

        lines = decisions(logs, "EC2Protect")
        say(f"\nThe function's log holds {len(lines)} decisions, one JSON line each, for example:")
        if lines:
            say("  " + json.dumps(lines[0], sort_keys=True))

        seconds, _changed = run_playbook("unprotect.yml", log, inventory)
        left = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
        say(
            f"\nplaybooks/unprotect.yml: removed everything in {seconds:.1f} s (functions left: {left or 'none'})"
        )
    say(f"\nLocalStack stopped. Full playbook output: {log.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
