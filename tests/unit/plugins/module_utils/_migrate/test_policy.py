"""The convergence policy engine against scripted job-stats sequences."""

from __future__ import annotations

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ABORT,
    CANCEL_DURING_POSTCOPY,
    GIB,
    NOTE,
    ConvergencePolicy,
    JobSample,
    PolicyConfig,
    downtime_schedule,
    left_to_finish_after_cancel,
)

START = 100.0


def running(remaining, total=GIB, sent=None):
    """A job sample; ``sent`` (data_processed) defaults to what left the source so far, never less."""
    processed = total - remaining if sent is None else sent
    return JobSample(active=True, data_total=total, data_remaining=remaining, data_processed=processed)


def run(config, samples, memory=GIB):
    """Feed (seconds since start, data_remaining) samples, data going out all along; return the actions."""
    policy = ConvergencePolicy(config, memory, START)
    for at, remaining in samples:
        policy.evaluate(START + at, running(remaining, sent=GIB - remaining + int(at * 1000)))
    return policy, [(a.at, a.action, a.value) for a in policy.actions]


NO_RAMP = {"downtime_steps": 0}


def test_downtime_schedule_nova_style():
    schedule = downtime_schedule(PolicyConfig(), GIB)
    assert schedule[0] == (0.0, 50)
    assert schedule[1] == (75.0, 95)
    assert schedule[-1] == (750.0, 500)
    assert len(schedule) == 11


def test_downtime_schedule_starts_at_max_downtime_and_scales_with_ram():
    schedule = downtime_schedule(PolicyConfig(initial_downtime=300, downtime_steps=2), 2 * GIB)
    assert schedule == [(0.0, 300), (150.0, 400), (300.0, 500)]


def test_downtime_schedule_without_ramp():
    assert downtime_schedule(PolicyConfig(downtime_steps=0, initial_downtime=200), GIB) == [(0.0, 200)]
    assert downtime_schedule(PolicyConfig(downtime_steps=0), GIB) == []
    assert downtime_schedule(PolicyConfig(initial_downtime=800), GIB) == [(0.0, 800)]


def test_converging_migration_only_ramps():
    config = PolicyConfig(downtime_steps=2, downtime_max=300, downtime_delay_per_gib=10)
    _policy, actions = run(config, [(0, 900), (5, 600), (10, 300), (15, 100), (20, 10)])
    assert actions == [(0.0, "set_downtime", 150), (10.0, "set_downtime", 225), (20.0, "set_downtime", 300)]


def test_ramp_skips_to_latest_due_step():
    config = PolicyConfig(downtime_steps=4, downtime_max=500, downtime_delay_per_gib=1)
    _policy, actions = run(config, [(0, 900), (3.5, 800)])
    assert actions == [(0.0, "set_downtime", 125), (3.5, "set_downtime", 406)]


def test_stalling_migration_hits_progress_timeout_and_aborts():
    config = PolicyConfig(progress_timeout=30, completion_timeout_per_gib=1000, **NO_RAMP)
    samples = [(0, 1000), (10, 500), (20, 400)] + [(20 + 5 * i, 450) for i in range(1, 8)]
    policy, actions = run(config, samples)
    assert actions == [(50.0, "abort", None)]
    assert policy.actions[0].reason == "no progress for 30s: data_remaining has not gone below 400 bytes"
    assert policy.aborted is True


def test_progress_resets_the_stall_clock():
    config = PolicyConfig(progress_timeout=30, completion_timeout_per_gib=1000, **NO_RAMP)
    samples = [(0, 1000), (25, 1000), (29, 999), (55, 999), (58, 998)]
    _policy, actions = run(config, samples)
    assert actions == []


def test_never_converging_hits_completion_timeout():
    # Oscillates but keeps making new lows by one byte: never stalls, never finishes.
    config = PolicyConfig(completion_timeout_per_gib=60, progress_timeout=30, **NO_RAMP)
    samples = [(t, 10_000 - t) for t in range(0, 200, 10)]
    policy, actions = run(config, samples, memory=2 * GIB)
    assert actions == [(120.0, "abort", None)]
    assert policy.actions[0].reason == "completion timeout of 120s (60s per GiB of RAM) reached"


