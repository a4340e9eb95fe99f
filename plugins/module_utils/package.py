# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The function's package: a deterministic zip of its sources and the hash Lambda reports.

The ``lambda_package`` module writes the archive; the role's ``stop_protection_package_sha256``
filter hashes the same archive on the controller, without a module process, so that a
rerun compares the deployed code with it and builds the file only when the code differs.
"""

import base64
import hashlib
import io
import os
import zipfile

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644


def build_archive(sources):
    """Bytes of a deterministic zip holding ``sources`` (``{name: bytes}``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(sources):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.external_attr = FILE_MODE << 16
            info.create_system = 3  # unix, so the mode above is honoured
            archive.writestr(info, sources[name])
    return buffer.getvalue()


def code_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def read_sources(paths):
    sources = {}
    for path in paths:
        name = os.path.basename(path)
        if name in sources:
            raise ValueError(f"two source files are both named {name!r}")
        with open(path, "rb") as handle:
            sources[name] = handle.read()
    return sources


def package_sha256(paths):
    """``CodeSha256`` of the package ``lambda_package`` builds from ``paths``."""
    return code_sha256(build_archive(read_sources(paths)))
