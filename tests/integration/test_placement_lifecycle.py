# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Placement an operator can inspect and trust, on the lab: constraints, plan files, restore, the audit log.

On the placement cluster (placement_cluster.py: six Linux guests over three hypervisors with an
anti-affinity pair, an affinity pair, a pinned guest and a priority, in their own metadata). The cases
run in file order on the same guests: an unsatisfiable constraint and a drifted plan are refused with
nothing moved; hv1 is evacuated with the runbook from a plan file (db1 can only go to hv3, the web pair
moves together, the pinned guest stays); a restore to a host that was replaced under its name moves
nothing; the restore runbook brings every guest home; an evacuation killed mid-way and a restore killed
mid-way end, after one more restore, with every guest home. Every case asserts what the fault table's
other rows assert: each guest runs exactly once, is defined persistently there only, and its counter
goes on advancing with the rest of its disk unchanged.
"""

from __future__ import annotations

import json
import subprocess

import migrate_support as lab
import pytest
from migrate_support import HYPERVISORS, running
from placement_cluster import (
    AUDIT_LOG,
    DB_GROUP,
    HOME,
    MAINTENANCE_MARK,
    audit_records,
    bring_home,
    fresh_files,
    fresh_marks,
    origin_recorded,
    runs_once_intact,
    seen,
    shared_hosts,
)

PLACEMENT = "placement"
RESTORE = "restore"
SOURCE = "hv1"
MOVING = ["pl-db1", "pl-web1", "pl-web2"]  # what leaves hv1 (pl-pin stays)
PLAN_FILE = "/var/lib/virtops-test/plan-hv1.json"
EVACUATE_PLAYBOOK = "virtops.migration.evacuate"
RESTORE_PLAYBOOK = "virtops.migration.restore"


# ---------------------------------------------------------------------------
# Every guest at home


@pytest.fixture
def at_home(cluster):
    """Before: every guest on its home host only, writing; their disk marks. After: no maintenance mark."""
    bring_home()
    fresh_files()
    yield fresh_marks()
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -f {MAINTENANCE_MARK}")


# ---------------------------------------------------------------------------
# Running the modules and playbooks


def search_hosts(exclude: str = SOURCE) -> list[dict[str, str]]:
    return [{"name": host, "uri": lab.dest_uri(host)} for host in HYPERVISORS if host != exclude]


def evacuate(check: bool = False, **options) -> dict:
    args = dict({"destinations": search_hosts(), "audit_log": AUDIT_LOG, "include": ["pl-*"]}, **options)
    return lab.module(SOURCE, "evacuate", args, check=check)


def restore_args(**options) -> dict:
    return dict({"dest_uri": lab.dest_uri(SOURCE), "search": search_hosts(), "audit_log": AUDIT_LOG}, **options)


# ---------------------------------------------------------------------------
# Refusals: nothing moves


@pytest.mark.fault_table(area=PLACEMENT, fault="an unsatisfiable constraint: the affinity pair web1+web2 also put "
                                               "in one hard anti-affinity group by the task's constraints",
                         expected="refused before anything moves (check mode and run), naming the constraint and "
                                  "the guests; every guest where it was")
def test_unsatisfiable_constraint_refused(at_home, observed):
    constraints = {"anti_affinity": [{"name": "apart", "guests": ["pl-web1", "pl-web2"], "mode": "hard"}]}
    for check in (True, False):
        result = evacuate(check=check, constraints=constraints)
        assert result.get("failed"), result
        assert result.get("changed") is False, result
        for word in ("apart", "web", "pl-web1", "pl-web2"):
            assert word in result["msg"], result["msg"]
    placed = runs_once_intact(at_home)
    assert placed == HOME
    observed(f"{result['msg'][:300]} | {seen(placed, at_home)}")


@pytest.mark.fault_table(area=PLACEMENT, fault="the cluster drifted from a reviewed plan file: a guest added on hv1 "
                                               "and hv3 (where the plan sends pl-db1) put in maintenance",
                         expected="the run with the plan file refuses before anything moves, naming each drift; "
                                  "every guest where it was")
def test_plan_drift_refused(at_home, observed):
    plan = evacuate(check=True, plan_file=PLAN_FILE)
    assert not plan.get("failed"), plan.get("msg")
    document = json.loads(lab.ssh(SOURCE, f"cat {PLAN_FILE}").stdout)
    planned = {entry["name"]: entry["destination"] for entry in document["guests"]}
    assert planned["pl-db1"] == "hv3", document
    extra = [{"name": "pl-added", "host": SOURCE, "memory_mib": 32}]
    lab.remove_guests(extra)
    lab.create_guests(extra)
    try:
        result = evacuate(plan_file=PLAN_FILE, maintenance_hosts=["hv3"])
        assert lab.whereabouts("pl-added") == {SOURCE: running(True)}
    finally:
        lab.remove_guests(extra)
    assert result.get("failed"), result
    assert result.get("changed") is False, result
    for word in ("drifted", "nothing was moved", "pl-added", "hv3", "maintenance"):
        assert word in result["msg"], result["msg"]
    placed = runs_once_intact(at_home)
    assert placed == HOME
    observed(f"{result['msg'][:400]} | {seen(placed, at_home)}")


# ---------------------------------------------------------------------------
# Evacuation from a plan file, then restore


@pytest.mark.fault_table(area=PLACEMENT, fault="hv1 evacuated by the runbook from a plan file made with --check: "
                                               "anti-affinity pair db1/db2 (hard), affinity pair web1+web2, a pinned "
                                               "guest, a priority",
                         expected="the plan names each destination and why; the run follows it: db1 to hv3 (hv2 "
                                  "holds db2) and first, web1 and web2 on one host, the pinned guest stays; the audit "
                                  "log shows db1 and db2 never on one host at any moment")
def test_evacuation_from_plan_file_honours_constraints(at_home, observed):
    extra = {"virtops_evacuate_host": SOURCE, "virtops_evacuate_plan_file": PLAN_FILE,
             "virtops_evacuate_audit_log": AUDIT_LOG, "virtops_evacuate_max_parallel": 2,
             "virtops_evacuate_include": ["pl-*"]}
    planning = lab.playbook(EVACUATE_PLAYBOOK, extra, check=True)
    assert planning.rc == 0, planning.describe()
    document = json.loads(lab.ssh(SOURCE, f"cat {PLAN_FILE}").stdout)
    order = [entry["name"] for entry in document["guests"] if entry["action"] == "move"]
    planned = {entry["name"]: entry["destination"] for entry in document["guests"] if entry["action"] == "move"}
    staying = [entry["name"] for entry in document["guests"] if entry["action"] == "stay"]
    assert order[0] == "pl-db1" and sorted(order) == sorted(MOVING), document
    assert planned["pl-db1"] == "hv3" and planned["pl-web1"] == planned["pl-web2"], planned
    assert staying == ["pl-pin"] and document["cannot_move"] == [], document
    assert all(entry["reason"] for entry in document["guests"]), document["guests"]
    assert runs_once_intact(at_home) == HOME, "planning moved something"

    run = lab.playbook(EVACUATE_PLAYBOOK, extra)
    assert run.rc == 0, run.describe()
    placed = runs_once_intact(at_home)
    assert {name: placed[name] for name in MOVING} == {name: planned[name] for name in MOVING}
    assert placed["pl-pin"] == SOURCE and placed["pl-db2"] == "hv2" and placed["pl-free"] == "hv3"
    for name in MOVING:
        assert origin_recorded(placed[name], name), f"{name} carries no origin on {placed[name]}"

    records = [record for record in audit_records(SOURCE) if record["action"] == "evacuate"]
    moves = [record for record in records if record["guest_name"]]
    assert sorted(record["guest_name"] for record in moves) == sorted(MOVING), records
    assert all(record["result"] == "migrated" for record in moves), moves
    # max_parallel 2: db1 (priority 10) is dispatched first, so it is among the first two moves to start
    # (the two start together: which of them writes the earlier time is the threads' affair).
    first_wave = sorted(moves, key=lambda record: record["started_at"])[:2]
    assert "pl-db1" in {record["guest_name"] for record in first_wave}, moves
    clashes = shared_hosts(moves, HOME, DB_GROUP)
    assert clashes == [], clashes
    run_ids = {record["run_id"] for record in records}
    assert len(run_ids) == 1, run_ids
    observed(f"plan: {planned} (order {order}; staying: {staying}) | audit log: {len(moves)} moves, run {run_ids.pop()}, "
             f"db1 and db2 never on one host | {seen(placed, at_home)}")


def host_uuid_setting(host: str) -> str:
    return f"/etc/libvirt/{lab.libvirt_daemon(host)}.conf"


def set_host_uuid(host: str, uuid: str | None) -> None:
    """Give the host's libvirt another host UUID (None: put back the one it had) and restart it."""
    conf, backup = host_uuid_setting(host), "/root/.virtops-test-host-uuid.conf"
    setting = f'host_uuid = "{uuid}"'
    if uuid:  # the libvirtd role writes host_uuid: replace it (a second line would not be read)
        script = (f"cp -p {conf} {backup} && if grep -q '^host_uuid' {conf}; then "
                  f"sed -i 's/^host_uuid.*/{setting}/' {conf}; else echo '{setting}' >> {conf}; fi")
    else:
        script = f"if test -e {backup}; then mv {backup} {conf}; fi"
    proc = lab.ssh(host, f"{script} && systemctl restart {lab.libvirt_daemon(host)}.service")
    assert proc.returncode == 0, proc.stderr
    lab.wait_for(lambda: lab.ssh(host, "virsh -q uri").returncode == 0, timeout=60, what=f"libvirt on {host}")
    if uuid:
        reported = lab.ssh(host, "virsh capabilities | grep -m1 '<uuid>'").stdout
        assert uuid in reported, f"{host}'s libvirt reports {reported.strip()}, not the host UUID {uuid}"


