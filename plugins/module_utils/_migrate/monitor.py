# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Run a blocking migration call in a thread and drive the policy from job stats.

``migrateToURI3``/``migrate3`` block until the migration ends; libvirt-python
releases the GIL during the call, so the caller's thread keeps polling
``jobStats()`` and applies the policy's actions through the domain API.
The domain it is given is normally looked up on a connection of the monitor's
own (``actions.monitor_connection``): job queries on the connection blocked in
the migrate call can wait behind it.  Only when that connection cannot be
opened does it poll the migrating domain on the shared connection (libvirt
connections are safe to share between threads), with a warning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CHECK_SECONDS,
    CancelCheck,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    NoAnswer,
    call_within,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ABORT,
    NOTE,
    POSTCOPY,
    SET_DOWNTIME,
    SUSPEND,
    ConvergencePolicy,
    JobSample,
    PolicyAction,
    job_predates_call,
)

Waiter = Callable[[threading.Event, float], Any]

# Once the hard timeout has fired (or the policy aborted the job for another reason), the run ends within
# HARD_TIMEOUT_GRACE_SECONDS whatever a host does, a libvirtd that died or one that stopped answering. The parts
# follow libvirt's own timers:
# - the migrate call has MIGRATE_CALL_GRACE_SECONDS to return after the abort: the source's libvirtd drops a silent
#   destination after 30 s (qemu.conf keepalive_interval 5 x (keepalive_count 5 + 1)) and then ends the call
#   with its own error; after that the call is left behind and the run goes on without it;
# - recovery has RECOVERY_SECONDS: first RECONNECT_SECONDS to reopen a lost connection, both sides at once (a
#   libvirtd stopped or restarted during a migration waits 30 s for its jobs before it exits, then the new one
#   starts and reconnects to its guests), then the checks, clean-up and resume, one
#   call to a side at most SIDE_CALL_SECONDS. A side that did not answer in time is reported as not checked and
#   is never asked nor changed again;
# - closing the connections has CLOSE_SECONDS.
# The hard timeout does not apply once post-copy has started (aborting then would lose the guest).
MIGRATE_CALL_GRACE_SECONDS = 30.0
RECONNECT_SECONDS = 40.0
SIDE_CALL_SECONDS = 10.0
RECOVERY_SECONDS = RECONNECT_SECONDS + SIDE_CALL_SECONDS
CLOSE_SECONDS = 5.0
HARD_TIMEOUT_GRACE_SECONDS = MIGRATE_CALL_GRACE_SECONDS + RECOVERY_SECONDS + CLOSE_SECONDS


class MigrateCallAbandoned(Exception):
    """The migrate call had not returned when the run stopped waiting for it (a host does not answer)."""


def give_up_at(started_at: float, hard_timeout: float | None, aborted_at: float | None,
               in_postcopy: bool) -> float | None:
    """When to stop waiting for the migrate call: the grace after the hard timeout or after an abort, whichever
    comes first; never during post-copy (the guest already runs on the destination); None: wait for it."""
    if in_postcopy:
        return None
    limits = [moment + MIGRATE_CALL_GRACE_SECONDS for moment in (
        started_at + hard_timeout if hard_timeout else None, aborted_at) if moment is not None]
    return min(limits) if limits else None


def cancel_reason(requested: str) -> str:
    """Why the job was aborted when the operator cancelled the run (``requested``: where the request is)."""
    return f"cancelled by the operator ({requested})"


def wait_on_event(event: threading.Event, seconds: float) -> None:
    """Default waiter: sleep ``seconds`` or until the migration call returns."""
    event.wait(seconds)


@dataclass
class MonitorOutcome:
    """How the migration call ended and what the monitor saw and did."""

    error: BaseException | None = None
    return_value: Any = None
    samples: int = 0
    last_stats: dict[str, Any] = field(default_factory=dict)
    paused_by_us: bool = False
    aborted: bool = False
    abort_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    call_abandoned: bool = False
    foreign_job_seen: bool = False
    cancelled: bool = False  # the operator's cancel request aborted the job
    started_at: float | None = None  # the run's clock: the call began, post-copy began, the call returned
    postcopy_at: float | None = None
    ended_at: float | None = None

    @property
    def postcopy_started(self) -> bool:
        return self.postcopy_at is not None


def migration_phases(outcome: MonitorOutcome) -> dict[str, Any]:
    """How long the migration spent in pre-copy and in post-copy (seconds; None for a phase it never reached)."""
    if outcome.started_at is None or outcome.ended_at is None:
        return {}
    switched = outcome.postcopy_at
    precopy_end = switched if switched is not None else outcome.ended_at
    return {
        "precopy_seconds": round(precopy_end - outcome.started_at, 3),
        "postcopy_seconds": round(outcome.ended_at - switched, 3) if switched is not None else None,
        "postcopy": outcome.postcopy_started,
    }


