#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: lambda_package
short_description: Build a deterministic zip archive of Lambda function code
version_added: 1.0.0
description:
  - Packs source files into a zip archive whose bytes depend only on the files' names and
    contents, not on timestamps, permissions, file order or the zlib version, so that an
    unchanged handler gives the same C(CodeSha256) on every machine and from any checkout.
  - Entries are stored uncompressed with a fixed timestamp and mode C(0644), in sorted order.
  - The archive is written to O(dest_dir) under a name derived from its content; an existing
    archive with the same content is left alone.
  - Runs where the task runs; use it on the controller (C(localhost)) before M(amazon.aws.lambda).
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  src:
    description:
      - Files to put at the root of the archive.
    type: list
    elements: path
    required: true
  dest_dir:
    description:
      - Folder for the archive. Created when missing (mode C(0700)).
      - It must belong to the user running the module and not be writable by others, since
        the function's code is read back from it by a later task.
      - Defaults to a folder C(guardrails-ec2-lambda-<uid>) of this user in the system's
        temporary directory.
    type: path
  name:
    description:
      - Prefix of the archive's file name.
    type: str
    default: function
notes:
  - Writing the archive is local build work, not a change to any managed resource; check
    mode builds it too, so that later tasks can compare it with the deployed code.
"""

EXAMPLES = r"""
- name: Package the restart function
  guardrails.ec2.lambda_package:
    src:
      - "{{ role_path }}/files/stop_protection_handler.py"
    name: EC2Protect
  register: package

- name: Deploy it
  amazon.aws.lambda:
    name: EC2Protect
    zip_file: "{{ package.package.path }}"
    runtime: python3.13
    handler: stop_protection_handler.handler
    role: arn:aws:iam::123456789012:role/EC2ProtectRole
"""

RETURN = r"""
package:
  description: The archive.
  returned: always
  type: dict
  contains:
    path:
      description: Where the archive is.
      type: str
      sample: /tmp/guardrails-ec2-lambda-1000/EC2Protect-3b1f0c...zip
    code_sha256:
      description: Base64 SHA-256 of the archive, as Lambda reports it in C(CodeSha256).
      type: str
      sample: 4Qa5Pb0y8VnJ0Wbq2lqz7z5m8b0xkM9Vd1Yy2cV3uXg=
    size:
      description: Size of the archive in bytes.
      type: int
      sample: 11234
    files:
      description: Names of the entries, in archive order.
      type: list
      elements: str
      sample: [stop_protection_handler.py]
"""

import hashlib
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.guardrails.ec2.plugins.module_utils.package import (
    build_archive,
    code_sha256,
    read_sources,
)


# The earliest timestamp a zip entry can carry; any fixed value makes the archive repeatable.
def private_folder(path):
    """Create ``path`` (0700) or check that it is this user's and no one else may write it.

    Another user who could write there could swap the archive between this task and the
    one that uploads it, and so run code as the function's role.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a folder (a link or a file is in the way)")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise OSError(
            f"{path} belongs to uid {info.st_uid} with mode {oct(info.st_mode & 0o777)}; it must belong "
            f"to uid {os.getuid()} and not be writable by group or others"
        )
    return path


def default_folder():
    return os.path.join(tempfile.gettempdir(), f"guardrails-ec2-lambda-{os.getuid()}")


def write_archive(data, dest_dir, prefix):
    """Write ``data`` under a content-derived name; returns (path, written)."""
    private_folder(dest_dir)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = os.path.join(dest_dir, f"{prefix}-{digest}.zip")
    if os.path.exists(path):
        with open(path, "rb") as handle:
            if handle.read() == data:
                return path, False
    fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path, True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="list", elements="path", required=True),
            dest_dir=dict(type="path"),
            name=dict(type="str", default="function"),
        ),
        supports_check_mode=True,
    )
    paths = module.params["src"]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        module.fail_json(msg=f"Source files not found: {', '.join(missing)}")
    try:
        sources = read_sources(paths)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"Couldn't read the function sources: {exc}")
    data = build_archive(sources)
    dest_dir = module.params["dest_dir"] or default_folder()
    try:
        path, written = write_archive(data, dest_dir, module.params["name"])
    except OSError as exc:
        module.fail_json(msg=f"Couldn't write the archive to {dest_dir}: {exc}")
    module.exit_json(
        changed=written,
        package={"path": path, "code_sha256": code_sha256(data), "size": len(data), "files": sorted(sources)},
    )


if __name__ == "__main__":
    main()
