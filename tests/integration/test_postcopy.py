# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Post-copy on real hosts: the lab's QEMU (TCG) moving a Linux guest that dirties its memory from hv1 to hv2.

The lab allows post-copy (lab/virtops_lab/host_settings.py: the kernel's vm.unprivileged_userfaultfd while a
lab is up; machines.py: the memlock system calls in the machines). The cases:

- a guest rewriting 32 MiB every 0.05 s under a 2 MiB/s cap cannot finish in pre-copy; the convergence policy
  switches it to post-copy on its completion timeout and the migration completes, the result giving the time in
  each phase (libvirt keeps no statistics of the completed job once the source is undefined: a warning says so);
- migration_job switches a running migration to post-copy and says so in its result; the migrate run reports
  the switch it did not make and, the source's definition kept, the downtime;
- a destination that cannot do post-copy (the kernel's setting put back to 0 for the case): the migration is
  refused naming the destination and the cause, the guest where it was; with on_postcopy_unavailable: precopy it
  moves in pre-copy with a warning.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import migrate_support as lab
import pytest
from migrate_support import ABSENT, running

SOURCE, DEST = "hv1", "hv2"
DEST_URI = lab.dest_uri(DEST)
NAME = "pc-dirty"
POSTCOPY_BANDWIDTH = 16  # MiB/s: post-copy of the guest's memory lasts seconds, long enough to be seen
USERFAULTFD = Path("/proc/sys/vm/unprivileged_userfaultfd")


@pytest.fixture(scope="module")
def lab_ready(request):
    request.getfixturevalue("prepared_lab")
    run = lab.playbook(lab.PLAYBOOKS / "guest_media.yml")
    assert run.rc == 0, f"guest media failed: {run.describe()}"


@pytest.fixture
def dirtying_guest(lab_ready, request):
    """The Linux guest on hv1, rewriting ``dirty_mib`` of its memory every ``dirty_interval`` s (the params)."""
    dirty_mib, dirty_interval = request.param
    guest = {"name": NAME, "host": SOURCE, "kind": "linux", "memory_mib": 128, "dirty_mib": dirty_mib,
             "dirty_interval": dirty_interval}
    lab.remove_guests([guest])
    lab.create_guests([guest])
    lab.wait_for(lambda: "virtops-guest: up" in lab.ssh(SOURCE, f"cat /var/log/libvirt/qemu/{NAME}-serial.log").stdout,
                 timeout=90, what="the Linux guest to boot")
    time.sleep(2)  # let the dirtying loop start
    yield guest
    lab.remove_guests([guest])


def migrate(**options) -> dict:
    return lab.module(SOURCE, "migrate", dict({"name": NAME, "dest_uri": DEST_URI}, **options))


def job(operation: str = "info", **options) -> dict:
    return lab.module(SOURCE, "migration_job", dict({"name": NAME, "operation": operation}, **options))


def placement() -> tuple[dict, dict]:
    return lab.domain(SOURCE, NAME), lab.domain(DEST, NAME)


def runs_on_destination_only() -> None:
    assert placement() == (ABSENT, running(True))


@pytest.mark.parametrize("dirtying_guest", [(32, 0.05)], indirect=True)
def test_policy_switches_a_migration_that_cannot_converge_to_postcopy(dirtying_guest):
    # 128 MiB at 40 s per GiB: the policy switches after 5 s, which pre-copy at 2 MiB/s cannot beat.
    result = migrate(bandwidth=2, postcopy_bandwidth=POSTCOPY_BANDWIDTH, post_copy=True,
                     convergence={"completion_timeout_per_gib": 40, "on_timeout": "postcopy", "downtime_steps": 0,
                                  "poll_interval": 0.5})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert [(a["action"], a["result"]) for a in result["policy_actions"]] == [("postcopy", "ok")], \
        result["policy_actions"]
    phases = result["phases"]
    assert phases["postcopy"] is True and phases["precopy_seconds"] >= 4.5, phases
    assert phases["postcopy_seconds"] is not None and phases["postcopy_seconds"] > 0, phases
    # The source, undefined by the migration, keeps no completed-job statistics after post-copy, and the
    # destination keeps none either (libvirt 9.0): the result says so instead of an empty stats without a word.
    assert result["stats"] == {} and any("kept no statistics" in warning for warning in result["warnings"]), \
        (result["stats"], result["warnings"])
    runs_on_destination_only()


@pytest.mark.parametrize("dirtying_guest", [(32, 0.05)], indirect=True)
def test_migration_job_switches_a_running_migration_to_postcopy(dirtying_guest):
    # The source keeps its (inactive) definition, and with it libvirt's statistics of the completed job.
    proc = lab.start_module(SOURCE, "migrate", {
        "name": NAME, "dest_uri": DEST_URI, "bandwidth": 1, "postcopy_bandwidth": POSTCOPY_BANDWIDTH,
        "post_copy": True, "undefine_source": False,
        "convergence": {"downtime_steps": 0, "completion_timeout_per_gib": 0}})
    try:
        lab.wait_for(lambda: job()["job"]["active"], timeout=60, what="the migration job")
        time.sleep(2)
        switched = job("postcopy")
        assert switched["changed"] is True and switched["postcopy"] is True, switched
        assert job("postcopy")["changed"] is False
    finally:
        result = lab.finish_module(proc, SOURCE)
    assert not result.get("failed"), result.get("msg")
    assert result["phases"]["postcopy"] is True, result["phases"]
    assert any(a["action"] == "note" and "outside the policy" in a["reason"] for a in result["policy_actions"])
    assert result["stats"]["job_type"] == "completed" and result["stats"]["downtime"] >= 0, result["stats"]
    assert placement() == ({"present": True, "state": "shutoff", "persistent": True}, running(True))


@contextmanager
def unprivileged_userfaultfd(value: str) -> Iterator[None]:
    """The kernel's setting for the case (the hosts share the machine's kernel), put back afterwards."""
    before = USERFAULTFD.read_text().strip()
    USERFAULTFD.write_text(value + "\n")
    try:
        yield
    finally:
        USERFAULTFD.write_text(before + "\n")


@pytest.mark.parametrize("dirtying_guest", [(2, 1)], indirect=True)
def test_a_destination_that_cannot_do_postcopy(dirtying_guest):
    with unprivileged_userfaultfd("0"):
        refused = migrate(post_copy=True)
        assert refused.get("failed"), refused
        assert f"the destination ({DEST_URI}) cannot do post-copy" in refused["msg"], refused["msg"]
        assert "vm.unprivileged_userfaultfd" in refused["msg"], refused["msg"]
        assert placement() == (running(True), ABSENT)

        moved = migrate(post_copy=True, on_postcopy_unavailable="precopy")
    assert not moved.get("failed"), moved.get("msg")
    assert moved["changed"] is True and moved["phases"]["postcopy"] is False, moved["phases"]
    assert any("cannot do post-copy" in warning and "pre-copy" in warning for warning in moved["warnings"])
    assert moved["stats"]["job_type"] == "completed"
    runs_on_destination_only()
