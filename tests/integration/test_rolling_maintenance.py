# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rolling maintenance of the lab's three hypervisors with the runbook virtops.migration.rolling_maintenance.

On the placement cluster (placement_cluster.py: six Linux guests over hv1..hv3, an anti-affinity pair
db1/db2, an affinity pair, a guest pinned to hv1 whose pin policy the roll sets to shutdown). The
maintenance tasks file of these tests records that it ran and asks for a reboot, as a kernel upgrade
would, so every host of a roll really reboots (the lab boots a machine that reboots again).

The cases: the capacity check refusing a cluster that cannot take a host's guests, with nothing moved;
a full roll of hv1..hv3, killed mid-roll and run again, that ends with every guest where it started,
each moved exactly twice (out and home), the pair never on one host at any moment (from the audit
log); a health gate failing (libvirtd kept down after the reboot) stopping the roll on its failure
budget; a cancel during a roll's evacuation. Each asserts what the fault table's other rows assert:
each guest runs exactly once, is defined persistently there only, and its counter goes on advancing
with the rest of its disk unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import migrate_support as lab
import pytest
from migrate_support import HYPERVISORS, running
from placement_cluster import (
    AUDIT_LOG,
    DB_GROUP,
    HOME,
    MAINTENANCE_MARK,
    NAMES,
    audit_records,
    bring_home,
    fresh_files,
    fresh_marks,
    runs_once_intact,
    seen,
    shared_hosts,
    when,
)

ROLL = "rolling maintenance"
ROLL_PLAYBOOK = "virtops.migration.rolling_maintenance"
CANCEL_PLAYBOOK = "virtops.migration.cancel"
ROLL_RECORD = "/var/lib/virtops/roll.json"
CANCEL_REQUEST = "/var/lib/virtops/cancel"
MAINTAINED_LOG = "/var/lib/virtops-test/maintained"
PINNED = "pl-pin"
ROLL_TIMEOUT = 1800

MAINTENANCE_TASKS = """---
- name: Record that the maintenance ran
  ansible.builtin.shell: echo "$(date +%s) $(cat /proc/sys/kernel/random/boot_id)" >> {log}
  changed_when: true

- name: Ask for a reboot, as a kernel upgrade does
  ansible.builtin.copy:
    dest: /run/reboot-required
    content: "*** System restart required ***\\n"
    mode: "0644"
{extra}"""

KEEP_LIBVIRT_DOWN = """
- name: Keep libvirt down after the reboot (the health gate must stop the roll)
  ansible.builtin.command: systemctl mask libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd-tls.socket
  changed_when: true
"""


def tasks_file(tmp_path, extra: str = "") -> str:
    path = tmp_path / "maintenance.yml"
    path.write_text(MAINTENANCE_TASKS.format(log=MAINTAINED_LOG, extra=extra))
    return str(path)


def roll_vars(tasks: str, **more) -> dict:
    return dict({
        "rolling_maintenance_tasks_file": tasks,
        "rolling_maintenance_audit_log": AUDIT_LOG,
        "rolling_maintenance_include": ["pl-*"],
        "rolling_maintenance_constraints": {"pinned": [{"guest": PINNED, "policy": "shutdown"}]},
        "rolling_maintenance_health_timeout": 120,
    }, **more)


def roll_records() -> dict[str, dict]:
    records = {}
    for host in HYPERVISORS:
        proc = lab.ssh(host, f"cat {ROLL_RECORD} 2>/dev/null")
        records[host] = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}
    return records


