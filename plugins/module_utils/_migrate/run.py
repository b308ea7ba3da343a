# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Orchestrate one migration.

validate -> connect both ends -> look up by UUID -> reconcile -> preflight ->
plan (the check-mode answer) -> act (migrate under the monitor, define,
undefine, resume) -> verify placement -> completed job stats.

On failure: abort the job if it still runs, re-read both hosts, remove a
half-made destination, resume the source if this run paused it, and raise
MigrationFailed carrying the recovery report.  A persist failure after the
move (VIR_ERR_MIGRATE_PERSIST_FAILED) defines the domain on the destination
and never undefines the source.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    MigrationFailed,
    MigrationInProgress,
    another_job_holds_domain,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    RunLock,
    migration_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CLOSE_TIMEOUT_SECONDS,
    NoAnswer,
    call_within,
    close_quietly,
    local_addresses_of,
    open_connection,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    DomainInfo,
    describe_domain,
    find_domain,
    guest_spec,
    lookup_by_name,
    lookup_by_uuid,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    RECONNECT_SECONDS,
    RECOVERY_SECONDS,
    SIDE_CALL_SECONDS,
    MigrateCallAbandoned,
    MigrationMonitor,
    MonitorOutcome,
    Waiter,
    wait_on_event,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ConvergencePolicy,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    PreflightContext,
    PreflightReport,
    classify_disks,
    host_uuid_of,
    migration_tls_diagnosis,
    mount_fs_type,
    plan_copied_disks,
    run_preflight,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    DEFINE_ON_DEST,
    MIGRATE_OFFLINE,
    MIGRATE_PAUSED,
    POSTCOPY_RESUME,
    RESUME_SOURCE,
    UNDEFINE_SOURCE,
    Observed,
    Reconciliation,
    placement,
    predicted_placement,
    reconcile,
    refuse_same_host,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
    flag_names,
    migration_flags,
    migration_params,
    persistent_xml_for,
    redact_params,
    validate_against_domain,
    validate_request,
)

ABORT_WAIT_SECONDS = 60.0
ABORT_POLL_SECONDS = 0.5
ABORT_WAIT_RESERVE_SECONDS = 5.0  # of the recovery's time, kept for the checks after the wait for an aborted job
UNCHECKED = {"present": None, "state": "unknown", "persistent": None}  # a side's placement when it was not checked

Answer = TypeVar("Answer")


@dataclass
class Plan:
    """What would be sent to libvirt."""

    flags: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    copied_disks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"flags": flag_names(self.flags), "flags_value": self.flags,
                "params": redact_params(self.params), "copied_disks": list(self.copied_disks)}


@dataclass
class RunState:
    """What this run learned and did; the result is built from it."""

    source_dom: Any = None
    dest_dom: Any = None
    observed: Observed | None = None
    decision: Reconciliation | None = None
    plan: Plan = field(default_factory=Plan)
    preflight: PreflightReport | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    recovery: list[str] = field(default_factory=list)
    policy_actions: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    resumed_by_us: bool = False
    placement_after: dict[str, Any] | None = None
    host_uuids: tuple[str | None, str | None] = (None, None)


def undefine_flags() -> int:
    """Keep NVRAM and TPM state: on shared storage the destination uses them."""
    return libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM


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


@dataclass(frozen=True)
class MigrationEnvironment:
    """What a run uses from the world around it: time, waiting, connecting, the local host's view."""

    clock: Callable[[], float] = time.monotonic
    wait: Waiter = wait_on_event
    connect: Callable[..., Any] = open_connection
    fs_type_of: Callable[[str], str | None] | None = None
    resolves_locally: Callable[[str], bool] = local_addresses_of


def run_migration(request: MigrationRequest, check_mode: bool = False,
                  environment: MigrationEnvironment | None = None) -> dict[str, Any]:
    """Run one migration request; returns the module result, raises MigrationError."""
    env = environment or MigrationEnvironment()
    return Migrator(request, check_mode=check_mode, clock=env.clock, wait=env.wait, connect=env.connect,
                    fs_type_of=env.fs_type_of, resolves_locally=env.resolves_locally).run()


