"""``python -m virtops_lab``: the lab's command line (see virtops_lab.cli)."""

import sys

from virtops_lab.cli import main

sys.exit(main())
