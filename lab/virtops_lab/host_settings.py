"""Host settings only the lab needs: set while a lab is up, put back when the last lab goes down.

``vm.unprivileged_userfaultfd = 1``: post-copy migration needs a userfaultfd on the destination,
and the lab's QEMU (7.2, running as libvirt-qemu) creates it with the system call, which Debian's
default of 0 refuses to unprivileged processes (the destination's QEMU log then says
"postcopy_ram_supported_by_host: userfaultfd not available: Operation not permitted"; QEMU 8.1 and
later can use /dev/userfaultfd instead). Operators' hosts need no such change from the lab: this is
a property of hypervisors running inside containers on one machine, never a role default.

The value found before the first lab changed it is kept in the lab's state root and written back
by the ``down`` that leaves no lab on the machine (or by the next ``up``/``down`` after a crash).
"""

from __future__ import annotations

import json
from pathlib import Path

from virtops_lab.state import STATE_ROOT
from virtops_lab.system import log

PROC_SYS = Path("/proc/sys")
LAB_SYSCTLS = {"vm/unprivileged_userfaultfd": "1"}
SAVED_SETTINGS = STATE_ROOT / "host-settings.json"


def saved_settings() -> dict[str, str]:
    return json.loads(SAVED_SETTINGS.read_text()) if SAVED_SETTINGS.exists() else {}


def apply_host_settings() -> None:
    """Set the lab's sysctls, remembering each value found before a lab first changed it."""
    saved = saved_settings()
    for key, value in LAB_SYSCTLS.items():
        path = PROC_SYS / key
        if not path.exists():
            continue
        current = path.read_text().strip()
        if current != value:
            saved.setdefault(key, current)
            path.write_text(value + "\n")
            log(f"host setting {key.replace('/', '.')} = {value} while a lab is up (was {current})")
    if saved:
        SAVED_SETTINGS.parent.mkdir(parents=True, exist_ok=True)
        SAVED_SETTINGS.write_text(json.dumps(saved, indent=2) + "\n")


def restore_host_settings() -> None:
    """Write back what the lab changed (call when no lab is left on the machine)."""
    for key, value in saved_settings().items():
        path = PROC_SYS / key
        if path.exists():
            path.write_text(value + "\n")
            log(f"host setting {key.replace('/', '.')} put back to {value}")
    SAVED_SETTINGS.unlink(missing_ok=True)
