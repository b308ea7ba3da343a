# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Run the guests' migrations in worker threads with bounded concurrency.

Workers start in plan order, at most ``max_parallel`` at once and ``max_parallel_per_destination``
into one destination. After a failed guest: ``stop`` starts nothing more; ``continue`` hands the
queue to ``reroute``, which may send the queued guests elsewhere. Once ``cancelled`` answers (read
at least every ``CHECK_SECONDS``) nothing more starts; those running end as their migrations do
(each one's job monitor aborts it). The scheduler reports each start and finish through callbacks
and returns what it did not start; a worker that crashes ends the schedule (those running finish)
and is returned with its traceback.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CHECK_SECONDS,
    CancelCheck,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.outcomes import (
    FAILED,
    GuestOutcome,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    Assignment,
)

Migrate = Callable[[Assignment], GuestOutcome]
Reroute = Callable[[Assignment, GuestOutcome, list[Assignment]], list[Assignment]]
"""(failed guest, its outcome, the queue) -> the new queue."""


@dataclass(frozen=True)
class Limits:
    max_parallel: int
    max_parallel_per_destination: int
    stop_after_failure: bool


@dataclass(frozen=True)
class Crash:
    error: BaseException
    trace: str


@dataclass(frozen=True)
class ScheduleEnd:
    """What the schedule did not start, and why: a failure under ``stop``, the operator's cancel, or a crash."""

    unstarted: list[Assignment] = field(default_factory=list)
    stopped_by: str | None = None
    crash: Crash | None = None
    cancelled_by: str | None = None
    """Where the cancel request that stopped the schedule is (its file), None when none did."""

    @property
    def why_unstarted(self) -> str:
        if self.stopped_by:
            return f"not started: on_failure is stop and {self.stopped_by} failed"
        if self.cancelled_by:
            return f"not started: cancelled by the operator ({self.cancelled_by})"
        return "not started: an evacuation worker crashed"


def run_schedule(queue: list[Assignment], limits: Limits, migrate: Migrate,
                 on_start: Callable[[Assignment], object], on_finish: Callable[[Assignment, GuestOutcome], object],
                 reroute: Reroute, cancelled: CancelCheck | None = None) -> ScheduleEnd:
    """Migrate each guest of ``queue`` (see the module docstring); returns what was not started."""
    return Scheduler(queue, limits, migrate, on_start, on_finish, reroute, cancelled).run()


class Scheduler:
    """The worker threads and the counts that bound them; its state is its own."""

    def __init__(self, queue: list[Assignment], limits: Limits, migrate: Migrate,
                 on_start: Callable[[Assignment], object], on_finish: Callable[[Assignment, GuestOutcome], object],
                 reroute: Reroute, cancelled: CancelCheck | None = None) -> None:
        self.queue = list(queue)
        self.limits = limits
        self.migrate = migrate
        self.on_start = on_start
        self.on_finish = on_finish
        self.reroute = reroute
        self.cancelled = cancelled
        self.cancelled_by: str | None = None
        self.active = 0
        self.per_destination: dict[str, int] = {}
        self.stopped_by: str | None = None
        self.crash: Crash | None = None
        self.condition = threading.Condition()
        self.threads: list[threading.Thread] = []

    def run(self) -> ScheduleEnd:
        with self.condition:
            while True:
                self.check_cancel()
                if not self.halted():
                    item = self.next_startable()
                    if item is not None:
                        self.start(item)
                        continue
                if self.active == 0 and (not self.queue or self.halted()):
                    break
                self.condition.wait(None if self.cancelled is None else CHECK_SECONDS)
        for thread in self.threads:
            thread.join()
        return ScheduleEnd(list(self.queue), self.stopped_by, self.crash, self.cancelled_by)

    def halted(self) -> bool:
        """Nothing more starts: a failure under ``stop``, a crash, or the operator's cancel."""
        return bool(self.stopped_by or self.crash or self.cancelled_by)

    def check_cancel(self) -> None:
        """Read the cancel request while moves may still start (once seen, the schedule stays cancelled)."""
        if self.cancelled is None or self.halted() or not self.queue:
            return
        answer = self.cancelled()
        if answer:
            self.cancelled_by = answer if isinstance(answer, str) else "a cancel request"

    def next_startable(self) -> Assignment | None:
        if self.active >= self.limits.max_parallel:
            return None
        for item in self.queue:
            if self.per_destination.get(item.destination or "", 0) < self.limits.max_parallel_per_destination:
                return item
        return None

    def start(self, item: Assignment) -> None:
        self.queue.remove(item)
        self.active += 1
        destination = item.destination or ""
        self.per_destination[destination] = self.per_destination.get(destination, 0) + 1
        self.on_start(item)
        thread = threading.Thread(target=self.work, args=(item,), name=f"virtops-evacuate-{item.guest.name}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def work(self, item: Assignment) -> None:
        outcome: GuestOutcome | None = None
        try:
            outcome = self.migrate(item)
            self.on_finish(item, outcome)
        except BaseException as exc:  # noqa: BLE001 - returned in ScheduleEnd; the evacuation re-raises it
            self.crash = Crash(exc, traceback.format_exc())
        finally:
            with self.condition:
                self.active -= 1
                self.per_destination[item.destination or ""] -= 1
                try:
                    if outcome is not None and outcome.result == FAILED:
                        self.after_failure(item, outcome)
                except BaseException as exc:  # noqa: BLE001 - returned in ScheduleEnd; the loop must wake
                    if self.crash is None:
                        self.crash = Crash(exc, traceback.format_exc())
                self.condition.notify_all()

    def after_failure(self, item: Assignment, outcome: GuestOutcome) -> None:
        """on_failure: stop starts nothing more; continue lets ``reroute`` rearrange the queue."""
        if self.limits.stop_after_failure:
            if self.stopped_by is None and self.cancelled_by is None:
                self.stopped_by = item.guest.name
            return
        self.queue = self.reroute(item, outcome, self.queue)
