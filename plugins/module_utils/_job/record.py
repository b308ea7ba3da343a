# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migration_job module's run id and audit record.

An ``abort``, ``postcopy`` or ``tune`` that changed something, or failed trying, appends one
record to the audit log (``_common/audit.py``), its action the operation. ``info`` changes
nothing and is never recorded; neither is a check-mode run nor a refused input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    was_tried,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.operations import (
    JobRequest,
)

RECORDED_OPERATIONS = ("abort", "postcopy", "tune")
TUNED_OPTIONS = ("max_downtime", "bandwidth")


def operation_flags(request: JobRequest) -> tuple[str, ...]:
    """What a tune sets, as option names (never their values)."""
    return tuple(name for name in TUNED_OPTIONS if getattr(request, name) is not None)


def run_recorded_job(request: JobRequest, check_mode: bool, trail: AuditTrail,
                     run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` the operation; the result (or the MigrationError raised) carries ``run_id`` and ``audit_log``."""
    recorded = request.operation in RECORDED_OPERATIONS and not check_mode and bool(trail.path)
    started = trail.clock()
    fields = {"source": request.uri, "destination": request.dest_uri, "flags": operation_flags(request)}
    try:
        result = run()
    except MigrationError as error:
        written = None
        if recorded and was_tried(error.kind):
            record = trail.record(request.operation, started, "failed", guest_name=request.name,
                                  guest_uuid=request.uuid, message=str(error), **fields)
            written = appended(trail, record, error.details.setdefault("warnings", []))
        error.details.update(run_id=trail.run_id, audit_log=written)
        raise
    written = None
    if recorded and result.get("changed"):
        record = trail.record(request.operation, started, "succeeded", guest_name=result.get("domain"),
                              guest_uuid=result.get("uuid"), message=result.get("message"), **fields)
        written = appended(trail, record, result.setdefault("warnings", []))
    return {**result, "run_id": trail.run_id, "audit_log": written}


def appended(trail: AuditTrail, record: Any, warnings: list[str]) -> str | None:
    warning = trail.append(record)
    if warning:
        warnings.append(warning)
        return None
    return trail.path
