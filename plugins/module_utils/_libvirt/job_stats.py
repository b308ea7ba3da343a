# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""libvirt's job statistics, read the same way by every module: names that say what they hold."""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)

# libvirt job-stats key -> returned name
STAT_NAMES = {
    "time_elapsed": "time_elapsed_ms",
    "time_remaining": "time_remaining_ms",
    "data_total": "data_total",
    "data_processed": "data_processed",
    "data_remaining": "data_remaining",
    "memory_total": "memory_total",
    "memory_processed": "memory_processed",
    "memory_remaining": "memory_remaining",
    "memory_bps": "memory_bps",
    "memory_dirty_rate": "memory_dirty_rate_pages",
    "memory_page_size": "memory_page_size",
    "memory_iteration": "memory_iteration",
    "memory_postcopy_requests": "memory_postcopy_requests",
    "disk_total": "disk_total",
    "disk_processed": "disk_processed",
    "disk_remaining": "disk_remaining",
    "disk_bps": "disk_bps",
    "downtime": "expected_downtime_ms",
    "setup_time": "setup_time_ms",
    "auto_converge_throttle": "auto_converge_throttle",
    "compression_bytes": "compression_bytes",
    "errmsg": "error_message",
}


def job_type_name(code: int) -> str:
    names = {
        libvirt.VIR_DOMAIN_JOB_NONE: "none", libvirt.VIR_DOMAIN_JOB_BOUNDED: "bounded",
        libvirt.VIR_DOMAIN_JOB_UNBOUNDED: "unbounded", libvirt.VIR_DOMAIN_JOB_COMPLETED: "completed",
        libvirt.VIR_DOMAIN_JOB_FAILED: "failed", libvirt.VIR_DOMAIN_JOB_CANCELLED: "cancelled",
    }
    return names.get(code, str(code))


def operation_name(code: int | None) -> str | None:
    if code is None:
        return None
    for suffix in ("MIGRATION_OUT", "MIGRATION_IN", "SAVE", "RESTORE", "DUMP", "SNAPSHOT", "BACKUP", "START"):
        if getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_" + suffix, None) == code:
            return suffix.lower()
    return "unknown"


def friendly_job_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """jobStats() with names that say what they hold, plus the dirty rate in bytes/s."""
    code = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE)
    shown: dict[str, Any] = {"active": code in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED),
                             "type": job_type_name(code), "operation": operation_name(stats.get("operation"))}
    for key, name in STAT_NAMES.items():
        if key in stats:
            shown[name] = stats[key]
    if "memory_dirty_rate" in stats and "memory_page_size" in stats:
        shown["memory_dirty_rate_bytes"] = stats["memory_dirty_rate"] * stats["memory_page_size"]
    return shown