@pytest.fixture
def evacuated(cluster):
    """hv1 evacuated (each moved guest carries its origin; kept from the case before when it left it so);
    the disk marks. After: no maintenance mark."""
    if any(SOURCE in lab.whereabouts(name) for name in MOVING):
        bring_home()
        fresh_files()
        result = evacuate()
        assert not result.get("failed"), result.get("msg")
    fresh_files()
    yield fresh_marks()
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -f {MAINTENANCE_MARK}")


@pytest.mark.fault_table(area=RESTORE, fault="restore of hv1 after it was replaced under its name (its libvirt has "
                                             "another host UUID than the one the guests' origin records)",
                         expected="no guest moves: each is reported left, naming both host UUIDs; every guest where "
                                  "it was")
def test_restore_with_the_origin_host_replaced(evacuated, observed):
    before = runs_once_intact(evacuated)
    try:
        set_host_uuid(SOURCE, "0badc0de-0000-4000-8000-000000000014")
        result = lab.module(SOURCE, "restore", restore_args())
    finally:
        set_host_uuid(SOURCE, None)
    assert not result.get("failed"), result.get("msg")
    rows = {row["name"]: row for row in result["vms"]}
    assert sorted(rows) == sorted(MOVING), rows
    assert result["changed"] is False, rows
    for row in rows.values():
        assert row["result"] == "left" and "0badc0de-0000-4000-8000-000000000014" in row["message"], row
    placed = runs_once_intact(evacuated)
    assert placed == before
    observed(f"{rows['pl-db1']['message'][:300]} | {seen(placed, evacuated)}")


