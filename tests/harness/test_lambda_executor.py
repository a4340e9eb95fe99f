"""The local Lambda executor runs Python functions and reports failures the way AWS does."""

import json
import time

import pytest
from conftest import RESTART_SOURCE, allow, instance_arn, instance_states, state_pattern, wait_for


def invoke(lam, name, payload=None):
    reply = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode())
    return reply.get("FunctionError"), json.loads(reply["Payload"].read() or b"null")


def log_text(aws, name, must_contain: str, timeout: float = 15.0) -> str:
    logs = aws("logs")
    group = f"/aws/lambda/{name}"

    def read():
        try:
            streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return ""
        text = "\n".join(
            event["message"]
            for stream in streams
            for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])[
                "events"
            ]
        )
        return text if must_contain in text else ""

    return wait_for(read, timeout=timeout, interval=0.3)


def test_rule_restarts_the_instance_in_its_pattern_and_no_other(
    aws, make_function, instances, rule_to_function
):
    ec2 = aws("ec2")
    protected, bystander = instances(2)
    name, arn = make_function(RESTART_SOURCE, policy=allow(("ec2:StartInstances", instance_arn(protected))))
    rule_to_function(state_pattern([protected]), name, arn)
    ec2.stop_instances(InstanceIds=[protected, bystander])
    assert wait_for(lambda: instance_states(ec2, [protected])[protected] == "running", timeout=30)
    time.sleep(2)  # give a wrong restart of the bystander every chance to happen
    assert instance_states(ec2, [bystander])[bystander] == "stopped"
    assert f"restarted {protected}" in log_text(aws, name, f"restarted {protected}")


def test_logs_are_framed_like_aws(aws, make_function):
    name, _ = make_function("def handler(event, context):\n    print('hello from', context.function_name)\n")
    assert invoke(aws("lambda"), name) == (None, None)
    text = log_text(aws, name, "REPORT RequestId")
    assert "START RequestId:" in text
    assert f"hello from {name}" in text
    assert "END RequestId:" in text
    assert "Init Duration:" in text  # the first invocation is a cold start


def test_environment_stays_warm_between_invocations(aws, make_function):
    source = "import os, time\nSTARTED = time.time()\n\ndef handler(event, context):\n    return [os.getpid(), STARTED]\n"
    name, _ = make_function(source)
    lam = aws("lambda")
    assert invoke(lam, name)[1] == invoke(lam, name)[1]


def test_handler_exception_is_reported_as_unhandled(aws, make_function):
    name, _ = make_function("def handler(event, context):\n    raise ValueError('boom')\n")
    error, payload = invoke(aws("lambda"), name)
    assert error == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "boom"
    assert any("raise ValueError" in line for line in payload["stackTrace"])
    assert "[ERROR] ValueError: boom" in log_text(aws, name, "[ERROR]")


def test_timeout_is_reported_and_the_next_call_starts_cold(aws, make_function):
    source = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 'done'\n"
    name, _ = make_function(source, timeout=1)
    lam = aws("lambda")
    began = time.monotonic()
    error, payload = invoke(lam, name, {"sleep": 5})
    assert time.monotonic() - began < 4
    assert error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert "Task timed out after 1.00 seconds" in log_text(aws, name, "Task timed out")
    assert invoke(lam, name, {"sleep": 0}) == (None, "done")


def test_process_crash_is_a_runtime_exit_error(aws, make_function):
    name, _ = make_function("import os\n\ndef handler(event, context):\n    os._exit(3)\n")
    error, payload = invoke(aws("lambda"), name)
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in payload["errorMessage"]


def test_crash_is_told_apart_from_a_timeout_while_the_process_is_still_exiting(aws, make_function):
    # The runtime's reply pipe closes before the process has finished exiting; a crash seen
    # in that window must still be a Runtime.ExitError with the real exit status.
    source = "import os, time\n\ndef handler(event, context):\n    os.closerange(3, 1024)\n    time.sleep(1)\n    os._exit(4)\n"
    name, _ = make_function(source, timeout=5)
    error, payload = invoke(aws("lambda"), name)
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 4" in payload["errorMessage"]


@pytest.mark.parametrize(
    ("source", "handler", "error_type"),
    [
        ("import not_a_module\n", "handler.handler", "Runtime.ImportModuleError"),
        ("def other(event, context):\n    pass\n", "handler.handler", "Runtime.HandlerNotFound"),
        ("def handler(event, context)\n", "handler.handler", "Runtime.UserCodeSyntaxError"),
    ],
)
def test_init_errors_are_reported_with_aws_error_types(aws, make_function, source, handler, error_type):
    name, _ = make_function(source, handler=handler)
    error, payload = invoke(aws("lambda"), name)
    assert error == "Unhandled"
    assert payload["errorType"] == error_type


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_runtime_selects_the_python_version(aws, make_function, runtime):
    source = "import sys, boto3\n\ndef handler(event, context):\n    return '%d.%d' % sys.version_info[:2]\n"
    name, _ = make_function(source, runtime=runtime)
    error, version = invoke(aws("lambda"), name)
    assert error is None
    # Machines without that interpreter fall back to LocalStack's own (3.13).
    assert version in (runtime.removeprefix("python"), "3.13")
