"""Runtime loop for one Lambda execution environment, run as its own Python process.

It stands in for the AWS Lambda Python runtime interface: it imports the handler once
(the init phase) and then serves invocations one after the other. Requests arrive as JSON
lines on stdin; replies leave as JSON lines on the file descriptor named in
``GUARDRAILS_REPLY_FD``. Whatever the function prints goes to stdout/stderr, which the
executor collects into the function's CloudWatch log stream.

Standard library only: this file runs under whichever interpreter matches the function's
runtime (python3.12, python3.13, ...), not under LocalStack's own.
"""

import importlib
import json
import os
import sys
import time
import traceback


def _error_payload(exc, error_type=None, stack=None):
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": stack if stack is not None else traceback.format_tb(exc.__traceback__),
    }


class LambdaContext:
    """The attributes of the context object that the AWS Python runtime passes to handlers."""

    def __init__(self, request_id, invoked_arn, deadline):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(handler_spec):
    """Import ``module.function`` the way the AWS runtime does, with its error types."""
    module_name, _, function_name = handler_spec.rpartition(".")
    if not module_name:
        raise _InitError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler_spec}': not enough values to unpack (expected 2, got 1)",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise _InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return handler


class _InitError(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def _write_reply(reply_file, message):
    sys.stdout.flush()
    sys.stderr.flush()
    reply_file.write(json.dumps(message) + "\n")
    reply_file.flush()


def main():
    reply_file = os.fdopen(int(os.environ.pop("GUARDRAILS_REPLY_FD")), "w")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    sys.path.insert(0, task_root)
    os.chdir(task_root)

    started = time.monotonic()
    handler = None
    init_error = None
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except _InitError as exc:
        init_error = _error_payload(exc, exc.error_type, stack=[])
    except Exception as exc:  # an exception raised while the module body runs
        init_error = _error_payload(exc)
    if init_error:
        print(f"[ERROR] {init_error['errorType']}: {init_error['errorMessage']}", file=sys.stderr)
    _write_reply(
        reply_file,
        {"type": "init", "duration_ms": (time.monotonic() - started) * 1000, "error": init_error},
    )

    for line in sys.stdin:
        request = json.loads(line)
        began = time.monotonic()
        if init_error:
            _write_reply(reply_file, {"type": "result", "error": init_error, "duration_ms": 0})
            continue
        context = LambdaContext(request["request_id"], request["invoked_arn"], began + request["timeout"])
        try:
            result = handler(json.loads(request["payload"] or "null"), context)
            payload = json.dumps(result)
            reply = {"type": "result", "payload": payload}
        except Exception as exc:
            error = _error_payload(exc)
            error["requestId"] = request["request_id"]
            # The AWS Python runtime logs an unhandled exception in this text form.
            print(
                f"[ERROR] {error['errorType']}: {error['errorMessage']}\n"
                "Traceback (most recent call last):\n" + "".join(error["stackTrace"]),
                file=sys.stderr,
            )
            reply = {"type": "result", "error": error}
        reply["duration_ms"] = (time.monotonic() - began) * 1000
        _write_reply(reply_file, reply)


if __name__ == "__main__":
    main()