@pytest.mark.fault_table(area=RESTORE, fault="restore of hv1 by the runbook after the evacuation (maintenance "
                                             "cleared by the runbook)",
                         expected="every guest back where it started, its origin record gone; db1 and db2 never on "
                                  "one host; a re-run moves nothing")
def test_restore_brings_every_guest_home(evacuated, observed):
    before = runs_once_intact(evacuated)
    lab.ssh(SOURCE, f"mkdir -p /etc/virtops && touch {MAINTENANCE_MARK}")
    extra = {"virtops_restore_host": SOURCE, "virtops_restore_clear_maintenance": True,
             "virtops_restore_audit_log": AUDIT_LOG}
    run = lab.playbook(RESTORE_PLAYBOOK, extra)
    assert run.rc == 0, run.describe()
    placed = runs_once_intact(evacuated)
    assert placed == HOME
    assert not any(origin_recorded(SOURCE, name) for name in MOVING)
    assert lab.ssh(SOURCE, f"test -e {MAINTENANCE_MARK}").returncode != 0
    records = audit_records(SOURCE)
    restores = [record for record in records if record["action"] == "restore" and record["guest_name"]]
    assert sorted({record["guest_name"] for record in restores}) == sorted(MOVING), restores
    assert shared_hosts(restores, before, DB_GROUP) == []
    again = lab.module(SOURCE, "restore", restore_args())
    assert not again.get("failed") and again["changed"] is False, again
    observed(f"restored {sorted({record['guest_name'] for record in restores})}; origin records cleared; a re-run "
             f"changed nothing | {seen(placed, evacuated)}")


