"""The restart budget and the skip rules, end to end: protect.yml, the harness's EC2
behaviours, and IAM enforced for the function's generated role (so the budget tags are
written with exactly the permissions the role grants)."""

import json
import re
import time

from conftest import instance_states, shutdown_from_inside, wait_for
from playbook_runs import protect_vars, read_decisions, run_playbook


def decisions_when(aws, name, count, timeout=90):
    """The function's decision lines once there are at least `count` of them."""
    return wait_for(
        lambda: (found := read_decisions(aws("logs"), name)) and len(found) >= count and found,
        timeout=timeout,
        interval=0.5,
    )


def tags_of(ec2, instance_id):
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def test_instance_that_powers_off_at_every_boot_is_restarted_limit_times_then_suspended(
    aws, endpoint, instances, behaviours
):
    ec2 = aws("ec2")
    (instance_id,) = instances(1)
    variables = protect_vars(
        "BudgetProtect",
        [instance_id],
        stop_protection_restart_limit=2,
        stop_protection_alarm_period_seconds=10,
    )
    result = run_playbook("protect.yml", endpoint, variables)
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        behaviours.arm("stops-after-boot", [instance_id], seconds=1)
        ec2.stop_instances(InstanceIds=[instance_id])

        lines = decisions_when(aws, "BudgetProtect", 3)
        assert [line["action"] for line in lines] == ["started", "started", "suspended"]
        assert [line["restarts_in_window"] for line in lines] == [1, 2, 2]
        assert "budget_error" not in lines[0] and "tag_error" not in lines[-1]
        time.sleep(3)  # a fourth restart would have happened by now
        assert len(read_decisions(aws("logs"), "BudgetProtect")) == 3
        assert instance_states(ec2, [instance_id])[instance_id] == "stopped"
        tags = tags_of(ec2, instance_id)
        assert tags["StopProtectionSuspended"].endswith("2 restarts within 3600 s")
        assert tags["StopProtectionRestarts"] == ""

        # The suspension is not silent: the deployment's alarm fires.
        def alarm_state():
            (alarm,) = aws("cloudwatch").describe_alarms(AlarmNames=["BudgetProtect-attention"])[
                "MetricAlarms"
            ]
            return alarm["StateValue"]

        assert wait_for(lambda: alarm_state() == "ALARM", timeout=60, interval=1), alarm_state()

        # A person fixes the instance and removes the tag: protected again, budget afresh.
        behaviours.clear()
        ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "StopProtectionSuspended"}])
        ec2.start_instances(InstanceIds=[instance_id])
        wait_for(lambda: instance_states(ec2, [instance_id])[instance_id] == "running", timeout=10)
        ec2.stop_instances(InstanceIds=[instance_id])
        lines = decisions_when(aws, "BudgetProtect", 4)
        assert (lines[-1]["action"], lines[-1]["restarts_in_window"]) == ("started", 1)
    finally:
        behaviours.clear()
        assert run_playbook("unprotect.yml", endpoint, variables).returncode == 0


def test_instances_others_own_are_left_stopped_with_one_decision_each(aws, endpoint):
    ec2 = aws("ec2")
    base = {"ImageId": "ami-12345678", "MinCount": 1, "MaxCount": 1}
    member = ec2.run_instances(
        **base,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "aws:autoscaling:groupName", "Value": "web"}]}
        ],
    )["Instances"][0]["InstanceId"]
    spot = ec2.run_instances(**base, InstanceMarketOptions={"MarketType": "spot"})["Instances"][0][
        "InstanceId"
    ]
    hibernating = ec2.run_instances(**base, HibernationOptions={"Configured": True})["Instances"][0][
        "InstanceId"
    ]
    ids = [member, spot, hibernating]
    variables = protect_vars("OwnedProtect", ids)
    result = run_playbook("protect.yml", endpoint, variables)
    try:
        assert result.returncode == 0, result.stdout[-3000:]
        # protect.yml names the Auto Scaling member in a warning.
        assert f"{member} is a member of Auto Scaling group 'web'" in " ".join(
            (result.stdout + result.stderr).split()
        )

        ec2.stop_instances(InstanceIds=[member])
        assert shutdown_from_inside(endpoint, [spot], "Server.SpotInstanceShutdown")[0] == 200
        ec2.stop_instances(InstanceIds=[hibernating], Hibernate=True)

        lines = {line["instance_id"]: line for line in decisions_when(aws, "OwnedProtect", 3)}
        assert lines[member]["action"] == "skipped-managed"
        assert lines[spot]["action"] == "skipped-reason" and "Spot interruption" in lines[spot]["reason"]
        assert (
            lines[hibernating]["action"] == "skipped-reason" and "hibernated" in lines[hibernating]["reason"]
        )
        time.sleep(2)
        assert set(instance_states(ec2, ids).values()) == {"stopped"}
    finally:
        run_playbook("unprotect.yml", endpoint, variables)
        ec2.terminate_instances(InstanceIds=ids)


