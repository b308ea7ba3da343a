# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Progress of running migrations: each guest's state, percentage, rate and expected end, as a JSON snapshot.

The evacuation and the migrate module share it. While migrations run, ``ProgressWriter``'s thread
reads each migrating guest's job statistics on its own source connection every ``interval``
seconds and publishes a snapshot: to a callback, and (atomically) to a progress file that a
playbook polls (``playbooks/evacuate.yml``, ``playbooks/migrate.yml``). A run waiting for another
run's lock publishes a snapshot of the same shape that only says so.

The expected end (``expected_seconds_left``): pre-copy sends what remains at the job's rate while
the guest dirties memory at its dirty rate, so what remains shrinks at (rate - dirty rate) and
is gone after remaining / (rate - dirty rate) seconds; with a dirty rate at or above the rate it
does not shrink and there is no expected end (the convergence policy acts on that).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.files import (
    write_atomic,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    lookup_by_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)

SNAPSHOT_VERSION = 1
# Progress-only states (each run names its own results: the evacuation's are in _evacuate/outcomes.py).
QUEUED = "queued"
MIGRATING = "migrating"
MIB = 1048576

OnSnapshot = Callable[[dict[str, Any]], Any]


def progress_snapshot(source_name: str | None, source_uri: str, check_mode: bool, finished: bool,
                      elapsed: float | None, counts: Mapping[str, int], vms: list[dict[str, Any]],
                      line: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The progress file's content (and what the progress callback receives); ``extra`` adds run keys (run_id)."""
    return {"version": SNAPSHOT_VERSION, "source_name": source_name, "source_uri": source_uri,
            "check_mode": check_mode, "finished": finished, "elapsed": elapsed, "updated": time.time(),
            "counts": dict(counts), "vms": vms, "line": line, **(extra or {})}


def waiting_snapshot(source_uri: str, line: str) -> dict[str, Any]:
    """The snapshot of a run waiting for another run to end."""
    return progress_snapshot(None, source_uri, False, False, None, {}, [], line)


def write_snapshot(path: str, snapshot: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(snapshot, sort_keys=True) + "\n")


# -- the expected end: pure functions over job statistics -------------------------


def expected_seconds_left(remaining: int | None, rate: float | None, dirty_rate: float | None) -> float | None:
    """Seconds until what remains is sent (see the module docstring); None when unknown or not converging."""
    if remaining is None or not rate:
        return None
    shrinking = float(rate) - float(dirty_rate or 0)
    if shrinking <= 0:
        return None
    return round(int(remaining) / shrinking, 1)


def transfer_figures(stats: Mapping[str, Any], now: float) -> dict[str, Any]:
    """What a progress entry shows of a job's statistics: amounts, percentage, rates, the expected end."""
    total = int(stats.get("data_total") or 0)
    remaining = stats.get("data_remaining")
    rate = (stats.get("memory_bps") or 0) + (stats.get("disk_bps") or 0)
    dirty_rate = stats.get("memory_dirty_rate_bytes")
    seconds_left = expected_seconds_left(remaining, rate, dirty_rate)
    figures: dict[str, Any] = {
        "data_total": total or None, "data_processed": stats.get("data_processed"), "data_remaining": remaining,
        "rate_bps": rate or None, "dirty_rate_bps": dirty_rate, "seconds_left": seconds_left,
        "expected_end": None if seconds_left is None else round(now + seconds_left, 1),
        "memory_iteration": stats.get("memory_iteration"),
    }
    if total and remaining is not None:
        figures["percent"] = max(0, min(99, int(100 * (total - int(remaining)) / total)))
    return figures


# -- the snapshot's values ------------------------------------------------------


def new_entry(name: str, uuid: str, destination: str | None, state: str) -> dict[str, Any]:
    return {"name": name, "uuid": uuid, "destination": destination, "state": state, "percent": None,
            "data_processed": None, "data_total": None, "data_remaining": None, "rate_bps": None,
            "dirty_rate_bps": None, "seconds_left": None, "expected_end": None, "memory_iteration": None,
            "elapsed": None, "started_at": None}


class Progress:
    """Each guest's state and percentage, shared between the workers and the progress writer.

    ``done_states`` and ``problem_states`` are the run's results that count as done and as failed.
    """

    def __init__(self, source_name: str, source_uri: str, check_mode: bool = False,
                 clock: Callable[[], float] = time.time, done_states: Collection[str] = (),
                 problem_states: Collection[str] = (), extra: Mapping[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.source_name = source_name
        self.source_uri = source_uri
        self.check_mode = check_mode
        self.done_states = tuple(done_states)
        self.problem_states = tuple(problem_states)
        self.extra = dict(extra or {})
        self.vms: dict[str, dict[str, Any]] = {}
        self.finished = False

    def add(self, name: str, uuid: str, destination: str | None, state: str) -> None:
        with self.lock:
            self.vms[uuid] = new_entry(name, uuid, destination, state)

    def update(self, uuid: str, **values: Any) -> None:
        with self.lock:
            entry = self.vms.get(uuid)
            if entry is None:
                return
            if values.get("state") == MIGRATING and entry["started_at"] is None:
                entry["started_at"] = self.clock()
            entry.update(values)

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    def migrating(self) -> list[str]:
        with self.lock:
            return [uuid for uuid, entry in self.vms.items() if entry["state"] == MIGRATING]

    def record_job(self, uuid: str, stats: Mapping[str, Any]) -> None:
        self.update(uuid, **transfer_figures(stats, self.clock()))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            vms = [shown_entry(entry, now) for entry in self.vms.values()]
            finished = self.finished
        counts: dict[str, int] = {}
        for entry in vms:
            counts[entry["state"]] = counts.get(entry["state"], 0) + 1
        elapsed = round(now - self.started, 1)
        line = progress_line(vms, counts, elapsed, finished, self.done_states, self.problem_states)
        return progress_snapshot(self.source_name, self.source_uri, self.check_mode, finished, elapsed, counts,
                                 vms, line, self.extra)


def shown_entry(entry: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A guest's entry as the snapshot shows it: the seconds it has been migrating, not when it started."""
    shown = dict(entry)
    started = shown.pop("started_at")
    if shown["state"] == MIGRATING and started is not None:
        shown["elapsed"] = round(now - started, 1)
    return shown


def clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + " UTC"


def transfer_text(entry: Mapping[str, Any]) -> str:
    """`` (460/1024 MiB, 95.2 MiB/s, ends ~14:52:03 UTC)`` for a migrating guest, as far as it is known."""
    details = []
    if entry.get("data_total"):
        moved = entry["data_total"] - (entry.get("data_remaining") or 0)
        details.append("{}/{} MiB".format(moved // MIB, entry["data_total"] // MIB))
    if entry.get("rate_bps"):
        details.append("{:.1f} MiB/s".format(entry["rate_bps"] / MIB))
        if entry.get("expected_end") is not None:
            details.append("ends ~{}".format(clock_time(entry["expected_end"])))
        elif entry.get("data_remaining"):
            details.append("dirtying {:.1f} MiB/s: not converging".format((entry.get("dirty_rate_bps") or 0) / MIB))
    return " ({})".format(", ".join(details)) if details else ""


def progress_line(vms: list[dict[str, Any]], counts: Mapping[str, int], elapsed: float, finished: bool,
                  done_states: Collection[str] = (), problem_states: Collection[str] = ()) -> str:
    """One line an operator can read in ansible-playbook's output (the loop label)."""
    total = len(vms)
    done = sum(counts.get(state, 0) for state in done_states)
    failed = sum(counts.get(state, 0) for state in problem_states)
    minutes, seconds = divmod(int(elapsed), 60)
    parts = [f"[{minutes:02d}:{seconds:02d}] {done}/{total} done, {failed} failed"]
    for entry in vms:
        if entry["state"] != MIGRATING:
            continue
        percent = "{}%".format(entry["percent"]) if entry["percent"] is not None else "starting"
        parts.append("{} -> {} {}{}".format(entry["name"], entry["destination"], percent, transfer_text(entry)))
    if counts.get(QUEUED):
        parts.append(f"{counts[QUEUED]} queued")
    if finished:
        parts.append("finished")
    return " | ".join(parts)


# -- publishing -----------------------------------------------------------------


class ProgressWriter:
    """Poll the migrating guests' job stats and publish the snapshot every ``interval`` seconds."""

    def __init__(self, progress: Progress, path: str | None, interval: float, source_uri: str,
                 connect: Callable[..., Any], on_snapshot: OnSnapshot | None = None) -> None:
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
        self.thread = threading.Thread(target=self.loop, name="virtops-progress", daemon=True)
        self.thread.start()

    def stop(self) -> list[str]:
        """Stop polling, publish the last snapshot; returns what went wrong meanwhile (each once)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()
        close_quietly(self.conn)
        self.conn = None
        self.write()
        return list(self.errors)

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
                stats = job_stats(self.conn, uuid)
                if stats is not None:
                    self.progress.record_job(uuid, stats)
        except (MigrationError, libvirt.libvirtError) as exc:
            self.note(str(exc) if isinstance(exc, MigrationError) else libvirt_error_text(exc))
            close_quietly(self.conn)
            self.conn = None

    def write(self) -> None:
        snapshot = self.progress.snapshot()
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        if self.path:
            try:
                write_snapshot(self.path, snapshot)
            except OSError as exc:
                self.note(f"cannot write the progress file {self.path}: {exc}")

    def note(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)


def job_stats(conn: Any, uuid: str) -> dict[str, Any] | None:
    """The running job's statistics of the domain ``uuid`` (job_statistics); None when it has none (or it is ending)."""
    dom = lookup_by_uuid(conn, uuid)
    if dom is None:
        return None
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None  # the job is ending; the worker reports the outcome
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return job_statistics(stats)


def publish_waiting(line: str, source_uri: str, path: str | None, on_snapshot: OnSnapshot | None) -> str | None:
    """Publish that this run waits for another run; returns a warning when the file cannot be written."""
    snapshot = waiting_snapshot(source_uri, line)
    if on_snapshot is not None:
        on_snapshot(snapshot)
    if path:
        try:
            write_snapshot(path, snapshot)
        except OSError as exc:
            return f"progress: cannot write {path}: {exc}"
    return None
