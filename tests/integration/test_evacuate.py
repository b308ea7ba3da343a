# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.migration.evacuate and the runbook playbooks/evacuate.yml on the real lab.

hv1 is emptied into hv2 and hv3. Boot-sector guests (TCG) with their disks on the NFS export;
what each host runs afterwards is read with virsh over SSH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import migrate_support as lab
import pytest

SOURCE = "hv1"
DESTS = ("hv2", "hv3")
HYPERVISORS = (SOURCE, *DESTS)
EVACUATE_PLAYBOOK = "virtops.migration.evacuate"
PROGRESS_PATH = "/run/virtops/evacuate-progress.json"
MAINTENANCE_MARK = "/etc/virtops/maintenance"
DESTINATIONS = [{"name": host, "uri": lab.dest_uri(host)} for host in DESTS]
# A progress line as the runbook prints it (the slurp loop's label): "[00:04] 2/6 done, 0 failed | ..."
PROGRESS_LINE = re.compile(r"\(item=\[\d\d:\d\d\] \d+/\d+ done, \d+ failed[^)]*\)")
# Mixed sizes; every placement decision after the first has a margin of at least 32 MiB.
SIX_GUESTS = [{"name": f"ev-{size}", "host": SOURCE, "memory_mib": size} for size in (256, 192, 128, 96, 64, 32)]


@pytest.fixture(scope="module")
def lab_ready(request):
    """The session's lab, prepared for migrations (bootstrap); no guest of this module left from earlier runs."""
    request.getfixturevalue("prepared_lab")
    clear_marks()


def clear_marks() -> None:
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -f {MAINTENANCE_MARK} {PROGRESS_PATH}")


@pytest.fixture
def guests(lab_ready, request):
    """The guests of ``request.param`` created on hv1, removed (from every hypervisor) afterwards."""
    wanted = request.param
    lab.remove_guests(wanted)
    lab.create_guests(wanted)
    yield wanted
    lab.remove_guests(wanted)
    clear_marks()


def placement(names: list[str]) -> dict[str, list[str]]:
    """For each guest, the hypervisors running it; asserts each running guest is persistent there."""
    found: dict[str, list[str]] = {}
    for host in HYPERVISORS:
        listed = lab.ssh(host, "virsh -q list --name --persistent --state-running").stdout.split()
        running = lab.ssh(host, "virsh -q list --name --state-running").stdout.split()
        for name in names:
            if name in running:
                assert name in listed, f"{name} runs on {host} but is not defined persistently there"
                found.setdefault(name, []).append(host)
    return found


def defined_on(name: str) -> list[str]:
    return [host for host in HYPERVISORS if lab.domain(host, name)["present"]]


def evacuate(check: bool = False, **options) -> dict:
    args = dict({"destinations": DESTINATIONS, "max_parallel": 2}, **options)
    return lab.module(SOURCE, "evacuate", args, check=check)


def has_mark(host: str) -> bool:
    return lab.ssh(host, f"test -e {MAINTENANCE_MARK}").returncode == 0


@pytest.mark.parametrize("guests", [SIX_GUESTS], indirect=True)
def test_runbook_empties_hv1_onto_hv2_and_hv3(guests):
    names = [guest["name"] for guest in guests]

    plan = evacuate(check=True)
    assert not plan.get("failed"), plan.get("msg")
    assert plan["changed"] is True
    planned = {entry["name"]: entry["destination"] for entry in plan["plan"]}
    assert sorted(planned) == sorted(names)
    assert set(planned.values()) == set(DESTS), f"the plan should spread over both destinations: {planned}"
    assert placement(names) == {name: [SOURCE] for name in names}, "check mode moved something"

    started = time.monotonic()
    run = lab.playbook_text(EVACUATE_PLAYBOOK, {"virtops_evacuate_host": SOURCE, "virtops_evacuate_max_parallel": 2})
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    progress = PROGRESS_LINE.findall(run.stdout)
    assert progress, f"no progress line in the runbook's output:\n{run.stdout[-4000:]}"
    print(f"evacuation took {took:.0f} s; progress lines:", *progress, sep="\n  ")

    where = placement(names)
    assert all(len(hosts) == 1 for hosts in where.values()) and sorted(where) == sorted(names), where
    actual = {name: hosts[0] for name, hosts in where.items()}
    assert SOURCE not in actual.values()
    for name in names:
        assert defined_on(name) == [actual[name]], f"{name} is still defined elsewhere: {defined_on(name)}"
    # hv2 and hv3 both report the controller's memory: the first (largest) guest goes to whichever
    # reported a few KiB more at that moment, and every later decision follows from that one with
    # margins of 32 MiB or more. So the placement must be the plan, up to swapping the two names.
    swapped = {name: DESTS[1 - DESTS.index(dest)] for name, dest in planned.items()}
    assert actual in (planned, swapped), f"plan {planned} but placement {actual}"
    assert has_mark(SOURCE), "the runbook should mark the emptied host as in maintenance"

    again = lab.playbook(EVACUATE_PLAYBOOK, {"virtops_evacuate_host": SOURCE, "virtops_evacuate_max_parallel": 2})
    assert again.rc == 0, again.describe()
    result = again.task(SOURCE, "Collect the evacuation result")
    assert result["changed"] is False, result
    assert result["vms"] == [], result
    assert placement(names) == where

    cleared = lab.playbook(EVACUATE_PLAYBOOK, {"virtops_evacuate_host": SOURCE, "virtops_evacuate_clear_maintenance": True})
    assert cleared.rc == 0, cleared.describe()
    assert not has_mark(SOURCE), "virtops_evacuate_clear_maintenance=true left the maintenance mark"


