"""The deployed protection under load, interruptions and unreachable endpoints (LocalStack).

These run the playbooks as a user does (ansible-playbook in a subprocess) against the
emulator the session uses; the tests that must stop an emulator start one of their own.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from conftest import ROOT, _load_launcher, instance_states, wait_for
from playbook_runs import (
    changed_count,
    playbook_command,
    playbook_env,
    protect_vars,
    read_decisions,
    run_playbook,
)


def test_hundred_instances_stopped_at_once_all_restart_with_one_decision_each(aws, endpoint, instances):
    ec2 = aws("ec2")
    ids = instances(100)
    result = run_playbook("protect.yml", endpoint, protect_vars("LoadProtect", ids))
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        ec2.stop_instances(InstanceIds=ids)

        def all_running():
            return all(state == "running" for state in instance_states(ec2, ids).values())

        assert wait_for(all_running, timeout=180, interval=1), instance_states(ec2, ids)
        # Each stop produced exactly one decision, all of them restarts.
        lines = wait_for(
            lambda: (found := read_decisions(aws("logs"), "LoadProtect")) and len(found) >= 100 and found,
            timeout=30,
        )
        assert sorted(line["instance_id"] for line in lines) == sorted(ids)
        assert {line["action"] for line in lines} == {"started"}
    finally:
        assert run_playbook("unprotect.yml", endpoint, protect_vars("LoadProtect", ids)).returncode == 0


def test_two_deployments_in_one_region_do_not_interfere(aws, endpoint, instances):
    ec2, lam = aws("ec2"), aws("lambda")
    first, second = instances(2)
    # "PairA-2" starts like PairA's shard rules; neither may take the other's rules for its own.
    deployments = {"PairA": first, "PairA-2": second}
    # The second one also runs the function on the python3.12 runtime.
    runtimes = {"PairA": "python3.13", "PairA-2": "python3.12"}
    for name, instance_id in deployments.items():
        variables = protect_vars(name, [instance_id], stop_protection_lambda_runtime=runtimes[name])
        assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    try:
        ec2.stop_instances(InstanceIds=[first, second])
        assert wait_for(
            lambda: set(instance_states(ec2, [first, second]).values()) == {"running"}, timeout=60
        )
        # Logs reach CloudWatch when an invocation ends, a moment after the restart.
        for name, instance_id in deployments.items():
            lines = wait_for(lambda name=name: read_decisions(aws("logs"), name), timeout=30)
            assert [line["instance_id"] for line in lines] == [instance_id]

        assert run_playbook("unprotect.yml", endpoint, protect_vars("PairA", [first])).returncode == 0
        assert [
            f["FunctionName"]
            for f in lam.list_functions()["Functions"]
            if f["FunctionName"].startswith("PairA")
        ] == ["PairA-2"]
        ec2.stop_instances(InstanceIds=[second])
        assert wait_for(lambda: instance_states(ec2, [second])[second] == "running", timeout=60)
    finally:
        run_playbook("unprotect.yml", endpoint, protect_vars("PairA-2", [second]))


@pytest.mark.parametrize("playbook", ["protect.yml", "unprotect.yml"])
def test_interrupted_run_converges_on_rerun(aws, endpoint, instances, playbook):
    (instance_id,) = instances(1)
    variables = protect_vars(f"Interrupted{playbook[0].upper()}", [instance_id])
    if playbook == "unprotect.yml":
        assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    process = subprocess.Popen(
        playbook_command(playbook, variables),
        env=playbook_env(endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Stop it in the middle: right after the first change it reports.
    for line in process.stdout:
        if line.startswith("changed:"):
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode != 0

    rerun = run_playbook(playbook, endpoint, variables)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    again = run_playbook(playbook, endpoint, variables)
    assert again.returncode == 0
    assert changed_count(again) == 0
    if playbook == "protect.yml":
        ec2 = aws("ec2")
        ec2.stop_instances(InstanceIds=[instance_id])
        assert wait_for(lambda: instance_states(ec2, [instance_id])[instance_id] == "running", timeout=60)
        run_playbook("unprotect.yml", endpoint, variables)


def test_emulator_lost_mid_run_fails_clearly_and_a_rerun_converges(tmp_path):
    launcher = _load_launcher()
    harness = launcher.Harness(tmp_path / "ls", ROOT / ".venv/localstack", ROOT / ".venv/lambda-runtime")
    endpoint = harness.start(None, {})
    port = int(endpoint.rsplit(":", 1)[1])
    try:
        env = playbook_env(endpoint)
        credentials = {
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "region_name": "us-east-1",
        }
        ec2 = boto3.client("ec2", endpoint_url=endpoint, **credentials)
        instance_id = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        variables = protect_vars("LostEmulator", [instance_id])
        process = subprocess.Popen(
            playbook_command("protect.yml", variables),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = []
        for line in process.stdout:
            output.append(line)
            if line.startswith("changed:"):
                harness.stop(quiet=True)
                stopped_at = time.monotonic()
                break
        output.append(process.communicate(timeout=120)[0])
        text = "".join(output)
        assert process.returncode != 0
        assert time.monotonic() - stopped_at < 90
        assert f"127.0.0.1:{port}" in text or "Could not connect" in text, text[-2000:]

        # A new emulator (empty, like an account where the run was cut short) and a rerun.
        endpoint = harness.start(port, {})
        ec2 = boto3.client("ec2", endpoint_url=endpoint, **credentials)
        instance_id = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        variables = protect_vars("LostEmulator", [instance_id])
        assert run_playbook("protect.yml", endpoint, variables).returncode == 0
        assert changed_count(run_playbook("protect.yml", endpoint, variables)) == 0
    finally:
        harness.stop(quiet=True)


def test_unreachable_endpoint_fails_in_seconds(instances):
    launcher = _load_launcher()
    closed = f"http://127.0.0.1:{launcher.pick_free_port()}"
    began = time.monotonic()
    result = run_playbook(
        "protect.yml", closed, protect_vars("Unreachable", ["i-0123456789abcdef0"]), timeout=120
    )
    assert result.returncode != 0
    assert time.monotonic() - began < 60
    assert closed.split("//")[1] in result.stdout or "Could not connect" in result.stdout, result.stdout[
        -2000:
    ]


def test_missing_credentials_fail_in_seconds(endpoint, tmp_path):
    env = playbook_env(endpoint)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"))
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    began = time.monotonic()
    result = subprocess.run(
        playbook_command("protect.yml", protect_vars("NoCredentials", ["i-0123456789abcdef0"])),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert time.monotonic() - began < 60
    assert "credentials" in result.stdout.lower(), result.stdout[-2000:]


def test_instance_not_yet_startable_is_retried_by_the_function(aws, endpoint, instances, faults):
    ec2 = aws("ec2")
    (instance_id,) = instances(1)
    variables = protect_vars("StillStopping", [instance_id])
    assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    try:
        # EC2 answers IncorrectInstanceState while an instance is still stopping.
        faults.arm("StartInstances", [instance_id], "IncorrectInstanceState", count=2)
        ec2.stop_instances(InstanceIds=[instance_id])
        assert wait_for(lambda: instance_states(ec2, [instance_id])[instance_id] == "running", timeout=60)
        (line,) = wait_for(lambda: read_decisions(aws("logs"), "StillStopping"), timeout=15)
        assert (line["action"], line["start_retries"]) == ("started", 2)
    finally:
        run_playbook("unprotect.yml", endpoint, variables)


def test_attribution_logs_who_stopped_a_protected_instance(aws, endpoint, instances):
    """LocalStack emits no CloudTrail events, so the test publishes the one AWS would."""
    ec2, events = aws("ec2"), aws("events")
    protected, other = instances(2)
    variables = protect_vars("Attributed", [protected], stop_protection_attribution=True)
    assert run_playbook("protect.yml", endpoint, variables).returncode == 0
    try:
        detail = {
            "eventSource": "ec2.amazonaws.com",
            "eventName": "StopInstances",
            "eventTime": "2026-11-27T03:04:05Z",
            "sourceIPAddress": "203.0.113.7",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::000000000000:user/alice"},
            "requestParameters": {
                "instancesSet": {"items": [{"instanceId": protected}, {"instanceId": other}]}
            },
        }
        events.put_events(
            Entries=[
                {
                    "Source": "aws.ec2",
                    "DetailType": "AWS API Call via CloudTrail",
                    "Detail": json.dumps(detail),
                }
            ]
        )
        lines = wait_for(lambda: read_decisions(aws("logs"), "Attributed"), timeout=30)
        assert [(line["action"], line["instance_id"], line["caller_arn"]) for line in lines] == [
            ("attributed", protected, "arn:aws:iam::000000000000:user/alice")
        ]
        assert instance_states(ec2, [protected, other]) == {protected: "running", other: "running"}
    finally:
        run_playbook("unprotect.yml", endpoint, variables)


def test_playbooks_need_no_interpreter_discovery(aws, endpoint, instances, tmp_path):
    """A broken `python3.x` first on PATH (a pyenv shim with no version selected) changes nothing.

    The command is the one a user types, without the harness's interpreter pin: the
    collection's playbooks must pin localhost's interpreter themselves.
    """
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("python", "python3", "python3.12", "python3.13", "python3.14"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
        shim.chmod(0o755)
    env = playbook_env(endpoint)
    env["PATH"] = f"{shims}:{env['PATH']}"
    (instance_id,) = instances(1)
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        "localhost,",
        str(ROOT / "playbooks" / "protect.yml"),
        "--check",
        "-e",
        json.dumps(protect_vars("NoDiscovery", [instance_id])),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "command not found" not in result.stdout
