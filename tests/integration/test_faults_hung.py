# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection on the lab: a destination whose libvirt daemon hangs (SIGSTOP) while the migration runs.

A daemon that dies closes its sockets; one that hangs keeps them: TCP connections to it still open, and
every call on them waits for an answer that never comes. The migrate run must still return within its
hard ``timeout`` plus the documented grace, say that the guest runs on the source and that the destination
could not be checked, and change nothing there. The case asserts the suite's outcome (test_faults.py): the
guest runs exactly once, is defined persistently there only, and its disk counter goes on advancing; and,
once the daemon continues, that the destination holds no copy of the guest.
"""

from __future__ import annotations

import subprocess
import sys
import time

import migrate_support as lab
import pytest
from test_faults import (  # noqa: F401 # pylint: disable=unused-import # home, units and vm are fixtures
    DEST,
    MIGRATION,
    NAME,
    SLOW,
    SOURCE,
    home,
    message,
    outcome,
    says,
    start_migrate,
    underway,
    units,
    vm,
)

sys.path.insert(0, str(lab.REPO / "build" / "collections"))
from ansible_collections.virtops.migration.plugins.module_utils._migrate.monitor import (
    HARD_TIMEOUT_GRACE_SECONDS,
)

HUNG_TIMEOUT = 30  # the migrate run's hard timeout, seconds
# The bound is on behaviour, not speed: besides the timeout and the grace, the ansible process itself gets this
# much: its start and the module's way to the host and back, and the module's connect, lookup and preflight
# steps, which come before the migration job whose start the timeout counts from.
ANSIBLE_MARGIN = 30
RETURN_LIMIT = HUNG_TIMEOUT + HARD_TIMEOUT_GRACE_SECONDS + ANSIBLE_MARGIN
# No completion or stall timeout, no downtime ramp: the hard timeout is what aborts the job.
ONLY_THE_HARD_TIMEOUT = {"completion_timeout_per_gib": 0, "progress_timeout": 0, "downtime_steps": 0}


def stop_libvirt_daemons(host: str) -> list[int]:
    """SIGSTOP every process of the host's libvirt daemon (it hangs: its sockets stay open); their pids."""
    daemon = lab.libvirt_daemon(host)
    proc = lab.ssh(host, f"pids=$(pgrep -x {daemon}) && kill -STOP $pids && echo $pids")
    assert proc.returncode == 0, f"could not stop {daemon} on {host}: {proc.stdout} {proc.stderr}"
    pids = [int(pid) for pid in proc.stdout.split()]
    assert pids, f"no {daemon} process on {host}"
    return pids


def continue_libvirt_daemons(host: str, pids: list[int]) -> None:
    if pids:
        proc = lab.ssh(host, "kill -CONT " + " ".join(str(pid) for pid in pids))
        assert proc.returncode == 0, proc.stderr


@pytest.mark.fault_table(area=MIGRATION, fault=f"destination libvirt daemon hung (SIGSTOP, every process) while the "
                                               f"migration runs, timeout: {HUNG_TIMEOUT}; continued after the run",
                         expected=f"the run returns within timeout + {HARD_TIMEOUT_GRACE_SECONDS:g} s grace while the "
                                  "destination still hangs; the source keeps running the guest; the message says it "
                                  "runs on the source, that the destination could not be checked, and what to check "
                                  "there; once continued, the destination holds no copy")
def test_destination_libvirt_hung_during(home, observed):  # noqa: F811 - the fixture imported above
    started = time.monotonic()
    proc = start_migrate(bandwidth=SLOW, timeout=HUNG_TIMEOUT, convergence=ONLY_THE_HARD_TIMEOUT)
    stopped: list[int] = []
    returned_after = None
    try:
        underway()
        stopped = stop_libvirt_daemons(DEST)
        stopped_at = time.monotonic() - started
        try:
            proc.wait(timeout=max(RETURN_LIMIT + 60 - stopped_at, 1))
            returned_after = time.monotonic() - started
        except subprocess.TimeoutExpired:
            pass
        source_while_hung = lab.domain(SOURCE, NAME)
    finally:
        continue_libvirt_daemons(DEST, stopped)
        result = lab.finish_module(proc, SOURCE, timeout=300)
    assert returned_after is not None, (
        f"the module had not returned {RETURN_LIMIT + 60:.0f} s after it started, the destination hung since "
        f"{stopped_at:.0f} s (it returned once the destination was continued): {message(result)}")
    assert returned_after <= RETURN_LIMIT, (
        f"the module returned after {returned_after:.0f} s, more than timeout {HUNG_TIMEOUT} s + grace "
        f"{HARD_TIMEOUT_GRACE_SECONDS:g} s + {ANSIBLE_MARGIN} s for ansible itself: {message(result)}")
    assert source_while_hung == lab.running(True), f"while the destination hung: {source_while_hung}"
    assert result.get("failed"), result
    says(result, "migration failed", "hard timeout", "runs on: source", "the destination could not be checked",
         "next:", f"virsh -c {lab.dest_uri(DEST)} list --all")
    assert result["unreachable"] == ["destination"], result["unreachable"]
    assert result["placement"]["destination"]["state"] == "unknown", result["placement"]
    lab.wait_for(lambda: not lab.domain(DEST, NAME)["present"], timeout=120,
                 what="the continued destination to drop its half-made copy")
    assert outcome(observed, result, home) == SOURCE
    observed(f"(destination stopped {stopped_at:.0f} s after the start; the run returned after {returned_after:.0f} s, "
             f"bound {RETURN_LIMIT:.0f} s; the module's migrate phase took {result['timings'].get('migrate')} s)")
