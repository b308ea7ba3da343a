"""Offline stand-in for the pip bootstrap script that ``ansible-test --venv`` downloads.

ansible-test fetches ``get-pip-<version>.py`` from a host that is not reachable
from this project's machines. ``make sanity`` copies this file to
``~/.ansible/test/cache/get_pip_<version>.py``; it bootstraps pip from the
interpreter's own ``ensurepip`` and then runs ``pip install`` with the options
ansible-test passes (the pinned pip version and its packages).
"""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    return subprocess.call([sys.executable, "-m", "pip", "install", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
