"""Check the built collection as a user gets it: install the tarball into an empty
collections folder and render the documentation of every plugin and role from there.

    python tools/check-package.py .build/dist/guardrails-ec2-1.1.0.tar.gz .build/install

Exits non-zero, naming the problem, when the install fails, a plugin or role does not
render, or the tarball ships files that cannot work from it.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BIN = Path(sys.executable).parent
# The molecule scenarios need the Makefile and tools/ (the LocalStack harness), which the
# build leaves out: they must not ship either.
NOT_SHIPPED = ("extensions/", "tools/", "tests/harness/", "Makefile", ".ci/")


def run(*argv, env=None):
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def main():
    tarball, target = Path(sys.argv[1]), Path(sys.argv[2])
    with tarfile.open(tarball) as archive:
        shipped = [member.name for member in archive.getmembers()]
    stray = [name for name in shipped if name.startswith(NOT_SHIPPED)]
    if stray:
        sys.exit(f"{tarball} ships files that cannot run from it: {', '.join(stray[:10])}")
    shutil.rmtree(target, ignore_errors=True)
    run(
        str(BIN / "ansible-galaxy"),
        "collection",
        "install",
        "--no-deps",
        "--force",
        "-p",
        str(target),
        str(tarball),
    )
    installed = target / "ansible_collections" / "guardrails" / "ec2"
    site = next(path for path in sys.path if path.endswith("site-packages"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=f"{target}:{site}")
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
    kinds = {
        "module": sorted(
            p.stem for p in (installed / "plugins" / "modules").glob("*.py") if p.stem != "__init__"
        ),
        # Every filter a FilterModule offers, documented or not: a missing doc fails below.
        "filter": sorted(
            name
            for source in (installed / "plugins" / "filter").glob("*.py")
            for name in re.findall(
                r'^\s+"(\w+)": \1,$', source.read_text().partition("def filters(self):")[2], re.MULTILINE
            )
        ),
        "role": sorted(p.name for p in (installed / "roles").iterdir() if p.is_dir()),
    }
    for kind, names in kinds.items():
        listed = run(str(BIN / "ansible-doc"), "-t", kind, "-l", "guardrails.ec2", env=env)
        for name in names:
            if f"guardrails.ec2.{name}" not in listed:
                sys.exit(f"ansible-doc -t {kind} -l does not list guardrails.ec2.{name} from {target}")
        run(str(BIN / "ansible-doc"), "-t", kind, *(f"guardrails.ec2.{name}" for name in names), env=env)
        print(f"{kind}: {', '.join(names)} render from the installed tarball")


if __name__ == "__main__":
    main()
