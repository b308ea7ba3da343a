# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""After a failed migration: put both hosts back as they were, within a bounded time, and say what was done.

``recover_failed`` reopens lost connections (both sides at once), aborts the job if it still runs,
re-reads both hosts, removes a half-made destination, resumes the source if this run (or the
failed migration) paused it, and reads both hosts once more.  Every call to a side is bounded
(``BoundedSession``): a side that does not answer is reported as not checked and is never asked
nor changed again.  It returns a ``RecoveryReport``; ``migration_failed`` turns it into the error.

| found after the failure                                  | done                                      |
|----------------------------------------------------------|-------------------------------------------|
| runs on the destination only, both sides checked         | nothing: treated as migrated (a warning)  |
| source in a post-copy state                              | nothing (re-run with post_copy: true)     |
| active on both hosts                                     | destroy the destination's copy (and undefine a definition this run made) |
| source paused, by this run or by the failed migration    | resume the source                          |

``recover_persist_failed``: the domain moved but libvirt could not make it persistent
(VIR_ERR_MIGRATE_PERSIST_FAILED): define it on the destination, never undefine the source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    MigrationFailed,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    NoAnswer,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    DomainInfo,
    describe_domain,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.session import (
    DESTINATION,
    SOURCE,
    BoundedSession,
    Session,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    RECONNECT_SECONDS,
    RECOVERY_SECONDS,
    SIDE_CALL_SECONDS,
    MigrateCallAbandoned,
    MonitorOutcome,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.observe import (
    job_active,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.plan import (
    Plan,
    undefine_flags,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    PreflightReport,
    migration_tls_diagnosis,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    Observed,
    placement,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

ABORT_WAIT_SECONDS = 60.0
ABORT_POLL_SECONDS = 0.5
ABORT_WAIT_RESERVE_SECONDS = 5.0  # of the recovery's time, kept for the checks after the wait for an aborted job
UNCHECKED = {"present": None, "state": "unknown", "persistent": None}  # a side's placement when it was not checked


@dataclass(frozen=True)
class Before:
    """What the run knew before the migration started, which decides what recovery may undo."""

    observed: Observed
    resumed_by_us: bool  # this run resumed the source before migrating (so it was meant to run)


@dataclass(frozen=True)
class RecoveryReport:
    """What recovery found and did: notes in order, the sides it could not check, both sides at the end.

    ``migrated_anyway``: the domain runs on the destination only, both sides checked; nothing was
    undone and ``source``/``destination`` are as found then.
    """

    notes: list[str]
    unchecked: list[str]
    source: DomainInfo | None
    destination: DomainInfo | None
    migrated_anyway: bool = False


@dataclass(frozen=True)
class Failure:
    """A failed migrate call and what surrounds it, for the error the run raises."""

    error: BaseException
    outcome: MonitorOutcome
    earlier_notes: list[str] = field(default_factory=list)  # what the run did before the migrate call
    policy_actions: list[dict[str, Any]] = field(default_factory=list)


def placement_as_checked(after: dict[str, Any], unchecked: list[str]) -> dict[str, Any]:
    """The placement with each side that was not checked as unknown (never as absent)."""
    return {side: (dict(UNCHECKED) if side in unchecked else where) for side, where in after.items()}


def next_step_after_failure(runs_on: list[str], unchecked: list[str], source_uri: str, dest_uri: str) -> str:
    """What to do after a failed migration, from where the domain was found running and which sides were not checked."""
    if not unchecked:
        return ("fix the cause and re-run; re-running is safe" if runs_on == ["source"] else
                "inspect both hosts before re-running")
    uris = {"source": source_uri, "destination": dest_uri}
    listing = "; ".join(f"virsh -c {uris[side]} list --all" for side in unchecked)
    if runs_on == ["source"]:
        return (f"the domain runs on the source; inspect both hosts before re-running: once the destination answers "
                f"again, check that it holds no copy of the domain ({listing}; libvirt removes the incoming copy of a "
                "failed migration itself when its daemon answers again) and re-run; the module refuses to act while "
                "both hosts hold the domain")
    answers = "answers" if len(unchecked) == 1 else "answer"
    return (f"inspect both hosts before re-running: once the {' and '.join(unchecked)} {answers} again, find where "
            f"the domain runs ({listing}); nothing was changed on a side that was not checked")


def bounded(session: Session, clock: Callable[[], float]) -> BoundedSession:
    """The session for the recovery: RECOVERY_SECONDS in all, the first RECONNECT_SECONDS to reopen connections."""
    started = clock()
    return BoundedSession(session, clock, deadline=started + RECOVERY_SECONDS,
                          reconnect_ends=started + RECONNECT_SECONDS, side_call_seconds=SIDE_CALL_SECONDS,
                          window=f"the recovery's {RECOVERY_SECONDS:g}s")


def recover_failed(uuid: str, before: Before, paused_by_us: bool, session: Session,
                   clock: Callable[[], float]) -> RecoveryReport:
    """Undo what a failed migration left, as far as both hosts answer; returns what was found and done."""
    sides = bounded(session, clock)
    sides.reconnect_both()
    source_dom, _source = sides.read(SOURCE, uuid)
    abort_if_running(sides, source_dom)
    source_dom, source = sides.read(SOURCE, uuid)
    dest_dom, dest = sides.read(DESTINATION, uuid)
    if not sides.unchecked and runs_on_destination_only(source, dest):
        return RecoveryReport(list(sides.notes), [], source, dest, migrated_anyway=True)
    if source is not None and source.postcopy_state:
        sides.notes.append("source is in a post-copy state: left untouched (re-run with "
                           "post_copy: true to resume the post-copy migration)")
    elif dest is not None and dest.active and source is not None and source.active:
        remove_half_made_destination(sides, dest_dom, dest, defined_before=before.observed.destination is not None)
    if source is not None:
        resume_if_paused_here(sides, source_dom, source, before, paused_by_us)
    _source_dom, source = sides.read(SOURCE, uuid)
    _dest_dom, dest = sides.read(DESTINATION, uuid)
    return RecoveryReport(list(sides.notes), sorted(sides.unchecked), source, dest)


def runs_on_destination_only(source: DomainInfo | None, dest: DomainInfo | None) -> bool:
    return dest is not None and dest.active and dest.state != PAUSED and (source is None or not source.active)


def abort_if_running(sides: BoundedSession, dom: Any) -> None:
    """Abort a job the failed call left behind and wait (bounded) until it is gone."""
    def running() -> bool:
        return job_active(dom, describe_domain(dom))

    try:
        if dom is None or not sides.ask(SOURCE, running):
            return
        sides.ask(SOURCE, dom.abortJob)
        sides.notes.append("aborted the migration job on the source")
        waited = max(0.0, min(ABORT_WAIT_SECONDS, sides.time_left() - ABORT_WAIT_RESERVE_SECONDS))
        for _attempt in range(int(waited / ABORT_POLL_SECONDS)):
            if not sides.ask(SOURCE, running):
                return
            time.sleep(ABORT_POLL_SECONDS)
        sides.notes.append(f"the aborted job was still present after {waited:g}s")
    except NoAnswer:
        return
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
            sides.notes.append(f"could not abort the job: {libvirt_error_text(exc)}")


def remove_half_made_destination(sides: BoundedSession, dom: Any, dest: DomainInfo, defined_before: bool) -> None:
    try:
        sides.ask(DESTINATION, dom.destroy)
        sides.notes.append("destroyed the half-made domain on the destination")
        if dest.persistent and not defined_before:
            sides.ask(DESTINATION, lambda: dom.undefineFlags(undefine_flags()))
            sides.notes.append("undefined the definition this run created on the destination")
    except NoAnswer:
        return
    except libvirt.libvirtError as exc:
        sides.notes.append(f"could not clean the destination: {libvirt_error_text(exc)}")


def resume_if_paused_here(sides: BoundedSession, dom: Any, source: DomainInfo, before: Before,
                          paused_by_us: bool) -> None:
    """Resume a source paused by this run, or by the failed migration of a domain that was running."""
    if source.state != PAUSED or source.postcopy_state:
        return
    was_running = bool(before.observed.source and before.observed.source.state != PAUSED) or before.resumed_by_us
    if not (paused_by_us or was_running):
        return
    try:
        sides.ask(SOURCE, dom.resume)
        sides.notes.append("resumed the domain on the source (this run had paused it)"
                           if paused_by_us else "resumed the domain on the source "
                           "(left paused by the failed migration)")
    except NoAnswer:
        return
    except libvirt.libvirtError as exc:
        sides.notes.append(f"could not resume the source: {libvirt_error_text(exc)}")


def migrated_anyway_warning(error: BaseException) -> str:
    return (f"libvirt reported an error ({libvirt_error_text(error)}) but the domain runs on the destination "
            "only: treated as migrated")


POSTCOPY_UNSUPPORTED_TEXT = "postcopy is not supported"
POSTCOPY_UNAVAILABLE_HINT = (
    "post-copy needs, on the destination, a userfaultfd for QEMU (QEMU 8.1 or later with access to "
    "/dev/userfaultfd, or the kernel's vm.unprivileged_userfaultfd = 1 for an older QEMU running unprivileged) and "
    "munlockall() allowed (no seccomp or container filter refusing it); the destination's QEMU log "
    "(/var/log/libvirt/qemu/DOMAIN.log) names which; or migrate without post_copy, or with on_postcopy_unavailable: "
    "precopy to go on in pre-copy when a destination cannot do post-copy")


def postcopy_refused(error: BaseException, request: MigrationRequest) -> bool:
    """The destination's QEMU refused the post-copy capability as the migration started (nothing moved then)."""
    return request.post_copy and POSTCOPY_UNSUPPORTED_TEXT in libvirt_error_text(error).lower()


def postcopy_refusal_cause(request: MigrationRequest) -> str:
    return (f"the destination ({request.dest_uri}) cannot do post-copy: its QEMU refused the post-copy capability "
            "when the migration started, before anything moved")


def migration_failed(failure: Failure, report: RecoveryReport, request: MigrationRequest,
                     preflight: PreflightReport | None) -> MigrationError:
    """The error of a failed migration: where the domain runs now, what recovery did, what to do next."""
    error, outcome = failure.error, failure.outcome
    source, dest, unchecked = report.source, report.destination, report.unchecked
    after = placement_as_checked(placement(Observed(source, dest)), unchecked)
    incoming = dest is not None and dest.state == PAUSED and dest.reason == "migration"
    runs_on = [side for side, info in ((SOURCE, source), (DESTINATION, dest))
               if info and info.active and not (side == DESTINATION and incoming)]
    recovery = [*failure.earlier_notes, *report.notes]
    message = "migration failed"
    if outcome.cancelled:
        message += f" ({outcome.abort_reason}: the running migration was aborted)"
    elif outcome.aborted:
        message += f" (aborted by the convergence policy: {outcome.abort_reason})"
    if isinstance(error, MigrateCallAbandoned):
        message += f"; {error}"
    message += "; the domain now runs on: %s" % (", ".join(runs_on) or ("NO HOST" if not unchecked else "unknown"))
    if unchecked:
        message += " (the {} could not be checked)".format(" and ".join(unchecked))
    if incoming:
        message += "; the destination holds a copy paused by the migration"
    if recovery:
        message += "; recovery: {}".format("; ".join(recovery))
    hint = next_step_after_failure(runs_on, unchecked, request.uri, request.dest_uri)
    tls_files = migration_tls_diagnosis(libvirt_error_text(error), request, preflight)
    if tls_files:
        message, hint = f"{message}; {tls_files[0]}", f"{tls_files[1]}; {hint}"
    if postcopy_refused(error, request):
        message, hint = f"{message}; {postcopy_refusal_cause(request)}", f"{POSTCOPY_UNAVAILABLE_HINT}; {hint}"
    details = {
        "changed": bool(recovery), "recovery": recovery, "policy_actions": list(failure.policy_actions),
        "unreachable": unchecked,
        "placement": after, "last_job_stats": job_statistics(outcome.last_stats)}
    if outcome.cancelled:
        details["cancelled"] = True
    if isinstance(error, MigrateCallAbandoned):  # not libvirt's words: no "libvirt said"
        return MigrationFailed("migrate", message, hint=hint, details=details, **request.context())
    return MigrationFailed.from_libvirt("migrate", error, message, hint=hint, details=details, **request.context())


def recover_persist_failed(failure: Failure, plan: Plan, uuid: str, session: Session,
                           request: MigrationRequest) -> MigrationError:
    """The domain moved but was not made persistent: define it there, keep the source's definition."""
    kept = ("libvirt could not make the domain persistent on the destination (VIR_ERR_MIGRATE_PERSIST_FAILED); "
            "the source's definition was kept")
    notes = [*failure.earlier_notes, kept]
    session.read(DESTINATION, uuid)
    defined = False
    if plan.persistent_xml:
        try:
            session.destination.defineXML(plan.persistent_xml)
            defined = True
            notes.append("defined the domain on the destination with the persistent XML")
        except libvirt.libvirtError as exc:
            notes.append(f"defining on the destination failed too: {libvirt_error_text(exc)}")
    hint = ("verify the domain on the destination, then re-run: the next run undefines the source's "
            "definition (undefine_source)" if defined else
            "define the domain on the destination by hand; do not undefine the source")
    return MigrationFailed.from_libvirt(
        "persist on destination", failure.error,
        "the domain runs on the destination but libvirt failed to make it persistent there; "
        + "; ".join(notes), hint=hint,
        details={"changed": True, "recovery": list(notes), "policy_actions": list(failure.policy_actions)},
        **request.context())
