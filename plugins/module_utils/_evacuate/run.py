# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Empty a hypervisor: discover, place, migrate with bounded concurrency, report.

validate options -> discover (guests of the source, destinations' free memory,
CPU verdicts, guests already present on a destination) -> place
(``_placement``) -> check mode: the migrate code path in check mode per guest;
run mode: the migrate code path (``Migrator``) per guest in worker threads,
at most ``max_parallel`` at once and ``max_parallel_per_destination`` per
destination, each with its own libvirt connections -> report.

Each guest's migration is the migrate module's own code path, so it is
idempotent by UUID and recovers from failures the same way; a re-run after
an interruption finds the guests still on the source (and those already
present on a destination, which are pinned there) and finishes the work.

Progress: while migrations run, a thread reads each migrating guest's job
statistics on its own source connection every ``progress_interval`` seconds
and writes a JSON snapshot (atomically) to ``progress_path``.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    evacuation_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    CPU_SKIPPED,
    KIB_PER_MIB,
    LIVE,
    OFFLINE,
    Assignment,
    CpuVerdict,
    DestinationInfo,
    GuestInfo,
    PlacementPlan,
    Placer,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.report import (
    render_report,
    render_table,
    render_text,
    write_atomic,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
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
    SHUTOFF,
    DomainInfo,
    describe_domain,
    guest_spec,
    lookup_by_uuid,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    available_memory_kib,
    compare_guest_cpu,
    host_uuid_of,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    MIGRATING_ACTIONS,
    REFUSE,
    describe_pause,
    paused_source_handling,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
    option_problems,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)

ON_FAILURE_CHOICES = ("continue", "stop")
STOPPED_GUESTS_CHOICES = ("migrate", "leave")
REPORT_FORMAT_CHOICES = ("json", "text")
DEST_KEYS = ("name", "uri", "migrate_uri", "tls_destination")

# Per-VM results.
MIGRATED = "migrated"
FINISHED = "finished"
UNCHANGED = "unchanged"
FAILED = "failed"
UNPLACEABLE = "unplaceable"
NOT_STARTED = "not_started"
LEFT = "left"
PLANNED = "planned"
WOULD_FAIL = "would_fail"
# Progress-only states.
QUEUED = "queued"
MIGRATING = "migrating"
PROBLEM_RESULTS = (FAILED, UNPLACEABLE, NOT_STARTED, WOULD_FAIL)
DONE_STATES = (MIGRATED, FINISHED, UNCHANGED, FAILED, UNPLACEABLE, NOT_STARTED, LEFT, PLANNED, WOULD_FAIL)

# Options of the shared migration tuning that evacuate overrides per guest.
PER_GUEST_KEYS = ("uri", "dest_uri", "name", "uuid", "live", "migrate_uri", "tls_destination")
LIVE_ONLY_OFF = {"post_copy": False, "postcopy_bandwidth": None, "auto_converge": False,
                 "auto_converge_initial": None, "auto_converge_increment": None}


# ---------------------------------------------------------------------------
# Options


@dataclass
class DestinationSpec:
    name: str
    uri: str
    migrate_uri: str | None = None
    tls_destination: str | None = None


@dataclass
class EvacuationOptions:
    """The evacuate module's options, typed; ``migration`` holds the shared tuning options."""

    destinations: list[DestinationSpec]
    uri: str = DEFAULT_URI
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    stopped_guests: str = "migrate"
    maintenance_hosts: list[str] = field(default_factory=list)
    memory_reserve_mib: int = 512
    max_parallel: int = 2
    max_parallel_per_destination: int = 1
    on_failure: str = "continue"
    progress_path: str | None = None
    progress_interval: float = 1.0
    lock_timeout: float = 3600.0
    report_path: str | None = None
    report_format: str = "json"
    migration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EvacuationOptions:
        own = {"uri", "include", "exclude", "stopped_guests", "maintenance_hosts", "memory_reserve_mib",
               "max_parallel", "max_parallel_per_destination", "on_failure", "progress_path",
               "progress_interval", "lock_timeout", "report_path", "report_format"}
        values = {key: params[key] for key in own if params.get(key) is not None}
        for key in ("include", "exclude", "maintenance_hosts"):
            if key in values:
                values[key] = list(values[key])
        migration = {key: value for key, value in params.items()
                     if key not in own and key != "destinations" and not key.startswith("_")}
        return cls(destinations=parse_destinations(params.get("destinations") or []), migration=migration, **values)

    def template_request(self, dest: DestinationSpec, mode: str) -> MigrationRequest:
        """The migrate request for a guest going to ``dest`` (name and uuid filled in later)."""
        values = dict(self.migration)
        if mode == OFFLINE:
            values.update(LIVE_ONLY_OFF)
            convergence = dict(values.get("convergence") or {})
            convergence["on_timeout"] = "abort"
            values["convergence"] = convergence
        values.update(uri=self.uri, dest_uri=dest.uri, live=mode == LIVE, migrate_uri=dest.migrate_uri,
                      tls_destination=dest.tls_destination)
        return MigrationRequest.from_params(values)


