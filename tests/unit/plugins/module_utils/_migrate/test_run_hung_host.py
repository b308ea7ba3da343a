"""A host that stops answering (a libvirt daemon stopped with SIGSTOP, hung, or cut off): every wait is bounded.

The fakes here never fail: their calls block until the test ends, as calls to a stopped libvirtd do. Each test
proves one bound: opening, closing, one call, the migrate call after the hard timeout, each step of the recovery,
and the run as a whole; and that the result never claims a side it could not check, nor changes anything there.
"""

from __future__ import annotations

import threading
import time

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
    MigrationFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt import (
    connection as _connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    KEEPALIVE_COUNT,
    KEEPALIVE_INTERVAL_SECONDS,
    NoAnswer,
    call_within,
    close_quietly,
    open_connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate import (
    monitor as _monitor,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate import (
    recovery as _recovery,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    HARD_TIMEOUT_GRACE_SECONDS,
    MIGRATE_CALL_GRACE_SECONDS,
    RECOVERY_SECONDS,
    MigrateCallAbandoned,
    MigrationMonitor,
    give_up_at,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ConvergencePolicy,
    PolicyConfig,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.recovery import (
    next_step_after_failure,
    placement_as_checked,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import (
    Connections,
    DeadConnection,
    after_migration_call,
    environment_of,
    migrate_request,
)

SRC = "qemu:///system"
DEST = "qemu+tls://hv2.example.com/system"
GIB_KIB = 1048576
SLACK = 3.0  # seconds of real time a loaded test machine may add to a bound


@pytest.fixture
def asleep():
    """An event the hung calls wait on; set at the end of the test so their threads end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def quick(monkeypatch):
    """The run's deadlines in fractions of a second (the unit tests measure real time)."""
    monkeypatch.setattr(_monitor, "MIGRATE_CALL_GRACE_SECONDS", 2.0)
    monkeypatch.setattr(_recovery, "SIDE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(_recovery, "RECONNECT_SECONDS", 1.0)
    monkeypatch.setattr(_recovery, "RECOVERY_SECONDS", 3.0)
    monkeypatch.setattr(_connection, "CONNECT_TIMEOUT_SECONDS", 5.0)  # longer than the reconnect window
    monkeypatch.setattr(_connection, "CLOSE_TIMEOUT_SECONDS", 0.2)


class HungConnection:
    """A connection to a libvirtd that stopped answering: every call blocks until the test ends."""

    def __init__(self, asleep: threading.Event, host: lv.FakeHost) -> None:
        self.asleep = asleep
        self.host = host
        self.called: list[str] = []

    def __getattr__(self, name: str):
        def blocked(*_args, **_kwargs):
            self.called.append(name)
            self.asleep.wait(60)
            raise lv.libvirtError("internal error: connection closed due to keepalive timeout")
        return blocked


def hang_opening(monkeypatch, asleep: threading.Event, uri: str) -> list[str]:
    """libvirt.open(uri) blocks (TCP accepted, no TLS handshake answer); other URIs open as usual."""
    real_open = lv.open
    attempts: list[str] = []

    def opening(name: str | None = None):
        if name == uri:
            attempts.append(name)
            asleep.wait(60)
        return real_open(name)
    monkeypatch.setattr(lv, "open", opening)
    return attempts


def elapsed(start: float) -> float:
    return time.monotonic() - start


# ---------------------------------------------------------------------------
# One call, opening, closing, keepalive


def test_a_call_that_returns_in_time_gives_its_value_or_its_error():
    assert call_within(1.0, lambda: 42) == 42
    with pytest.raises(lv.libvirtError, match="refused"):
        call_within(1.0, lambda: (item for item in ()).throw(lv.libvirtError("refused")))


def test_a_call_that_does_not_return_is_left_behind_after_its_deadline(asleep):
    start = time.monotonic()
    with pytest.raises(NoAnswer, match="no answer within 0.3s"):
        call_within(0.3, lambda: asleep.wait(60))
    assert elapsed(start) < 0.3 + SLACK


def test_a_result_that_arrives_too_late_is_discarded():
    release, discarded = threading.Event(), threading.Event()
    late = []

    def slow() -> str:
        release.wait(5)
        return "late connection"

    def discard(value: str) -> None:
        late.append(value)
        discarded.set()
    with pytest.raises(NoAnswer):
        call_within(0.1, slow, discard)
    release.set()
    assert discarded.wait(5) and late == ["late connection"]


def test_every_connection_runs_keepalive_on_a_running_event_loop(world):
    conn = open_connection(SRC, "source")
    assert lv.EVENT_LOOP["registered"] is True
    assert conn.keepalive == (KEEPALIVE_INTERVAL_SECONDS, KEEPALIVE_COUNT)
    seen = lv.EVENT_LOOP["iterations"]
    deadline = time.monotonic() + 5
    while lv.EVENT_LOOP["iterations"] == seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lv.EVENT_LOOP["iterations"] > seen, "nothing runs libvirt's event loop: keepalive would never fire"


def test_opening_a_hung_libvirtd_fails_at_its_deadline_naming_the_cause(world, asleep, monkeypatch):
    attempts = hang_opening(monkeypatch, asleep, DEST)
    start = time.monotonic()
    with pytest.raises(ConnectionFailed) as raised:
        open_connection(DEST, "destination", within=0.5, domain="vm1", source_uri=SRC, dest_uri=DEST)
    assert elapsed(start) < 0.5 + SLACK
    assert attempts == [DEST]
    text = str(raised.value)
    assert "connect to destination" in text and "no answer within 0.5s" in text
    assert "does not answer: stopped, hung or overloaded" in text and "Next: check the libvirt daemon" in text


def test_a_connection_opened_after_its_deadline_is_closed(world, monkeypatch):
    release, opened = threading.Event(), []
    real_open = lv.open

    def slow_open(name: str | None = None):
        release.wait(5)
        opened.append(real_open(name))
        return opened[-1]
    monkeypatch.setattr(lv, "open", slow_open)
    with pytest.raises(ConnectionFailed):
        open_connection(DEST, "destination", within=0.1)
    release.set()
    deadline = time.monotonic() + 5
    while not (opened and opened[0].closed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened and opened[0].closed, "the late connection was left open"


def test_closing_a_connection_to_a_hung_host_does_not_wait_for_it(world, asleep):
    start = time.monotonic()
    close_quietly(HungConnection(asleep, world.hosts[DEST]), within=0.3)
    assert elapsed(start) < 0.3 + SLACK


# ---------------------------------------------------------------------------
# The grace: one constant, and when the monitor stops waiting for the migrate call


def test_the_grace_is_the_sum_of_its_parts():
    assert HARD_TIMEOUT_GRACE_SECONDS == MIGRATE_CALL_GRACE_SECONDS + RECOVERY_SECONDS + _monitor.CLOSE_SECONDS
    assert MIGRATE_CALL_GRACE_SECONDS >= KEEPALIVE_INTERVAL_SECONDS * (KEEPALIVE_COUNT + 1), \
        "the migrate call must get the time libvirt's keepalive needs to drop a silent peer"


@pytest.mark.parametrize(("hard_timeout", "aborted_at", "in_postcopy", "expected"), [
    (None, None, False, None),  # no hard timeout, no abort: wait for the call (keepalive bounds it)
    (30.0, None, False, 100.0 + 30.0 + MIGRATE_CALL_GRACE_SECONDS),
    (30.0, 110.0, False, 110.0 + MIGRATE_CALL_GRACE_SECONDS),  # the policy aborted first
    (None, 110.0, False, 110.0 + MIGRATE_CALL_GRACE_SECONDS),
    (30.0, 140.0, False, 100.0 + 30.0 + MIGRATE_CALL_GRACE_SECONDS),
    (30.0, 110.0, True, None),  # post-copy: the guest runs on the destination, never abandon it
])
def test_when_the_monitor_stops_waiting_for_the_migrate_call(hard_timeout, aborted_at, in_postcopy, expected):
    assert give_up_at(100.0, hard_timeout, aborted_at, in_postcopy) == expected


def never_converging(world) -> lv.FakeDomain:
    dom = world.hosts[SRC].add_domain("vm1", memory_kib=GIB_KIB)
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 512)], outcome="never")
    return dom


def stuck_after_the_abort(dom: lv.FakeDomain, asleep: threading.Event) -> None:
    """The migrate call returns only when the destination wakes up (the source waits on it), as on the lab."""

    def once_the_call_returns():
        asleep.wait(60)
    after_migration_call(dom, once_the_call_returns)


def test_the_monitor_leaves_a_migrate_call_that_does_not_return_after_the_hard_timeout(world, asleep, quick):
    dom = never_converging(world)
    stuck_after_the_abort(dom, asleep)
    policy = ConvergencePolicy(PolicyConfig(hard_timeout=5, downtime_steps=0), GIB_KIB * 1024, world.clock())
    start = time.monotonic()
    outcome = MigrationMonitor(dom, policy, world.clock, world.wait).run(
        lambda: dom.migrateToURI3(DEST, {}, lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_LIVE))
    assert elapsed(start) < SLACK
    assert outcome.aborted and outcome.call_abandoned
    assert isinstance(outcome.error, MigrateCallAbandoned)
    assert "had not returned 2s after the abort" in str(outcome.error)
    assert world.now - policy.started_at == pytest.approx(5 + 2, abs=1.01)  # the hard timeout plus the call's grace


def test_the_monitor_gives_up_on_a_source_whose_job_queries_hang(world, asleep, quick):
    """A hung source: jobStats never returns, so the policy never sees the timeout; the monitor's clock does."""
    dom = never_converging(world)
    stuck_after_the_abort(dom, asleep)
    source_now_hangs = threading.Event()
    real_job_stats = dom.jobStats

    def job_stats(flags: int = 0):
        if source_now_hangs.is_set():
            asleep.wait(60)
        return real_job_stats(flags)
    dom.jobStats = job_stats
    clock_started = world.clock()

    def clock() -> float:  # real seconds from here: the hung poll holds the fake clock still
        if source_now_hangs.is_set():
            return world.now + elapsed(hung_at[0])
        return world.now

    hung_at = [0.0]

    def wait(event: threading.Event, seconds: float) -> None:
        world.wait(event, seconds)
        if world.now - clock_started >= 2 and not source_now_hangs.is_set():
            hung_at[0] = time.monotonic()
            source_now_hangs.set()
    policy = ConvergencePolicy(PolicyConfig(hard_timeout=3, downtime_steps=0), GIB_KIB * 1024, clock_started)
    start = time.monotonic()
    outcome = MigrationMonitor(dom, policy, clock, wait).run(
        lambda: dom.migrateToURI3(DEST, {}, lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_LIVE))
    assert outcome.call_abandoned and not outcome.aborted
    assert "after the hard timeout" in str(outcome.error)
    assert elapsed(start) < 3 + 2 + SLACK


# ---------------------------------------------------------------------------
# The run: a destination that hangs mid-migration (what an operator saw on the lab)


def migrate(world, connections: Connections, **params):
    values = {"timeout": 5, "convergence": {"downtime_steps": 0}}
    values.update(params)
    return run_migration(migrate_request(**values), environment=environment_of(world, connect=connections))


def hang_destination_mid_migration(world, connections: Connections, dom: lv.FakeDomain, asleep: threading.Event,
                                   monkeypatch) -> HungConnection:
    """Once the job runs, the destination's libvirtd answers nothing: its connection hangs, reopening hangs."""
    hung = HungConnection(asleep, world.hosts[DEST])
    original = dom.migrateToURI3

    def call(*args):
        connections.replace("destination", hung)
        hang_opening(monkeypatch, asleep, DEST)
        try:
            return original(*args)
        finally:
            asleep.wait(60)  # the source's libvirtd waits on the destination too
    dom.migrateToURI3 = call
    return hung


def test_a_destination_hung_mid_migration_ends_the_run_within_the_grace(world, asleep, quick, monkeypatch):
    dom = never_converging(world)
    connections = Connections()
    hung = hang_destination_mid_migration(world, connections, dom, asleep, monkeypatch)
    start = time.monotonic()
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    took = elapsed(start)
    grace = _monitor.MIGRATE_CALL_GRACE_SECONDS + _recovery.RECOVERY_SECONDS
    assert took < grace + SLACK, f"the run took {took:.1f}s"
    error = raised.value
    text = str(error)
    assert "aborted by the convergence policy: hard timeout of 5s reached" in text
    assert "the migrate call had not returned" in text and "libvirt said" not in text
    assert "the domain now runs on: source (the destination could not be checked)" in text, text
    assert "the destination was not checked: it did not answer within 1s: its connection stopped answering and " \
           "a new one got no answer" in text
    assert f"Next: the domain runs on the source; inspect both hosts before re-running: once the destination " \
           f"answers again, check that it holds no copy of the domain (virsh -c {DEST} list --all" in text
    assert error.details["unreachable"] == ["destination"]
    assert error.details["placement"]["destination"] == {"present": None, "state": "unknown", "persistent": None}
    assert error.details["placement"]["source"]["state"] == "running"
    asked = [name for name in hung.called if name != "close"]
    assert asked == ["isAlive"], "the silent destination was asked again after it did not answer"
    hv2_changes = [method for host, method in world.methods() if host == "hv2"]
    assert hv2_changes == [], "something was undone on a destination that was not reached"


def test_a_destination_that_is_gone_and_hangs_when_reopened_is_bounded_too(world, asleep, quick, monkeypatch):
    """keepalive dropped the idle connection; reopening it completes TCP and then hangs in the handshake."""
    dom = never_converging(world)
    connections = Connections()
    opening = []
    original = dom.migrateToURI3

    def call(*args):
        connections.replace("destination", DeadConnection(noticed=True))
        opening.extend(hang_opening(monkeypatch, asleep, DEST))
        try:
            return original(*args)
        finally:
            asleep.wait(60)
    dom.migrateToURI3 = call
    start = time.monotonic()
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    assert elapsed(start) < _monitor.MIGRATE_CALL_GRACE_SECONDS + _recovery.RECOVERY_SECONDS + SLACK
    assert raised.value.details["unreachable"] == ["destination"]
    assert "runs on: source (the destination could not be checked)" in str(raised.value)


def test_a_source_that_hangs_during_recovery_is_never_claimed(world, asleep, quick, monkeypatch):
    """The source stops answering after the abort: the result says unknown, and nothing is done on either side."""
    dom = never_converging(world)
    connections = Connections()

    def once_the_call_returns():
        connections.replace("source", HungConnection(asleep, world.hosts[SRC]))
        hang_opening(monkeypatch, asleep, SRC)
    after_migration_call(dom, once_the_call_returns)
    start = time.monotonic()
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    assert elapsed(start) < _recovery.RECOVERY_SECONDS + SLACK
    error = raised.value
    text = str(error)
    assert error.details["unreachable"] == ["source"]
    assert "the domain now runs on: unknown (the source could not be checked)" in text, text
    assert "runs on: source" not in text and "re-running is safe" not in text
    assert error.details["placement"]["source"]["state"] == "unknown"
    assert "Next: inspect both hosts before re-running: once the source answers again" in text
    after_abort = world.mutations[[method for _host, method, _args in world.mutations].index("abortJob") + 1:]
    assert after_abort == [], f"changed after the source stopped answering: {after_abort}"


def test_recovery_on_two_hung_sides_ends_within_its_time(world, asleep, quick, monkeypatch):
    dom = never_converging(world)
    connections = Connections()

    def once_the_call_returns():
        connections.replace("source", HungConnection(asleep, world.hosts[SRC]))
        connections.replace("destination", HungConnection(asleep, world.hosts[DEST]))
        hang_opening(monkeypatch, asleep, SRC)
        hang_opening(monkeypatch, asleep, DEST)
    after_migration_call(dom, once_the_call_returns)
    start = time.monotonic()
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    assert elapsed(start) < _recovery.RECONNECT_SECONDS + SLACK, "the two sides were not waited for at once"
    assert raised.value.details["unreachable"] == ["destination", "source"]
    assert "the domain now runs on: unknown (the destination and source could not be checked)" in str(raised.value)


def test_a_recovery_whose_time_ran_out_checks_nothing_more(world, quick, monkeypatch):
    """With no recovery time left, a side is reported as not checked rather than asked past the deadline."""
    dom = never_converging(world)
    monkeypatch.setattr(_recovery, "RECOVERY_SECONDS", 0.0)
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, Connections())
    text = str(raised.value)
    assert "the recovery's 0s ran out before it was checked" in text
    assert raised.value.details["unreachable"] == ["destination", "source"]
    assert dom.host.domains[dom.UUIDString()] is dom  # nothing undone on the source


# ---------------------------------------------------------------------------
# The decisions behind the message


@pytest.mark.parametrize(("runs_on", "unchecked", "starts"), [
    (["source"], [], "fix the cause and re-run; re-running is safe"),
    ([], [], "inspect both hosts before re-running"),
    (["source"], ["destination"], ("the domain runs on the source; inspect both hosts before re-running: once the "
                                   "destination answers again, check that it holds no copy")),
    ([], ["source"], "inspect both hosts before re-running: once the source answers again, find where the domain runs"),
    ([], ["destination", "source"], "inspect both hosts before re-running: once the destination and source answer"),
])
def test_the_next_step_after_a_failure(runs_on, unchecked, starts):
    hint = next_step_after_failure(runs_on, unchecked, SRC, DEST)
    assert hint.startswith(starts), hint
    for side in unchecked:
        assert f"virsh -c {SRC if side == 'source' else DEST} list --all" in hint


def test_a_side_not_checked_is_unknown_in_the_placement_never_absent():
    absent = {"present": False, "state": None, "persistent": False}
    running = {"present": True, "state": "running", "persistent": True}
    after = placement_as_checked({"source": running, "destination": absent}, ["destination"])
    assert after == {"source": running, "destination": {"present": None, "state": "unknown", "persistent": None}}
    unchanged = placement_as_checked({"source": running, "destination": absent}, [])
    assert unchanged == {"source": running, "destination": absent}


def test_the_timeout_option_documents_the_grace_and_its_parts():
    from ansible_collections.virtops.migration.plugins.doc_fragments._migration_tuning import (
        ModuleDocFragment,
    )

    text = " ".join(ModuleDocFragment.DOCUMENTATION.split())
    assert f"within a grace of {HARD_TIMEOUT_GRACE_SECONDS:g} seconds after the limit" in text
    assert f"up to {MIGRATE_CALL_GRACE_SECONDS:g} seconds for the migrate call" in text
    assert f"{RECOVERY_SECONDS:g} seconds to check both hosts" in text
    assert f"of which up to {_monitor.RECONNECT_SECONDS:g} seconds to reopen" in text
    assert f"at most {_monitor.SIDE_CALL_SECONDS:g} seconds for each call" in text
    assert f"{_monitor.CLOSE_SECONDS:g} seconds to close" in text
    silence = KEEPALIVE_INTERVAL_SECONDS * (KEEPALIVE_COUNT + 1)
    assert f"a probe every {KEEPALIVE_INTERVAL_SECONDS} seconds, the peer dropped after {silence} seconds" in text
    assert f"gives up after {_connection.CONNECT_TIMEOUT_SECONDS:g} seconds" in text


def test_an_evacuation_whose_destination_hangs_mid_migration_ends_within_the_grace(world, asleep, quick, monkeypatch):
    """evacuate runs each migration through the same code: a hung destination fails that guest, in bounded time."""
    from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
        EvacuationOptions,
    )
    from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
        EvacuationEnvironment,
        run_evacuation,
    )

    dom = never_converging(world)
    world.hosts[DEST].memory_stats = {"total": 8388608, "free": 6 * 1048576, "buffers": 0, "cached": 0}
    options = EvacuationOptions.from_params({
        "uri": SRC, "destinations": [{"name": "hv2", "uri": DEST}], "memory_reserve_mib": 0, "timeout": 5,
        "convergence": {"downtime_steps": 0}})

    def migrate_guest(request, check):
        connections = Connections()
        hang_destination_mid_migration(world, connections, dom, asleep, monkeypatch)
        return run_migration(request, check, environment_of(world, connect=connections, fs_type_of=lambda path: None))
    environment = EvacuationEnvironment(resolves_locally=lambda host: False, migrate_guest=migrate_guest)
    start = time.monotonic()
    result = run_evacuation(options, environment=environment)
    assert elapsed(start) < _monitor.MIGRATE_CALL_GRACE_SECONDS + _recovery.RECOVERY_SECONDS + SLACK
    (row,) = result["vms"]
    assert row["result"] == "failed", row
    assert row["details"]["unreachable"] == ["destination"]
    assert "runs on: source (the destination could not be checked)" in row["message"]
    assert world.hosts[SRC].domains[dom.UUIDString()].state()[0] == lv.VIR_DOMAIN_RUNNING
