# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection on the lab: virtops.migration.migrate and evacuate against what breaks.

A destination libvirt stopped, killed or cut off mid-migration, the source's libvirt restarted, the
job aborted or timed out, a guest left paused, a name taken on the destination, a guest running on
two hosts, two runs at once, a destination dying mid-evacuation. Every case asserts the same outcome:
the guest runs exactly once (hv1..hv3), is defined persistently on that host only, the counter it
writes to its NFS-backed disk goes on advancing past the value read before the fault (the rest of
the disk unchanged), and the module's message names the cause and what to do. Each case writes a
row of docs/fault-injection-results.md (the fault_table plugin).

One Linux guest (128 MiB, writing its counter every second, dirtying 8 MiB/s of its memory) is
shared: before each case it is brought back to run on hv1 only. A 1 MiB/s bandwidth cap keeps its
migrations going until the fault is injected. Every case restores the lab (daemons started, links
up, extra domains removed) even when it fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime

import migrate_support as lab
import pytest
from migrate_support import HYPERVISORS, running

SOURCE, DEST, THIRD = "hv1", "hv2", "hv3"
NAME = "ft-vm"
GUEST = {"name": NAME, "host": SOURCE, "kind": "linux", "memory_mib": 128, "counter": True,
         "dirty_mib": 4, "dirty_interval": 0.5}
SLOW = 1  # MiB/s: below the guest's dirty rate, so the migration runs until the fault
MIGRATION = "migration"
EVACUATION = "evacuation"


# ---------------------------------------------------------------------------
# Fixtures: the lab's libvirt units, the shared guest, its home (hv1)


@pytest.fixture(scope="module")
def units(request):
    """The active libvirt units of every hypervisor (to start again after a fault); the lab restored at the end."""
    request.getfixturevalue("prepared_lab")
    media = lab.playbook(lab.PLAYBOOKS / "guest_media.yml")
    assert media.rc == 0, f"guest media failed: {media.describe()}"
    found = {host: lab.libvirt_units(host) for host in HYPERVISORS}
    for host, active in found.items():
        assert any(unit.endswith(".socket") for unit in active), f"libvirt does not listen on {host}: {active}"
    yield found
    restore(found)


def restore(units: dict[str, list[str]]) -> None:
    """Links up and libvirt running on every hypervisor."""
    for host in HYPERVISORS:
        if not lab.link_is_up(host):
            lab.set_link(host, True)
    for host in HYPERVISORS:
        lab.start_libvirt(host, units[host])


def boot(guests: list[dict]) -> None:
    """Create the guests afresh and wait until each writes its counter (it is up)."""
    lab.remove_guests(guests)
    lab.create_guests(guests)
    for guest in guests:
        lab.wait_for_counter_past(guest["name"], 0, timeout=240)


@pytest.fixture(scope="module")
def vm(units):
    boot([GUEST])
    yield GUEST
    lab.remove_guests([GUEST])


def bring_home() -> None:
    """The shared guest running and defined on hv1 only: migrated back, or created afresh."""
    where = lab.whereabouts(NAME)
    if where == {SOURCE: running(True)}:
        return
    if len(where) == 1:
        (host, info), = where.items()
        if info == running(True):
            back = lab.module(host, "migrate", {"name": NAME, "dest_uri": lab.dest_uri(SOURCE)})
            if not back.get("failed") and lab.whereabouts(NAME) == {SOURCE: running(True)}:
                return
    boot([GUEST])


@pytest.fixture
def home(vm, units):
    """Before: the guest on hv1 only, writing; its disk mark. After: the lab restored, whatever happened."""
    try:
        bring_home()
        yield lab.wait_for_counter_past(NAME, lab.disk_mark(NAME).counter)
    finally:
        restore(units)


# ---------------------------------------------------------------------------
# Running the module and judging the outcome


def migrate_args(**options) -> dict:
    return dict({"name": NAME, "dest_uri": lab.dest_uri(DEST)}, **options)


def migrate(**options) -> dict:
    return lab.module(SOURCE, "migrate", migrate_args(**options))


def start_migrate(**options) -> subprocess.Popen:
    return lab.start_module(SOURCE, "migrate", migrate_args(**options))


