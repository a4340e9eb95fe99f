"""Running the collection's playbooks as a user does, for the harness tests: ansible-playbook
in a subprocess against the emulator the session uses."""

import os
import re
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from lab import decisions as read_decisions  # noqa: F401  (re-exported for the tests)
from lab import playbook_command as lab_playbook_command


def playbook_env(endpoint):
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        ANSIBLE_NOCOLOR="1",
    )
    collections = ROOT / ".build" / "collections"
    if "ANSIBLE_COLLECTIONS_PATH" not in env and collections.is_dir():
        site = next((ROOT / ".venv" / "ansible" / "lib").glob("python3*/site-packages"))
        env["ANSIBLE_COLLECTIONS_PATH"] = f"{collections}:{site}"
    return env


def playbook_command(name, extra_vars, extra=()):
    return lab_playbook_command(name, extra=extra, extra_vars=extra_vars)


def run_playbook(name, endpoint, extra_vars, timeout=300, cwd=None, extra=(), credentials=None):
    """``credentials``: the access key of the principal that runs it (default: the test keys)."""
    return subprocess.run(
        playbook_command(name, extra_vars, extra),
        env=playbook_env(endpoint) | (credentials or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def changed_count(result):
    """Changes over every host of the last play recap (one host per account and region)."""
    recap = result.stdout.rsplit("PLAY RECAP", 1)[-1]
    return sum(int(found) for found in re.findall(r"changed=(\d+)", recap))


def protect_vars(name, ids, **extra):
    """Variables for protect.yml. No sweep unless a test asks for one: a sweep firing on its
    own schedule in the middle of a test would add decision lines the test counts."""
    return {
        "stop_protection_name": name,
        "stop_protection_region": "us-east-1",
        "stop_protection_instance_ids": ids,
        "stop_protection_sweep_minutes": 0,
    } | extra
