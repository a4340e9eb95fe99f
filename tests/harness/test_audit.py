"""The audit through verify.yml, on what only a deployed function shows."""

import io
import zipfile

from conftest import unique
from playbook_runs import protect_vars, run_playbook


def other_code():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stop_protection_handler.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def test_a_function_whose_code_was_changed_is_not_protection(aws, endpoint, instances):
    name = unique("CodeAudit")
    settings = protect_vars(name, instances(1), stop_protection_keep_logs=False)
    lam = aws("lambda")
    try:
        assert run_playbook("protect.yml", endpoint, settings).returncode == 0
        assert run_playbook("verify.yml", endpoint, settings).returncode == 0
        lam.update_function_code(FunctionName=name, ZipFile=other_code())
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        audit = run_playbook("verify.yml", endpoint, settings)
        assert audit.returncode != 0
        assert "is not the code this collection deploys" in audit.stdout, audit.stdout[-3000:]
        # protect puts the packaged code back, and the audit passes again
        assert run_playbook("protect.yml", endpoint, settings).returncode == 0
        assert run_playbook("verify.yml", endpoint, settings).returncode == 0
    finally:
        run_playbook("unprotect.yml", endpoint, settings)