class MigrationMonitor:
    """Poll the source domain's job while ``migrate`` runs; apply policy actions."""

    def __init__(
        self,
        domain: Any,
        policy: ConvergencePolicy,
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = wait_on_event,
        cancel_requested: CancelCheck | None = None,
    ) -> None:
        self.domain = domain
        self.policy = policy
        self.clock = clock
        self.wait = wait
        self.cancel_requested = cancel_requested
        self.outcome = MonitorOutcome()
        self.aborted_at: float | None = None

    def give_up_at(self) -> float | None:
        return give_up_at(self.policy.started_at, self.policy.config.hard_timeout, self.aborted_at,
                          self.outcome.postcopy_started)

    def run(self, migrate: Callable[[], Any]) -> MonitorOutcome:
        finished = threading.Event()
        ended: dict[str, Any] = {}

        def worker() -> None:
            try:
                ended["value"] = migrate()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, never swallowed
                ended["error"] = exc
            finally:
                finished.set()

        thread = threading.Thread(target=worker, name="virtops-migrate", daemon=True)
        self.outcome.started_at = self.clock()
        thread.start()
        while not finished.is_set():
            if not self.poll_in_time():
                return self.abandon()
            if finished.is_set():
                break
            self.wait(finished, self.poll_seconds())
        thread.join()
        self.outcome.ended_at = self.clock()
        self.outcome.return_value, self.outcome.error = ended.get("value"), ended.get("error")
        return self.outcome

    def poll_seconds(self) -> float:
        """Seconds between two polls: the policy's interval, at most ``CHECK_SECONDS`` while cancel requests are heard."""
        interval = self.policy.config.poll_interval
        return interval if self.cancel_requested is None else min(interval, CHECK_SECONDS)

    def poll_in_time(self) -> bool:
        """Poll (bounded by when to give up, if that is set); False once it is time to stop waiting."""
        limit = self.give_up_at()
        if limit is None:
            self.poll()
            return True
        if self.clock() >= limit:
            return False
        try:
            call_within(limit - self.clock(), self.poll)
        except NoAnswer:
            return False
        return True

    def abandon(self) -> MonitorOutcome:
        """Stop waiting for a migrate call that does not return: the run reports without it."""
        self.outcome.call_abandoned = True
        self.outcome.ended_at = self.clock()
        after = "the abort" if self.aborted_at is not None else "the hard timeout"
        self.outcome.error = MigrateCallAbandoned(
            f"the migrate call had not returned {MIGRATE_CALL_GRACE_SECONDS:g}s after {after}: a host does not "
            "answer (its libvirt daemon stopped or hung, or the link to it is down)")
        return self.outcome

    def read_job(self) -> JobSample:
        try:
            stats = self.domain.jobStats(0)
        except libvirt.libvirtError:
            return JobSample(active=False)  # the job (or domain) is going away
        sample = JobSample.from_stats(stats, libvirt.VIR_DOMAIN_JOB_NONE)
        if sample.active:
            self.outcome.samples += 1
            self.outcome.last_stats = dict(stats)
        return sample

    def in_postcopy(self) -> bool:
        try:
            state, reason = self.domain.state(0)
        except libvirt.libvirtError:
            return False
        return (state, reason) in (
            (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY),
            (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY),
        )

    def poll(self) -> None:
        sample = self.read_job()
        now = self.clock()
        if self.outcome.started_at is not None and job_predates_call(sample, now - self.outcome.started_at):
            self.leave_foreign_job(sample)
            return
        if sample.active and not self.policy.postcopy_started and self.in_postcopy():
            self.policy.observe_postcopy(now)
            self.outcome.postcopy_at = now
        if sample.active:
            self.heed_cancel(now)
        for action in self.policy.evaluate(now, sample):
            self.apply(now, action)

    def heed_cancel(self, now: float) -> None:
        """Apply what the policy decides about the operator's cancel request, when one stands (the job is running)."""
        requested = self.cancel_requested() if self.cancel_requested is not None else None
        if not requested:
            return
        for action in self.policy.cancel(now, cancel_reason(requested)):
            self.apply(now, action)
            if action.action == ABORT and action.result == "ok":
                self.outcome.cancelled = True
            elif action.action == NOTE:
                self.outcome.warnings.append(action.reason)

    def leave_foreign_job(self, sample: JobSample) -> None:
        """Another run's job holds the domain: the policy does nothing to it (this run's call will fail to start)."""
        if not self.outcome.foreign_job_seen:
            self.outcome.foreign_job_seen = True
            self.outcome.warnings.append(
                f"a migration job {sample.time_elapsed_ms / 1000.0:.1f}s old, older than this run's migrate call, "
                "holds the domain (another run's, from another machine?): this run tunes and aborts nothing of it")

    def apply(self, now: float, action: PolicyAction) -> None:
        """Apply one policy action through the domain API; record the result."""
        if self.outcome.call_abandoned:
            return  # a poll left behind that returned late: the run has moved on
        if action.action == ABORT:
            self.aborted_at = now
        try:
            if action.action == SET_DOWNTIME:
                self.domain.migrateSetMaxDowntime(int(action.value or 0), 0)
            elif action.action == POSTCOPY:
                self.domain.migrateStartPostCopy(0)
                self.outcome.postcopy_at = now
            elif action.action == SUSPEND:
                self.domain.suspend()
                self.outcome.paused_by_us = True
            elif action.action == ABORT:
                self.domain.abortJob()
                self.outcome.aborted = True
                self.outcome.abort_reason = action.reason
            elif action.action == NOTE:
                action.result = "recorded"
                return
            action.result = "ok"
        except libvirt.libvirtError as exc:
            text = libvirt_error_text(exc)
            action.result = f"failed: {text}"
            self.outcome.warnings.append(f"policy action {action.action} at {action.at:.1f}s failed: {text}")
            fallback = self.policy.escalation_failed(now, action)
            if fallback is not None:
                self.apply(now, fallback)