def test_drill_over_broken_protection_leaves_every_instance_running(
    aws, endpoint, instances, behaviours, tmp_path
):
    """The stop event of the first drilled instance is lost, which no audit can see: the
    drill must start it again itself, stop drilling, leave the fleet running, and say that
    it failed. Its report, given as a relative path, lands where the command runs."""
    ec2 = aws("ec2")
    ids = instances(3)
    variables = protect_vars("DrillProtect", ids)
    assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    try:
        behaviours.arm("drop-events", ["*"], states=["stopped"], count=1)
        report = tmp_path / "drill.json"
        result = run_playbook(
            "verify.yml",
            endpoint,
            variables
            | {
                "stop_protection_verify_mode": "drill",
                "stop_protection_verify_timeout": 5,
                "stop_protection_verify_report_path": "drill.json",
            },
            cwd=tmp_path,
        )
        assert result.returncode != 0, result.stdout[-3000:]
        said = " ".join(result.stdout.split())
        assert "The drill failed: 1 of 1 drilled instances were not restarted by the protection" in said
        assert "(started again by the drill)" in said
        # Progress as it goes: the first batch is drilled and shown on its own; the later
        # batches are not drilled after it failed.
        first_id = sorted(ids)[0]
        assert "TASK [guardrails.ec2.stop_protection : Show us-east-1 batch 1 of 3]" in result.stdout
        assert f"{first_id} (us-east-1): NOT back, started again by the drill" in said
        assert re.search(
            r"TASK \[guardrails.ec2.stop_protection : Drill us-east-1 batch 2 of 3\] \**\nskipping:",
            result.stdout,
        )
        (region,) = json.loads(report.read_text())
        by_id = {entry["instance_id"]: entry for entry in region["instances"]}
        drill_order = sorted(ids)  # the role drills a region's instances in id order
        first = by_id[drill_order[0]]
        assert (first["drilled"], first["recovered"], first["restored_by_drill"]) == (True, False, True)
        for later in drill_order[1:]:
            assert by_id[later]["drilled"] is False
            assert "continue_on_failure=false" in by_id[later]["problems"][-1]
        assert region["summary"]["restored_by_drill"] == 1
        assert wait_for(lambda: set(instance_states(ec2, ids).values()) == {"running"}, timeout=20), (
            instance_states(ec2, ids)
        )
    finally:
        behaviours.clear()
        run_playbook("unprotect.yml", endpoint, variables)


def test_a_lost_stop_event_is_caught_by_the_sweep(aws, endpoint, instances, behaviours):
    """EventBridge loses the `stopped` events: only the schedule rule <name>.sweep can save
    them, and it starts them in one batch (StartInstances and the budget's CreateTags for
    several instances, judged by IAM instance by instance). Someone has also disarmed the
    rule (disabled it, removed its target): the same sweep, run as the function's role
    under IAM enforcement, arms it again and says so."""
    ec2, events = aws("ec2"), aws("events")
    ids = instances(3)
    variables = protect_vars("SweepProtect", ids, stop_protection_sweep_minutes=1)
    assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    try:
        rule = events.describe_rule(Name="SweepProtect.sweep")
        assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")
        events.disable_rule(Name="SweepProtect.1")
        events.remove_targets(Rule="SweepProtect.1", Ids=["SweepProtect"])
        behaviours.arm("drop-events", ids, states=["stopped"], count=3)
        ec2.stop_instances(InstanceIds=ids)
        time.sleep(3)
        assert read_decisions(aws("logs"), "SweepProtect") == []  # the event path saw nothing

        assert wait_for(lambda: set(instance_states(ec2, ids).values()) == {"running"}, timeout=150)
        lines = decisions_when(aws, "SweepProtect", 4)
        started = [line for line in lines if line.get("instance_id")]
        assert sorted(line["instance_id"] for line in started) == sorted(ids)
        assert {(line["action"], line["trigger"]) for line in started} == {("started", "sweep")}
        budgets = {tags_of(ec2, i).get("StopProtectionRestarts") for i in ids}
        assert all(budgets) and len(budgets) <= 2, budgets  # written, batched by value
        # One sweep may fall between the two disarming calls: then two lines between them.
        repaired = [line for line in lines if line["action"] == "tamper-repaired"]
        assert {line["rule"] for line in repaired} == {"SweepProtect.1"}
        assert {fix for line in repaired for fix in line["repaired"]} == {"enabled again", "target put back"}
        assert events.describe_rule(Name="SweepProtect.1")["State"] == "ENABLED"
        assert [t["Id"] for t in events.list_targets_by_rule(Rule="SweepProtect.1")["Targets"]] == [
            "SweepProtect"
        ]
    finally:
        behaviours.clear()
        run_playbook("unprotect.yml", endpoint, variables)
