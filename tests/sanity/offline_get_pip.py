"""Offline stand-in for the pip bootstrap script that ``ansible-test --venv`` downloads.

ansible-test fetches ``get-pip-<version>.py`` from a host that is not reachable
from this project's machines. ``make sanity`` copies this file to
``~/.ansible/test/cache/get_pip_<version>.py``; it bootstraps pip from the
interpreter's own ``ensurepip`` and then runs ``pip install`` with the options
ansible-test passes (the pinned pip version and its packages), less get-pip's own
``--no-setuptools`` / ``--no-wheel``, which only tell get-pip not to add those.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    pip_arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    return subprocess.call([sys.executable, "-m", "pip", "install", *pip_arguments])


if __name__ == "__main__":
    sys.exit(main())