def message(result: dict) -> str:
    if result.get("failed"):
        return result.get("msg", "")
    return "ok, {}: {}".format(result.get("action"), result.get("explanation"))


def says(result: dict, *words: str) -> None:
    """The module's message names each of ``words`` (case-insensitive)."""
    text = message(result).lower()
    missing = [word for word in words if word.lower() not in text]
    assert not missing, f"the message lacks {missing}: {message(result)}"


def short(text: str, limit: int = 360) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def outcome(observed, result: dict, before: lab.DiskMark, name: str = NAME, persistent: bool = True) -> str:
    """The guest runs exactly once (not paused), is defined persistently there only, and writes on; recorded."""
    where = lab.whereabouts(name)
    active = sorted(host for host, info in where.items() if info["state"] not in ("shutoff", None))
    assert len(active) == 1, f"{name} is active on {active or 'no host'}: {where}"
    host = active[0]
    assert where[host]["state"] == "running", f"{name} is {where[host]['state']} on {host}"
    defined = sorted(host for host, info in where.items() if info["persistent"])
    if persistent:
        assert defined == [host], f"{name} runs on {host} but is defined on {defined}"
    after = lab.assert_disk_intact_and_written(name, before)
    observed(f"{short(message(result))} | runs on {host}; persistent on {', '.join(defined) or 'none'};"
             f" counter {before.counter} -> {after.counter}, rest of the disk unchanged")
    return host


def finish(proc: subprocess.Popen) -> dict:
    return lab.finish_module(proc, SOURCE, timeout=300)


def underway() -> None:
    lab.wait_for_migration_underway(SOURCE, NAME, DEST)


# ---------------------------------------------------------------------------
# The destination's libvirt, the link to it, the source's libvirt


@pytest.mark.fault_table(area=MIGRATION, fault="destination libvirt stopped (daemon and its sockets) before the migration",
                         expected="refused before touching the source: connection error naming the destination and "
                                  "what to check; the guest runs on on the source")
def test_destination_libvirt_stopped_before(home, observed, units):
    lab.stop_libvirt(DEST)
    try:
        result = migrate()
    finally:
        lab.start_libvirt(DEST, units[DEST])  # virsh on hv2 reads the outcome
    assert result.get("failed"), result
    assert result["error"]["kind"] == "connection"
    assert result["changed"] is False
    says(result, "connect to destination", lab.dest_uri(DEST), "next:")
    assert outcome(observed, result, home) == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="destination libvirt daemon SIGKILLed while the migration runs",
                         expected="migration fails; the source keeps running the guest; the half-made destination "
                                  "domain is gone; the message says where the guest runs")
def test_destination_libvirt_killed_during(home, observed, units):
    proc = start_migrate(bandwidth=SLOW)
    try:
        underway()
        lab.kill_libvirt(DEST)
    finally:
        result = finish(proc)
        lab.start_libvirt(DEST, units[DEST])
    assert result.get("failed"), result
    says(result, "migration failed", "runs on: source", "libvirt said")
    assert outcome(observed, result, home) == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="network link to the destination cut while the migration runs "
                                               "(until the source gives up), then restored",
                         expected="migration fails once libvirt's keepalive gives up; the source keeps running the "
                                  "guest; the destination is cleaned; the message names the lost connection")
def test_link_to_destination_cut_during(home, observed):
    proc = start_migrate(bandwidth=SLOW)
    try:
        underway()
        lab.set_link(DEST, False)
        cut = time.monotonic()
        lab.wait_for(lambda: lab.job_running(SOURCE, NAME) is None, timeout=120,
                     what="the source to give up the migration")
        gave_up = time.monotonic() - cut
    finally:
        lab.set_link(DEST, True)
        result = finish(proc)
    assert result.get("failed"), result
    says(result, "migration failed", "runs on: source", "libvirt said")
    names_the_link = ("the link to the destination looks down", "client socket is closed", "keepalive")
    assert any(words in message(result).lower() for words in names_the_link), message(result)
    host = outcome(observed, result, home)
    observed(f"(the source gave up {gave_up:.0f} s after the cut)")
    assert host == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="source libvirt daemon restarted while the migration runs",
                         expected="the restarted daemon cancels the migration; the guest runs on on the source; the "
                                  "module reports the lost connection and where the guest runs")