class Migrator:
    """Run one migration request; ``run()`` returns the module result dict."""

    def __init__(
        self,
        request: MigrationRequest,
        check_mode: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = wait_on_event,
        connect: Callable[..., Any] = open_connection,
        fs_type_of: Callable[[str], str | None] | None = None,
        resolves_locally: Callable[[str], bool] = local_addresses_of,
    ) -> None:
        self.request = request
        self.check_mode = check_mode
        self.clock = clock
        self.wait = wait
        self.connect = connect
        self.fs_type_of = fs_type_of
        self.resolves_locally = resolves_locally
        self.state = RunState()
        self.source_conn: Any = None
        self.dest_conn: Any = None
        self.unreachable: set[str] = set()  # sides not checked after a failure (lost and not reopened, or silent)
        self.recovery_deadline: float | None = None  # set when recovery starts: every call to a side ends by then
        self.recovery_started = 0.0
        self.domain_lock: RunLock | None = None

    # -- helpers ------------------------------------------------------------

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            self.state.timings[name] = round(self.clock() - started, 3)

    def context(self) -> dict[str, Any]:
        return self.request.context()

    def wrap(self, operation: str, exc: BaseException, message: str | None = None) -> MigrationError:
        return MigrationError.from_libvirt(operation, exc, message, **self.context())

    def default_fs_type_of(self) -> Callable[[str], str | None] | None:
        """Mount table lookups only make sense when the task runs on the source host."""
        if self.fs_type_of is not None:
            return self.fs_type_of
        return None if parse_uri(self.request.uri).is_remote else mount_fs_type

    # -- the run ------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = self.clock()
        try:
            with self.phase("validate"):
                validate_request(self.request, self.resolves_locally)
            with self.phase("connect"):
                self.source_conn = self.connect(self.request.uri, "source", **self.context())
                self.dest_conn = self.connect(self.request.dest_uri, "destination", **self.context())
                self.state.host_uuids = self.read_host_uuids()
                hosts_distinct = refuse_same_host(self.request, *self.state.host_uuids)
            with self.phase("lookup"):
                self.state.observed = self.observe(hosts_distinct)
                if self.state.observed.source is not None:
                    validate_against_domain(self.request, self.state.observed.source, None)
            with self.phase("reconcile"):
                self.state.decision = reconcile(self.request, self.state.observed)
                self.state.warnings.extend(self.state.decision.warnings)
            if self.state.decision.migrates:
                with self.phase("preflight"):
                    self.preflight_and_plan()
            if not self.check_mode and self.state.decision.changed:
                self.act()
            self.state.timings["total"] = round(self.clock() - started, 3)
            return self.result()
        except MigrationError as error:
            self.state.timings["total"] = round(self.clock() - started, 3)
            error.details.setdefault("timings", dict(self.state.timings))
            error.details.setdefault("warnings", list(self.state.warnings))
            raise error.with_context(**self.context())
        finally:
            if self.domain_lock is not None:
                self.domain_lock.close()
            close_quietly(self.source_conn)
            close_quietly(self.dest_conn)

    # -- lookup -------------------------------------------------------------

    def read_host_uuids(self) -> tuple[str | None, str | None]:
        """Each side's host UUID, None where libvirt would not say (then the hosts are not proven distinct)."""
        uuids: list[str | None] = []
        for role, conn in (("source", self.source_conn), ("destination", self.dest_conn)):
            try:
                uuids.append(host_uuid_of(conn))
            except (libvirt.libvirtError, ET.ParseError) as exc:
                self.state.warnings.append(f"could not read the {role}'s host UUID: {exc}")
                uuids.append(None)
        return uuids[0], uuids[1]

    def observe(self, hosts_distinct: bool) -> Observed:
        request = self.request
        source_dom = find_domain(self.source_conn, request.name, request.uuid)
        uuid = source_dom.UUIDString() if source_dom is not None else request.uuid
        if uuid is None:
            by_name = lookup_by_name(self.dest_conn, request.dest_name or request.name or "")
            uuid = by_name.UUIDString() if by_name is not None else None
        if request.uuid is None and uuid is not None:
            request.uuid = uuid
        if uuid and self.lock_domain(uuid) and source_dom is not None:
            source_dom = lookup_by_uuid(self.source_conn, uuid)  # another run may have moved it meanwhile
        dest_dom = lookup_by_uuid(self.dest_conn, uuid) if uuid else None
        self.state.source_dom, self.state.dest_dom = source_dom, dest_dom
        source = describe_domain(source_dom) if source_dom is not None else None
        dest = describe_domain(dest_dom) if dest_dom is not None else None
        return Observed(source, dest, self.job_active(source_dom, source), self.name_owner(source, dest), hosts_distinct)

    def lock_domain(self, uuid: str) -> bool:
        """Hold this domain's run lock until the run ends; True once held (False in check mode).

        Two runs started at once both find no job; without the lock the second's migrate call fails
        on the first's job and its recovery would abort the first's migration.
        """
        lock = migration_lock(uuid, self.check_mode, **self.context())
        lock.__enter__()  # raises MigrationInProgress when another run holds it
        if lock.warning:
            self.state.warnings.append(lock.warning)
            return False
        self.domain_lock = lock
        return not self.check_mode

    def job_active(self, dom: Any, info: DomainInfo | None) -> bool:
        if dom is None or info is None or not info.active:
            return False
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError:
            return False
        return stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE

    def name_owner(self, source: DomainInfo | None, dest: DomainInfo | None) -> str | None:
        """UUID of another destination domain holding the target name, if any."""
        target = self.request.dest_name or (source.name if source else self.request.name)
        if not target:
            return None
        other = lookup_by_name(self.dest_conn, target)
        if other is None:
            return None
        owner = other.UUIDString()
        mine = source.uuid if source else (dest.uuid if dest else None)
        return None if owner == mine else owner

    # -- preflight and plan -------------------------------------------------

    def preflight_and_plan(self) -> None:
        source = self.state.observed.source if self.state.observed else None
        if source is None:
            return
        dom = self.state.source_dom
        live_xml = migratable_xml(dom, inactive=False)
        guest = guest_spec(live_xml)
        validate_against_domain(self.request, source, guest)
        verdicts = classify_disks(guest, self.dest_conn, self.default_fs_type_of())
        copied = plan_copied_disks(self.request, verdicts)
        ctx = PreflightContext(self.request, self.source_conn, self.dest_conn, source, guest, verdicts, copied)
        self.state.preflight = run_preflight(ctx)
        self.state.warnings.extend(self.state.preflight.warnings)
        self.state.plan = self.make_plan(dom, copied)

    def make_plan(self, dom: Any, copied: list[str]) -> Plan:
        flags = migration_flags(self.request)
        decision = self.state.decision
        if not (decision is not None):
            raise AssertionError("internal state: expected decision is not None")
        if MIGRATE_PAUSED in decision.actions:
            flags |= libvirt.VIR_MIGRATE_PAUSED
        if POSTCOPY_RESUME in decision.actions:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME
        source_xml = migratable_xml(dom, inactive=True) if self.request.persistent else None
        params = migration_params(self.request, persistent_xml_for(self.request, source_xml), copied)
        return Plan(flags, params, copied)

    # -- acting -------------------------------------------------------------

    def act(self) -> None:
        decision = self.state.decision
        if not (decision is not None):
            raise AssertionError("internal state: expected decision is not None")
        with self.phase("migrate"):
            for action in decision.actions:
                self.do(action)
        with self.phase("verify"):
            self.state.placement_after = self.verify()
        self.state.stats = self.completed_stats()

    def do(self, action: str) -> None:
        if action == RESUME_SOURCE:
            self.resume_source()
        elif action == DEFINE_ON_DEST:
            self.define_on_destination()
        elif action == UNDEFINE_SOURCE:
            self.undefine_source()
        elif action == MIGRATE_OFFLINE:
            self.migrate_offline()
        else:
            self.migrate_live()

    def resume_source(self) -> None:
        try:
            self.state.source_dom.resume()
        except libvirt.libvirtError as exc:
            raise self.wrap("resume on source", exc, "could not resume the paused domain before migrating")
        self.state.resumed_by_us = True
        self.state.recovery.append("resumed the paused domain on the source before migrating")

    def persistent_definition(self) -> str:
        """XML to define on the destination: the user's, the source's, or the destination's own."""
        request = self.request
        if request.persistent_xml or request.xml:
            return request.persistent_xml or request.xml or ""
        source = self.refresh_source()
        if source is not None and self.state.source_dom.isPersistent():
            return migratable_xml(self.state.source_dom, inactive=True)
        return migratable_xml(self.state.dest_dom or lookup_by_uuid(self.dest_conn, request.uuid), inactive=True)

    def define_on_destination(self) -> None:
        try:
            self.dest_conn.defineXML(self.persistent_definition())
        except libvirt.libvirtError as exc:
            raise self.wrap("define on destination", exc, "could not make the domain persistent on the destination")

    def undefine_source(self) -> None:
        dom = self.state.source_dom or lookup_by_uuid(self.source_conn, self.request.uuid)
        if dom is None:
            return
        try:
            dom.undefineFlags(undefine_flags())
        except libvirt.libvirtError as exc:
            raise self.wrap("undefine on source", exc, "could not remove the source's inactive definition")

    def start_call(self) -> Callable[[], Any]:
        dom, plan = self.state.source_dom, self.state.plan
        if self.request.p2p:
            return lambda: dom.migrateToURI3(self.request.dest_uri, plan.params, plan.flags)
        return lambda: dom.migrate3(self.dest_conn, plan.params, plan.flags)

    def held_by_another_job(self, exc: BaseException) -> MigrationError:
        """libvirt refused to start this run's job: the job there belongs to another run; leave it alone."""
        return MigrationInProgress.from_libvirt(
            "migrate", exc, "a migration job is already running for this domain (started by another run, "
            "from another machine?); this run started none and nothing was touched",
            hint="watch or abort it with virtops.migration.migration_job, or let it finish, then re-run",
            **self.context())

    def migrate_offline(self) -> None:
        try:
            self.start_call()()
        except libvirt.libvirtError as exc:
            if another_job_holds_domain(exc):
                raise self.held_by_another_job(exc) from exc
            raise MigrationFailed.from_libvirt("offline migrate", exc, "offline migration failed; nothing "
                                               "runs, the source keeps its definition", **self.context())

    def migrate_live(self) -> None:
        source = self.state.observed.source if self.state.observed else None
        memory_bytes = (source.max_memory_kib if source else 0) * 1024
        policy = ConvergencePolicy(self.request.convergence, memory_bytes, self.clock())
        monitor_conn = self.monitor_connection()
        outcome: MonitorOutcome | None = None
        try:
            watched = lookup_by_uuid(monitor_conn, self.request.uuid) if monitor_conn is not None else None
            monitor = MigrationMonitor(watched or self.state.source_dom, policy, self.clock, self.wait)
            outcome = monitor.run(self.start_call())
        finally:
            abandoned = outcome is not None and outcome.call_abandoned
            close_quietly(monitor_conn, within=0 if abandoned else CLOSE_TIMEOUT_SECONDS)
        self.state.policy_actions = policy.summary()
        self.state.warnings.extend(outcome.warnings)
        if outcome.error is None:
            return
        if another_job_holds_domain(outcome.error):
            raise self.held_by_another_job(outcome.error)
        if not isinstance(outcome.error, (libvirt.libvirtError, MigrateCallAbandoned)):
            raise outcome.error
        if libvirt_error_code(outcome.error) == libvirt.VIR_ERR_MIGRATE_PERSIST_FAILED:
            self.recover_persist_failed(outcome.error)
            return
        self.recover_failed(outcome)

    def monitor_connection(self) -> Any:
        """A connection of the monitor's own to the source.

        Job queries on the connection that is blocked in the migrate call can wait behind it for as
        long as the migration runs; the policy (and the hard timeout) would never act.
        """
        try:
            return self.connect(self.request.uri, "source", **self.context())
        except MigrationError as error:
            self.state.warnings.append(f"the job monitor shares the migration's connection: {error.message}")
            return None

    # -- failure handling ---------------------------------------------------
    #
    # Every call to a host during recovery goes through ask(): it returns within SIDE_CALL_SECONDS and before the
    # recovery's deadline, or the side is recorded as not checked and never asked (nor changed) again.

    def ask(self, role: str, call: Callable[[], Answer], discard: Callable[[Answer], Any] | None = None) -> Answer:
        """``call()`` on ``role``'s side, bounded during recovery; NoAnswer when that side was not checked."""
        if self.recovery_deadline is None:
            return call()
        if role in self.unreachable:
            raise NoAnswer(0.0)
        seconds = min(SIDE_CALL_SECONDS, self.recovery_deadline - self.clock())
        if seconds <= 0:
            self.not_checked(role, f"the recovery's {RECOVERY_SECONDS:g}s ran out before it was checked")
            raise NoAnswer(0.0)
        try:
            return call_within(seconds, call, discard)
        except NoAnswer:
            self.not_checked(role, f"it did not answer within {seconds:.3g}s (its libvirt daemon is stopped or "
                                   "hung, or the link to it is down)")
            raise

    def not_checked(self, role: str, why: str) -> None:
        """Record that ``role``'s side could not be checked; drop its connection without waiting on it."""
        if role in self.unreachable:
            return
        self.unreachable.add(role)
        self.state.recovery.append(f"the {role} was not checked: {why}; nothing was done there")
        attr = "source_conn" if role == "source" else "dest_conn"
        close_quietly(getattr(self, attr), within=0)
        setattr(self, attr, None)

    def reconnect_both(self) -> None:
        """Reopen lost connections to both sides at once: one side's wait does not eat the other's time."""
        failures: list[BaseException] = []

        def reconnect(role: str) -> None:
            try:
                self.reconnect_if_lost(role)
            except BaseException as exc:  # noqa: BLE001 - raised again below, in this thread
                failures.append(exc)

        threads = [threading.Thread(target=reconnect, args=(role,), name=f"virtops-reconnect-{role}", daemon=True)
                   for role in ("source", "destination")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each returns within the reconnect window: every call in it has a deadline
        if failures:
            raise failures[0]

    def reconnect_if_lost(self, role: str) -> None:
        """Reopen a connection the failure closed (its libvirtd restarted or the link broke) or that went silent."""
        attr = "source_conn" if role == "source" else "dest_conn"
        conn = getattr(self, attr)
        window_ends = None if self.recovery_deadline is None else \
            min(self.recovery_deadline, self.recovery_started + RECONNECT_SECONDS)

        def left() -> float:
            return float("inf") if window_ends is None else window_ends - self.clock()

        def answers() -> bool:
            # isAlive() learns of a closed socket only once a call failed on it
            return bool(conn.isAlive()) and conn.getLibVersion() is not None

        silent = False
        if conn is not None:
            try:
                if call_within(min(SIDE_CALL_SECONDS, left()), answers) if window_ends is not None else answers():
                    return
            except NoAnswer:
                silent = True  # hung, or a daemon shutting down: a new connection tells
            except libvirt.libvirtError:
                pass
        close_quietly(conn, within=0 if silent else CLOSE_TIMEOUT_SECONDS)
        setattr(self, attr, None)
        uri = self.request.uri if role == "source" else self.request.dest_uri
        seconds = left()
        if seconds <= 0:
            self.not_checked(role, f"the recovery's {RECOVERY_SECONDS:g}s ran out before it was checked")
            return
        try:
            if window_ends is None:
                reopened = self.connect(uri, role, **self.context())
            else:
                reopened = call_within(seconds, lambda: self.connect(uri, role, **self.context()), close_quietly)
        except NoAnswer:
            self.not_checked(role, "it did not answer within {:.3g}s: its connection {} and a new one got no answer "
                                   "(its libvirt daemon is stopped or hung, or the link to it is down)".format(
                                       seconds, "stopped answering" if silent else "was lost"))
            return
        except MigrationError as error:
            self.unreachable.add(role)
            self.state.recovery.append(f"lost the connection to the {role} and could not reopen it "
                                       f"({error.libvirt_error or error.message}): its side was not checked")
            return
        setattr(self, attr, reopened)
        self.state.recovery.append(f"reconnected to the {role} (the connection was lost during the migration)")

    def refresh(self, role: str) -> tuple[Any, DomainInfo | None]:
        """(virDomain, what it is) on ``role``'s side now; (None, None) when absent or not checked."""
        conn = self.source_conn if role == "source" else self.dest_conn

        def read() -> tuple[Any, DomainInfo | None]:
            dom = lookup_by_uuid(conn, self.request.uuid)
            return dom, (describe_domain(dom) if dom is not None else None)

        if role in self.unreachable:
            return None, None
        try:
            return self.ask(role, read)
        except NoAnswer:
            return None, None
        except libvirt.libvirtError as exc:
            if self.recovery_deadline is None:
                raise
            self.not_checked(role, f"libvirt said: {libvirt_error_text(exc)}")
            return None, None

    def refresh_source(self) -> DomainInfo | None:
        if "source" in self.unreachable:
            return None
        self.state.source_dom, info = self.refresh("source")
        return info

    def refresh_dest(self) -> DomainInfo | None:
        if "destination" in self.unreachable:
            return None
        self.state.dest_dom, info = self.refresh("destination")
        return info

    def recovery_time_left(self) -> float:
        return float("inf") if self.recovery_deadline is None else self.recovery_deadline - self.clock()

    def abort_if_running(self) -> None:
        """Abort a job the failed call left behind and wait (bounded) until it is gone."""
        dom = self.state.source_dom

        def running() -> bool:
            return self.job_active(dom, describe_domain(dom))

        try:
            if dom is None or not self.ask("source", running):
                return
            self.ask("source", dom.abortJob)
            self.state.recovery.append("aborted the migration job on the source")
            waited = max(0.0, min(ABORT_WAIT_SECONDS, self.recovery_time_left() - ABORT_WAIT_RESERVE_SECONDS))
            for _attempt in range(int(waited / ABORT_POLL_SECONDS)):
                if not self.ask("source", running):
                    return
                time.sleep(ABORT_POLL_SECONDS)
            self.state.recovery.append(f"the aborted job was still present after {waited:g}s")
        except NoAnswer:
            return
        except libvirt.libvirtError as exc:
            if libvirt_error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                self.state.recovery.append(f"could not abort the job: {libvirt_error_text(exc)}")

    def remove_half_made_destination(self, dest: DomainInfo) -> None:
        observed = self.state.observed
        defined_before = observed is not None and observed.destination is not None
        dom = self.state.dest_dom
        try:
            self.ask("destination", dom.destroy)
            self.state.recovery.append("destroyed the half-made domain on the destination")
            if dest.persistent and not defined_before:
                self.ask("destination", lambda: dom.undefineFlags(undefine_flags()))
                self.state.recovery.append("undefined the definition this run created on the destination")
        except NoAnswer:
            return
        except libvirt.libvirtError as exc:
            self.state.recovery.append(f"could not clean the destination: {libvirt_error_text(exc)}")

    def resume_if_we_paused(self, source: DomainInfo, outcome: MonitorOutcome) -> None:
        if source.state != PAUSED or source.postcopy_state:
            return
        was_running = bool(self.state.observed and self.state.observed.source
                           and self.state.observed.source.state != PAUSED) or self.state.resumed_by_us
        if not (outcome.paused_by_us or was_running):
            return
        try:
            self.ask("source", self.state.source_dom.resume)
            self.state.recovery.append("resumed the domain on the source (this run had paused it)"
                                       if outcome.paused_by_us else "resumed the domain on the source "
                                       "(left paused by the failed migration)")
        except NoAnswer:
            return
        except libvirt.libvirtError as exc:
            self.state.recovery.append(f"could not resume the source: {libvirt_error_text(exc)}")

    def recover_failed(self, outcome: MonitorOutcome) -> None:
        error = outcome.error
        if not (error is not None):
            raise AssertionError("internal state: expected error is not None")
        self.recovery_started = self.clock()
        self.recovery_deadline = self.recovery_started + RECOVERY_SECONDS
        self.reconnect_both()
        self.refresh_source()
        self.abort_if_running()
        source, dest = self.refresh_source(), self.refresh_dest()
        if not self.unreachable and dest is not None and dest.active and dest.state != PAUSED and \
                (source is None or not source.active):
            self.state.warnings.append(f"libvirt reported an error ({libvirt_error_text(error)}) but the domain runs on the destination "
                                       "only: treated as migrated")
            return
        if source is not None and source.postcopy_state:
            self.state.recovery.append("source is in a post-copy state: left untouched (re-run with "
                                       "post_copy: true to resume the post-copy migration)")
        elif dest is not None and dest.active and source is not None and source.active:
            self.remove_half_made_destination(dest)
        if source is not None:
            self.resume_if_we_paused(source, outcome)
        self.raise_failed(error, outcome)

    def raise_failed(self, error: BaseException, outcome: MonitorOutcome) -> None:
        source, dest = self.refresh_source(), self.refresh_dest()
        unchecked = sorted(self.unreachable)
        after = placement_as_checked(placement(Observed(source, dest)), unchecked)
        incoming = dest is not None and dest.state == PAUSED and dest.reason == "migration"
        runs_on = [side for side, info in (("source", source), ("destination", dest))
                   if info and info.active and not (side == "destination" and incoming)]
        message = "migration failed"
        if outcome.aborted:
            message += f" (aborted by the convergence policy: {outcome.abort_reason})"
        if isinstance(error, MigrateCallAbandoned):
            message += f"; {error}"
        message += "; the domain now runs on: %s" % (", ".join(runs_on) or ("NO HOST" if not unchecked else "unknown"))
        if unchecked:
            message += " (the {} could not be checked)".format(" and ".join(unchecked))
        if incoming:
            message += "; the destination holds a copy paused by the migration"
        if self.state.recovery:
            message += "; recovery: {}".format("; ".join(self.state.recovery))
        hint = next_step_after_failure(runs_on, unchecked, self.request.uri, self.request.dest_uri)
        tls_files = migration_tls_diagnosis(libvirt_error_text(error), self.request, self.state.preflight)
        if tls_files:
            message, hint = f"{message}; {tls_files[0]}", f"{tls_files[1]}; {hint}"
        details = {
            "changed": bool(self.state.recovery), "recovery": list(self.state.recovery), "policy_actions": list(self.state.policy_actions),
            "unreachable": unchecked,
            "placement": after, "last_job_stats": job_statistics(outcome.last_stats)}
        if isinstance(error, MigrateCallAbandoned):  # not libvirt's words: no "libvirt said"
            raise MigrationFailed("migrate", message, hint=hint, details=details, **self.context())
        raise MigrationFailed.from_libvirt("migrate", error, message, hint=hint, details=details, **self.context())

    def recover_persist_failed(self, error: BaseException) -> None:
        """The domain moved but was not made persistent: define it there, keep the source's definition."""
        self.state.recovery.append("libvirt could not make the domain persistent on the destination "
                                   "(VIR_ERR_MIGRATE_PERSIST_FAILED); the source's definition was kept")
        self.refresh_dest()
        xml = self.state.plan.params.get(libvirt.VIR_MIGRATE_PARAM_PERSIST_XML)
        defined = False
        if xml:
            try:
                self.dest_conn.defineXML(xml)
                defined = True
                self.state.recovery.append("defined the domain on the destination with the persistent XML")
            except libvirt.libvirtError as exc:
                self.state.recovery.append(f"defining on the destination failed too: {libvirt_error_text(exc)}")
        hint = ("verify the domain on the destination, then re-run: the next run undefines the source's "
                "definition (undefine_source)" if defined else
                "define the domain on the destination by hand; do not undefine the source")
        raise MigrationFailed.from_libvirt(
            "persist on destination", error,
            "the domain runs on the destination but libvirt failed to make it persistent there; "
            + "; ".join(self.state.recovery), hint=hint,
            details={"changed": True, "recovery": list(self.state.recovery),
                     "policy_actions": list(self.state.policy_actions)},
            **self.context())

    # -- after --------------------------------------------------------------

    def verify(self) -> dict[str, Any]:
        source, dest = self.refresh_source(), self.refresh_dest()
        after = placement(Observed(source, dest))
        decision = self.state.decision
        if not (decision is not None):
            raise AssertionError("internal state: expected decision is not None")
        if decision.migrates:
            offline = MIGRATE_OFFLINE in decision.actions
            if dest is None or (not offline and not dest.active):
                raise MigrationFailed("verify", "libvirt reported success but the domain is not %s on the "
                                      "destination" % ("defined" if offline else "running"),
                                      hint="inspect both hosts", details={"placement": after}, **self.context())
            if source is not None and source.active:
                self.state.warnings.append("the domain is still active on the source after the migration")
        if self.request.persistent and dest is not None and not dest.persistent:
            self.state.warnings.append("persistent: true but the domain is transient on the destination")
        if self.request.undefine_source and source is not None and source.persistent and \
                (decision.migrates or UNDEFINE_SOURCE in decision.actions):
            self.state.warnings.append("undefine_source: true but the source still holds a definition")
        return after

    def completed_stats(self) -> dict[str, Any]:
        """libvirt's completed-job statistics, from whichever side still has them."""
        if not (self.state.decision and self.state.decision.migrates):
            return {}
        for dom in (self.state.dest_dom, self.state.source_dom):
            if dom is None:
                continue
            try:
                stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            except libvirt.libvirtError:
                continue
            if stats and stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                return job_statistics(stats)
        return {}

    def result(self) -> dict[str, Any]:
        state, request = self.state, self.request
        observed, decision = state.observed, state.decision
        if not (observed is not None and decision is not None):
            raise AssertionError("internal state: expected observed is not None and decision is not None")
        before = placement(observed)
        after = state.placement_after or predicted_placement(request, observed, decision)
        name = (observed.source or observed.destination).name  # type: ignore[union-attr]
        return {
            "changed": decision.changed,
            "action": decision.action,
            "actions": list(decision.actions),
            "explanation": decision.explanation,
            "domain": name,
            "uuid": request.uuid,
            "source": request.uri,
            "destination": request.dest_uri,
            "host_uuids": {"source": state.host_uuids[0], "destination": state.host_uuids[1]},
            "flags": flag_names(state.plan.flags),
            "flags_value": state.plan.flags,
            "params": redact_params(state.plan.params),
            "copied_disks": list(state.plan.copied_disks),
            "preflight": state.preflight.as_list() if state.preflight else [],
            "timings": dict(state.timings),
            "stats": dict(state.stats),
            "policy_actions": list(state.policy_actions),
            "recovery": list(state.recovery),
            "warnings": list(state.warnings),
            "placement": {"before": before, "after": after},
            "check_mode": self.check_mode,
        }
