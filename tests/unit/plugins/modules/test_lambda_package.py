"""guardrails.ec2.lambda_package: archives depend only on names and contents."""

import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from fakes import write_source

from ansible_collections.guardrails.ec2.plugins.filter.stop_protection import stop_protection_package_sha256
from ansible_collections.guardrails.ec2.plugins.modules import lambda_package


def test_module_writes_once_and_reports_the_lambda_digest(tmp_path, run_module):
    src = write_source(tmp_path / "handler.py", "def handler(e, c):\n    return 1\n")
    args = {"src": [src], "dest_dir": str(tmp_path / "out"), "name": "EC2Protect"}
    first = run_module(lambda_package, args)
    second = run_module(lambda_package, args)
    assert first["changed"] is True
    assert second["changed"] is False
    assert first["package"] == second["package"]
    assert first["package"]["path"].startswith(str(tmp_path / "out" / "EC2Protect-"))
    with open(first["package"]["path"], "rb") as handle:
        data = handle.read()
    assert first["package"]["code_sha256"] == lambda_package.code_sha256(data)
    assert first["package"]["files"] == ["handler.py"]


def test_missing_source_fails_naming_it(tmp_path, run_module):
    result = run_module(lambda_package, {"src": [str(tmp_path / "nope.py")], "dest_dir": str(tmp_path)})
    assert result["failed"] is True
    assert "nope.py" in result["msg"]


def test_default_folder_is_private_to_the_user(tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(lambda_package.tempfile, "gettempdir", lambda: str(tmp_path))
    src = write_source(tmp_path / "handler.py", "def handler(e, c):\n    return 1\n")
    result = run_module(lambda_package, {"src": [src], "name": "EC2Protect"})
    folder = tmp_path / f"guardrails-ec2-lambda-{os.getuid()}"
    assert result["package"]["path"].startswith(str(folder))
    assert os.stat(folder).st_mode & 0o777 == 0o700


def test_a_folder_others_may_write_is_refused(tmp_path, run_module):
    src = write_source(tmp_path / "handler.py", "def handler(e, c):\n    return 1\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    result = run_module(lambda_package, {"src": [src], "dest_dir": str(shared)})
    assert result["failed"] is True
    assert str(shared) in result["msg"] and "0o777" in result["msg"]
    assert list(shared.iterdir()) == []


def test_a_link_in_place_of_the_folder_is_refused(tmp_path, run_module):
    src = write_source(tmp_path / "handler.py", "def handler(e, c):\n    return 1\n")
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "out").symlink_to(target)
    result = run_module(lambda_package, {"src": [src], "dest_dir": str(tmp_path / "out")})
    assert result["failed"] is True and "not a folder" in result["msg"]


def test_the_filter_hashes_exactly_the_package_the_module_writes(tmp_path, run_module):
    """The role compares the deployed code with the filter's hash and builds the package
    only when they differ: both must agree byte for byte."""
    handler = Path(__file__).resolve().parents[4] / "roles/stop_protection/files/stop_protection_handler.py"
    written = run_module(lambda_package, {"src": [str(handler)], "dest_dir": str(tmp_path / "out")})
    assert stop_protection_package_sha256([str(handler)]) == written["package"]["code_sha256"]
    with pytest.raises(AnsibleFilterError, match="Couldn't read the function sources"):
        stop_protection_package_sha256([str(tmp_path / "missing.py")])
