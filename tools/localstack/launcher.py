#!/usr/bin/env python3
"""Start and stop LocalStack in host mode (no Docker) for this project's tests.

    launcher.py start [--env KEY=VALUE ...]   start (or reuse) one LocalStack, print its endpoint
    launcher.py stop                          stop the LocalStack this folder started
    launcher.py status                        exit 0 when it runs and answers

Everything LocalStack writes stays under the state folder (``--state-dir``, default
``.localstack`` in the checkout). ``endpoint.env`` there holds ``AWS_ENDPOINT_URL`` and
test credentials for the Makefile, tests and molecule; ``localstack.pid`` the process to
stop. LocalStack runs in a process group of its own, and stop ends that whole group, so
no Lambda process outlives it.

Standard library only; runs under any Python 3.9+.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = "lambda,events,ec2,iam,sts,logs,cloudwatch,sqs,sns,kms,cloudtrail"
READY_TIMEOUT_SECONDS = 120
STOP_GRACE_SECONDS = 15
LAMBDA_PYTHONS = ("3.12", "3.13")


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def is_localstack(pid: int) -> bool:
    """Guard against a stale pid file whose number now belongs to another program."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"localstack.runtime.main" in cmdline.read()
    except OSError:
        return False


def healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
    except (urllib.error.URLError, OSError, ValueError):
        return False
    wanted = SERVICES.split(",")
    return all(services.get(name) in ("running", "available") for name in wanted)


def find_lambda_pythons() -> dict[str, str]:
    """Interpreters for the Lambda python runtimes that this machine has."""
    found = {}
    for version in LAMBDA_PYTHONS:
        result = subprocess.run(
            [str(ROOT / "tools" / "find-python"), "--exact", version],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip():
            found[version] = result.stdout.strip()
    return found


class Harness:
    def __init__(self, state_dir: Path, venv: Path, runtime_path: Path):
        self.state_dir = state_dir
        self.venv = venv
        self.runtime_path = runtime_path
        self.pid_file = state_dir / "localstack.pid"
        self.endpoint_file = state_dir / "endpoint.env"
        self.log_file = state_dir / "localstack.log"

    def read_state(self) -> tuple[int | None, str | None]:
        pid = endpoint = None
        if self.pid_file.exists():
            pid = int(self.pid_file.read_text().split()[0])
        if self.endpoint_file.exists():
            for line in self.endpoint_file.read_text().splitlines():
                if line.startswith("AWS_ENDPOINT_URL="):
                    endpoint = line.split("=", 1)[1]
        return pid, endpoint

    def running(self) -> str | None:
        pid, endpoint = self.read_state()
        if pid and endpoint and pid_alive(pid) and is_localstack(pid) and healthy(endpoint):
            return endpoint
        return None

    def environment(self, port: int, extra: dict[str, str]) -> dict[str, str]:
        data = self.state_dir / "data"
        tmp = self.state_dir / "tmp"
        cache = self.state_dir / "cache"
        for folder in (data, tmp, cache):
            folder.mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "LOCALSTACK_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            {
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "OVERRIDE_IN_DOCKER": "0",
                "DNS_ADDRESS": "0",
                "LOCALSTACK_VOLUME_DIR": str(data),
                "TMPDIR": str(tmp),
                "XDG_CACHE_HOME": str(cache),
                "EAGER_SERVICE_LOADING": "1",
                "SERVICES": SERVICES,
                "DISABLE_EVENTS": "1",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "LAMBDA_RUNTIME_EXECUTOR": "guardrails-local",
                "PROVIDER_OVERRIDE_EC2": "guardrails",
                "PROVIDER_OVERRIDE_EVENTS": "guardrails",
                "PROVIDER_OVERRIDE_CLOUDTRAIL": "guardrails",
                # IAM evaluated for IAM users and role sessions; --env GUARDRAILS_ENFORCE_IAM=0 turns it off.
                "GUARDRAILS_ENFORCE_IAM": "1",
                "GUARDRAILS_LAMBDA_RUNTIME_PATH": str(self.runtime_path),
            }
        )
        for version, interpreter in find_lambda_pythons().items():
            env[f"GUARDRAILS_LAMBDA_PYTHON_{version.replace('.', '_')}"] = interpreter
        env.update(extra)
        return env

    def start(self, port: int | None, extra: dict[str, str]) -> str:
        endpoint = self.running()
        if endpoint:
            return endpoint
        self.stop(quiet=True)
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"launcher: no LocalStack environment at {self.venv} (run make emulator-start)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        port = port or pick_free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                env=self.environment(port, extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # its own process group, so stop can end all of it
            )
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.stop(quiet=True)
                raise SystemExit(
                    f"launcher: LocalStack exited with code {process.returncode}; see {self.log_file}"
                )
            if healthy(endpoint):
                break
            time.sleep(0.3)
        else:
            self.stop(quiet=True)
            raise SystemExit(
                f"launcher: LocalStack did not become ready in {READY_TIMEOUT_SECONDS}s; see {self.log_file}"
            )
        self.endpoint_file.write_text(
            f"AWS_ENDPOINT_URL={endpoint}\n"
            "AWS_ACCESS_KEY_ID=test\n"
            "AWS_SECRET_ACCESS_KEY=test\n"
            "AWS_DEFAULT_REGION=us-east-1\n"
            f"LOCALSTACK_PID={process.pid}\n"
        )
        return endpoint

    def stop(self, quiet: bool = False) -> None:
        pid, _ = self.read_state()
        if pid is None:
            if not quiet:
                print("launcher: no LocalStack started from this folder")
            return
        if not is_localstack(pid):
            self.pid_file.unlink(missing_ok=True)
            self.endpoint_file.unlink(missing_ok=True)
            if not quiet:
                print(f"launcher: LocalStack (pid {pid}) is no longer running")
            return
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        # LocalStack sometimes hangs on shutdown, and Lambda processes share its group:
        # end whatever is left of the group it leads.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.pid_file.unlink(missing_ok=True)
        self.endpoint_file.unlink(missing_ok=True)
        if not quiet:
            print(f"launcher: stopped LocalStack (pid {pid})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".localstack")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv" / "localstack")
    parser.add_argument("--runtime-path", type=Path, default=ROOT / ".venv" / "lambda-runtime")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra LocalStack setting"
    )
    args = parser.parse_args(argv)
    harness = Harness(args.state_dir.resolve(), args.venv.resolve(), args.runtime_path.resolve())
    if args.command == "start":
        extra = dict(item.split("=", 1) for item in args.env)
        print(harness.start(args.port, extra))
    elif args.command == "stop":
        harness.stop()
    else:
        endpoint = harness.running()
        if not endpoint:
            print("launcher: not running")
            return 1
        print(endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