def test_source_libvirt_restarted_during(home, observed):
    daemon = lab.libvirt_daemon(SOURCE)
    proc = start_migrate(bandwidth=SLOW)
    try:
        underway()
        restarted = lab.ssh(SOURCE, f"systemctl restart {daemon}.service")
        assert restarted.returncode == 0, restarted.stderr
    finally:
        result = finish(proc)
    assert result.get("failed"), result
    says(result, "migration failed", "runs on: source", "libvirt said")
    names_the_lost_connection = ("the connection was lost", "lost the connection to the source")
    assert any(words in message(result).lower() for words in names_the_lost_connection), message(result)
    host = outcome(observed, result, home)
    assert host == SOURCE


# ---------------------------------------------------------------------------
# The job aborted, the hard timeout


@pytest.mark.fault_table(area=MIGRATION, fault="job aborted with migration_job operation=abort while it runs",
                         expected="source keeps running, destination cleaned; the migrate run fails saying the "
                                  "guest runs on the source and that a re-run is safe")
def test_job_aborted(home, observed):
    proc = start_migrate(bandwidth=SLOW)
    try:
        underway()
        aborted = lab.module(SOURCE, "migration_job", {"name": NAME, "operation": "abort", "dest_uri": lab.dest_uri(DEST)})
    finally:
        result = finish(proc)
    assert aborted.get("failed") is not True, aborted.get("msg")
    assert aborted["changed"] is True and aborted["running_on"]["hosts"] == ["source"]
    assert result.get("failed"), result
    says(result, "migration failed", "runs on: source", "re-run")
    assert outcome(observed, result, home) == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="hard timeout reached (timeout: 8 s) on a migration that cannot converge",
                         expected="the job is aborted at the limit; source keeps running, destination cleaned; the "
                                  "message says the policy aborted it")
def test_hard_timeout(home, observed):
    result = migrate(bandwidth=SLOW, timeout=8, convergence={"downtime_steps": 0, "poll_interval": 0.5})
    assert result.get("failed"), result
    aborts = [action for action in result["policy_actions"] if action["action"] == "abort"]
    assert aborts and aborts[0]["result"] == "ok", result["policy_actions"]
    says(result, "aborted by the convergence policy", "runs on: source")
    assert outcome(observed, result, home) == SOURCE
    observed(f"(aborted at {aborts[0]['at']:.1f} s)")


# ---------------------------------------------------------------------------
# What an earlier attempt or another operator left behind


def paused_outcome(observed, result: dict, before: lab.DiskMark, host: str) -> None:
    """The guest is active once, paused, on ``host`` and persistent there only; resumed by the test, it writes on."""
    where = lab.whereabouts(NAME)
    active = sorted(name for name, info in where.items() if info["state"] not in ("shutoff", None))
    assert active == [host], f"{NAME} is active on {active or 'no host'}, expected {host} only: {where}"
    assert where[host]["state"] == "paused", f"{NAME} is {where[host]['state']} on {host}, expected paused"
    defined = sorted(name for name, info in where.items() if info["persistent"])
    assert defined == [host], f"{NAME} is paused on {host} but defined on {defined}"
    resumed = lab.ssh(host, f"virsh resume {NAME}")
    assert resumed.returncode == 0, resumed.stderr
    after = lab.assert_disk_intact_and_written(NAME, before)
    observed(f"{short(message(result))} | paused on {host} only, persistent there; resumed by the test: counter "
             f"{before.counter} -> {after.counter}, rest of the disk unchanged")


def suspend_on_source() -> None:
    suspended = lab.ssh(SOURCE, f"virsh suspend {NAME}")
    assert suspended.returncode == 0, suspended.stderr
    reason = lab.ssh(SOURCE, f"virsh domstate --reason {NAME}").stdout.strip()
    assert reason == "paused (user)", reason


@pytest.mark.fault_table(area=MIGRATION, fault="guest paused by its user on the source (virsh suspend, reason user)",
                         expected="never resumed: moved paused (on_paused_source: resume, the default), arrives paused "
                                  "on the destination, and the result says so")
