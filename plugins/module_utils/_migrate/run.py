# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Run one migration, passing values from step to step.

validate -> connect both ends (``Session``) -> observe both hosts by UUID (``observe.py``, under
the domain's run lock) -> decide (``reconcile.py``) -> preflight and plan (``preflight.py``,
``plan.py``: the check-mode answer stops here) -> execute the actions (``actions.py``; a failed
migration is recovered by ``recovery.py`` and raised) -> verify (``verify.py``) -> the result.

Every MigrationError leaves with the run's timings and warnings so far in its details.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelCheck,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.progress import (
    OnSnapshot,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    local_addresses_of,
    open_connection,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    guest_spec,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.session import (
    DESTINATION,
    SOURCE,
    Session,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.actions import (
    Executed,
    Prepared,
    Timekeeping,
    execute,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    Waiter,
    wait_on_event,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.observe import (
    HostUUIDs,
    domain_lock,
    locate,
    observe,
    read_host_uuids,
    resolve_domain,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.plan import (
    flag_names,
    plan_migration,
    redact_params,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    PreflightContext,
    classify_disks,
    mount_fs_type,
    plan_copied_disks,
    run_preflight,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.progress import (
    published_progress,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    placement,
    predicted_placement,
    reconcile,
    refuse_same_host,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
    validate_against_domain,
    validate_disks_named,
    validate_request,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.verify import (
    Verified,
    completed_stats,
    verify,
)

FsTypeOf = Callable[[str], "str | None"]


@dataclass(frozen=True)
class MigrationEnvironment:
    """What a run uses from the world around it: time, waiting, connecting, the local host's view.

    ``cancel_requested`` (None: never) is asked on each poll of a live migration's job: once it answers, the
    job is aborted unless post-copy has started (see ``ConvergencePolicy.cancel``).
    """

    clock: Callable[[], float] = time.monotonic
    wait: Waiter = wait_on_event
    connect: Callable[..., Any] = open_connection
    fs_type_of: Callable[[str], str | None] | None = None
    resolves_locally: Callable[[str], bool] = local_addresses_of
    progress_path: str | None = None
    progress_interval: float = 1.0
    on_progress: OnSnapshot | None = None
    cancel_requested: CancelCheck | None = None


class RunLog:
    """How long each step took and what the run warns about, kept whatever happens (an error carries them)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            self.timings[name] = round(self.clock() - started, 3)

    def add_warning(self, text: str) -> None:
        self.warnings.append(text)

    def add_warnings(self, texts: Iterable[str]) -> None:
        self.warnings.extend(texts)

    def stop(self) -> None:
        self.timings["total"] = round(self.clock() - self.started, 3)

    def failed(self, error: MigrationError, request: MigrationRequest) -> MigrationError:
        """The error with the timings (total included) and warnings so far, and the request's domain and URIs."""
        self.stop()
        error.details.setdefault("timings", dict(self.timings))
        error.details.setdefault("warnings", list(self.warnings))
        return error.with_context(**request.context())


def run_migration(request: MigrationRequest, check_mode: bool = False,
                  environment: MigrationEnvironment | None = None) -> dict[str, Any]:
    """Run one migration request; returns the module result, raises MigrationError."""
    env = environment or MigrationEnvironment()
    log = RunLog(env.clock)
    try:
        with log.phase("validate"):
            request = validate_request(request, env.resolves_locally)
    except MigrationError as error:
        raise log.failed(error, request)
    session = Session({SOURCE: request.uri, DESTINATION: request.dest_uri}, env.connect, request.context())
    try:
        return migrate(request, check_mode, env, session, log)
    except MigrationError as error:
        raise log.failed(error, request)
    finally:
        session.close()


def migrate(request: MigrationRequest, check_mode: bool, env: MigrationEnvironment, session: Session,
            log: RunLog) -> dict[str, Any]:
    """The steps after validation, on ``session``; the domain's run lock is held from the lookup to the end."""
    with log.phase("connect"):
        hosts = connect(session, log)
        hosts_distinct = refuse_same_host(request, hosts.source, hosts.destination)
    with ExitStack() as held_until_the_end:
        with log.phase("lookup"):
            named = resolve_domain(session, request)
            locked = held_until_the_end.enter_context(
                domain_lock(named.uuid, check_mode, log.add_warning, **request.context()))
            found = observe(session, request, named, locked, hosts_distinct)
            if found.observed.source is not None:
                validate_against_domain(request, found.observed.source)
        with log.phase("reconcile"):
            located = locate(request, found)
            decision = reconcile(request, found.observed)
            log.add_warnings(decision.warnings)
        prepared = Prepared(request, located, found, decision)
        source = found.observed.source
        if decision.migrates and source is not None:
            with log.phase("preflight"):
                prepared = preflight_and_plan(prepared, source, session, env.fs_type_of, log)
        if check_mode or not decision.changed:
            log.stop()
            return result(prepared, hosts, log, check_mode)
        with log.phase("migrate"), published_progress(
                decision.migrates, prepared.located.name, prepared.located.uuid, request.uri, request.dest_uri, env.progress_path,
                env.progress_interval, env.connect, env.on_progress, log.add_warning):
            executed = execute(prepared, session, Timekeeping(env.clock, env.wait, env.cancel_requested), log.add_warning)
        with log.phase("verify"):
            verified = verify(request, located.uuid, decision, session)
            log.add_warnings(verified.warnings)
        stats = final_stats(verified, log) if decision.migrates else {}
        log.stop()
        return result(prepared, hosts, log, check_mode, Done(executed, verified.placement, stats))


def final_stats(verified: Verified, log: RunLog) -> dict[str, Any]:
    """The completed job's statistics; a warning when libvirt kept them on neither host."""
    stats = completed_stats(verified)
    if not stats:
        log.add_warning("libvirt kept no statistics of the completed migration on either host (after post-copy, a "
                        "source the migration undefined keeps none and the destination none either): no downtime or "
                        "data totals to report; phases holds the time in pre-copy and post-copy")
    return stats


def connect(session: Session, log: RunLog) -> HostUUIDs:
    """Open both ends; returns each host's UUID (its identity, whatever the URIs say)."""
    session.open(SOURCE)
    session.open(DESTINATION)
    hosts = read_host_uuids(session)
    log.add_warnings(hosts.warnings)
    return hosts


def local_fs_type_of(request: MigrationRequest, fs_type_of: FsTypeOf | None) -> FsTypeOf | None:
    """Mount table lookups only make sense when the task runs on the source host."""
    if fs_type_of is not None:
        return fs_type_of
    return None if parse_uri(request.uri).is_remote else mount_fs_type


def preflight_and_plan(prepared: Prepared, source: DomainInfo, session: Session, fs_type_of: FsTypeOf | None,
                       log: RunLog) -> Prepared:
    """Check the destination can take the domain (PreflightFailed if not), then plan the migration."""
    request, dom = prepared.request, prepared.found.source_dom
    guest = guest_spec(migratable_xml(dom, inactive=False))
    validate_disks_named(request, source, guest)
    verdicts = classify_disks(guest, session.destination, local_fs_type_of(request, fs_type_of))
    copied = plan_copied_disks(request, verdicts)
    context = PreflightContext(request, session.source, session.destination, source, guest, verdicts, copied)
    report = run_preflight(context)
    log.add_warnings(report.warnings)
    source_xml = migratable_xml(dom, inactive=True) if request.persistent else None
    plan = plan_migration(request, prepared.decision, source_xml, copied)
    return replace(prepared, plan=plan, preflight=report)


@dataclass(frozen=True)
class Done:
    """What the actions did, where the domain is after them, and libvirt's completed-job statistics."""

    executed: Executed
    placement: dict[str, Any]
    stats: dict[str, Any]


def result(prepared: Prepared, hosts: HostUUIDs, log: RunLog, check_mode: bool,
           done: Done | None = None) -> dict[str, Any]:
    """The module result: the decision, the plan, what was done and where the domain is before and after.

    Without ``done`` (check mode, or nothing to change) the placement after is the predicted one.
    """
    request, observed, decision = prepared.request, prepared.found.observed, prepared.decision
    plan, preflight = prepared.plan, prepared.preflight
    executed = done.executed if done else Executed()
    after = done.placement if done else predicted_placement(request, observed, decision)
    return {
        "changed": decision.changed,
        "action": decision.action,
        "actions": list(decision.actions),
        "explanation": decision.explanation,
        "domain": prepared.located.name,
        "uuid": prepared.located.uuid,
        "source": request.uri,
        "destination": request.dest_uri,
        "host_uuids": hosts.as_dict(),
        "flags": flag_names(plan.flags),
        "flags_value": plan.flags,
        "params": redact_params(plan.params),
        "copied_disks": list(plan.copied_disks),
        "preflight": preflight.as_list() if preflight else [],
        "timings": dict(log.timings),
        "stats": dict(done.stats) if done else {},
        "policy_actions": list(executed.policy_actions),
        "phases": dict(executed.phases),
        "recovery": list(executed.notes),
        "warnings": list(log.warnings),
        "placement": {"before": placement(observed), "after": after},
        "check_mode": check_mode,
    }
