"""Let ansible-test seed pip in its per-test virtual environments without its download host.

ansible-test bootstraps pip in each sanity test's virtual environment by downloading a
script from its own CI host, which is out of reach here. It first looks for a cached copy
at ``~/.ansible/test/cache/get_pip_<version>.py``; this writes a stand-in there that does
the same job with the interpreter's own ``ensurepip`` and then ``pip install``.

Run with the Ansible virtual environment's Python and ``HOME`` set to the folder that
ansible-test will use.
"""

import importlib
import os
import pathlib

STAND_IN = '''"""Stand-in for pip's get-pip.py: ensurepip, then pip install the requested packages."""
import subprocess
import sys

# The real bootstrap script understands these; pip install does not.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-m", "pip", "install"] + args, check=True)
'''


def pip_versions():
    """Every pip version ansible-test may ask for (its default and per-Python overrides)."""
    source = pathlib.Path(
        importlib.import_module("ansible_test._internal.python_requirements").__file__
    ).read_text()
    found = set()
    marker = "pip='"
    start = source.find(marker)
    while start != -1:
        end = source.index("'", start + len(marker))
        found.add(source[start + len(marker) : end])
        start = source.find(marker, end)
    if not found:
        raise SystemExit("sanity-bootstrap: could not find the pip version ansible-test wants")
    return sorted(found)


def main():
    cache = pathlib.Path(os.path.expanduser("~/.ansible/test/cache"))
    cache.mkdir(parents=True, exist_ok=True)
    for version in pip_versions():
        target = cache / f"get_pip_{version.replace('.', '_')}.py"
        target.write_text(STAND_IN)
        print(f"sanity-bootstrap: {target}")


if __name__ == "__main__":
    main()
