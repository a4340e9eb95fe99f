"""A LocalStack Lambda runtime executor that runs Python zip functions as local processes.

LocalStack community only ships a Docker executor. This one keeps one long-lived Python
process per execution environment (so warm invocations stay warm), enforces the
function's timeout, reports handler errors, init errors and crashes in the shape AWS
uses, and hands every invocation's output (framed START/END/REPORT) back to LocalStack,
which writes it to CloudWatch Logs.

Selected with ``LAMBDA_RUNTIME_EXECUTOR=guardrails-local``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

LOG = logging.getLogger(__name__)

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
# AWS gives the init phase (importing the handler module) ten seconds.
INIT_TIMEOUT_SECONDS = 10.0
# How long a runtime that closed its reply pipe gets to finish exiting before it is killed.
EXIT_WAIT_SECONDS = 5.0
PYTHON_RUNTIME = re.compile(r"^python(\d+)\.(\d+)$")

# Every live executor, so that LocalStack's shutdown hook can stop them all.
_LIVE_EXECUTORS: weakref.WeakSet[LocalProcessRuntimeExecutor] = weakref.WeakSet()


@functools.cache
def python_for_runtime(runtime: str | None) -> str | None:
    """The interpreter for a Lambda runtime such as ``python3.12``, or None for other runtimes.

    ``GUARDRAILS_LAMBDA_PYTHON_3_12`` (set by the launcher, which discovers interpreters)
    wins; then a working ``python3.12`` on PATH; then LocalStack's own interpreter, which
    is a close stand-in when the exact version is not installed. Looked up once per runtime:
    a probe of the interpreter at every cold start would slow each one.
    """
    match = PYTHON_RUNTIME.match(runtime or "")
    if not match:
        return None
    major, minor = match.groups()
    configured = os.environ.get(f"GUARDRAILS_LAMBDA_PYTHON_{major}_{minor}")
    if configured and os.access(configured, os.X_OK):
        return configured
    if (int(major), int(minor)) == sys.version_info[:2]:
        return sys.executable
    on_path = shutil.which(f"python{major}.{minor}")
    if on_path:
        probe = subprocess.run([on_path, "-c", "pass"], capture_output=True, check=False)
        if probe.returncode == 0:
            return on_path
    LOG.warning("No interpreter for runtime %s found; using %s", runtime, sys.executable)
    return sys.executable


def _report_line(request_id: str, duration_ms: float, memory_mb, init_ms: float | None, status=None):
    billed = max(1, int(duration_ms + 0.999))
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {memory_mb} MB"
    )
    if init_ms is not None:
        line += f"\tInit Duration: {init_ms:.2f} ms"
    if status:
        line += f"\tStatus: {status}"
    return line


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._reply = None
        self._env: dict[str, str] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix=f"lambda-env-{id[:8]}-"))
        self._log_path = self._workdir / "output.log"
        self._log_offset = 0
        self._pending_init_ms: float | None = None
        self._init_error: dict | None = None
        _LIVE_EXECUTORS.add(self)

    # --- lifecycle -------------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        code = self.function_version.config.code
        task_root = str(code.get_unzipped_code_location()) if code else str(self._workdir)
        env = {key: str(value) for key, value in env_vars.items() if value is not None}
        env.update(
            {
                "LAMBDA_TASK_ROOT": task_root,
                "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "en_US.UTF-8",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "TMPDIR": str(self._workdir),
            }
        )
        runtime_path = os.environ.get("GUARDRAILS_LAMBDA_RUNTIME_PATH")
        if runtime_path:
            # The AWS Python runtimes ship boto3; this folder holds the same for local processes.
            env["PYTHONPATH"] = runtime_path
        self._env = env
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        """Start the runtime process and wait for its init phase. Caller holds the lock."""
        interpreter = python_for_runtime(self.function_version.config.runtime)
        self._init_error = None
        if interpreter is None:
            self._process = None
            self._init_error = {
                "errorType": "Runtime.InvalidRuntime",
                "errorMessage": f"Runtime {self.function_version.config.runtime} is not supported "
                "by the local executor (Python zip functions only)",
            }
            return
        read_fd, write_fd = os.pipe()
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                [interpreter, "-u", str(BOOTSTRAP)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self._env, "GUARDRAILS_REPLY_FD": str(write_fd)},
                cwd=self._env["LAMBDA_TASK_ROOT"],
                pass_fds=(write_fd,),
                text=True,
            )
        os.close(write_fd)
        self._reply = os.fdopen(read_fd, "r")
        message, crashed = self._read_reply(time.monotonic() + INIT_TIMEOUT_SECONDS)
        if message is None:
            self._kill()
            self._init_error = {
                "errorType": "Runtime.ExitError" if crashed else "Sandbox.Timedout",
                "errorMessage": "Runtime exited during init"
                if crashed
                else f"Init phase took longer than {INIT_TIMEOUT_SECONDS:.0f} seconds",
            }
            return
        self._pending_init_ms = message["duration_ms"]
        self._init_error = message.get("error")

    def stop(self) -> None:
        with self._lock:
            self._kill()
        shutil.rmtree(self._workdir, ignore_errors=True)
        _LIVE_EXECUTORS.discard(self)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait()
            if process.stdin:
                process.stdin.close()
        if self._reply is not None:
            self._reply.close()
            self._reply = None

    # --- invocation --------------------------------------------------------------------

    def _read_reply(self, deadline: float) -> tuple[dict | None, bool]:
        """The next reply line from the runtime and whether the runtime has exited.

        ``(None, False)`` means the deadline passed with the runtime still alive;
        ``(None, True)`` means the reply pipe closed, i.e. the runtime died. The pipe closes
        a moment before the process can be reaped, so a crash is told by end-of-file here,
        never by ``poll()`` right after the read (which may still say "running").
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, False
            ready, _, _ = select.select([self._reply], [], [], remaining)
            if ready:
                line = self._reply.readline()
                if line:
                    return json.loads(line), False
                return None, True

    def _exit_status(self) -> int | None:
        """The exit status of a runtime whose reply pipe has closed."""
        try:
            return self._process.wait(timeout=EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            return None

    def _collect_output(self) -> str:
        with open(self._log_path, "rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        config = self.function_version.config
        timeout = float(config.timeout)
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                # After a timeout or crash AWS resets the sandbox; the next call is a cold start.
                self._kill()
                self._spawn()
            init_ms, self._pending_init_ms = self._pending_init_ms, None
            begun = time.monotonic()
            status = None
            if self._init_error is not None:
                result, is_error = dict(self._init_error), True
                status = "error"
            else:
                request = {
                    "request_id": request_id,
                    "invoked_arn": payload.get("invoked-function-arn"),
                    "payload": payload.get("payload"),
                    "timeout": timeout,
                }
                try:
                    self._process.stdin.write(json.dumps(request) + "\n")
                    self._process.stdin.flush()
                    reply, exited = self._read_reply(begun + timeout)
                except (BrokenPipeError, OSError, ValueError):
                    reply, exited = None, True
                if reply is not None:
                    is_error = "error" in reply
                    result = reply["error"] if is_error else reply["payload"]
                elif not exited:
                    self._kill()
                    status = "timeout"
                    is_error = True
                    result = {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
                    }
                else:
                    exit_code = self._exit_status()
                    self._kill()
                    status = "error"
                    is_error = True
                    how = f"exit status {exit_code}" if exit_code is not None else "reply channel closed"
                    result = {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
                    }
            duration_ms = (time.monotonic() - begun) * 1000
            output = self._collect_output()
        if status == "timeout":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            output += f"{stamp}Z {request_id} Task timed out after {timeout:.2f} seconds\n"
        logs = (
            f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}\n"
            f"{output}"
            f"END RequestId: {request_id}\n"
            f"{_report_line(request_id, duration_ms, config.memory_size, init_ms, status)}\n"
        )
        body = result if isinstance(result, str) else json.dumps(result)
        return InvocationResult(request_id=request_id, payload=body.encode(), is_error=is_error, logs=logs)

    # --- addresses and logs ------------------------------------------------------------

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        # Unused: invocations go through a pipe, not LocalStack's executor endpoint.
        return f"http://127.0.0.1/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # Never raise here: a version whose preparation fails goes to State=Failed and can
        # then not be deleted. Problems surface at invoke instead.
        code = function_version.config.code
        if code:
            try:
                code.prepare_for_execution()
            except Exception:
                LOG.exception("Could not unpack the code of %s", function_version.qualified_arn)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        return None

    @classmethod
    def validate_environment(cls) -> bool:
        return True


def stop_all_executors() -> None:
    for executor in list(_LIVE_EXECUTORS):
        try:
            executor.stop()
        except LambdaRuntimeException:
            LOG.debug("Executor %s already stopped", executor.id)


class LocalProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "guardrails-local"

    def load(self, *args, **kwargs):
        return LocalProcessRuntimeExecutor


def size_async_invoker_pools() -> None:
    """Let ``GUARDRAILS_LAMBDA_ASYNC_WORKERS`` asynchronous invocations of a function run at
    once; unset, LocalStack's default pool (``min(32, cores + 4)`` threads) stays."""
    workers = os.environ.get("GUARDRAILS_LAMBDA_ASYNC_WORKERS")
    if not workers:
        return
    from concurrent.futures import ThreadPoolExecutor

    from localstack.services.lambda_.invocation import event_manager

    original = event_manager.Poller.__init__
    if getattr(original, "guardrails", False):
        return

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.invoker_pool.shutdown(wait=False)
        self.invoker_pool = ThreadPoolExecutor(
            max_workers=int(workers), thread_name_prefix=self.invoker_pool._thread_name_prefix
        )

    __init__.guardrails = True
    event_manager.Poller.__init__ = __init__