BIG_AND_SMALL = [{"name": "ev-big", "host": SOURCE, "memory_mib": 2048},
                 {"name": "ev-small1", "host": SOURCE, "memory_mib": 32},
                 {"name": "ev-small2", "host": SOURCE, "memory_mib": 32}]


@pytest.mark.parametrize("guests", [BIG_AND_SMALL], indirect=True)
def test_guest_that_fits_nowhere(guests):
    names = [guest["name"] for guest in guests]
    plan = evacuate(check=True)
    assert not plan.get("failed"), plan.get("msg")
    # Leave about 1 GiB usable on each destination: the 2 GiB guest fits nowhere, the two small ones
    # fit with ~1 GiB to spare for the controller's free memory to move between the runs.
    available = min(dest["available_mib"] for dest in plan["destinations"] if not dest["excluded"])
    reserve = available - 1024

    stopped = evacuate(memory_reserve_mib=reserve, on_failure="stop")
    assert stopped.get("failed"), stopped
    results = {vm["name"]: vm["result"] for vm in stopped["vms"]}
    assert results == {"ev-big": "unplaceable", "ev-small1": "not_started", "ev-small2": "not_started"}, stopped["msg"]
    assert "ev-big" in stopped["msg"]
    assert placement(names) == {name: [SOURCE] for name in names}, "on_failure=stop moved a guest"

    went_on = evacuate(memory_reserve_mib=reserve, on_failure="continue")
    assert went_on.get("failed"), went_on
    assert went_on["changed"] is True
    results = {vm["name"]: vm["result"] for vm in went_on["vms"]}
    assert results == {"ev-big": "unplaceable", "ev-small1": "migrated", "ev-small2": "migrated"}, went_on["msg"]
    assert "ev-big" in went_on["msg"]
    where = placement(names)
    assert where["ev-big"] == [SOURCE]
    for name in ("ev-small1", "ev-small2"):
        assert len(where[name]) == 1 and where[name][0] in DESTS, where


FOUR_GUESTS = [{"name": f"ev-kill{i}", "host": SOURCE, "memory_mib": size} for i, size in enumerate((128, 96, 64, 32))]


def progress_shows_activity() -> bool:
    proc = lab.ssh(SOURCE, f"cat {PROGRESS_PATH}")
    if proc.returncode != 0 or not proc.stdout.strip():
        return False
    snapshot = json.loads(proc.stdout)
    return any(vm["state"] != "queued" for vm in snapshot["vms"])


# Run on hv1 (one SSH command, no round trip between seeing and killing): as soon as the progress file
# shows a guest migrating, SIGKILL the evacuate module, the process named in the evacuation lock file.
KILL_JOB_WHEN_MIGRATING = (
    f"for i in $(seq 1800); do grep -qs '\"migrating\"' {PROGRESS_PATH} && break; sleep 0.05; done; "
    "pid=$(sed -n 's/^pid \\([0-9]*\\),.*/\\1/p' /run/lock/virtops-evacuate-*.lock); "
    "kill -KILL \"$pid\" && echo killed $pid"
)


@pytest.mark.parametrize("guests", [FOUR_GUESTS], indirect=True)
@pytest.mark.parametrize("kill_job", [False, True], ids=["playbook-killed", "playbook-and-job-killed"])
def test_runbook_killed_then_run_again(guests, kill_job):
    """The playbook is killed; its background evacuation goes on (the re-run waits for it), or is killed too."""
    names = [guest["name"] for guest in guests]
    # 1 MiB/s keeps each migration busy for seconds.
    killed = lab.start_playbook_text(EVACUATE_PLAYBOOK, {"virtops_evacuate_host": SOURCE, "virtops_evacuate_max_parallel": 2,
                                                         "virtops_evacuate_bandwidth": 1})
    if kill_job:
        job_killer = lab.ssh(SOURCE, KILL_JOB_WHEN_MIGRATING, timeout=120)
        assert job_killer.stdout.startswith("killed"), job_killer.stdout + job_killer.stderr
    try:
        lab.wait_for(lambda: killed.poll() is not None or progress_shows_activity(), timeout=180,
                     what="the evacuation to start migrating")
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        output = killed.communicate(timeout=30)[0]
    assert killed.returncode == -signal.SIGKILL, f"the runbook ended before it was killed:\n{output[-4000:]}"
    left = set(lab.ssh(SOURCE, "virsh -q list --all --name").stdout.split()) & set(names)
    assert left, "the kill came too late: hv1 was already empty"

    again = lab.playbook_text(EVACUATE_PLAYBOOK, {"virtops_evacuate_host": SOURCE, "virtops_evacuate_max_parallel": 2})
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
    print("killed run:", *PROGRESS_LINE.findall(output), "run again:", *PROGRESS_LINE.findall(again.stdout),
          sep="\n  ")
    where = placement(names)
    assert sorted(where) == sorted(names), where
    for name, hosts in where.items():
        assert len(hosts) == 1 and hosts[0] in DESTS, f"{name} runs on {hosts}"
        assert defined_on(name) == hosts, f"{name} is defined on {defined_on(name)}, runs on {hosts}"