def test_guest_paused_by_its_user_moves_paused(home, observed):
    suspend_on_source()
    result = migrate()
    assert result.get("failed") is not True, result.get("msg")
    assert result["actions"] == ["migrate_paused"], result["actions"]
    says(result, "paused by its user", "arrives paused")
    assert any("stays paused" in warning for warning in result.get("warnings", [])), result.get("warnings")
    assert result["placement"]["after"]["destination"]["state"] == "paused"
    paused_outcome(observed, result, home, DEST)


@pytest.mark.fault_table(area=MIGRATION, fault="guest paused by its user, run with on_paused_source: refuse",
                         expected="refused before anything changes, naming the pause and what to do; stays paused on "
                                  "the source")
def test_guest_paused_by_its_user_refused_on_request(home, observed):
    suspend_on_source()
    result = migrate(on_paused_source="refuse")
    assert result.get("failed"), result
    assert result["error"]["kind"] == "validation"
    says(result, "paused by its user", "on_paused_source: refuse", "nothing was touched", "resume it yourself")
    assert lab.domain(DEST, NAME) == lab.ABSENT
    paused_outcome(observed, result, home, SOURCE)


@pytest.mark.fault_table(area=MIGRATION, fault="the source host named twice: run from hv3 with uri naming hv1 and "
                                               "dest_uri naming hv1 by its address",
                         expected="refused as the destination being the source host (same host UUID) before the "
                                  "guest is looked up; never called split brain, no advice to destroy a copy")
def test_same_host_under_two_names(home, observed):
    address_uri = f"qemu+tls://{lab.host_address(SOURCE)}/system"
    result = lab.module(THIRD, "migrate", {"name": NAME, "uri": lab.dest_uri(SOURCE), "dest_uri": address_uri})
    assert result.get("failed"), result
    assert result["error"]["kind"] == "validation", result["error"]
    says(result, "the destination is the source host", "host uuid", "nothing was touched")
    assert "destroy" not in message(result).lower(), message(result)
    assert outcome(observed, result, home) == SOURCE


