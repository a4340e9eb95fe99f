"""The read-once rollout on the emulator: a rerun that finds nothing to change skips the
tasks of resources in sync, and a drifted resource is found and repaired."""

import json
import re

from conftest import unique
from playbook_runs import changed_count, protect_vars, run_playbook

# The tasks of write_region.yml, which a rerun that finds nothing to change never reaches.
WRITES = [
    "Ensure the least-privilege managed policies",
    "Ensure the execution role",
    "Alarm on decisions that need a person and on a missing heartbeat",
    "Run the first sweep before creating the heartbeat alarm",
    "Package the restart function",
    "Ensure the restart function",
    "Ensure the log group with retention",
    "Count decisions that need a person and sweep heartbeats",
    "Ensure retries, failure destination and concurrency",
    "Allow the deployment's rules to invoke the function",
    "Ensure the rules",
]


def task_results(stdout):
    """``{task title (without the role prefix and region): first result line}``."""
    results = {}
    for match in re.finditer(r"^TASK \[(?:[\w.]+ : )?(.+?)\] \**\n(\S+)", stdout, re.M):
        title = re.sub(r" (in|of|for) [a-z]{2}(-gov)?-[a-z]+-\d$", "", match.group(1))
        results.setdefault(title, match.group(2))
    return results


def test_a_rerun_skips_what_is_in_sync_and_repairs_what_drifted(aws, endpoint, instances):
    events, lam, logs = aws("events"), aws("lambda"), aws("logs")
    name = unique("ReadOnce")
    first_id, joining = instances(2)
    settings = protect_vars(
        name, [first_id], stop_protection_sweep_minutes=5, stop_protection_keep_logs=False
    )
    group = f"/aws/lambda/{name}"
    try:
        first = run_playbook("protect.yml", endpoint, settings)
        assert first.returncode == 0, first.stdout[-3000:]
        assert all(task_results(first.stdout)[task] != "skipping:" for task in WRITES)

        again = run_playbook("protect.yml", endpoint, settings)
        assert again.returncode == 0 and changed_count(again) == 0, again.stdout[-3000:]
        results = task_results(again.stdout)
        # Nothing to write: the region's writes are skipped at once, none of them is reached.
        assert (results["Show what differs"], results["Write what differs"]) == ("skipping:", "skipping:")
        assert not set(WRITES) & set(results), results

        # --check --diff with one more instance: Ansible's before/after of the rule and the
        # policy, the instance named as joining both, and nothing written.
        preview = run_playbook(
            "protect.yml", endpoint, settings | {"stop_protection_instance_ids": [first_id, joining]},
            extra=("--check", "--diff"),
        )  # fmt: skip
        said = " ".join(preview.stdout.split())
        assert preview.returncode == 0 and changed_count(preview) > 0, preview.stdout[-3000:]
        assert f"+++ after: rule {name}.1 in us-east-1 (planned)" in said
        assert f"us-east-1 rule {name}.1: instances joining {joining}" in said
        assert f"us-east-1 policy {name}-us-east-1 (ec2:StartInstances): instances joining {joining}" in said
        assert joining not in events.describe_rule(Name=f"{name}.1")["EventPattern"]

        # Drift in every resource the reader compares.
        events.disable_rule(Name=f"{name}.1")
        # a second target on the function (a foreign target would make the rule not ours)
        function_arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        events.put_targets(Rule=f"{name}.sweep", Targets=[{"Id": "twice", "Arn": function_arn}])
        logs.put_retention_policy(logGroupName=group, retentionInDays=7)
        lam.remove_permission(FunctionName=name, StatementId="guardrails-ec2-rules")
        lam.update_function_configuration(FunctionName=name, Timeout=3)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        aws("iam").tag_role(RoleName=f"{name}-us-east-1", Tags=[{"Key": "team", "Value": "x"}])
        lam.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60
        )

        repair = run_playbook("protect.yml", endpoint, settings)
        assert repair.returncode == 0, repair.stdout[-3000:]
        assert task_results(repair.stdout)["Show what differs"] == "changed:"
        assert events.describe_rule(Name=f"{name}.1")["State"] == "ENABLED"
        assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 60
        assert "team" not in {
            tag["Key"] for tag in aws("iam").list_role_tags(RoleName=f"{name}-us-east-1")["Tags"]
        }
        assert [target["Id"] for target in events.list_targets_by_rule(Rule=f"{name}.sweep")["Targets"]] == [
            name
        ]
        assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 30
        statements = json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
        assert [statement["Sid"] for statement in statements] == ["guardrails-ec2-rules"]
        config = lam.get_function_event_invoke_config(FunctionName=name)
        assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 3600)
        assert changed_count(run_playbook("protect.yml", endpoint, settings)) == 0
    finally:
        run_playbook("unprotect.yml", endpoint, settings)


REMOVALS = [
    "Remove the function",
    "Remove the alarms",
    "Remove the log group",
    "Remove the execution role",
    "Remove the managed policy",
]


def test_unprotect_removes_only_what_exists(aws, endpoint, instances):
    """unprotect reads once too: the first run removes everything, a rerun finds nothing and
    starts no removal module, and says that nothing of that name exists (a wrong
    stop_protection_name must not read as a removal)."""
    name = unique("ReadOnceGone")
    settings = protect_vars(name, instances(1), stop_protection_keep_logs=False)
    try:
        assert run_playbook("protect.yml", endpoint, settings).returncode == 0
        # The same instance in a second deployment (previewed only): protect warns.
        twice = run_playbook(
            "protect.yml", endpoint, settings | {"stop_protection_name": "Twice"}, extra=("--check",)
        )
        assert twice.returncode == 0, twice.stdout[-3000:]
        assert f"is also protected by the deployment {name} in us-east-1" in " ".join(
            (twice.stdout + twice.stderr).split()
        )
        # unprotect under a wrong name removes nothing and names the deployment it finds.
        wrong = run_playbook("unprotect.yml", endpoint, settings | {"stop_protection_name": "Wrong"})
        said = " ".join(wrong.stdout.split())
        assert wrong.returncode == 0 and changed_count(wrong) == 0, wrong.stdout[-3000:]
        assert "Nothing of a deployment named Wrong exists in us-east-1" in said
        assert name in said.split("Deployments found there: ", 1)[1]
        first = run_playbook("unprotect.yml", endpoint, settings)
        assert first.returncode == 0, first.stdout[-3000:]
        results = task_results(first.stdout)
        assert all(results[task] == "changed:" for task in REMOVALS), results
        assert f"Removed {name} from us-east-1" in first.stdout
        assert name not in {
            function["FunctionName"] for function in aws("lambda").list_functions()["Functions"]
        }
        again = run_playbook("unprotect.yml", endpoint, settings)
        assert again.returncode == 0 and changed_count(again) == 0, again.stdout[-3000:]
        results = task_results(again.stdout)
        assert {task: results[task] for task in REMOVALS} == dict.fromkeys(REMOVALS, "skipping:")
        assert f"Nothing of a deployment named {name} exists in us-east-1" in " ".join(again.stdout.split())
        assert "Removed" not in again.stdout
    finally:
        run_playbook("unprotect.yml", endpoint, settings)