@pytest.mark.parametrize("on_timeout", ["postcopy", "suspend"])
def test_on_timeout_escalation_happens_once(on_timeout):
    config = PolicyConfig(completion_timeout_per_gib=50, on_timeout=on_timeout, hard_timeout=500, **NO_RAMP)
    policy, actions = run(config, [(t, 10_000 - t) for t in range(0, 300, 25)])
    assert actions == [(50.0, on_timeout, None)]
    assert policy.escalated == on_timeout
    assert policy.aborted is False


def test_hard_timeout_aborts_even_after_suspend():
    config = PolicyConfig(completion_timeout_per_gib=50, on_timeout="suspend", hard_timeout=120, **NO_RAMP)
    _policy, actions = run(config, [(t, 5000) for t in range(0, 200, 10)])
    assert actions == [(50.0, "suspend", None), (120.0, "abort", None)]


def test_hard_timeout_during_postcopy_is_recorded_not_acted_on():
    config = PolicyConfig(completion_timeout_per_gib=50, on_timeout="postcopy", hard_timeout=100, **NO_RAMP)
    policy, actions = run(config, [(t, 5000 - t) for t in range(0, 200, 10)])
    assert actions == [(50.0, "postcopy", None), (100.0, "note", None)]
    assert "waiting for post-copy to finish" in policy.actions[1].reason
    assert policy.aborted is False


def test_hard_timeout_alone():
    config = PolicyConfig(completion_timeout_per_gib=0, progress_timeout=0, hard_timeout=30, **NO_RAMP)
    _policy, actions = run(config, [(t, 5000) for t in range(0, 60, 10)])
    assert actions == [(30.0, "abort", None)]


def test_everything_disabled_never_acts():
    config = PolicyConfig(completion_timeout_per_gib=0, progress_timeout=0, **NO_RAMP)
    _policy, actions = run(config, [(t, 5000) for t in range(0, 100000, 1000)])
    assert actions == []


def test_no_action_after_abort_and_for_inactive_samples():
    config = PolicyConfig(completion_timeout_per_gib=10, **NO_RAMP)
    policy = ConvergencePolicy(config, GIB, START)
    assert policy.evaluate(START + 100, JobSample(active=False)) == []
    assert [a.action for a in policy.evaluate(START + 11, running(5))] == ["abort"]
    assert policy.evaluate(START + 12, running(5)) == []


def test_refused_escalation_falls_back_to_abort():
    config = PolicyConfig(completion_timeout_per_gib=10, on_timeout="postcopy", **NO_RAMP)
    policy = ConvergencePolicy(config, GIB, START)
    [switch] = policy.evaluate(START + 10, running(5))
    fallback = policy.escalation_failed(START + 10.5, switch)
    assert (fallback.action, fallback.at) == ("abort", 10.5)
    assert policy.aborted is True


def test_external_postcopy_stops_the_policy():
    config = PolicyConfig(completion_timeout_per_gib=10, **NO_RAMP)
    policy = ConvergencePolicy(config, GIB, START)
    policy.observe_postcopy(START + 2)
    assert policy.evaluate(START + 20, running(5)) == []
    assert [a.action for a in policy.actions] == ["note"]


def test_job_sample_from_stats():
    none = JobSample.from_stats({"type": 0})
    assert none.active is False
    sample = JobSample.from_stats({"type": 2, "time_elapsed": 1500, "data_total": 10, "data_remaining": 4,
                                   "memory_iteration": 3, "memory_dirty_rate": 77})
    assert (sample.active, sample.data_remaining, sample.memory_iteration, sample.memory_dirty_rate) == (
        True, 4, 3, 77)


def test_summary_rounds_times():
    config = PolicyConfig(completion_timeout_per_gib=10, **NO_RAMP)
    policy = ConvergencePolicy(config, GIB, START)
    policy.evaluate(START + 10.12345, running(5))
    assert policy.summary() == [{"at": 10.123, "action": "abort", "value": None,
                                 "reason": "completion timeout of 10s (10s per GiB of RAM) reached",
                                 "result": "pending"}]