def domain_xml(host: str, name: str) -> str:
    proc = lab.ssh(host, f"virsh dumpxml --inactive {name}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def put_xml(host: str, xml: str, path: str) -> None:
    proc = lab.ssh_input(host, f"cat > {path}", xml.encode())
    assert proc.returncode == 0, proc.stderr


@pytest.mark.fault_table(area=MIGRATION, fault="a different domain (same name, other UUID) defined on the destination",
                         expected="refused before anything changes, naming the other UUID and what to do; neither "
                                  "domain touched")
def test_same_name_other_uuid_on_destination(home, observed):
    other_uuid = "0badc0de-0000-4000-8000-00000000f417"
    xml = domain_xml(SOURCE, NAME)
    start, end = xml.index("<uuid>"), xml.index("</uuid>") + len("</uuid>")
    put_xml(DEST, xml[:start] + f"<uuid>{other_uuid}</uuid>" + xml[end:], "/tmp/ft-other.xml")
    try:
        defined = lab.ssh(DEST, "virsh define /tmp/ft-other.xml")
        assert defined.returncode == 0, defined.stderr
        result = migrate()
        assert result.get("failed"), result
        assert result["error"]["kind"] == "validation"
        says(result, other_uuid, "target name", "dest_name")
        dest_copy = lab.ssh(DEST, f"virsh domuuid {NAME}").stdout.strip()
        assert dest_copy == other_uuid, "the destination's domain was changed"
        assert lab.domain(DEST, NAME) == {"present": True, "state": "shutoff", "persistent": True}
    finally:
        lab.ssh(DEST, f"virsh undefine {other_uuid}; rm -f /tmp/ft-other.xml")
    assert outcome(observed, result, home) == SOURCE


def twin_xml(xml: str) -> str:
    """The guest's definition (same name and UUID) on a local copy of nothing: its own empty disk and log."""
    start = xml.index("<disk ")
    end = xml.index("</disk>", start) + len("</disk>")
    disk = ("<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            "<source file='/var/lib/libvirt/images/ft-twin.img'/><target dev='vda' bus='virtio'/></disk>")
    return (xml[:start] + disk + xml[end:]).replace(f"{NAME}-serial.log", "ft-twin-serial.log")


@pytest.mark.fault_table(area=MIGRATION, fault="the guest running on both hosts (same name and UUID started on the "
                                               "destination, on a disk of its own)",
                         expected="refused as split brain: neither copy touched, the message says which to destroy "
                                  "by hand")
def test_running_on_both_hosts(home, observed):
    put_xml(DEST, twin_xml(domain_xml(SOURCE, NAME)), "/tmp/ft-twin.xml")
    try:
        created = lab.ssh(DEST, "truncate -s 8M /var/lib/libvirt/images/ft-twin.img && virsh create /tmp/ft-twin.xml")
        assert created.returncode == 0, created.stderr
        assert lab.domain(DEST, NAME) == running(False)
        result = migrate()
        assert result.get("failed"), result
        assert result["error"]["kind"] == "split_brain"
        says(result, "active on both hosts", "nothing was touched", "destroy the other")
        assert lab.domain(DEST, NAME) == running(False), "the destination's copy was touched"
        assert lab.domain(SOURCE, NAME) == running(True), "the source's copy was touched"
    finally:
        lab.ssh(DEST, f"virsh destroy {NAME}; rm -f /var/lib/libvirt/images/ft-twin.img /tmp/ft-twin.xml")
    assert outcome(observed, result, home) == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="two migrate runs against the same guest started at once",
                         expected="one migrates the guest; the other reports a migration in progress (or finds it "
                                  "done) and touches nothing")
def test_two_runs_at_once(home, observed):
    first, second = start_migrate(bandwidth=16), start_migrate(bandwidth=16)
    results = [finish(first), finish(second)]
    won = [result for result in results if not result.get("failed") and result.get("changed")]
    lost = [result for result in results if result not in won]
    assert len(won) == 1, [message(result) for result in results]
    (other,) = lost
    if other.get("failed"):
        assert other["error"]["kind"] == "in_progress", message(other)
        says(other, "already running", "nothing was touched", "migration_job")
    else:
        assert other["changed"] is False, message(other)
    observed(f"winner: {short(message(won[0]), 120)} | other:")
    assert outcome(observed, other, home) == DEST


# ---------------------------------------------------------------------------
# Evacuation: a destination dies while hv1 is being emptied

# A migration the module started in the moment it learned of a failure is not a new one.
FAILURE_NOTICE_SECONDS = 10
QEMU_LOGS = "/var/log/libvirt/qemu"


def incoming_starts(names: list[str], since: float) -> list[tuple[float, str, str]]:
    """(time, host, guest) of every QEMU libvirt started for ``names`` on hv2 and hv3 since ``since``.

    On a destination a guest's QEMU is started only to receive a migration: each is a migration's start.
    """
    found = []
    logs = " ".join(f"{QEMU_LOGS}/{name}.log" for name in names)
    for host in (DEST, THIRD):
        for line in lab.ssh(host, f"grep -H ': starting up' {logs} 2>/dev/null").stdout.splitlines():
            path, _colon, rest = line.partition(":")
            when = datetime.strptime(rest.split(": starting up", 1)[0], "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
            if when >= since:
                found.append((when, host, path.rsplit("/", 1)[-1].removesuffix(".log")))
    return sorted(found)


def evac_guests_named(prefix: str) -> list[dict]:
    return [{"name": f"{prefix}-{index}", "host": SOURCE, "kind": "linux", "memory_mib": 128, "counter": True}
            for index in range(4)]


@pytest.fixture
def evac_guests(units, on_failure):
    """Three guests on hv1, named after the case: an image deleted on the export and created again
    under the same name minutes later can be served stale by nfs-ganesha (the guest's writes vanish)."""
    guests = evac_guests_named(f"fe{on_failure[0]}")
    try:
        boot(guests)
        yield {guest["name"]: lab.disk_mark(guest["name"]) for guest in guests}
    finally:
        restore(units)
        lab.remove_guests(guests)
        for host in HYPERVISORS:
            lab.ssh(host, "rm -f /tmp/ft-evacuate-report.json")


def evacuate_cmd(on_failure: str) -> subprocess.Popen:
    args = {"destinations": [{"name": host, "uri": lab.dest_uri(host)} for host in (DEST, THIRD)],
            "include": [f"fe{on_failure[0]}-*"], "max_parallel": 2, "max_parallel_per_destination": 1, "bandwidth": 6,
            "on_failure": on_failure, "memory_reserve_mib": 0,
            "convergence": {"completion_timeout_per_gib": 800},
            "report_path": "/tmp/ft-evacuate-report.json"}
    return lab.start_module(SOURCE, "evacuate", args)


@pytest.mark.parametrize("on_failure", ["continue", "stop"])
@pytest.mark.fault_table(area=EVACUATION, fault="a destination's libvirt killed (and kept down) while four guests "
                                                "are being evacuated, two at a time",
                         expected="continue: the guest on its way there stays on hv1, the others (those planned "
                                  "for the dead host too, re-placed) move to the live destination; stop: no new "
                                  "migration starts, those not started stay on hv1; the result and the report file "
                                  "say which")
def test_destination_dies_mid_evacuation(evac_guests, observed, units, on_failure):
    names = sorted(evac_guests)
    since = time.time()
    proc = evacuate_cmd(on_failure)
    try:
        def the_guest_migrating_to_third() -> str | None:
            return next((name for name in names
                         if lab.job_running(SOURCE, name) and lab.domain(THIRD, name)["present"]), None)
        doomed = lab.wait_for(the_guest_migrating_to_third, timeout=120, what="a migration into hv3")
        lab.kill_libvirt(THIRD, keep_down=True)
        lab.wait_for(lambda: lab.job_running(SOURCE, doomed) is None, timeout=120,
                     what=f"the source to give up {doomed}'s migration")
        failed_at = time.time()
    finally:
        result = lab.finish_module(proc, SOURCE, timeout=600)
    report = json.loads(lab.ssh(SOURCE, "cat /tmp/ft-evacuate-report.json").stdout)
    lab.start_libvirt(THIRD, units[THIRD])
    rows = {vm["name"]: vm for vm in result["vms"]}
    assert sorted(rows) == names, result.get("msg")
    assert result.get("failed"), "hv1 cannot have been emptied"
    assert {row["name"]: row["result"] for row in report["vms"]} == {name: row["result"] for name, row in rows.items()}
    results = {name: row["result"] for name, row in rows.items()}
    failed = [name for name, res in results.items() if res == "failed"]
    assert failed, results
    for name in failed:
        assert name in result["msg"] and rows[name]["to"] == THIRD, (name, rows[name])
        assert rows[name]["re_placed_from"] == [], (name, rows[name])
    re_placed = sorted(name for name, row in rows.items() if row["re_placed_from"])
    for name in re_placed:
        assert on_failure == "continue", (name, rows[name])
        assert rows[name]["re_placed_from"] == [THIRD] and rows[name]["to"] == DEST, (name, rows[name])
        assert results[name] == "migrated", (name, rows[name])
    where = {}
    for name in names:
        placed = outcome(lambda _text: None, result, evac_guests[name], name=name)
        where[name] = placed
        if results[name] == "migrated":
            assert placed == rows[name]["to"] == DEST, (name, placed, rows[name])
        else:
            assert placed == SOURCE, (name, results[name], placed)
    if on_failure == "stop":
        assert all(res in ("migrated", "failed", "not_started") for res in results.values()), results
        not_started = sorted(name for name, res in results.items() if res == "not_started")
        assert not_started, f"every guest was started although hv3 died during the first two migrations: {results}"
        starts = incoming_starts(names, since)
        late = [start for start in starts if start[0] > failed_at + FAILURE_NOTICE_SECONDS]
        assert not late, f"migrations started after {doomed}'s failure at {failed_at:.0f}: {late}"
        touched = sorted({name for _when, _host, name in starts} & set(not_started))
        assert not touched, f"guests reported not_started were started on a destination: {touched} ({starts})"
    else:
        assert "not_started" not in results.values(), results
    observed(f"{short(result['msg'], 300)} | results: "
             + ", ".join(f"{name} {results[name]}" + (f" (re-placed from {THIRD})" if name in re_placed else "")
                         + f" -> runs on {where[name]}" for name in names)
             + "; each runs once, defined there only, its counter advancing; the report file agrees")
