# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Run a blocking migration call in a thread and drive the policy from job stats.

``migrateToURI3``/``migrate3`` block until the migration ends; libvirt-python
releases the GIL during the call, so this thread can keep polling
``jobStats()`` on the same connection and apply the policy's actions through
the domain API (libvirt connections are safe to share between threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._errors import (
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt_dep import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._policy import (
    ABORT,
    NOTE,
    POSTCOPY,
    SET_DOWNTIME,
    SUSPEND,
    ConvergencePolicy,
    JobSample,
    PolicyAction,
)

Waiter = Callable[[threading.Event, float], Any]


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
    postcopy_started: bool = False
    aborted: bool = False
    abort_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


class MigrationMonitor:
    """Poll the source domain's job while ``migrate`` runs; apply policy actions."""

    def __init__(
        self,
        domain: Any,
        policy: ConvergencePolicy,
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = wait_on_event,
    ) -> None:
        self.domain = domain
        self.policy = policy
        self.clock = clock
        self.wait = wait
        self.outcome = MonitorOutcome()

    def run(self, migrate: Callable[[], Any]) -> MonitorOutcome:
        finished = threading.Event()

        def worker() -> None:
            try:
                self.outcome.return_value = migrate()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, never swallowed
                self.outcome.error = exc
            finally:
                finished.set()

        thread = threading.Thread(target=worker, name="virtops-migrate", daemon=True)
        thread.start()
        while not finished.is_set():
            self.poll()
            if finished.is_set():
                break
            self.wait(finished, self.policy.config.poll_interval)
        thread.join()
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
        if sample.active and not self.policy.postcopy_started and self.in_postcopy():
            self.policy.observe_postcopy(now)
            self.outcome.postcopy_started = True
        for action in self.policy.evaluate(now, sample):
            self.apply(now, action)

    def apply(self, now: float, action: PolicyAction) -> None:
        """Apply one policy action through the domain API; record the result."""
        try:
            if action.action == SET_DOWNTIME:
                self.domain.migrateSetMaxDowntime(int(action.value or 0), 0)
            elif action.action == POSTCOPY:
                self.domain.migrateStartPostCopy(0)
                self.outcome.postcopy_started = True
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