def boot_id(host: str) -> str:
    return lab.ssh(host, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def maintained(host: str) -> list[str]:
    return lab.ssh(host, f"cat {MAINTAINED_LOG} 2>/dev/null").stdout.split("\n")[:-1]


def no_roll_files() -> None:
    for host in HYPERVISORS:
        lab.ssh(host, f"systemctl unmask libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket "
                      f"libvirtd-tls.socket >/dev/null 2>&1; rm -f {ROLL_RECORD} {CANCEL_REQUEST} {MAINTAINED_LOG} "
                      "/run/reboot-required")


def all_moves() -> list[dict]:
    """Every guest move of the audit logs of the three hosts (evacuations on the source, restores home)."""
    return [record for host in HYPERVISORS for record in audit_records(host) if record.get("guest_name")]


@pytest.fixture
def at_home_unrolled(cluster):
    """Every guest at home and writing, no roll record, mark or cancel request; their disk marks."""
    no_roll_files()
    start_pinned_again()
    bring_home()
    fresh_files()
    yield fresh_marks()
    no_roll_files()
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -f {MAINTENANCE_MARK}")


def finish(proc: subprocess.Popen, timeout: float = ROLL_TIMEOUT) -> tuple[int, str]:
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate(timeout=60)[0]
    return proc.returncode, out


def start_pinned_again() -> None:
    """A case that stopped the roll after hv1's pinned guest was saved: start it (it resumes where it stopped)."""
    if lab.domain("hv1", PINNED)["state"] == "shutoff":
        proc = lab.ssh("hv1", f"virsh start {PINNED}")
        assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------


@pytest.mark.fault_table(area=ROLL, fault="a roll of a cluster that cannot take a host's guests (every host keeps "
                                          "a memory reserve larger than itself)",
                         expected="refused in the preflight with each guest that fits nowhere and the numbers; "
                                  "nothing moved, no host marked, no roll recorded")
def test_capacity_check_refuses_with_nothing_moved(at_home_unrolled, tmp_path, observed):
    run = lab.playbook(ROLL_PLAYBOOK, roll_vars(tasks_file(tmp_path), rolling_maintenance_memory_reserve_mib=1_000_000))
    assert run.rc != 0, run.describe()
    refusal = next(result for host in HYPERVISORS for result in run.results(host) if result.get("failed"))
    message = refusal.get("msg", "")
    for word in ("cannot take", "nothing was moved", "pl-db2", "pl-free", "MiB left", "hv1", "hv2", "hv3"):
        assert word in message, message
    assert all(not record for record in roll_records().values())
    assert all(lab.ssh(host, f"test -e {MAINTENANCE_MARK}").returncode != 0 for host in HYPERVISORS)
    assert all_moves() == []
    placed = runs_once_intact(at_home_unrolled)
    assert placed == HOME
    observed(f"{message[:400]} | {seen(placed, at_home_unrolled)}")


@pytest.mark.fault_table(area=ROLL, fault="a full roll of hv1..hv3 (evacuate, maintenance tasks, real reboot, health "
                                          "gates, restore), its ansible-playbook SIGKILLed while hv2 is in "
                                          "maintenance, then run again",
                         expected="the second run resumes the roll with hv2 and finishes it: every host rebooted and "
                                  "done, every guest where it started, each moving guest moved exactly twice (out "
                                  "and home), db1 and db2 never on one host (audit log), the pinned guest saved "
                                  "and resumed on hv1")
def test_full_roll_killed_and_resumed(at_home_unrolled, tmp_path, observed):
    boots = {host: boot_id(host) for host in HYPERVISORS}
    extra = roll_vars(tasks_file(tmp_path))
    first = lab.start_playbook_text(ROLL_PLAYBOOK, extra)
    try:
        lab.wait_for(lambda: roll_records()["hv2"].get("step") == "maintaining" or first.poll() is not None,
                     timeout=ROLL_TIMEOUT, what="hv2 in maintenance")
        assert first.poll() is None, f"the roll ended before hv2's maintenance: {first.communicate()[0][-3000:]}"
        killed_at = roll_records()
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        finish(first, timeout=60)
    assert killed_at["hv1"]["step"] == "done", killed_at

    second = lab.playbook_text(ROLL_PLAYBOOK, extra, timeout=ROLL_TIMEOUT)
    assert second.returncode == 0, second.stdout[-5000:]
    assert "resuming roll" in second.stdout, second.stdout[-3000:]
    records = roll_records()
    assert {host: record["step"] for host, record in records.items()} == dict.fromkeys(HYPERVISORS, "done"), records
    assert len({record["roll"] for record in records.values()}) == 1, records
    rebooted = {host: boot_id(host) != boots[host] for host in HYPERVISORS}
    assert rebooted == dict.fromkeys(HYPERVISORS, True), rebooted
    assert all(maintained(host) for host in HYPERVISORS)

    placed = runs_once_intact(at_home_unrolled)
    assert placed == HOME
    moves = all_moves()
    assert all(move["result"] == "migrated" for move in moves), moves
    counts = {name: sum(1 for move in moves if move["guest_name"] == name) for name in NAMES}
    assert counts == {name: 0 if name == PINNED else 2 for name in NAMES}, counts
    clashes = shared_hosts(sorted(moves, key=lambda move: move["started_at"]), HOME, DB_GROUP)
    assert clashes == [], clashes
    observed(f"killed with steps {({host: record.get('step') for host, record in killed_at.items()})}; resumed and "
             f"finished roll {records['hv1']['roll']}: every host rebooted, moves per guest {counts}, db1 and db2 never "
             f"on one host | {seen(placed, at_home_unrolled)}")


@pytest.mark.fault_table(area=ROLL, fault="a health gate failing: hv1's maintenance leaves libvirtd masked, so after "
                                          "the reboot libvirt does not answer over TLS (failure budget 0)",
                         expected="the roll stops on hv1 naming the gate and the hosts that got no answer; hv1 stays "
                                  "in maintenance with its guests on hv2/hv3; hv2 and hv3 untouched")
def test_health_gate_failure_stops_the_roll(at_home_unrolled, tmp_path, observed):
    extra = roll_vars(tasks_file(tmp_path, KEEP_LIBVIRT_DOWN), rolling_maintenance_health_timeout=15)
    run = lab.playbook_text(ROLL_PLAYBOOK, extra, timeout=ROLL_TIMEOUT)
    try:
        assert run.returncode != 0, run.stdout[-5000:]
        assert "health gate" in run.stdout and "did not answer" in run.stdout, run.stdout[-5000:]
        assert "failure budget" in run.stdout or "hosts failed" in run.stdout, run.stdout[-5000:]
        records = roll_records()
        assert records["hv1"]["step"] == "failed" and "health gate" in records["hv1"]["message"], records
        assert records["hv2"] == {} and records["hv3"] == {}, records
        assert lab.ssh("hv1", f"test -e {MAINTENANCE_MARK}").returncode == 0
        assert maintained("hv2") == [] and maintained("hv3") == []
        # hv1's libvirt is down: its guests are looked for on the two others (all of hv1 is checked below)
        away = {name: sorted(lab.whereabouts(name, ("hv2", "hv3"))) for name in ("pl-db1", "pl-web1", "pl-web2")}
        assert all(len(hosts) == 1 for hosts in away.values()), away
    finally:
        lab.ssh("hv1", "systemctl unmask libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket "
                       "libvirtd-tls.socket")
        lab.start_libvirt("hv1", ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                                  "libvirtd-tls.socket", "libvirtd.service"])
        start_pinned_again()
    placed = runs_once_intact(at_home_unrolled)
    message = records["hv1"]["message"]
    observed(f"{message[:300]} | roll stopped; hv1 in maintenance, its guests {away} | {seen(placed, at_home_unrolled)}")


