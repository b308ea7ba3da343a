# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The convergence policy engine.

Pure: it is fed a clock reading and a job-stats sample and answers with the
actions to take.  It never calls libvirt; the monitor applies the actions.
What it does, and where the idea comes from:

- downtime ramp: raise the tolerated downtime in steps up to a maximum,
  one step every ``downtime_delay_per_gib`` seconds per GiB of RAM (Nova's
  live_migration_downtime / _steps / _delay);
- completion timeout scaled per GiB of RAM (Nova 800 s/GiB, KubeVirt 150 s/GiB);
- progress (stall) timeout: no new low of ``data_remaining`` for that long
  (KubeVirt progressTimeout, Proxmox/oVirt low-water mark);
- on either timeout ``on_timeout``: abort (default), postcopy or suspend
  (virsh --timeout-postcopy / --timeout-suspend);
- a hard wall-clock ``timeout`` that always aborts (except once post-copy has
  started, when aborting would lose the guest; that is recorded instead);
- the operator's cancel request (``cancel``): abort, except once post-copy has
  started (recorded instead, post-copy is left to finish).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GIB = 1024 ** 3
# A running job that sent nothing for this long is not converging slowly: its link is down or blocked.
SILENT_LINK_SECONDS = 10.0

ABORT = "abort"
POSTCOPY = "postcopy"
SUSPEND = "suspend"
SET_DOWNTIME = "set_downtime"
NOTE = "note"
ON_TIMEOUT_CHOICES = (ABORT, POSTCOPY, SUSPEND)
CANCEL_DURING_POSTCOPY = ("cancel requested during post-copy: aborting would lose the guest; post-copy is left to "
                          "finish")


@dataclass(frozen=True)
class PolicyConfig:
    """Convergence policy settings (all times in seconds, downtime in ms)."""

    completion_timeout_per_gib: float = 150.0
    progress_timeout: float = 150.0
    downtime_max: int = 500
    downtime_steps: int = 10
    downtime_delay_per_gib: float = 75.0
    on_timeout: str = ABORT
    poll_interval: float = 1.0
    initial_downtime: int | None = None
    hard_timeout: float | None = None


@dataclass(frozen=True)
class JobSample:
    """One reading of virDomainGetJobStats for a running migration."""

    active: bool
    time_elapsed_ms: int | None = None
    data_total: int | None = None
    data_processed: int | None = None
    data_remaining: int | None = None
    memory_iteration: int | None = None
    memory_dirty_rate: int | None = None

    @classmethod
    def from_stats(cls, stats: dict[str, Any] | None, job_none_type: int = 0) -> JobSample:
        """Build a sample from the dict jobStats() returns (key ``type`` included)."""
        if not stats or stats.get("type", job_none_type) == job_none_type:
            return cls(active=False)
        return cls(
            active=True,
            time_elapsed_ms=stats.get("time_elapsed"),
            data_total=stats.get("data_total"),
            data_processed=stats.get("data_processed"),
            data_remaining=stats.get("data_remaining"),
            memory_iteration=stats.get("memory_iteration"),
            memory_dirty_rate=stats.get("memory_dirty_rate"),
        )


# Clock granularity and rounding between libvirt's elapsed time and this run's clock.
JOB_AGE_SLACK_SECONDS = 0.25


def job_predates_call(sample: JobSample, seconds_since_call: float) -> bool:
    """The job ran before this run's migrate call began: another run's job, never this run's to tune or abort.

    libvirt names no job's owner, but a job's elapsed time is its age: the call's own job started after the call.
    """
    if not sample.active or sample.time_elapsed_ms is None:
        return False
    return sample.time_elapsed_ms / 1000.0 > seconds_since_call + JOB_AGE_SLACK_SECONDS


@dataclass
class PolicyAction:
    """An action the policy decided, with the time (s since start) and why."""

    at: float
    action: str
    reason: str
    value: int | None = None
    result: str = "pending"

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "action": self.action,
            "value": self.value,
            "reason": self.reason,
            "result": self.result,
        }