def sending(at_seconds, processed, remaining=GIB // 2):
    return START + at_seconds, JobSample(active=True, data_total=GIB, data_remaining=remaining,
                                         data_processed=processed)


def test_a_timeout_while_nothing_is_sent_names_the_link():
    policy = ConvergencePolicy(PolicyConfig(completion_timeout_per_gib=30, progress_timeout=0, **NO_RAMP), GIB,
                               START)
    for at, processed in [(0, 1000), (5, 2000), (10, 3000), (15, 3000), (25, 3000), (30, 3000)]:
        policy.evaluate(*sending(at, processed))
    (abort,) = policy.actions
    assert abort.action == "abort"
    assert abort.reason.startswith("completion timeout of 30s")
    assert abort.reason.endswith("nothing was sent for the last 20s (data_processed stuck at 3000 bytes): the link "
                                 "to the destination looks down or blocked")


def test_a_timeout_while_data_flows_does_not_blame_the_link():
    """Dirtying faster than the link sends: remaining stays, but data keeps going out."""
    policy = ConvergencePolicy(PolicyConfig(completion_timeout_per_gib=30, progress_timeout=0, **NO_RAMP), GIB,
                               START)
    for at in range(0, 31, 5):
        policy.evaluate(*sending(at, 1000 + at * 1000))
    (abort,) = policy.actions
    assert "nothing was sent" not in abort.reason


def test_a_hard_timeout_while_nothing_is_sent_names_the_link():
    policy = ConvergencePolicy(PolicyConfig(completion_timeout_per_gib=0, progress_timeout=0, hard_timeout=12,
                                            **NO_RAMP), GIB, START)
    for at in (0, 1, 12):
        policy.evaluate(*sending(at, 500))
    (abort,) = policy.actions
    assert abort.reason == ("hard timeout of 12s reached; nothing was sent for the last 12s (data_processed stuck "
                            "at 500 bytes): the link to the destination looks down or blocked")


# ---------------------------------------------------------------------------
# The operator's cancel request


def test_cancel_before_postcopy_aborts_once():
    policy = ConvergencePolicy(PolicyConfig(**NO_RAMP), GIB, START)
    policy.evaluate(START + 1, running(GIB // 2))
    decided = policy.cancel(START + 2, "cancelled by the operator (/var/lib/virtops/cancel)")
    assert [(a.at, a.action, a.reason) for a in decided] == [
        (2.0, ABORT, "cancelled by the operator (/var/lib/virtops/cancel)")]
    assert policy.aborted is True
    assert policy.cancel(START + 3, "again") == []
    assert policy.evaluate(START + 4, running(GIB // 4)) == []
    assert [a.action for a in policy.actions] == [ABORT]


def test_cancel_during_postcopy_is_recorded_not_aborted():
    policy = ConvergencePolicy(PolicyConfig(**NO_RAMP), GIB, START)
    policy.observe_postcopy(START + 1)
    decided = policy.cancel(START + 2, "cancelled by the operator (/var/lib/virtops/cancel)")
    assert [(a.action, a.reason) for a in decided] == [(NOTE, CANCEL_DURING_POSTCOPY)]
    assert policy.aborted is False
    assert policy.cancel(START + 3, "again") == []
    assert [a.action for a in policy.actions] == [NOTE, NOTE]  # the post-copy switch, then the cancel
    assert left_to_finish_after_cancel(policy.summary()) is True


def test_cancel_after_the_policy_aborted_decides_nothing():
    policy = ConvergencePolicy(PolicyConfig(hard_timeout=5, **NO_RAMP), GIB, START)
    assert [a.action for a in policy.evaluate(START + 6, running(GIB // 2))] == [ABORT]
    assert policy.cancel(START + 7, "cancelled by the operator (/x)") == []
    assert left_to_finish_after_cancel(policy.summary()) is False
