# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Empty a hypervisor: options -> lock -> discover -> place -> migrate (or, in check mode, check) -> result.

validate the options (``options.py``) -> refuse while the operator's cancel request stands
(``_common/cancel.py``; read again once the lock is taken) -> take the source's evacuation lock -> discover
(``discovery.py``) -> place (``placement.py``) -> check mode: the migrate code path in check mode per
guest; run mode: the migrate code path per guest in worker threads (``scheduler.py``), each with its
own libvirt connections -> the result and the report (``report.py``). Progress is published all along
(``progress.py``). A cancel request that appears during the run starts no more moves and aborts the
running ones through their job monitors (never one in post-copy); the result says ``cancelled``.

Each guest's migration is the migrate module's own code path (``run_migration``), so it is
idempotent by UUID and recovers from failures the same way; a re-run after an interruption finds
the guests still on the source (and those already present on a destination, which are pinned
there) and finishes the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    MoveTrail,
    downtime_of,
    iso_utc,
    option_flags,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    new_run_id as new_evacuation_run_id,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelCheck,
    CancelRequest,
    CancelWatch,
    refuse_if_requested,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.progress import (
    MIGRATING,
    QUEUED,
    OnSnapshot,
    Progress,
    ProgressWriter,
    publish_waiting,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    evacuation_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    refuse_unsatisfiable,
    unsatisfiable,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.discovery import (
    Discovery,
    LeftGuest,
    discover,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
    validate_options,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.origin import (
    migrate_recording_origin,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.outcomes import (
    CANCELLED,
    FAILED,
    FINISHED,
    LEFT,
    MIGRATED,
    MOVED_RESULTS,
    NOT_STARTED,
    PLANNED,
    PROBLEM_RESULTS,
    UNCHANGED,
    UNPLACEABLE,
    WOULD_FAIL,
    GuestOutcome,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    LIVE,
    OFFLINE,
    STAY,
    Assignment,
    PlacementPlan,
    Placer,
    hold_back,
    mib,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.planfile import (
    EvacuationPlan,
    PlannedGuest,
    arrived_on_destinations,
    check_source,
    drift_error,
    new_run_id,
    plan_document,
    read_plan_file,
    replay,
    utc_now,
    write_plan_file,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.report import (
    EvacuationFacts,
    evacuation_result,
    guest_row,
    outcome_fields,
    write_report,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.scheduler import (
    Limits,
    ScheduleEnd,
    run_schedule,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    local_addresses_of,
    open_connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    CANCEL_DURING_POSTCOPY,
    left_to_finish_after_cancel,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    MIGRATING_ACTIONS,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)

AUDIT_ACTION = "evacuate"
MigrateGuest = Callable[[MigrationRequest, bool], Mapping[str, Any]]
"""(request, check_mode) -> the migrate result; raises MigrationError."""


@dataclass(frozen=True)
class EvacuationEnvironment:
    """What an evacuation uses from the world around it.

    ``migrate_guest`` runs one guest's migration; by default ``run_migration`` with this
    environment's ``connect`` and ``resolves_locally``, its job monitor hearing the cancel request.
    """

    connect: Callable[..., Any] = open_connection
    resolves_locally: Callable[[str], bool] = local_addresses_of
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Any] = time.sleep
    lock_path: str | None = None
    on_progress: OnSnapshot | None = None
    migrate_guest: MigrateGuest | None = None
    wall_clock: Callable[[], float] = time.time

    def migrator(self, cancel_requested: CancelCheck | None = None) -> MigrateGuest:
        if self.migrate_guest is not None:
            return self.migrate_guest
        environment = MigrationEnvironment(connect=self.connect, resolves_locally=self.resolves_locally,
                                           cancel_requested=cancel_requested)
        return lambda request, check_mode: run_migration(request, check_mode, environment)


def run_evacuation(options: EvacuationOptions, check_mode: bool = False,
                   environment: EvacuationEnvironment | None = None) -> dict[str, Any]:
    """Evacuate ``options.uri``; returns the module result (``failed`` set when the host is not emptied)."""
    env = environment or EvacuationEnvironment()
    started = env.clock()
    sources = validate_options(options, env.resolves_locally)
    refuse_if_requested(options.cancel_path, "evacuate", options.uri)
    followed = plan_to_follow(options, check_mode)
    warnings: list[str] = []
    trail = AuditTrail(None if check_mode else options.audit_log, new_evacuation_run_id(env.wall_clock), env.wall_clock)

    def waiting(line: str) -> None:
        warning = publish_waiting(line, options.uri, progress_file(options, check_mode), env.on_progress)
        if warning:
            warnings.append(warning)

    with evacuation_lock(options.uri, options.lock_timeout, check_mode, waiting, env.lock_path, env.sleep) as lock:
        if lock.warning:
            warnings.append(lock.warning)
        refuse_if_requested(options.cancel_path, "evacuate", options.uri)  # written while this run waited
        watch = CancelWatch(None if check_mode else options.cancel_path)
        discovery = discover(options, sources, env.connect)
        arrived: tuple[PlannedGuest, ...] = ()
        if followed is None:
            refuse_unsatisfiable(unsatisfiable(discovery.guests, discovery.destinations), source_uri=options.uri)
            placer = Placer(discovery.destinations, discovery.cpu_verdicts)
            plan = hold_back(placer.plan(discovery.guests), discovery.conflicts)
        else:
            # Drift first: a plan's destination now in maintenance is named as such, not only as the
            # constraint it leaves without a host.
            placer, plan, arrived = follow_plan(options, followed, discovery, env.connect)
            refuse_unsatisfiable(unsatisfiable(discovery.guests, discovery.destinations), source_uri=options.uri)
        rows = handle_guests(options, check_mode, env, discovery.source_name, plan, placer, warnings, trail, watch)
        rows += [arrived_row(guest, discovery.source_name) for guest in arrived]
        rows += [left_row(entry, discovery.source_name) for entry in discovery.left]
        result = result_of(options, check_mode, discovery, plan, rows, warnings, round(env.clock() - started, 3), trail,
                           watch.request)
        return with_plan_file(result, options, check_mode, discovery, plan, followed)


# -- plan files ------------------------------------------------------------------


def plan_to_follow(options: EvacuationOptions, check_mode: bool) -> EvacuationPlan | None:
    """The plan a run executes (read and checked before anything is touched); none in check mode, which writes it."""
    if check_mode or not options.plan_file:
        return None
    plan = read_plan_file(options.plan_file)
    check_source(plan, options.uri)
    return plan


def follow_plan(options: EvacuationOptions, followed: EvacuationPlan, discovery: Discovery,
                connect: Callable[..., Any]) -> tuple[Placer, PlacementPlan, tuple[PlannedGuest, ...]]:
    """The plan's own placement over the fresh discovery; raises PlanDrift, naming each drift, when it drifted."""
    check_source(followed, options.uri, discovery.source_name, discovery.source_host_uuid)
    uris = {dest.name: dest.uri for dest in options.destinations}
    arrived = arrived_on_destinations(followed, discovery, uris, connect, options.uri)
    replayed = replay(followed, discovery, arrived)
    if replayed.drifts:
        raise drift_error(followed, replayed.drifts).with_context(source_uri=options.uri)
    return replayed.placer, replayed.placement, replayed.arrived


def arrived_row(guest: PlannedGuest, source_name: str) -> dict[str, Any]:
    """A guest of the plan already on its planned destination (an earlier run of the plan moved it)."""
    message = f"already on {guest.destination}, where the plan sends it"
    return guest_row(guest.name, guest.uuid, source_name, guest.destination, guest.mode, mib(guest.memory_kib),
                     UNCHANGED, message, guest.reason)


def with_plan_file(result: dict[str, Any], options: EvacuationOptions, check_mode: bool, discovery: Discovery,
                   plan: PlacementPlan, followed: EvacuationPlan | None) -> dict[str, Any]:
    """Check mode writes the plan to ``plan_file``; a run says which plan it executed."""
    if not options.plan_file:
        return result
    if followed is not None:
        return {**result, "plan_file": followed.path, "plan_document": dict(followed.document)}
    document = plan_document(options, discovery, plan, new_run_id(), utc_now())
    write_plan_file(options.plan_file, document)
    return {**result, "plan_file": options.plan_file, "plan_document": document}


def progress_file(options: EvacuationOptions, check_mode: bool) -> str | None:
    """Where progress is written: nowhere in check mode."""
    return None if check_mode else options.progress_path


def handle_guests(options: EvacuationOptions, check_mode: bool, env: EvacuationEnvironment, source_name: str,
                  plan: PlacementPlan, placer: Placer, warnings: list[str],
                  trail: AuditTrail | None = None, cancelled: CancelCheck | None = None) -> list[dict[str, Any]]:
    """Check, refuse or migrate the planned guests while their progress is published; returns their rows."""
    progress = Progress(source_name, options.uri, check_mode, done_states=MOVED_RESULTS, problem_states=PROBLEM_RESULTS)
    ledger = GuestLedger(source_name, plan, progress, warnings, trail and MoveTrail(trail, AUDIT_ACTION),
                         lambda item: request_flags(options, item.destination, item.guest.mode))
    writer = ProgressWriter(ledger.progress, progress_file(options, check_mode), options.progress_interval,
                            options.uri, env.connect, env.on_progress)
    writer.start()
    try:
        end = move_guests(options, check_mode, plan, placer, ledger, env.migrator(cancelled), cancelled)
    finally:
        ledger.progress.finish()
        warnings.extend(f"progress: {text}" for text in writer.stop())
    if end.crash is not None:
        raise RuntimeError(f"an evacuation worker crashed:\n{end.crash.trace}") from end.crash.error
    return ledger.rows()


def move_guests(options: EvacuationOptions, check_mode: bool, plan: PlacementPlan, placer: Placer,
                ledger: GuestLedger, migrate_guest: MigrateGuest, cancelled: CancelCheck | None = None) -> ScheduleEnd:
    """Check each placed guest (check mode), refuse them all, or migrate them; returns what was not started.

    Once ``cancelled`` answers no more guests start; those left are reported ``cancelled``.
    """
    placed = [item for item in plan.assignments if item.placed]

    def migrate(item: Assignment) -> GuestOutcome:
        return migration_outcome(migrate_guest, options, item, check_mode)

    if check_mode:
        for item in placed:
            ledger.finish(item, migrate(item))
        return ScheduleEnd()
    if plan.unplaceable and options.on_failure == "stop":
        refused = GuestOutcome(NOT_STARTED, f"on_failure: stop and {len(plan.unplaceable)} guest(s) fit nowhere: "
                               "nothing was moved")
        for item in placed:
            ledger.finish(item, refused)
        return ScheduleEnd()
    limits = Limits(options.max_parallel, options.max_parallel_per_destination, options.on_failure == "stop")

    def reroute(failed: Assignment, outcome: GuestOutcome, queue: list[Assignment]) -> list[Assignment]:
        if options.plan_file:
            return queue  # a plan is executed as written: no guest goes where the plan does not send it
        return reroute_after_loss(failed, outcome, queue, placer, ledger)

    end = run_schedule(placed, limits, migrate, ledger.started, ledger.finish, reroute, cancelled)
    unstarted = CANCELLED if end.cancelled_by else NOT_STARTED
    for item in end.unstarted:
        ledger.finish(item, GuestOutcome(unstarted, end.why_unstarted))
    return end


def migration_outcome(migrate_guest: MigrateGuest, options: EvacuationOptions, item: Assignment,
                      check_mode: bool) -> GuestOutcome:
    """The migrate module's code path for ``item``'s guest, and what it means for the guest's row."""
    try:
        request = options.guest_request(item.destination or "", item.guest.name, item.guest.uuid, item.guest.mode)
        result = migrate_recording_origin(migrate_guest, request, check_mode)
    except MigrationError as error:
        details = error.to_result()
        details["changed"] = bool(details.get("changed"))
        failed = WOULD_FAIL if check_mode else CANCELLED if details.get("cancelled") else FAILED
        return GuestOutcome(failed, str(error), details)
    message = CANCEL_DURING_POSTCOPY if left_to_finish_after_cancel(result.get("policy_actions") or []) \
        else result.get("explanation")
    return GuestOutcome(result_of_migration(result, check_mode), message, dict(result))


def result_of_migration(result: Mapping[str, Any], check_mode: bool) -> str:
    actions = result.get("actions") or []
    if not result.get("changed"):
        return UNCHANGED
    if check_mode:
        return PLANNED
    return MIGRATED if any(action in MIGRATING_ACTIONS for action in actions) else FINISHED


# -- a destination lost during the run ------------------------------------------


def lost_destination(migration: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Why a failed guest's destination is gone, and whether the guest is untouched (None: not lost).

    Untouched: the run could not connect to it. Not untouched: the connection was lost during the
    migration and could not be reopened; the guest stays where the recovery left it (its row says).
    """
    error = migration.get("error") or {}
    if error.get("kind") == "connection" and error.get("operation") == "connect to destination":
        return str(error.get("message") or "cannot connect"), True
    if "destination" in (migration.get("unreachable") or []):
        return "the connection was lost during a migration and could not be reopened", False
    return None


def reroute_after_loss(failed: Assignment, outcome: GuestOutcome, queue: list[Assignment], placer: Placer,
                       ledger: GuestLedger) -> list[Assignment]:
    """The queue once ``failed``'s destination is known lost: those queued for it are placed again (or fit
    nowhere); so is the failed guest itself when its run touched nothing."""
    loss = lost_destination(outcome.migration)
    if loss is None:
        return queue
    why, untouched = loss
    lost = failed.destination or ""
    placer.lose(lost, why)
    stranded = [item for item in queue if item.destination == lost]
    kept = [item for item in queue if item.destination != lost]
    for item in [failed, *stranded] if untouched else stranded:
        placer.replace(item)
        if ledger.re_placed(item, lost, why):
            kept.append(item)
    return kept


# -- each guest's row and progress -------------------------------------------------


class GuestLedger:
    """Each planned guest's row and progress entry, and the run's warnings; the workers write here."""

    def __init__(self, source_name: str, plan: PlacementPlan, progress: Progress, warnings: list[str],
                 moves: MoveTrail | None = None, flags_of: Callable[[Assignment], tuple[str, ...]] | None = None) -> None:
        self.moves = moves
        self.flags_of = flags_of or (lambda item: ())
        self.source_name = source_name
        self.progress = progress
        self.warnings = warnings
        self.lock = threading.Lock()
        self.by_uuid: dict[str, dict[str, Any]] = {}
        for item in plan.assignments:
            state = QUEUED if item.placed else LEFT if item.action == STAY else UNPLACEABLE
            progress.add(item.guest.name, item.guest.uuid, item.destination, state)
            self.by_uuid[item.guest.uuid] = guest_row(
                item.guest.name, item.guest.uuid, source_name, item.destination, item.guest.mode,
                mib(item.guest.memory_kib), state, None if item.placed else item.reason, item.reason,
                item.guest.pause_reason)

    def rows(self) -> list[dict[str, Any]]:
        """The rows in plan order."""
        return list(self.by_uuid.values())

    def started(self, item: Assignment) -> None:
        if self.moves is not None:
            self.moves.started(item.guest.uuid)
        self.progress.update(item.guest.uuid, state=MIGRATING)

    def finish(self, item: Assignment, outcome: GuestOutcome) -> None:
        with self.lock:
            self.by_uuid[item.guest.uuid].update(outcome_fields(outcome))
            self.warnings.extend(f"{item.guest.name}: {warning}"
                                 for warning in outcome.migration.get("warnings") or [])
        self.progress.update(item.guest.uuid, state=outcome.result,
                             percent=100 if outcome.result in (MIGRATED, FINISHED) else None)
        self.audit_move(item, outcome)

    def audit_move(self, item: Assignment, outcome: GuestOutcome) -> None:
        """The audit record of a move that started (its start and end bound the time the guest was on both hosts)."""
        if self.moves is None:
            return
        result = FAILED if outcome.result == CANCELLED else outcome.result  # an aborted move failed, as the log says it
        warning = self.moves.finished(
            item.guest.uuid, result, guest_name=item.guest.name,
            source=self.by_uuid[item.guest.uuid].get("from") or self.source_name,
            destination=item.destination, flags=self.flags_of(item),
            downtime_ms=downtime_of(outcome.migration), message=outcome.message)
        if warning:
            with self.lock:
                self.warnings.append(warning)

    def re_placed(self, item: Assignment, lost: str, why: str) -> bool:
        """Record ``item`` placed again after ``lost`` was lost; True when it has a new destination."""
        with self.lock:
            row = self.by_uuid[item.guest.uuid]
            row["re_placed_from"].append(lost)
            row.update(to=item.destination, reason=item.reason)
        self.progress.update(item.guest.uuid, destination=item.destination)
        if not item.placed:
            self.finish(item, GuestOutcome(UNPLACEABLE, f"{lost} was lost ({why}) and the guest fits nowhere "
                                           f"else: {item.reason}"))
            return False
        with self.lock:
            row.update(result=QUEUED, message=f"{lost} was lost ({why}): re-placed on {item.destination}")
        self.progress.update(item.guest.uuid, state=QUEUED)
        return True


# -- the result ------------------------------------------------------------------


def left_row(entry: LeftGuest, source_name: str) -> dict[str, Any]:
    return guest_row(entry.name, entry.uuid, source_name, None, OFFLINE, entry.memory_mib, LEFT, entry.reason,
                     entry.reason)


def result_of(options: EvacuationOptions, check_mode: bool, discovery: Discovery, plan: PlacementPlan,
              rows: list[dict[str, Any]], warnings: list[str], seconds: float,
              trail: AuditTrail | None = None, cancel: CancelRequest | None = None) -> dict[str, Any]:
    run_id = trail.run_id if trail else None
    facts = EvacuationFacts(source_name=discovery.source_name, source_uri=options.uri, check_mode=check_mode,
                            plan=plan, filtered=discovery.filtered, warnings=warnings,
                            report_path=options.report_path, progress_path=options.progress_path, seconds=seconds,
                            run_id=run_id, time=iso_utc(trail.clock()) if trail else None, cancel=cancel)
    result = evacuation_result(facts, rows)
    if options.report_path and not check_mode:
        result = write_report(result, options.report_path, options.report_format, run_id)
    return audited_summary(result, trail, options, discovery.source_name, seconds) if trail else result


def request_flags(options: EvacuationOptions, destination: str | None, mode: str) -> tuple[str, ...]:
    """The names of the migration options a guest sent to ``destination`` (None: the first) in ``mode`` moves with."""
    spec = options.destination_named(destination) if destination else options.destinations[0]
    return option_flags(vars(options.template_request(spec, mode)))


def audited_summary(result: dict[str, Any], trail: AuditTrail, options: EvacuationOptions, source_name: str,
                    seconds: float) -> dict[str, Any]:
    """The run's summary line in the audit log (not in check mode), and ``run_id``/``audit_log`` in the result."""
    written = None
    if trail.path:
        summary = result["summary"]
        record = trail.record(AUDIT_ACTION, trail.clock() - seconds, "failed" if result["failed"] else "succeeded",
                              source=source_name, flags=request_flags(options, None, LIVE),
                              message="{}; {} changed, {} problem(s)".format(result["msg"], summary["changed"],
                                                                             summary["problems"]))
        warning = trail.append(record)
        written = None if warning else trail.path
        if warning:
            result = {**result, "warnings": [*result["warnings"], warning]}
    return {**result, "run_id": trail.run_id, "audit_log": written}