def parse_destinations(items: list[Any]) -> list[DestinationSpec]:
    """``destinations`` entries: a URI, or a dict with uri (and name, migrate_uri, tls_destination)."""
    specs: list[DestinationSpec] = []
    for index, item in enumerate(items):
        where = f"destinations[{index}]"
        if isinstance(item, str):
            item = {"uri": item}
        if not isinstance(item, Mapping):
            raise ValidationError("validate destinations", f"{where} must be a URI or a dict with uri and name")
        unknown = sorted(set(item) - set(DEST_KEYS))
        if unknown:
            raise ValidationError("validate destinations", "{} has unknown keys {} (known: {})".format(where, ", ".join(unknown), ", ".join(DEST_KEYS)))
        uri = item.get("uri")
        if not uri or not isinstance(uri, str):
            raise ValidationError("validate destinations", f"{where} has no uri")
        name = item.get("name") or parse_uri(uri, f"{where}.uri").host or uri
        specs.append(DestinationSpec(str(name), uri, item.get("migrate_uri"), item.get("tls_destination")))
    for attribute in ("name", "uri"):
        seen: set[str] = set()
        for spec in specs:
            value = getattr(spec, attribute).lower()
            if value in seen:
                raise ValidationError("validate destinations", f"destination {attribute} {getattr(spec, attribute)!r} is listed twice")
            seen.add(value)
    return specs


def short_name(name: str) -> str:
    return name.split(".", 1)[0].lower()


def in_maintenance(dest: DestinationSpec, maintenance_hosts: list[str]) -> bool:
    """A destination is in maintenance when its name or URI host matches an entry (short names match FQDNs)."""
    host = parse_uri(dest.uri).host or ""
    mine = {dest.name.lower(), host.lower(), short_name(dest.name), short_name(host)} - {""}
    return any(entry.lower() in mine or short_name(entry) in mine for entry in maintenance_hosts)


def is_source_host(source_uri: str, dest_uri: str, resolves_locally: Callable[[str], bool]) -> bool:
    source, dest = parse_uri(source_uri, "uri"), parse_uri(dest_uri, "destinations.uri")
    if not dest.host:
        return False
    if source.is_remote:
        return (source.host or "").lower() == dest.host.lower()
    return resolves_locally(dest.host)


def validate_options(options: EvacuationOptions, resolves_locally: Callable[[str], bool]) -> set[str]:
    """Refuse bad options before anything is touched, every one at once; returns the destinations that are the source."""
    parse_uri(options.uri, "uri")
    problems = list(own_option_problems(options))
    sources: set[str] = set()
    modes = (LIVE, OFFLINE) if options.stopped_guests == "migrate" else (LIVE,)
    for dest in options.destinations:
        if is_source_host(options.uri, dest.uri, resolves_locally):
            sources.add(dest.name)
            continue
        for mode in modes:
            problems.extend(option_problems(options.template_request(dest, mode), resolves_locally))
    if problems:
        raise ValidationError.of_all(problems, source_uri=options.uri)
    return sources


def own_option_problems(options: EvacuationOptions) -> Iterator[ValidationError]:
    """The problems with evacuate's own options (the migration options are checked per destination)."""
    def refuse(message: str, hint: str | None = None) -> ValidationError:
        return ValidationError("validate options", message, hint=hint, source_uri=options.uri)

    if not options.destinations:
        yield refuse("destinations is empty", "list the other hypervisors, e.g. qemu+tls://hv2.example.com/system")
    if options.max_parallel < 1 or options.max_parallel_per_destination < 1:
        yield refuse("max_parallel and max_parallel_per_destination must be at least 1")
    if options.memory_reserve_mib < 0:
        yield refuse("memory_reserve_mib must not be negative")
    if options.progress_interval <= 0:
        yield refuse("progress_interval must be positive")
    if options.lock_timeout < 0:
        yield refuse("lock_timeout must not be negative")
    if options.migration.get("live") is False:
        yield refuse("live: false is not an evacuation mode: running guests always migrate live and stopped "
                     "persistent guests offline", "leave live at true; choose what happens to stopped guests "
                     "with stopped_guests")
    for option, allowed, value in (("on_failure", ON_FAILURE_CHOICES, options.on_failure),
                                   ("stopped_guests", STOPPED_GUESTS_CHOICES, options.stopped_guests),
                                   ("report_format", REPORT_FORMAT_CHOICES, options.report_format)):
        if value not in allowed:
            yield refuse("{}: unknown value {!r} (choose from {})".format(option, value, ", ".join(allowed)))
    if not options.include:
        yield refuse("include is empty: nothing would be evacuated", "use include: ['*'] for every guest")