@pytest.mark.fault_table(area=ROLL, fault="the cancel runbook during a roll, while hv1's evacuation migrates "
                                          "(8 MiB/s per migration)",
                         expected="no new move starts, the running live migration is aborted (the guest stays on "
                                  "hv1, running), every guest is in the evacuation's report, the roll stops naming "
                                  "the request; a roll refuses to start until it is withdrawn")
def test_cancel_during_a_roll(at_home_unrolled, tmp_path, observed):
    extra = roll_vars(tasks_file(tmp_path), rolling_maintenance_bandwidth=8, rolling_maintenance_max_parallel=1)
    rolling = lab.start_playbook_text(ROLL_PLAYBOOK, extra)
    try:
        def migrating() -> str | None:
            return next((name for name in ("pl-db1", "pl-web1", "pl-web2") if lab.job_running("hv1", name)), None)
        lab.wait_for(lambda: migrating() or rolling.poll() is not None, timeout=600, what="a migration from hv1")
        underway = migrating()
        assert underway, f"no migration was seen: {rolling.communicate()[0][-3000:]}"
        cancelled_at = time.time()
        cancel = lab.playbook(CANCEL_PLAYBOOK)
        assert cancel.rc == 0, cancel.describe()
        status, output = finish(rolling, timeout=600)
    finally:
        if rolling.poll() is None:
            os.killpg(rolling.pid, signal.SIGKILL)
    assert status != 0, output[-5000:]
    assert "cancelled" in output, output[-5000:]
    records = roll_records()
    assert records["hv1"]["step"] == "failed" and "cancel" in records["hv1"]["message"], records
    assert records["hv2"] == {} and records["hv3"] == {}, records
    report = lab.ssh("hv1", "cat /var/log/virtops/evacuate-hv1.txt").stdout
    assert all(name in report for name in ("pl-db1", "pl-web1", "pl-web2", PINNED)), report
    late = [move for move in all_moves() if when(move["started_at"]) > cancelled_at + 1]
    assert late == [], late

    refused = lab.playbook_text(ROLL_PLAYBOOK, extra, timeout=300)
    assert refused.returncode != 0 and "a cancel request stands" in refused.stdout, refused.stdout[-3000:]
    withdraw = lab.playbook(CANCEL_PLAYBOOK, {"virtops_cancel_withdraw": True})
    assert withdraw.rc == 0, withdraw.describe()
    assert all(lab.ssh(host, f"test -e {CANCEL_REQUEST}").returncode != 0 for host in HYPERVISORS)

    where = {name: lab.whereabouts(name) for name in ("pl-db1", "pl-web1", "pl-web2")}
    assert where[underway] == {"hv1": running(True)}, where
    placed = runs_once_intact(at_home_unrolled)
    observed(f"{underway} was migrating when the cancel came: aborted, it runs on hv1; no move started after the "
             f"cancel; roll stopped: {records['hv1']['message'][:200]}; a new roll refused until the request was "
             f"withdrawn | {seen(placed, at_home_unrolled)}")
