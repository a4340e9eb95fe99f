"""Shared fixtures for unit tests: no emulator, boto3 mocked with moto or stubs."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The collection is importable as ansible_collections.guardrails.ec2 when its parent tree
# is on sys.path (the Makefile links the checkout there), so module_utils import as Ansible
# imports them.
COLLECTIONS = ROOT / ".build" / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
