# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""libvirt's job statistics, in the one vocabulary every module returns.

Every statistic keeps libvirt's own key name (``virDomainGetJobStats``, the ``VIR_DOMAIN_JOB_*``
typed parameters): times in milliseconds (``time_elapsed``, ``time_remaining``, ``downtime``,
``setup_time``), sizes in bytes (``data_*``, ``memory_*``, ``disk_*``), rates in bytes per second
(``memory_bps``, ``disk_bps``), ``memory_dirty_rate`` in pages per second, ``errmsg`` the failure's
text. Which keys are there depends on the libvirt and QEMU versions and on the job.

The two codes are returned as names, and two fields are derived:

- ``job_type`` (libvirt's ``type``): none, bounded, unbounded, completed, failed or cancelled;
- ``operation``: migration_out, migration_in, save, restore, dump, snapshot, backup, start or
  unknown; None when libvirt does not say;
- ``active``: whether the job still runs (bounded or unbounded);
- ``memory_dirty_rate_bytes``: ``memory_dirty_rate`` times ``memory_page_size``, when both are there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)

# libvirt's keys that this vocabulary replaces by names (``job_type``, ``operation``)
CODE_KEYS = ("type", "operation")
OPERATIONS = ("MIGRATION_OUT", "MIGRATION_IN", "SAVE", "RESTORE", "DUMP", "SNAPSHOT", "BACKUP", "START")


def job_type_name(code: int) -> str:
    """The name of a ``VIR_DOMAIN_JOB_*`` type code (the code itself, as text, when unknown)."""
    names = {
        libvirt.VIR_DOMAIN_JOB_NONE: "none", libvirt.VIR_DOMAIN_JOB_BOUNDED: "bounded",
        libvirt.VIR_DOMAIN_JOB_UNBOUNDED: "unbounded", libvirt.VIR_DOMAIN_JOB_COMPLETED: "completed",
        libvirt.VIR_DOMAIN_JOB_FAILED: "failed", libvirt.VIR_DOMAIN_JOB_CANCELLED: "cancelled",
    }
    return names.get(code, str(code))


def operation_name(code: int | None) -> str | None:
    """The name of a ``VIR_DOMAIN_JOB_OPERATION_*`` code; None when there is none."""
    if code is None:
        return None
    for suffix in OPERATIONS:
        if getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_" + suffix, None) == code:
            return suffix.lower()
    return "unknown"


def job_is_running(code: int) -> bool:
    return code in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED)


def job_statistics(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``jobStats()`` in the modules' vocabulary (see the module docstring); {} when nothing was read."""
    if not stats:
        return {}
    code = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE)
    shown: dict[str, Any] = {"active": job_is_running(code), "job_type": job_type_name(code),
                             "operation": operation_name(stats.get("operation"))}
    shown.update((key, value) for key, value in stats.items() if key not in CODE_KEYS)
    if "memory_dirty_rate" in stats and "memory_page_size" in stats:
        shown["memory_dirty_rate_bytes"] = stats["memory_dirty_rate"] * stats["memory_page_size"]
    return shown
