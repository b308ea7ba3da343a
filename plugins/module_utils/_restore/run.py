# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Bring a host's guests home: options -> lock -> discover -> place -> migrate (or check) -> clear origins -> result.

validate the options (``options.py``) -> refuse while the operator's cancel request stands
(``_common/cancel.py``; read again once the lock is taken) -> take the restored host's lock, the one an evacuation of it
takes (``evacuation_lock``: a restore and an evacuation of one host never run at once) -> discover
(``discovery.py``) -> place with the evacuation's Placer and the restored host as its single
destination (capacity, CPU and every rule of ``Placer.problem`` apply unchanged) -> check mode: the
migrate code path in check mode per guest; run mode: the evacuation's move loop and scheduler, each
guest by the migrate code path (``run_migration``) from the search host that holds it -> once a guest
is home its origin record is cleared -> the result and the report (``_evacuate/report.py``).
A cancel request that appears during the run stops it as it stops an evacuation (``_evacuate/run.py``).

Idempotent and resumable: the origin record stays in the guest's metadata until the guest is home,
so a re-run finds what is left (a guest already home only has its record cleared, and reports
``unchanged``; a guest caught mid-move is pinned home and its move finished there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    MoveTrail,
    new_run_id,
    option_flags,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelCheck,
    CancelWatch,
    refuse_if_requested,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.progress import (
    OnSnapshot,
    Progress,
    ProgressWriter,
    job_stats,
    publish_waiting,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    evacuation_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    refuse_unsatisfiable,
    unsatisfiable,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.outcomes import (
    LEFT,
    MOVED_RESULTS,
    PROBLEM_RESULTS,
    UNCHANGED,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    Assignment,
    PlacementPlan,
    Placer,
    hold_back,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.report import (
    EvacuationFacts,
    evacuation_result,
    guest_row,
    render_text,
    write_report,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
    GuestLedger,
    MigrateGuest,
    move_guests,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
    local_addresses_of,
    open_connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    lookup_by_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    read_guest_metadata,
    with_origin,
    write_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.discovery import (
    HomeGuest,
    RestoreDiscovery,
    StayingGuest,
    discover,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.options import (
    RestoreOptions,
    validate_options,
)

ACTION = "restore"


@dataclass(frozen=True)
class RestoreEnvironment:
    """What a restore uses from the world around it (``wall_clock``: the audit log's times)."""

    connect: Callable[..., Any] = open_connection
    resolves_locally: Callable[[str], bool] = local_addresses_of
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], Any] = time.sleep
    lock_path: str | None = None
    on_progress: OnSnapshot | None = None
    migrate_guest: MigrateGuest | None = None

    def migrator(self, cancel_requested: CancelCheck | None = None) -> MigrateGuest:
        if self.migrate_guest is not None:
            return self.migrate_guest
        environment = MigrationEnvironment(connect=self.connect, resolves_locally=self.resolves_locally,
                                           cancel_requested=cancel_requested)
        return lambda request, check_mode: run_migration(request, check_mode, environment)


@dataclass(frozen=True)
class RestoreRun:
    """One run's identity and settings, passed to each step (``cancel``: the operator's cancel request as seen so far)."""

    options: RestoreOptions
    check_mode: bool
    env: RestoreEnvironment
    trail: AuditTrail
    cancel: CancelWatch = field(default_factory=lambda: CancelWatch(None))

    @property
    def run_id(self) -> str:
        return self.trail.run_id

    @property
    def progress_path(self) -> str | None:
        """Where progress is written: nowhere in check mode."""
        return None if self.check_mode else self.options.progress_path


def run_restore(options: RestoreOptions, check_mode: bool = False,
                environment: RestoreEnvironment | None = None) -> dict[str, Any]:
    """Restore the host ``options.uri``; returns the module result (``failed`` set when a guest could not come home)."""
    env = environment or RestoreEnvironment()
    started, wall_started = env.clock(), env.wall_clock()
    validate_options(options, env.resolves_locally)
    refuse_if_requested(options.cancel_path, "restore", options.uri)
    trail = AuditTrail(None if check_mode else options.audit_log, new_run_id(env.wall_clock), env.wall_clock)
    run = RestoreRun(options, check_mode, env, trail, CancelWatch(None if check_mode else options.cancel_path))
    warnings: list[str] = []

    def waiting(line: str) -> None:
        warning = publish_waiting(line, options.uri, run.progress_path, env.on_progress)
        if warning:
            warnings.append(warning)

    with evacuation_lock(options.uri, options.lock_timeout, check_mode, waiting, env.lock_path, env.sleep) as lock:
        if lock.warning:
            warnings.append(lock.warning)
        refuse_if_requested(options.cancel_path, "restore", options.uri)  # written while this run waited
        discovery = discover(options, env.connect)
        warnings.extend(discovery.warnings)
        refuse_unsatisfiable(unsatisfiable(discovery.guests, [discovery.host.capacity]), source_uri=options.uri)
        placer = Placer([discovery.host.capacity], discovery.cpu_verdicts)
        plan = hold_back(placer.plan(discovery.guests), discovery.conflicts)
        rows = bring_home(run, discovery, plan, placer, warnings)
        rows += [home_row(run, guest, discovery, warnings) for guest in discovery.home]
        rows += [staying_row(guest) for guest in discovery.staying]
        result = result_of(run, discovery, plan, rows, warnings, round(env.clock() - started, 3))
    return audited_summary(result, run, wall_started)


# -- moving the guests home -------------------------------------------------------


def bring_home(run: RestoreRun, discovery: RestoreDiscovery, plan: PlacementPlan, placer: Placer,
               warnings: list[str]) -> list[dict[str, Any]]:
    """Check or migrate the placed guests with the evacuation's move loop while progress is published."""
    options = run.options.holding(discovery.sources)
    progress = Progress(discovery.host.name, options.uri, run.check_mode, done_states=MOVED_RESULTS,
                        problem_states=PROBLEM_RESULTS)
    ledger = RestoreLedger(discovery, plan, progress, warnings, MoveTrail(run.trail, ACTION),
                           lambda item: restore_flags(options, item))
    writer = SourcesProgressWriter(ledger.progress, run.progress_path, options.progress_interval, options.sources,
                                   run.env.connect, run.env.on_progress)
    writer.start()
    try:
        end = move_guests(options, run.check_mode, plan, placer, ledger, homecoming(run), run.cancel)
    finally:
        ledger.progress.finish()
        warnings.extend(f"progress: {text}" for text in writer.stop())
    if end.crash is not None:
        raise RuntimeError(f"a restore worker crashed:\n{end.crash.trace}") from end.crash.error
    return ledger.rows()


class RestoreLedger(GuestLedger):
    """The evacuation's ledger, each row naming the search host its guest comes from."""

    def __init__(self, discovery: RestoreDiscovery, plan: PlacementPlan, progress: Progress,
                 warnings: list[str], moves: MoveTrail, flags_of: Callable[[Assignment], tuple[str, ...]]) -> None:
        super().__init__(discovery.host.name, plan, progress, warnings, moves, flags_of)
        for uuid, row in self.by_uuid.items():
            holder = discovery.holders.get(uuid)
            if holder is not None:
                row["from"] = holder.name


def homecoming(run: RestoreRun) -> MigrateGuest:
    """The migrate code path for one guest, then (once it is home) its origin record cleared.

    The ledger audits the move (``MoveTrail``), as the evacuation's does.
    """
    migrate = run.env.migrator(run.cancel)

    def move(request: MigrationRequest, check_mode: bool) -> Mapping[str, Any]:
        result = dict(migrate(request, check_mode))
        if check_mode:
            return result
        cleared = clear_origin(run.env.connect, run.options.uri, request.uuid or "")
        if cleared:
            result["warnings"] = [*(result.get("warnings") or []), cleared]
        return result
    return move


def restore_flags(options: RestoreOptions, item: Assignment) -> tuple[str, ...]:
    """The names of the migration options ``item``'s guest comes home with (for its audit record)."""
    return option_flags(vars(options.template_request(options.sources[item.guest.uuid], item.guest.mode)))


def clear_origin(connect: Callable[..., Any], uri: str, uuid: str) -> str | None:
    """Remove the origin record of the guest ``uuid`` on the restored host; returns a warning when it could not.

    A record left behind is harmless: the next restore finds the guest home and clears it.
    """
    conn = None
    try:
        conn = connect(uri, "destination", source_uri=uri)
        dom = lookup_by_uuid(conn, uuid)
        if dom is None:
            return f"cannot clear the origin record of {uuid}: it is not on {uri}"
        meta = read_guest_metadata(dom)
        if meta.origin is not None:
            write_guest_metadata(dom, with_origin(meta, None), persistent=bool(dom.isPersistent()))
    except MigrationError as error:
        return f"the origin record of {uuid} was not cleared ({error}); the next restore clears it"
    except libvirt.libvirtError as exc:
        return f"the origin record of {uuid} was not cleared ({libvirt_error_text(exc)}); the next restore clears it"
    finally:
        close_quietly(conn)
    return None


class SourcesProgressWriter(ProgressWriter):
    """The evacuation's progress writer, reading each migrating guest's job on the search host that holds it."""

    def __init__(self, progress: Progress, path: str | None, interval: float, sources: Mapping[str, str],
                 connect: Callable[..., Any], on_snapshot: OnSnapshot | None = None) -> None:
        super().__init__(progress, path, interval, "", connect, on_snapshot)
        self.sources = dict(sources)
        self.conns: dict[str, Any] = {}

    def poll_jobs(self) -> None:
        for uuid in self.progress.migrating():
            uri = self.sources.get(uuid)
            if uri is None:
                continue
            try:
                if uri not in self.conns:
                    self.conns[uri] = self.connect(uri, "source", source_uri=uri)
                stats = job_stats(self.conns[uri], uuid)
                if stats is not None:
                    self.progress.record_job(uuid, stats)
            except (MigrationError, libvirt.libvirtError) as exc:
                self.note(str(exc) if isinstance(exc, MigrationError) else libvirt_error_text(exc))
                close_quietly(self.conns.pop(uri, None))

    def stop(self) -> list[str]:
        errors = super().stop()
        for conn in self.conns.values():
            close_quietly(conn)
        self.conns.clear()
        return errors


# -- guests that do not move ----------------------------------------------------------


def home_row(run: RestoreRun, guest: HomeGuest, discovery: RestoreDiscovery, warnings: list[str]) -> dict[str, Any]:
    """A guest already home: its origin record is cleared (the only change); it reports ``unchanged``."""
    host = discovery.host.name
    message = f"already on {host}: its origin record {'would be' if run.check_mode else 'is'} cleared"
    if not run.check_mode:
        warning = clear_origin(run.env.connect, run.options.uri, guest.uuid)
        if warning:
            warnings.append(f"{guest.name}: {warning}")
            message = f"already on {host}; {warning}"
    row = guest_row(guest.name, guest.uuid, host, host, guest.mode, guest.memory_mib, UNCHANGED, message,
                    f"its origin names {host}, where it already is")
    row["changed"] = True
    return row


def staying_row(guest: StayingGuest) -> dict[str, Any]:
    return guest_row(guest.name, guest.uuid, guest.host, None, guest.mode, guest.memory_mib, LEFT, guest.reason,
                     guest.reason)


# -- the result and the audit ----------------------------------------------------------


def result_of(run: RestoreRun, discovery: RestoreDiscovery, plan: PlacementPlan, rows: list[dict[str, Any]],
              warnings: list[str], seconds: float) -> dict[str, Any]:
    """The evacuation's result shape, about the restored host; the report written when asked."""
    options, host = run.options, discovery.host
    facts = EvacuationFacts(source_name=host.name, source_uri=options.uri, check_mode=run.check_mode, plan=plan,
                            filtered=[], warnings=warnings, report_path=options.report_path,
                            progress_path=options.progress_path, seconds=seconds, cancel=run.cancel.request)
    result = evacuation_result(facts, rows)
    del result["source"], result["filtered_out"]
    report = {**result["report"], "operation": "Restore", "run_id": run.run_id}
    result.update(report=report, report_text=render_text(report), run_id=run.run_id,
                  host={"name": host.name, "uri": options.uri, "dest_uri": options.restored_uri,
                        "host_uuid": host.host_uuid},
                  search=[reading.as_dict() for reading in discovery.search])
    if not rows:
        result["msg"] = f"nothing to restore: no guest of {host.name} was found on the search hosts"
    if options.report_path and not run.check_mode:
        result = write_report(result, options.report_path, options.report_format)
    return result


def audited_summary(result: dict[str, Any], run: RestoreRun, started: float) -> dict[str, Any]:
    """The run's line in the audit log (not in check mode): its result, and the counts per result."""
    trail, written = run.trail, None
    if trail.path:
        counts = ", ".join(f"{count} {name}" for name, count in result["summary"]["by_result"].items())
        record = trail.record(ACTION, started, "failed" if result["failed"] else "succeeded",
                              destination=result["host"]["name"],
                              message=f"{result['msg']}" + (f" ({counts})" if counts else ""))
        warning = trail.append(record)
        written = None if warning else trail.path
        if warning:
            result = {**result, "warnings": [*result["warnings"], warning]}
    return {**result, "audit_log": written}