def selected(name: str, include: list[str], exclude: list[str]) -> bool:
    """fnmatch (case-sensitive, like libvirt names) on include, then exclude."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in include) and \
        not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


# ---------------------------------------------------------------------------
# Discovery


@dataclass
class Discovery:
    source_name: str = ""
    source_host_uuid: str | None = None
    guests: list[GuestInfo] = field(default_factory=list)
    specs: dict[str, Any] = field(default_factory=dict)  # uuid -> GuestSpec
    left: list[dict[str, Any]] = field(default_factory=list)
    filtered: list[str] = field(default_factory=list)
    destinations: list[DestinationInfo] = field(default_factory=list)
    cpu_verdicts: dict[tuple[str, str], CpuVerdict] = field(default_factory=dict)
    conflicts: dict[str, str] = field(default_factory=dict)  # uuid -> why it cannot be moved


def cpu_signature(spec: Any) -> str:
    return json.dumps([spec.emulator, spec.arch, spec.machine, spec.virt_type, spec.cpu_mode, spec.cpu_xml])


class Discoverer:
    """Read the source's guests and the destinations' state; changes nothing."""

    def __init__(self, options: EvacuationOptions, sources: set[str], connect: Callable[..., Any]) -> None:
        self.options = options
        self.sources = sources
        self.connect = connect
        self.found = Discovery()

    def run(self) -> Discovery:
        conn = self.connect(self.options.uri, "source", source_uri=self.options.uri)
        try:
            self.found.source_name = str(conn.getHostname())
            self.found.source_host_uuid = host_uuid_of(conn)
            self.read_guests(conn)
        finally:
            close_quietly(conn)
        for dest in self.options.destinations:
            self.read_destination(dest)
        return self.found

    def read_guests(self, conn: Any) -> None:
        try:
            domains = conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise MigrationError.from_libvirt("list domains", exc, "cannot list the source's domains",
                                              source_uri=self.options.uri)
        for dom in sorted(domains, key=lambda d: d.name()):
            try:
                info = describe_domain(dom)
            except libvirt.libvirtError as exc:
                if libvirt_error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined since the listing: nothing to move
                raise MigrationError.from_libvirt("read domain", exc, "cannot read a domain of the source",
                                                  domain=dom.name(), source_uri=self.options.uri)
            if not selected(info.name, self.options.include, self.options.exclude):
                self.found.filtered.append(info.name)
                continue
            left_because = self.reason_to_leave(info)
            if left_because:
                self.found.left.append({"name": info.name, "uuid": info.uuid, "memory_mib": info.max_memory_kib // KIB_PER_MIB,
                                        "reason": left_because})
                continue
            spec = guest_spec(migratable_xml(dom, inactive=info.state == SHUTOFF))
            self.found.specs[info.uuid] = spec
            self.found.guests.append(GuestInfo(
                name=info.name, uuid=info.uuid, state=info.state, persistent=info.persistent,
                memory_kib=info.max_memory_kib, mode=OFFLINE if info.state == SHUTOFF else LIVE,
                cpu_signature=cpu_signature(spec), pause_reason=info.reason if info.state == PAUSED else None))

    def reason_to_leave(self, info: DomainInfo) -> str | None:
        """Why a selected guest stays on the source untouched, or None when it is to move."""
        if info.state == SHUTOFF and self.options.stopped_guests == "leave":
            return "stopped; left on the source (stopped_guests: leave)"
        on_paused_source = self.options.migration.get("on_paused_source") or "resume"
        if info.state == PAUSED and not info.postcopy_state and \
                paused_source_handling(info.reason, on_paused_source) == REFUSE:
            return f"{describe_pause(info.reason)}; left on the source (on_paused_source: refuse)"
        return None

    def read_destination(self, dest: DestinationSpec) -> None:
        reserve = self.options.memory_reserve_mib * KIB_PER_MIB
        info = DestinationInfo(dest.name, dest.uri, reserve_kib=reserve)
        self.found.destinations.append(info)
        if dest.name in self.sources:
            info.excluded = "the source host itself"
            return
        maintenance = in_maintenance(dest, self.options.maintenance_hosts)
        if maintenance:
            info.excluded = "maintenance (maintenance_hosts)"
        try:
            conn = self.connect(dest.uri, "destination", source_uri=self.options.uri, dest_uri=dest.uri)
        except MigrationError as error:
            text = error.libvirt_error or error.message
            info.excluded = info.excluded or f"unreachable ({text})"
            return
        try:
            if self.found.source_host_uuid and host_uuid_of(conn) == self.found.source_host_uuid:
                info.excluded = (f"same host UUID as the source ({self.found.source_host_uuid}): the source itself "
                                 "or a clone with a duplicate host_uuid")
                return
            self.find_pinned(conn, dest.name)
            if not maintenance:
                info.available_kib = available_memory_kib(conn)
                self.compare_cpus(conn, dest.name)
        finally:
            close_quietly(conn)

    def find_pinned(self, conn: Any, dest_name: str) -> None:
        """Guests already present on this destination (an interrupted earlier run) stay bound to it."""
        for guest in self.found.guests:
            dom = lookup_by_uuid(conn, guest.uuid)
            if dom is None:
                continue
            there = describe_domain(dom)
            if guest.pinned_to is not None:
                self.found.conflicts[guest.uuid] = (f"present on both {guest.pinned_to} and {dest_name}: "
                                                    "inspect the hosts and remove the stale copy")
                continue
            guest.pinned_to, guest.pinned_active = dest_name, there.active

    def compare_cpus(self, conn: Any, dest_name: str) -> None:
        skip = "cpu" in (self.options.migration.get("preflight_skip") or [])
        by_signature: dict[str, CpuVerdict] = {}
        for guest in self.found.guests:
            if skip:
                self.found.cpu_verdicts[(guest.uuid, dest_name)] = CpuVerdict(CPU_SKIPPED, "skipped by preflight_skip")
                continue
            key = guest.cpu_signature or guest.uuid
            if key not in by_signature:
                result = compare_guest_cpu(conn, self.found.specs[guest.uuid])
                by_signature[key] = CpuVerdict(result.status, result.message)
            self.found.cpu_verdicts[(guest.uuid, dest_name)] = by_signature[key]


# ---------------------------------------------------------------------------
# Progress


class Progress:
    """Each guest's state and percentage, shared between the workers and the progress writer."""

    def __init__(self, source_name: str, source_uri: str, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.source_name = source_name
        self.source_uri = source_uri
        self.vms: dict[str, dict[str, Any]] = {}
        self.finished = False
        self.check_mode = False

    def add(self, name: str, uuid: str, destination: str | None, state: str) -> None:
        with self.lock:
            self.vms[uuid] = {"name": name, "uuid": uuid, "destination": destination, "state": state,
                              "percent": None, "data_processed": None, "data_total": None, "data_remaining": None,
                              "elapsed": None, "started_at": None}

    def update(self, uuid: str, **values: Any) -> None:
        with self.lock:
            entry = self.vms.get(uuid)
            if entry is None:
                return
            if values.get("state") == MIGRATING and entry["started_at"] is None:
                entry["started_at"] = self.clock()
            entry.update(values)

    def migrating(self) -> list[str]:
        with self.lock:
            return [uuid for uuid, entry in self.vms.items() if entry["state"] == MIGRATING]

    def record_job(self, uuid: str, stats: Mapping[str, Any]) -> None:
        total = int(stats.get("data_total") or 0)
        remaining = stats.get("data_remaining")
        values: dict[str, Any] = {"data_total": total or None, "data_processed": stats.get("data_processed"),
                                  "data_remaining": remaining}
        if total and remaining is not None:
            values["percent"] = max(0, min(99, int(100 * (total - int(remaining)) / total)))
        self.update(uuid, **values)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            vms = []
            for entry in self.vms.values():
                shown = dict(entry)
                started = shown.pop("started_at")
                if shown["state"] == MIGRATING and started is not None:
                    shown["elapsed"] = round(now - started, 1)
                vms.append(shown)
            finished = self.finished
        counts: dict[str, int] = {}
        for entry in vms:
            counts[entry["state"]] = counts.get(entry["state"], 0) + 1
        elapsed = round(now - self.started, 1)
        return {"version": 1, "source_name": self.source_name, "source_uri": self.source_uri,
                "check_mode": self.check_mode, "finished": finished, "elapsed": elapsed, "updated": time.time(),
                "counts": counts, "vms": vms, "line": progress_line(vms, counts, elapsed, finished)}


def progress_line(vms: list[dict[str, Any]], counts: Mapping[str, int], elapsed: float, finished: bool) -> str:
    """One line an operator can read in ansible-playbook's output (the loop label)."""
    total = len(vms)
    done = sum(counts.get(state, 0) for state in (MIGRATED, FINISHED, UNCHANGED))
    failed = sum(counts.get(state, 0) for state in PROBLEM_RESULTS)
    minutes, seconds = divmod(int(elapsed), 60)
    parts = [f"[{minutes:02d}:{seconds:02d}] {done}/{total} done, {failed} failed"]
    for entry in vms:
        if entry["state"] != MIGRATING:
            continue
        percent = "{}%".format(entry["percent"]) if entry["percent"] is not None else "starting"
        amount = ""
        if entry["data_total"]:
            moved = entry["data_total"] - (entry["data_remaining"] or 0)
            amount = " ({}/{} MiB)".format(moved // 1048576, entry["data_total"] // 1048576)
        parts.append("{} -> {} {}{}".format(entry["name"], entry["destination"], percent, amount))
    if counts.get(QUEUED):
        parts.append(f"{counts[QUEUED]} queued")
    if finished:
        parts.append("finished")
    return " | ".join(parts)


class ProgressWriter:
    """Poll the migrating guests' job stats and write the snapshot every ``interval`` seconds."""

    def __init__(self, progress: Progress, path: str | None, interval: float, source_uri: str,
                 connect: Callable[..., Any], on_snapshot: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.progress = progress
        self.path = path
        self.interval = interval
        self.source_uri = source_uri
        self.connect = connect
        self.on_snapshot = on_snapshot
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.conn: Any = None
        self.errors: list[str] = []

    def start(self) -> None:
        self.write()
        self.thread = threading.Thread(target=self.loop, name="virtops-evacuate-progress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()
        close_quietly(self.conn)
        self.conn = None
        self.write()

    def loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.poll_jobs()
            self.write()

    def poll_jobs(self) -> None:
        uuids = self.progress.migrating()
        if not uuids:
            return
        try:
            if self.conn is None:
                self.conn = self.connect(self.source_uri, "source", source_uri=self.source_uri)
            for uuid in uuids:
                dom = lookup_by_uuid(self.conn, uuid)
                if dom is None:
                    continue
                try:
                    stats = dom.jobStats(0)
                except libvirt.libvirtError:
                    continue  # the job is ending; the worker reports the outcome
                if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                    self.progress.record_job(uuid, stats)
        except (MigrationError, libvirt.libvirtError) as exc:
            text = str(exc) if isinstance(exc, MigrationError) else libvirt_error_text(exc)
            if text not in self.errors:
                self.errors.append(text)
            close_quietly(self.conn)
            self.conn = None

    def write(self) -> None:
        snapshot = self.progress.snapshot()
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        if self.path:
            try:
                write_atomic(self.path, json.dumps(snapshot, sort_keys=True) + "\n")
            except OSError as exc:
                message = f"cannot write the progress file {self.path}: {exc}"
                if message not in self.errors:
                    self.errors.append(message)


# ---------------------------------------------------------------------------
# The run


def result_of_migration(result: Mapping[str, Any], check_mode: bool) -> str:
    actions = result.get("actions") or []
    if not result.get("changed"):
        return UNCHANGED
    if check_mode:
        return PLANNED
    return MIGRATED if any(action in MIGRATING_ACTIONS for action in actions) else FINISHED


@dataclass
class _MigrationCall:
    request: MigrationRequest
    check_mode: bool
    environment: MigrationEnvironment

    def run(self) -> dict[str, Any]:
        return run_migration(self.request, self.check_mode, self.environment)


class Evacuation:
    """Run an evacuation; ``run()`` returns the module result (``failed`` set when the host is not emptied)."""

    def __init__(
        self,
        options: EvacuationOptions,
        check_mode: bool = False,
        make_migrator: Callable[[MigrationRequest, bool], Any] | None = None,
        connect: Callable[..., Any] = open_connection,
        resolves_locally: Callable[[str], bool] = local_addresses_of,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[dict[str, Any]], Any] | None = None,
        lock_path: str | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.options = options
        self.lock_path = lock_path
        self.sleep = sleep
        self.check_mode = check_mode
        self.connect = connect
        self.resolves_locally = resolves_locally
        self.make_migrator = make_migrator or (lambda request, check: _MigrationCall(
            request, check, MigrationEnvironment(connect=connect, resolves_locally=resolves_locally)))
        self.clock = clock
        self.on_progress = on_progress
        self.discovery = Discovery()
        self.plan = PlacementPlan([], [])
        self.rows: dict[str, dict[str, Any]] = {}
        self.progress = Progress("", options.uri)
        self.warnings: list[str] = []
        self.lock = threading.Lock()
        self.crash: BaseException | None = None
        self.crash_trace = ""

    # -- top level ----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = self.clock()
        sources = validate_options(self.options, self.resolves_locally)
        with evacuation_lock(self.options.uri, self.options.lock_timeout, self.check_mode, self.waiting,
                             self.lock_path, self.sleep) as lock:
            if lock.warning:
                self.warnings.append(lock.warning)
            return self.run_locked(started, sources)

    def waiting(self, line: str) -> None:
        """Progress while another evacuation of this source holds the lock."""
        snapshot = {"version": 1, "source_name": None, "source_uri": self.options.uri, "check_mode": False,
                    "finished": False, "elapsed": None, "updated": time.time(), "counts": {}, "vms": [],
                    "line": line}
        if self.on_progress is not None:
            self.on_progress(snapshot)
        if self.options.progress_path and not self.check_mode:
            try:
                write_atomic(self.options.progress_path, json.dumps(snapshot, sort_keys=True) + "\n")
            except OSError as exc:
                self.warnings.append(f"progress: cannot write {self.options.progress_path}: {exc}")

    def run_locked(self, started: float, sources: set[str]) -> dict[str, Any]:
        self.discovery = Discoverer(self.options, sources, self.connect).run()
        self.placer = Placer(self.discovery.destinations, self.discovery.cpu_verdicts)
        self.plan = self.placer.plan(self.discovery.guests)
        self.apply_conflicts()
        self.progress = Progress(self.discovery.source_name, self.options.uri)
        self.progress.check_mode = self.check_mode
        for item in self.plan.assignments:
            self.progress.add(item.guest.name, item.guest.uuid, item.destination,
                              QUEUED if item.placed else UNPLACEABLE)
            self.rows[item.guest.uuid] = self.row(item, QUEUED if item.placed else UNPLACEABLE,
                                                  None if item.placed else item.reason)
        refuse = bool(self.plan.unplaceable) and (self.check_mode or self.options.on_failure == "stop")
        progress_path = None if self.check_mode else self.options.progress_path
        writer = ProgressWriter(self.progress, progress_path, self.options.progress_interval,
                                self.options.uri, self.connect, self.on_progress)
        writer.start()
        try:
            if self.check_mode:
                self.check_all()
            elif refuse:
                for item in self.plan.assignments:
                    if item.placed:
                        self.finish(item, NOT_STARTED, f"on_failure: stop and {len(self.plan.unplaceable)} guest(s) fit nowhere: nothing was "
                                    "moved")
            else:
                self.migrate_all([item for item in self.plan.assignments if item.placed])
        finally:
            self.progress.finished = True
            writer.stop()
        self.warnings.extend(f"progress: {text}" for text in writer.errors)
        if self.crash is not None:
            raise RuntimeError(f"an evacuation worker crashed:\n{self.crash_trace}") from self.crash
        return self.result(round(self.clock() - started, 3))

    def result(self, seconds: float) -> dict[str, Any]:
        return evacuation_result(self, seconds)

    def apply_conflicts(self) -> None:
        for item in self.plan.assignments:
            why = self.discovery.conflicts.get(item.guest.uuid)
            if why:
                item.destination, item.dest_uri, item.reason = None, None, why

    # -- rows ---------------------------------------------------------------

    def row(self, item: Assignment, result: str, message: str | None) -> dict[str, Any]:
        return report_row(item.guest.name, item.guest.uuid, self.discovery.source_name, item.destination,
                          item.guest.mode, item.guest.memory_kib // KIB_PER_MIB, result, message, item.reason,
                          item.guest.pause_reason)

    def finish(self, item: Assignment, result: str, message: str | None = None,
               migration: Mapping[str, Any] | None = None) -> None:
        migration = dict(migration or {})
        stats = migration.get("stats") or {}
        row = self.rows[item.guest.uuid]
        row.update(result=result, message=message, changed=bool(migration.get("changed")),
                   action=migration.get("action"), details=migration)
        timings = migration.get("timings") or {}
        if "total" in timings:
            row["seconds"] = timings["total"]
        if stats:
            row["downtime_ms"] = stats.get("downtime")
            row["data_sent_bytes"] = stats.get("data_processed")
        for warning in migration.get("warnings") or []:
            self.warnings.append(f"{item.guest.name}: {warning}")
        self.progress.update(item.guest.uuid, state=result,
                             percent=100 if result in (MIGRATED, FINISHED) else None)

    def request_for(self, item: Assignment) -> MigrationRequest:
        dest = next(spec for spec in self.options.destinations if spec.name == item.destination)
        request = self.options.template_request(dest, item.guest.mode)
        request.name, request.uuid = item.guest.name, item.guest.uuid
        return request

    def migrate_one(self, item: Assignment, check_mode: bool) -> None:
        """The migrate module's code path for one guest; the outcome goes to its row."""
        try:
            result = self.make_migrator(self.request_for(item), check_mode).run()
        except MigrationError as error:
            details = error.to_result()
            details["changed"] = bool(details.get("changed"))
            self.finish(item, WOULD_FAIL if check_mode else FAILED, str(error), details)
            return
        self.finish(item, result_of_migration(result, check_mode), result.get("explanation"), result)

    def lost_destination(self, item: Assignment) -> tuple[str, bool] | None:
        """Why ``item``'s destination is gone, and whether the guest is untouched (None: not lost).

        Untouched: the run could not connect to it. Not untouched: the connection was lost during the
        migration and could not be reopened; the guest stays where the recovery left it (its row says).
        """
        details = self.rows[item.guest.uuid]["details"]
        error = details.get("error") or {}
        if error.get("kind") == "connection" and error.get("operation") == "connect to destination":
            return str(error.get("message") or "cannot connect"), True
        if "destination" in (details.get("unreachable") or []):
            return "the connection was lost during a migration and could not be reopened", False
        return None

    def re_place(self, item: Assignment, why: str) -> bool:
        """Place ``item`` again after its destination was lost; True when it has a new destination."""
        lost = item.destination
        self.placer.replace(item)
        row = self.rows[item.guest.uuid]
        row["re_placed_from"].append(lost)
        row.update(to=item.destination, reason=item.reason)
        self.progress.update(item.guest.uuid, destination=item.destination)
        if not item.placed:
            self.finish(item, UNPLACEABLE, f"{lost} was lost ({why}) and the guest fits nowhere else: "
                        f"{item.reason}")
            return False
        row.update(result=QUEUED, message=f"{lost} was lost ({why}): re-placed on {item.destination}")
        self.progress.update(item.guest.uuid, state=QUEUED)
        return True

    # -- check mode ---------------------------------------------------------

    def check_all(self) -> None:
        for item in self.plan.assignments:
            if item.placed:
                self.migrate_one(item, check_mode=True)

    # -- run mode: bounded concurrency --------------------------------------

    def migrate_all(self, queue: list[Assignment]) -> None:
        Scheduler(self, queue).run()


class Scheduler:
    """Start workers in plan order within both limits; stop starting after a failure when asked."""

    def __init__(self, evacuation: Evacuation, queue: list[Assignment]) -> None:
        self.evacuation = evacuation
        self.options = evacuation.options
        self.queue = list(queue)
        self.active = 0
        self.per_destination: dict[str, int] = {}
        self.stopped_by: str | None = None
        self.condition = threading.Condition()
        self.threads: list[threading.Thread] = []

    def next_startable(self) -> Assignment | None:
        if self.active >= self.options.max_parallel:
            return None
        for item in self.queue:
            if self.per_destination.get(item.destination or "", 0) < self.options.max_parallel_per_destination:
                return item
        return None

    def run(self) -> None:
        with self.condition:
            while True:
                if self.stopped_by is None and self.evacuation.crash is None:
                    item = self.next_startable()
                    if item is not None:
                        self.start(item)
                        continue
                if self.active == 0 and (not self.queue or self.stopped_by or self.evacuation.crash):
                    break
                self.condition.wait()
        for thread in self.threads:
            thread.join()
        for item in self.queue:
            self.evacuation.finish(item, NOT_STARTED, f"not started: on_failure is stop and {self.stopped_by} failed"
                                   if self.stopped_by else "not started: an evacuation worker crashed")

    def start(self, item: Assignment) -> None:
        self.queue.remove(item)
        self.active += 1
        destination = item.destination or ""
        self.per_destination[destination] = self.per_destination.get(destination, 0) + 1
        self.evacuation.progress.update(item.guest.uuid, state=MIGRATING)
        thread = threading.Thread(target=self.work, args=(item,), name=f"virtops-evacuate-{item.guest.name}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def work(self, item: Assignment) -> None:
        try:
            self.evacuation.migrate_one(item, check_mode=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised by Evacuation.run() with its traceback
            self.evacuation.crash, self.evacuation.crash_trace = exc, traceback.format_exc()
        finally:
            with self.condition:
                self.active -= 1
                self.per_destination[item.destination or ""] -= 1
                try:
                    self.after_failure(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised by Evacuation.run(); the loop must wake
                    if self.evacuation.crash is None:
                        self.evacuation.crash, self.evacuation.crash_trace = exc, traceback.format_exc()
                self.condition.notify_all()

    def after_failure(self, item: Assignment) -> None:
        """on_failure: stop starts nothing more; continue re-places the guests of a destination found lost."""
        if self.evacuation.rows[item.guest.uuid]["result"] != FAILED:
            return
        if self.options.on_failure == "stop":
            if self.stopped_by is None:
                self.stopped_by = item.guest.name
            return
        loss = self.evacuation.lost_destination(item)
        if loss is not None:
            why, untouched = loss
            self.re_place_around(item, why, untouched)

    def re_place_around(self, failed: Assignment, why: str, untouched: bool) -> None:
        """Those queued for the failed guest's destination go elsewhere (or fit nowhere); so does the
        failed guest itself when its run touched nothing."""
        lost = failed.destination or ""
        self.evacuation.placer.lose(lost, why)
        stranded = [item for item in self.queue if item.destination == lost]
        for item in stranded:
            self.queue.remove(item)
        for item in [failed, *stranded] if untouched else stranded:
            if self.evacuation.re_place(item, why):
                self.queue.append(item)


# ---------------------------------------------------------------------------
# The result


def report_row(name: str, uuid: str, source: str, destination: str | None, mode: str, memory_mib: int,
               result: str, message: str | None, reason: str | None, pause_reason: str | None = None) -> dict[str, Any]:
    """One guest's row of the result and the report, before any migration filled it in."""
    return {"name": name, "uuid": uuid, "from": source, "to": destination, "mode": mode, "memory_mib": memory_mib,
            "result": result, "changed": False, "action": None, "seconds": None, "downtime_ms": None,
            "data_sent_bytes": None, "message": message, "reason": reason, "re_placed_from": [],
            "pause_reason": pause_reason, "details": {}}


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    by_result: dict[str, int] = {}
    for row in rows:
        by_result[row["result"]] = by_result.get(row["result"], 0) + 1
    return {"total": len(rows), "by_result": by_result, "seconds": seconds,
            "changed": sum(1 for row in rows if row["changed"]),
            "problems": sum(by_result.get(result, 0) for result in PROBLEM_RESULTS)}


def build_result(evacuation: Evacuation, seconds: float) -> dict[str, Any]:
    plan, found, options = evacuation.plan, evacuation.discovery, evacuation.options
    rows = [evacuation.rows[item.guest.uuid] for item in plan.assignments]
    left_rows = [report_row(entry["name"], entry["uuid"], found.source_name, None, OFFLINE, entry["memory_mib"],
                            LEFT, entry["reason"], entry["reason"]) for entry in found.left]
    all_rows = rows + left_rows
    summary = summarize(all_rows, seconds)
    changed = summary["changed"] > 0
    report_rows = [{key: value for key, value in row.items() if key != "details"} for row in all_rows]
    report = {"source_name": found.source_name, "source_uri": options.uri, "check_mode": evacuation.check_mode,
              "summary": summary, "vms": report_rows}
    before = {row["name"]: found.source_name for row in all_rows}
    after = {row["name"]: (row["to"] if row["result"] in (MIGRATED, FINISHED, UNCHANGED, PLANNED) else found.source_name)
             for row in all_rows}
    return {
        "changed": changed,
        "check_mode": evacuation.check_mode,
        "source": {"uri": options.uri, "name": found.source_name},
        "destinations": [load.as_dict() for load in plan.loads],
        "plan": plan.as_list(),
        "vms": all_rows,
        "filtered_out": list(found.filtered),
        "summary": summary,
        "report": report,
        "report_lines": render_table(report_rows),
        "report_text": render_text(report),
        "report_path": options.report_path,
        "progress_path": options.progress_path,
        "warnings": list(evacuation.warnings),
        "placement": {"before": before, "after": after},
    }


def failure_message(result: Mapping[str, Any]) -> str | None:
    """Why the evacuation did not (or, in check mode, would not) empty the host; None when it did."""
    problems = [row for row in result["vms"] if row["result"] in PROBLEM_RESULTS]
    if not problems:
        return None
    verb = "would not be moved" if result["check_mode"] else "were not moved"
    names = "; ".join("{} ({}: {})".format(row["name"], row["result"], row["message"] or row["reason"]) for row in problems)
    unplaceable = [row for row in problems if row["result"] == UNPLACEABLE]
    prefix = "the guests cannot all be placed: " if unplaceable else ""
    return f"{prefix}{len(problems)} guest(s) {verb}: {names}"


def write_report(result: dict[str, Any], path: str, report_format: str) -> None:
    write_atomic(path, render_report(result["report"], report_format))


def evacuation_result(evacuation: Evacuation, seconds: float) -> dict[str, Any]:
    result = build_result(evacuation, seconds)
    message = failure_message(result)
    result["failed"] = message is not None
    if evacuation.check_mode and result["failed"]:
        result["changed"] = False  # a plan that would fail changes nothing: the run it predicts is refused
    result["msg"] = message or ("nothing to evacuate: the host is empty" if not result["vms"] else
                                "{} guest(s) {}".format(len(result["vms"]), "planned" if evacuation.check_mode else "handled"))
    if evacuation.options.report_path and not evacuation.check_mode:
        try:
            write_report(result, evacuation.options.report_path, evacuation.options.report_format)
        except OSError as exc:
            result["report_path"] = None
            result["warnings"].append(f"cannot write the report {evacuation.options.report_path}: {exc}")
    return result
