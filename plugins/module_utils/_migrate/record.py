# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migrate module's run id and audit record.

A run that changed something, or failed trying, appends one ``migrate`` record to the audit log
(``_common/audit.py``); an unchanged run, a check-mode run and a run refused before it tried
anything (bad input, the domain busy with another run) append none. ``started_at`` and
``finished_at`` bound the whole run, so they bound the time the guest could be on both hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    downtime_of,
    option_flags,
    was_tried,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    MIGRATING_ACTIONS,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

ACTION = "migrate"
RunMigration = Callable[[MigrationRequest, bool], dict[str, Any]]


def result_name(result: Mapping[str, Any]) -> str:
    """``migrated`` when the domain moved, ``finished`` when only definitions changed."""
    return "migrated" if any(action in MIGRATING_ACTIONS for action in result.get("actions") or []) else "finished"


def run_recorded(request: MigrationRequest, check_mode: bool, trail: AuditTrail,
                 run: RunMigration) -> dict[str, Any]:
    """``run`` the request; the result (or the MigrationError raised) carries ``run_id`` and ``audit_log``."""
    started = trail.clock()
    flags = option_flags(vars(request))
    try:
        result = run(request, check_mode)
    except MigrationError as error:
        written = None
        if not check_mode and was_tried(error.kind):
            record = trail.record(ACTION, started, "failed", guest_name=request.name, guest_uuid=request.uuid,
                                  source=request.uri, destination=request.dest_uri, flags=flags, message=str(error))
            written = append_or_warn(trail, record, error.details.setdefault("warnings", []))
        error.details.update(run_id=trail.run_id, audit_log=written)
        raise
    written = None
    if result.get("changed") and not check_mode:
        record = trail.record(ACTION, started, result_name(result), guest_name=result.get("domain"),
                              guest_uuid=result.get("uuid"), source=request.uri, destination=request.dest_uri,
                              flags=flags, downtime_ms=downtime_of(result), message=result.get("explanation"))
        written = append_or_warn(trail, record, result.setdefault("warnings", []))
    return {**result, "run_id": trail.run_id, "audit_log": written}


def append_or_warn(trail: AuditTrail, record: Any, warnings: list[str]) -> str | None:
    """Append ``record``; the log's path when written, else None with the warning added."""
    if trail.path is None or trail.path == "":
        return None
    warning = trail.append(record)
    if warning:
        warnings.append(warning)
        return None
    return trail.path
