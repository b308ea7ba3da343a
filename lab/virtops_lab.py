"""The lab's command line: ``python lab/virtops_lab.py up|down|status|inventory --name NAME``.

The lab itself is the package beside this file (lab/virtops_lab/); this script runs its
command line (virtops_lab.cli), as ``python -m virtops_lab`` does.
"""

import sys

from virtops_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
