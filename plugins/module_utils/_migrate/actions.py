# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The actions reconcile decided, in order: resume the source, define on the destination,
undefine the source, migrate offline, migrate live (under the job monitor).

A live migration that fails is recovered (``recovery.py``) and raises MigrationFailed with the
recovery's report; one that libvirt refused because another job holds the domain raises
MigrationInProgress (that job is another run's: it is left alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelCheck,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    MigrationFailed,
    MigrationInProgress,
    another_job_holds_domain,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CLOSE_TIMEOUT_SECONDS,
    close_quietly,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    lookup_by_uuid,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.session import (
    SOURCE,
    Session,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    MigrateCallAbandoned,
    MigrationMonitor,
    MonitorOutcome,
    Waiter,
    migration_phases,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.observe import (
    Found,
    Located,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.plan import (
    Plan,
    undefine_flags,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ABORT,
    POSTCOPY,
    ConvergencePolicy,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    PreflightReport,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    DEFINE_ON_DEST,
    MIGRATE_OFFLINE,
    RESUME_SOURCE,
    UNDEFINE_SOURCE,
    Reconciliation,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.recovery import (
    Before,
    Failure,
    RecoveryReport,
    migrated_anyway_warning,
    migration_failed,
    postcopy_refused,
    recover_failed,
    recover_persist_failed,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    PRECOPY,
    MigrationRequest,
)

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """Everything decided before anything changes: the domain, what was found, the decision and the plan."""

    request: MigrationRequest
    located: Located
    found: Found
    decision: Reconciliation
    plan: Plan = field(default_factory=Plan)
    preflight: PreflightReport | None = None

    def context(self) -> dict[str, Any]:
        return self.request.context()


@dataclass(frozen=True)
class Executed:
    """What the actions did besides the move itself: notes for ``recovery`` and the policy's actions."""

    notes: list[str] = field(default_factory=list)
    policy_actions: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timekeeping:
    """The run's clock, how the job monitor waits between polls, and whether the operator cancelled (None: never)."""

    clock: Callable[[], float]
    wait: Waiter
    cancel_requested: CancelCheck | None = None


def execute(prepared: Prepared, session: Session, timekeeping: Timekeeping, warn: Warn) -> Executed:
    """Run the decided actions in order; raises MigrationError (after recovery, for a failed migration)."""
    notes: list[str] = []
    policy_actions: list[dict[str, Any]] = []
    phases: dict[str, Any] = {}
    source_dom = prepared.found.source_dom  # read again when the definition is taken from the source
    for action in prepared.decision.actions:
        if action == RESUME_SOURCE:
            resume_source(prepared)
            notes.append("resumed the paused domain on the source before migrating")
        elif action == DEFINE_ON_DEST:
            source_dom = define_on_destination(prepared, session, source_dom)
        elif action == UNDEFINE_SOURCE:
            undefine_source(prepared, session, source_dom)
        elif action == MIGRATE_OFFLINE:
            migrate_offline(prepared, session)
        else:
            live = migrate_live(prepared, session, timekeeping, warn, notes)
            notes, policy_actions, phases = live.notes, live.policy_actions, live.phases
    return Executed(notes, policy_actions, phases)


def wrap(prepared: Prepared, operation: str, exc: BaseException, message: str) -> MigrationError:
    return MigrationError.from_libvirt(operation, exc, message, **prepared.context())


def resume_source(prepared: Prepared) -> None:
    try:
        prepared.found.source_dom.resume()
    except libvirt.libvirtError as exc:
        raise wrap(prepared, "resume on source", exc, "could not resume the paused domain before migrating")


def persistent_definition(prepared: Prepared, session: Session, source_dom: Any) -> tuple[str, Any]:
    """XML to define on the destination (the user's, the source's, or the destination's own), and the source's
    handle as last read."""
    request = prepared.request
    if request.persistent_xml or request.xml:
        return request.persistent_xml or request.xml or "", source_dom
    source_dom, source = session.read(SOURCE, prepared.located.uuid)
    if source is not None and source_dom.isPersistent():
        return migratable_xml(source_dom, inactive=True), source_dom
    dest_dom = prepared.found.dest_dom or lookup_by_uuid(session.destination, prepared.located.uuid)
    return migratable_xml(dest_dom, inactive=True), source_dom


def define_on_destination(prepared: Prepared, session: Session, source_dom: Any) -> Any:
    """Define the domain on the destination; returns the source's handle as last read."""
    definition, source_dom = persistent_definition(prepared, session, source_dom)
    try:
        session.destination.defineXML(definition)
    except libvirt.libvirtError as exc:
        raise wrap(prepared, "define on destination", exc, "could not make the domain persistent on the destination")
    return source_dom


def undefine_source(prepared: Prepared, session: Session, source_dom: Any) -> None:
    dom = source_dom or lookup_by_uuid(session.source, prepared.located.uuid)
    if dom is None:
        return
    try:
        dom.undefineFlags(undefine_flags())
    except libvirt.libvirtError as exc:
        raise wrap(prepared, "undefine on source", exc, "could not remove the source's inactive definition")


def migrate_call(prepared: Prepared, session: Session) -> Callable[[], Any]:
    """The blocking migrate call: peer to peer (the source's libvirtd connects) or through this run's connection."""
    dom, plan, request = prepared.found.source_dom, prepared.plan, prepared.request
    if request.p2p:
        return lambda: dom.migrateToURI3(request.dest_uri, plan.params, plan.flags)
    return lambda: dom.migrate3(session.destination, plan.params, plan.flags)


def held_by_another_job(prepared: Prepared, exc: BaseException) -> MigrationError:
    """libvirt refused to start this run's job: the job there belongs to another run; leave it alone."""
    return MigrationInProgress.from_libvirt(
        "migrate", exc, "a migration job is already running for this domain (started by another run, "
        "from another machine?); this run started none and nothing was touched",
        hint="watch or abort it with virtops.migration.migration_job, or let it finish, then re-run",
        **prepared.context())


def migrate_offline(prepared: Prepared, session: Session) -> None:
    try:
        migrate_call(prepared, session)()
    except libvirt.libvirtError as exc:
        if another_job_holds_domain(exc):
            raise held_by_another_job(prepared, exc) from exc
        raise MigrationFailed.from_libvirt("offline migrate", exc, "offline migration failed; nothing "
                                           "runs, the source keeps its definition", **prepared.context())


def migrate_live(prepared: Prepared, session: Session, timekeeping: Timekeeping, warn: Warn,
                 earlier_notes: list[str]) -> Executed:
    """Migrate under the job monitor; a failure is recovered and raised, unless the domain moved anyway."""
    source = prepared.found.observed.source
    memory_bytes = (source.max_memory_kib if source else 0) * 1024
    policy = ConvergencePolicy(prepared.request.convergence, memory_bytes, timekeeping.clock())
    outcome = watch_migration(prepared, session, policy, timekeeping, warn)
    policy_actions = policy.summary()
    for warning in outcome.warnings:
        warn(warning)
    error = outcome.error
    if error is None:
        return Executed(list(earlier_notes), policy_actions, migration_phases(outcome))
    if another_job_holds_domain(error):
        raise held_by_another_job(prepared, error)
    if not isinstance(error, (libvirt.libvirtError, MigrateCallAbandoned)):
        raise error
    failure = Failure(error, outcome, list(earlier_notes), policy_actions)
    if libvirt_error_code(error) == libvirt.VIR_ERR_MIGRATE_PERSIST_FAILED:
        raise recover_persist_failed(failure, prepared.plan, prepared.located.uuid, session, prepared.request)
    before = Before(prepared.found.observed, resumed_by_us=RESUME_SOURCE in prepared.decision.actions)
    report = recover_failed(prepared.located.uuid, before, outcome.paused_by_us, session, timekeeping.clock)
    if not report.migrated_anyway:
        if not outcome.cancelled and goes_on_in_precopy(prepared.request, error, report):
            note = (f"the destination cannot do post-copy ({libvirt_error_text(error)}); nothing had moved and the "
                    "domain runs on the source only: migrating again in pre-copy (on_postcopy_unavailable: precopy)")
            warn(note)
            return migrate_live(without_postcopy(prepared), session, timekeeping, warn,
                                [*earlier_notes, *report.notes, note])
        raise migration_failed(failure, report, prepared.request, prepared.preflight)
    warn(migrated_anyway_warning(error))
    return Executed([*earlier_notes, *report.notes], policy_actions, migration_phases(outcome))


def goes_on_in_precopy(request: MigrationRequest, error: BaseException, report: RecoveryReport) -> bool:
    """The operator chose pre-copy when the destination refuses post-copy, and the refusal left the domain where
    it was: running on the source, both sides checked, nothing active on the destination."""
    if request.on_postcopy_unavailable != PRECOPY or not postcopy_refused(error, request) or report.unchecked:
        return False
    source, dest = report.source, report.destination
    return source is not None and source.active and (dest is None or not dest.active)


def without_postcopy(prepared: Prepared) -> Prepared:
    """The same migration without VIR_MIGRATE_POSTCOPY, and a policy that aborts where it would have switched."""
    request = prepared.request
    convergence = request.convergence
    if convergence.on_timeout == POSTCOPY:
        convergence = replace(convergence, on_timeout=ABORT)
    plan = replace(prepared.plan, flags=prepared.plan.flags & ~libvirt.VIR_MIGRATE_POSTCOPY)
    return replace(prepared, request=replace(request, post_copy=False, convergence=convergence), plan=plan)


def watch_migration(prepared: Prepared, session: Session, policy: ConvergencePolicy, timekeeping: Timekeeping,
                    warn: Warn) -> MonitorOutcome:
    """Run the migrate call while the monitor polls the job on a connection of its own, then close that one."""
    monitor_conn = monitor_connection(session, warn)
    outcome: MonitorOutcome | None = None
    try:
        watched = lookup_by_uuid(monitor_conn, prepared.located.uuid) if monitor_conn is not None else None
        monitor = MigrationMonitor(watched or prepared.found.source_dom, policy, timekeeping.clock, timekeeping.wait,
                                   timekeeping.cancel_requested)
        outcome = monitor.run(migrate_call(prepared, session))
    finally:
        abandoned = outcome is not None and outcome.call_abandoned
        close_quietly(monitor_conn, within=0 if abandoned else CLOSE_TIMEOUT_SECONDS)
    return outcome


def monitor_connection(session: Session, warn: Warn) -> Any:
    """A connection of the monitor's own to the source.

    Job queries on the connection that is blocked in the migrate call can wait behind it for as
    long as the migration runs; the policy (and the hard timeout) would never act.
    """
    try:
        return session.open_another(SOURCE)
    except MigrationError as error:
        warn(f"the job monitor shares the migration's connection: {error.message}")
        return None