def kill_when(host: str, condition: str, timeout: int = 240) -> str:
    """On ``host``: wait until ``condition`` (shell) holds, then SIGKILL the run holding the evacuation lock."""
    script = (f"for i in $(seq {timeout * 20}); do {condition} && break; sleep 0.05; done; "
              "pid=$(sed -n 's/^pid \\([0-9]*\\),.*/\\1/p' /run/lock/virtops-evacuate-*.lock); "
              "kill -KILL \"$pid\" && echo killed $pid")
    proc = lab.ssh(host, script, timeout=timeout + 30)
    assert proc.stdout.startswith("killed"), proc.stdout + proc.stderr
    return proc.stdout.strip()


def stop(proc: subprocess.Popen) -> None:
    """End the controller's side of a run whose module was killed on the host (it ends by itself, soon)."""
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=60)


def jobs_settled(names: list[str]) -> bool:
    return not any(lab.job_running(host, name) for host in HYPERVISORS for name in names)


@pytest.mark.fault_table(area=RESTORE, fault="the evacuation SIGKILLed mid-way (one guest moved, one migrating), "
                                             "then the restore SIGKILLed mid-way too, then the restore run again",
                         expected="the second restore finishes what is left: every guest back where it started, "
                                  "runs once, its origin record gone")
def test_evacuation_killed_then_restore_resumed(at_home, observed):
    slow = {"max_parallel": 1, "bandwidth": 8, "progress_path": "/run/virtops-test-progress.json"}
    args = dict({"destinations": search_hosts(), "audit_log": AUDIT_LOG, "include": ["pl-*"]}, **slow)
    lab.ssh(SOURCE, f"rm -f {slow['progress_path']}")
    evacuation = lab.start_module(SOURCE, "evacuate", args)
    try:
        # pl-db1 moves first (priority); kill while the next one migrates.
        killed_evacuation = kill_when(SOURCE, f"grep -qs '\"migrated\"' {slow['progress_path']} && "
                                              f"grep -qs '\"migrating\"' {slow['progress_path']}")
    finally:
        stop(evacuation)
    lab.wait_for(lambda: jobs_settled(MOVING), timeout=180, what="the killed evacuation's migration to end")
    moved = sorted(name for name in MOVING if SOURCE not in lab.whereabouts(name))
    assert moved, "the kill came before any guest moved"

    lab.ssh(SOURCE, f"rm -f {slow['progress_path']}")
    restoring = lab.start_module(SOURCE, "restore", restore_args(**slow))
    try:
        # kill while the first guest comes home: the others are still away after it
        killed_restore = kill_when(SOURCE, f"grep -qs '\"migrating\"' {slow['progress_path']} && "
                                           f"! grep -qs '\"migrated\"' {slow['progress_path']}")
    finally:
        stop(restoring)
    lab.wait_for(lambda: jobs_settled(MOVING), timeout=180, what="the killed restore's migration to end")
    still_away = sorted(name for name in MOVING if SOURCE not in lab.whereabouts(name))
    assert still_away, f"the killed restore left nothing to resume (evacuation moved {moved})"

    result = lab.module(SOURCE, "restore", restore_args())
    assert not result.get("failed"), result.get("msg")
    placed = runs_once_intact(at_home)
    assert placed == HOME
    assert not any(origin_recorded(SOURCE, name) for name in MOVING)
    results = {row["name"]: row["result"] for row in result["vms"]}
    assert {name: results.get(name) for name in still_away} == {name: "migrated" for name in still_away}, results
    observed(f"evacuation {killed_evacuation} with {moved} moved; restore {killed_restore} with {still_away} still "
             f"away; the restore run again: {results} | {seen(placed, at_home)}")