def downtime_schedule(config: PolicyConfig, memory_bytes: int) -> list[tuple[float, int]]:
    """(seconds since start, downtime ms) pairs, Nova style.

    Step 0 applies at t=0.  The ramp starts at ``initial_downtime`` when it is
    set (the ``max_downtime`` option), else at ``downtime_max / steps``, and
    reaches ``downtime_max`` after ``steps`` steps.  With no steps only the
    initial downtime (if any) is applied.
    """
    if config.downtime_steps <= 0 or config.downtime_max <= 0:
        if config.initial_downtime:
            return [(0.0, int(config.initial_downtime))]
        return []
    steps = config.downtime_steps
    base = config.initial_downtime or config.downtime_max / steps
    if base >= config.downtime_max:
        return [(0.0, int(base))]
    delay = config.downtime_delay_per_gib * max(memory_bytes / GIB, 1.0 / 1024)
    increment = (config.downtime_max - base) / steps
    return [(delay * i, round(base + increment * i)) for i in range(steps + 1)]


@dataclass
class ConvergencePolicy:
    """State machine over job-stats samples; ``actions`` records every decision."""

    config: PolicyConfig
    memory_bytes: int
    started_at: float
    actions: list[PolicyAction] = field(default_factory=list)
    schedule: list[tuple[float, int]] = field(init=False)
    next_step: int = field(init=False, default=0)
    lowest_remaining: int | None = field(init=False, default=None)
    last_progress_at: float | None = field(init=False, default=None)
    last_sent: int | None = field(init=False, default=None)
    last_sent_at: float | None = field(init=False, default=None)
    escalated: str | None = field(init=False, default=None)
    aborted: bool = field(init=False, default=False)
    hard_timeout_noted: bool = field(init=False, default=False)
    cancel_noted: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.schedule = downtime_schedule(self.config, self.memory_bytes)

    @property
    def completion_timeout(self) -> float | None:
        """Seconds allowed for the whole migration, scaled by RAM (None: off)."""
        if self.config.completion_timeout_per_gib <= 0:
            return None
        gib = max(self.memory_bytes / GIB, 1.0 / 1024)
        return self.config.completion_timeout_per_gib * gib

    @property
    def postcopy_started(self) -> bool:
        return self.escalated == POSTCOPY

    def _record(self, now: float, action: str, reason: str, value: int | None = None) -> PolicyAction:
        decided = PolicyAction(at=now - self.started_at, action=action, reason=reason, value=value)
        self.actions.append(decided)
        return decided

    def evaluate(self, now: float, sample: JobSample) -> list[PolicyAction]:
        """Decide the actions due at ``now`` given the latest sample."""
        if self.aborted or not sample.active:
            return []
        elapsed = now - self.started_at
        self._track_progress(now, sample)
        hard = self._hard_timeout(now, elapsed)
        if hard is not None:
            return hard
        if self.escalated is not None:
            return []
        decided = self._downtime_steps(now, elapsed)
        timeout_reason = self._timeout_reason(now, elapsed)
        if timeout_reason:
            decided.append(self._escalate(now, timeout_reason))
        return decided

    def _hard_timeout(self, now: float, elapsed: float) -> list[PolicyAction] | None:
        limit = self.config.hard_timeout
        if not limit or elapsed < limit:
            return None
        if self.postcopy_started:
            if not self.hard_timeout_noted:
                self.hard_timeout_noted = True
                self._record(now, NOTE, f"hard timeout of {limit:g}s reached during post-copy; "
                             "aborting now would lose the guest, waiting for post-copy to finish")
            return []
        self.aborted = True
        return [self._record(now, ABORT, self._with_silence(now, f"hard timeout of {limit:g}s reached"))]

    def _downtime_steps(self, now: float, elapsed: float) -> list[PolicyAction]:
        due_value = None
        due_index = self.next_step
        while due_index < len(self.schedule) and self.schedule[due_index][0] <= elapsed:
            due_value = self.schedule[due_index][1]
            due_index += 1
        if due_value is None:
            return []
        step_reason = f"downtime ramp step {due_index - 1}/{max(len(self.schedule) - 1, 0)}"
        self.next_step = due_index
        return [self._record(now, SET_DOWNTIME, step_reason, due_value)]

    def _track_progress(self, now: float, sample: JobSample) -> None:
        sent = sample.data_processed
        if sent is not None and (self.last_sent is None or sent > self.last_sent):
            self.last_sent, self.last_sent_at = sent, now
        remaining = sample.data_remaining
        if remaining is None or not sample.data_total:
            return
        if self.lowest_remaining is None or remaining < self.lowest_remaining:
            self.lowest_remaining = remaining
            self.last_progress_at = now

    def _timeout_reason(self, now: float, elapsed: float) -> str | None:
        completion = self.completion_timeout
        if completion is not None and elapsed >= completion:
            return f"completion timeout of {completion:g}s ({self.config.completion_timeout_per_gib:g}s per GiB of RAM) reached"
        progress = self.config.progress_timeout
        if progress > 0 and self.last_progress_at is not None and now - self.last_progress_at >= progress:
            return (f"no progress for {progress:g}s: data_remaining has not gone "
                    f"below {self.lowest_remaining or 0} bytes")
        return None

    def _escalate(self, now: float, reason: str) -> PolicyAction:
        on_timeout = self.config.on_timeout
        if on_timeout == ABORT:
            self.aborted = True
        self.escalated = on_timeout
        return self._record(now, on_timeout, self._with_silence(now, reason))

    def _with_silence(self, now: float, reason: str) -> str:
        """Add to ``reason`` that nothing was sent lately, when so: the link, not convergence, is the cause."""
        if self.last_sent_at is None or now - self.last_sent_at < SILENT_LINK_SECONDS:
            return reason
        return (f"{reason}; nothing was sent for the last {now - self.last_sent_at:.0f}s (data_processed stuck at "
                f"{self.last_sent} bytes): the link to the destination looks down or blocked")

    def escalation_failed(self, now: float, failed: PolicyAction) -> PolicyAction | None:
        """libvirt refused a postcopy/suspend escalation: fall back to abort."""
        if failed.action not in (POSTCOPY, SUSPEND) or self.aborted:
            return None
        self.aborted = True
        self.escalated = ABORT
        return self._record(now, ABORT, f"{failed.action} was refused by libvirt, aborting instead")

    def observe_postcopy(self, now: float) -> None:
        """The job entered post-copy without us (e.g. migration_job): stop acting."""
        if self.escalated != POSTCOPY:
            self.escalated = POSTCOPY
            self._record(now, NOTE, "migration switched to post-copy outside the policy")

    def cancel(self, now: float, reason: str) -> list[PolicyAction]:
        """The operator cancelled the run: abort, unless post-copy has started (aborting would lose the guest).

        Decision table: already aborted -> nothing; post-copy started -> one NOTE (once), no abort;
        otherwise -> one ABORT with ``reason``. Calling it again decides nothing new.
        """
        if self.aborted:
            return []
        if self.postcopy_started:
            if self.cancel_noted:
                return []
            self.cancel_noted = True
            return [self._record(now, NOTE, CANCEL_DURING_POSTCOPY)]
        self.aborted = True
        return [self._record(now, ABORT, reason)]

    def summary(self) -> list[dict[str, Any]]:
        return [action.as_dict() for action in self.actions]


def left_to_finish_after_cancel(policy_actions: list[dict[str, Any]]) -> bool:
    """A migrate result's ``policy_actions`` say a cancel came during post-copy and the migration was left to finish."""
    return any(action.get("action") == NOTE and action.get("reason") == CANCEL_DURING_POSTCOPY
               for action in policy_actions)
