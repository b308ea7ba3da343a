"""The scheduler alone: limits, stop after a failure, rerouting, a crashed worker (no libvirt)."""

from __future__ import annotations

import threading
import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuate.outcomes import (
    FAILED,
    MIGRATED,
    GuestOutcome,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    Assignment,
    GuestToMove,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.scheduler import (
    Limits,
    run_schedule,
)


def item(name, destination):
    guest = GuestToMove(name=name, uuid=f"uuid-{name}", state="running", persistent=True, memory_kib=1024)
    return Assignment(guest, destination, f"qemu+tls://{destination}/system", "test")


class Recorder:
    """Callbacks that record what the scheduler reports, and how many run at once."""

    def __init__(self, hold=0.02, outcomes=None):
        self.hold = hold
        self.outcomes = outcomes or {}
        self.lock = threading.Lock()
        self.started, self.finished = [], []
        self.active, self.most, self.per_destination, self.most_per_destination = 0, 0, {}, {}

    def on_start(self, entry):
        self.started.append(entry.guest.name)

    def migrate(self, entry):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            count = self.per_destination.get(entry.destination, 0) + 1
            self.per_destination[entry.destination] = count
            self.most_per_destination[entry.destination] = max(self.most_per_destination.get(entry.destination, 0), count)
        time.sleep(self.hold)
        with self.lock:
            self.active -= 1
            self.per_destination[entry.destination] -= 1
        outcome = self.outcomes.get(entry.guest.name, GuestOutcome(MIGRATED))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def on_finish(self, entry, outcome):
        self.finished.append((entry.guest.name, outcome.result))


def unchanged_queue(failed, outcome, queue):
    return queue


def test_both_limits_bound_the_workers_and_all_finish():
    queue = [item(f"g{i}", "hv2" if i % 2 else "hv3") for i in range(6)]
    recorder = Recorder()
    end = run_schedule(queue, Limits(3, 2, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue)
    assert end.unstarted == [] and end.crash is None and end.stopped_by is None
    assert recorder.started == [entry.guest.name for entry in queue]
    assert sorted(recorder.finished) == sorted((entry.guest.name, MIGRATED) for entry in queue)
    assert recorder.most <= 3 and max(recorder.most_per_destination.values()) <= 2


def test_stop_after_a_failure_returns_the_rest_unstarted():
    queue = [item(f"g{i}", "hv2") for i in range(4)]
    recorder = Recorder(outcomes={"g0": GuestOutcome(FAILED, "boom")})
    end = run_schedule(queue, Limits(1, 1, True), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue)
    assert recorder.started == ["g0"]
    assert [entry.guest.name for entry in end.unstarted] == ["g1", "g2", "g3"]
    assert end.why_unstarted == "not started: on_failure is stop and g0 failed"


def test_continue_hands_the_queue_to_reroute_after_a_failure():
    queue = [item("g0", "hv3"), item("g1", "hv3"), item("g2", "hv2")]
    recorder = Recorder(outcomes={"g0": GuestOutcome(FAILED, "hv3 lost")})
    seen = []

    def reroute(failed, outcome, waiting):
        seen.append((failed.guest.name, outcome.message, [entry.guest.name for entry in waiting]))
        return [entry for entry in waiting if entry.destination != "hv3"]

    end = run_schedule(queue, Limits(1, 1, False), recorder.migrate, recorder.on_start, recorder.on_finish, reroute)
    assert seen == [("g0", "hv3 lost", ["g1", "g2"])]
    assert recorder.started == ["g0", "g2"] and end.unstarted == []


def test_a_crashed_worker_ends_the_schedule_and_is_returned():
    queue = [item(f"g{i}", "hv2") for i in range(3)]
    recorder = Recorder(outcomes={"g0": ValueError("bug")})
    end = run_schedule(queue, Limits(1, 1, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue)
    assert isinstance(end.crash.error, ValueError) and "ValueError: bug" in end.crash.trace
    assert [entry.guest.name for entry in end.unstarted] == ["g1", "g2"]
    assert end.why_unstarted == "not started: an evacuation worker crashed"


class CancelAfter:
    """A cancel check that answers (with the request's path) once ``count`` guests have finished."""

    def __init__(self, recorder, count, path="/var/lib/virtops/cancel"):
        self.recorder, self.count, self.path = recorder, count, path
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.path if len(self.recorder.finished) >= self.count else None


def test_a_cancel_starts_nothing_more_and_returns_the_rest_unstarted():
    queue = [item(f"g{i}", "hv2") for i in range(4)]
    recorder = Recorder()
    cancelled = CancelAfter(recorder, 1)
    end = run_schedule(queue, Limits(1, 1, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue, cancelled)
    assert recorder.started == ["g0"] and recorder.finished == [("g0", MIGRATED)]
    assert [entry.guest.name for entry in end.unstarted] == ["g1", "g2", "g3"]
    assert end.cancelled_by == "/var/lib/virtops/cancel" and end.stopped_by is None and end.crash is None
    assert end.why_unstarted == "not started: cancelled by the operator (/var/lib/virtops/cancel)"


def test_a_cancel_is_read_while_a_long_move_runs_with_nothing_else_to_wake_the_loop():
    queue = [item("g0", "hv2"), item("g1", "hv2")]
    recorder = Recorder(hold=2.0)
    cancelled = CancelAfter(recorder, 99)
    end = run_schedule(queue, Limits(2, 1, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue, cancelled)
    assert end.unstarted == [] and end.cancelled_by is None
    # two reads before g0 starts and waits, one when it ends: the others are the loop's own, at least once a
    # second while g1 waited 2 s for hv2
    assert cancelled.calls >= 5


def test_a_cancel_before_the_first_start_starts_nothing():
    queue = [item(f"g{i}", "hv2") for i in range(2)]
    recorder = Recorder()
    end = run_schedule(queue, Limits(2, 2, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue, lambda: "/run/cancel")
    assert recorder.started == [] and [entry.guest.name for entry in end.unstarted] == ["g0", "g1"]
    assert end.why_unstarted == "not started: cancelled by the operator (/run/cancel)"


def test_without_a_cancel_check_the_schedule_is_as_before():
    queue = [item(f"g{i}", "hv2") for i in range(3)]
    recorder = Recorder()
    end = run_schedule(queue, Limits(1, 1, False), recorder.migrate, recorder.on_start, recorder.on_finish,
                       unchanged_queue)
    assert end.unstarted == [] and end.cancelled_by is None and len(recorder.finished) == 3
