"""Run a module's main() with arguments and capture its JSON result (the module tests, and
the drift contract, which runs amazon.aws modules)."""

import json

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.common import warnings
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # As in a module process: once a test in this process imported controller code (a
    # filter, say), deprecations would go to the controller's display, not the result.
    monkeypatch.setattr(module_internal, "is_controller", False)

    def run(module, args):
        # A module process starts with no warnings; in one test process they would pile up.
        warnings._global_warnings.clear()
        warnings._global_deprecations.clear()
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        # Warnings as their messages: ansible-core serializes them as strings or, depending
        # on what else this process imported, as WarningSummary objects.
        if result.get("warnings"):
            result["warnings"] = [
                warning["event"]["msg"] if isinstance(warning, dict) else warning
                for warning in result["warnings"]
            ]
        return result

    return run
