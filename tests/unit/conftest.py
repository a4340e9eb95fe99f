"""Shared fixtures for unit tests: no emulator, boto3 mocked with moto or stubs."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The collection is importable as ansible_collections.guardrails.ec2 when its parent tree
# is on sys.path (the Makefile links the checkout there), so module_utils import as Ansible
# imports them.
COLLECTIONS = ROOT / ".build" / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(autouse=True)
def _hermetic_aws(monkeypatch):
    """Unit tests never reach a real endpoint, whatever the caller's shell has set."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


class RetryingClient:
    """A boto3 client as AnsibleAWSModule hands it out: every call accepts ``aws_retry``."""

    def __init__(self, client):
        self._client = client
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def call(*args, aws_retry=False, **kwargs):
            del aws_retry  # the retries are AnsibleAWSModule's; moto answers at once
            return method(*args, **kwargs)

        return call


@pytest.fixture
def retrying():
    """Wrap a boto3 client so that module_utils can call it with ``aws_retry=True``."""
    return RetryingClient


@pytest.fixture
def loaded_by():
    """``loaded_by(*modules)``: the names of every module that importing ``modules`` loads, in
    a fresh interpreter (this one has loaded much more already)."""

    def loaded(*modules):
        code = (
            "import sys\n"
            + "".join(f"import {module}\n" for module in modules)
            + "print(sorted(sys.modules))\n"
        )
        printed = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path)),
        ).stdout
        return ast.literal_eval(printed)

    return loaded
