# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.migration.migrate and migration_job on real libvirtd + QEMU (TCG) in the lab.

Guests move from hv1 to hv2; their disks are on the NFS export, opened by QEMU's NFS client
(one guest has a local disk, for the storage copy). Every case asserts what libvirt holds on
both hosts afterwards, read with virsh over SSH.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time

import migrate_support as lab
import pytest
from migrate_support import ABSENT, running

SOURCE, DEST = "hv1", "hv2"
DEST_URI = lab.dest_uri(DEST)
MIGRATE_PLAYBOOK = "virtops.migration.migrate"
MIGRATE_TASK = "Migrate the VM to "
RESULT_TASK = "Record the result"


def migrate_result(run, host):
    """The migrate module's own result as migrate.yml records it (foreground in check mode, else the background job's)."""
    return run.task(host, RESULT_TASK)["ansible_facts"]["virtops_migrate_result"]


BOOTSECTOR_GUESTS = [
    {"name": "mt-tls", "host": SOURCE},
    {"name": "mt-keep-def", "host": SOURCE},
    {"name": "mt-move-def", "host": SOURCE},
    {"name": "mt-transient-dest", "host": SOURCE},
    {"name": "mt-drop-config", "host": SOURCE},
    {"name": "mt-transient", "host": SOURCE, "persistent": False},
    {"name": "mt-direct", "host": SOURCE},
    {"name": "mt-tunnelled", "host": SOURCE},
    {"name": "mt-tls-stream", "host": SOURCE},
    {"name": "mt-direct-tls", "host": SOURCE},
    {"name": "mt-ssh", "host": SOURCE},
    {"name": "mt-ssh-tunnelled", "host": SOURCE},
    {"name": "mt-local", "host": SOURCE, "disk": "local", "precreate_on": [DEST]},
    {"name": "mt-offline", "host": SOURCE, "running": False},
]


@pytest.fixture(scope="module")
def lab_ready(request):
    """The lab named by VIRTOPS_LAB_NAME, prepared for migrations, with the Linux guest's boot media."""
    request.getfixturevalue("prepared_lab")
    run = lab.playbook(lab.PLAYBOOKS / "guest_media.yml")
    assert run.rc == 0, f"guest media failed: {run.describe()}"


@pytest.fixture(scope="module")
def guests(lab_ready):
    lab.remove_guests(BOOTSECTOR_GUESTS)
    lab.create_guests(BOOTSECTOR_GUESTS)
    yield
    lab.remove_guests(BOOTSECTOR_GUESTS)


@pytest.fixture
def linux_guest(lab_ready, request):
    """One Linux guest dirtying memory (params: dirty_mib, dirty_interval), removed afterwards."""
    dirty_mib, dirty_interval = request.param
    guest = {"name": "mt-dirty", "host": SOURCE, "kind": "linux", "memory_mib": 128,
             "dirty_mib": dirty_mib, "dirty_interval": dirty_interval}
    lab.remove_guests([guest])
    lab.create_guests([guest])
    lab.wait_for(lambda: "virtops-guest: up" in lab.ssh(SOURCE, "cat /var/log/libvirt/qemu/mt-dirty-serial.log").stdout,
                 timeout=60, what="the Linux guest to boot")
    time.sleep(2)  # let the dirtying loop start
    yield guest
    lab.remove_guests([guest])


def migrate(name: str, check: bool = False, **options) -> dict:
    return lab.module(SOURCE, "migrate", dict({"name": name, "dest_uri": DEST_URI}, **options), check=check)


def placement(name: str) -> tuple[dict, dict]:
    return lab.domain(SOURCE, name), lab.domain(DEST, name)


# ---------------------------------------------------------------------------
# TLS, idempotence, check mode (through playbooks/migrate.yml)


def test_tls_migration_check_mode_and_idempotence(guests):
    before = placement("mt-tls")
    assert before == (running(True), ABSENT)

    plan = lab.playbook(MIGRATE_PLAYBOOK, {"virtops_migrate_vm": "mt-tls", "virtops_migrate_to": DEST}, check=True)
    assert plan.rc == 0, plan.describe()
    planned = migrate_result(plan, SOURCE)
    assert planned["changed"] is True and planned["check_mode"] is True
    assert planned["placement"]["after"]["destination"] == running(True)
    assert {c["name"]: c["status"] for c in planned["preflight"]}["storage"] == "passed"
    assert placement("mt-tls") == before, "check mode changed something"

    moved = lab.playbook(MIGRATE_PLAYBOOK, {"virtops_migrate_vm": "mt-tls", "virtops_migrate_to": DEST})
    assert moved.rc == 0, moved.describe()
    result = migrate_result(moved, SOURCE)
    assert result["changed"] is True
    assert result["destination"] == DEST_URI
    assert result["stats"]["job_type"] == "completed"
    for key in ("time_elapsed", "downtime", "data_total", "data_processed", "memory_iteration", "setup_time"):
        assert key in result["stats"], key
    assert placement("mt-tls") == (ABSENT, running(True))
    summary = moved.task(SOURCE, "Summary")["msg"]
    assert "downtime" in summary and "data sent" in summary

    again = lab.playbook(MIGRATE_PLAYBOOK, {"virtops_migrate_vm": "mt-tls", "virtops_migrate_to": DEST})
    assert again.rc == 0, again.describe()
    runs_on = [host for host in (SOURCE, DEST) if again.results(host) and
               any(r["_task"].startswith(MIGRATE_TASK) for r in again.results(host))]
    second = migrate_result(again, runs_on[0])
    assert second["changed"] is False, second["explanation"]
    assert placement("mt-tls") == (ABSENT, running(True))

    replan = lab.playbook(MIGRATE_PLAYBOOK, {"virtops_migrate_vm": "mt-tls", "virtops_migrate_to": DEST, "virtops_migrate_from": SOURCE}, check=True)
    assert replan.rc == 0, replan.describe()
    assert migrate_result(replan, SOURCE)["changed"] is False


# ---------------------------------------------------------------------------
# persistent / undefine_source


@pytest.mark.parametrize("name,options,source_after,dest_after", [
    ("mt-move-def", {"persistent": True, "undefine_source": True}, ABSENT, running(True)),
    ("mt-keep-def", {"persistent": True, "undefine_source": False},
     {"present": True, "state": "shutoff", "persistent": True}, running(True)),
    ("mt-transient-dest", {"persistent": False, "undefine_source": False},
     {"present": True, "state": "shutoff", "persistent": True}, running(False)),
    ("mt-drop-config", {"persistent": False, "undefine_source": True, "confirm_config_removal": True},
     ABSENT, running(False)),
    ("mt-transient", {}, ABSENT, running(True)),
])
def test_persistence_matrix(guests, name, options, source_after, dest_after):
    result = migrate(name, **options)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert placement(name) == (source_after, dest_after)
    again = migrate(name, **options)
    assert again.get("failed") is not True, again.get("msg")
    assert again["changed"] is False, again["explanation"]


def test_undefine_without_persistent_is_refused_before_any_change(guests):
    """The fourth combination without confirm_config_removal: refused, nothing touched."""
    result = migrate("mt-tls-stream", persistent=False, undefine_source=True)
    assert result["failed"] is True
    assert result["error"]["kind"] == "validation"
    assert "would leave 'mt-tls-stream' defined on no host" in result["msg"]
    assert placement("mt-tls-stream") == (running(True), ABSENT)


# ---------------------------------------------------------------------------
# Transports


SSH_URI = f"qemu+ssh://root@{DEST}.{lab.LAB_NAME}.virtops.test/system"


@pytest.fixture(scope="module")
def ssh_trust(lab_ready):
    """The hypervisors trust each other's root key for qemu+ssh:// (the libvirtd role, libvirtd_ssh_trust)."""
    run = lab.libvirtd_role_on("hypervisors", libvirtd_ssh_trust=True)
    assert run.rc == 0, f"SSH trust failed: {run.describe()}"


@pytest.mark.parametrize("name,options,flag_in,flag_out", [
    ("mt-direct", {"p2p": False}, [], ["VIR_MIGRATE_PEER2PEER"]),
    ("mt-tunnelled", {"tunnelled": True}, ["VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_TUNNELLED"], []),
    ("mt-tls-stream", {"tls": True}, ["VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_TLS"], ["VIR_MIGRATE_TUNNELLED"]),
    ("mt-direct-tls", {"p2p": False, "tls": True}, ["VIR_MIGRATE_TLS"], ["VIR_MIGRATE_PEER2PEER"]),
    ("mt-ssh", {"dest_uri": SSH_URI}, ["VIR_MIGRATE_PEER2PEER"], ["VIR_MIGRATE_TUNNELLED"]),
    ("mt-ssh-tunnelled", {"dest_uri": SSH_URI, "tunnelled": True}, ["VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_TUNNELLED"],
     []),
])
def test_transports(guests, request, name, options, flag_in, flag_out):
    if options.get("dest_uri") == SSH_URI:
        request.getfixturevalue("ssh_trust")
    result = migrate(name, **options)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert set(flag_in) <= set(result["flags"]) and not set(flag_out) & set(result["flags"])
    assert result["stats"]["job_type"] == "completed"
    assert placement(name) == (ABSENT, running(True))


def test_storage_copy_of_a_local_disk(guests):
    refused = migrate("mt-local", check=True)
    assert refused["failed"] is True and refused["error"]["kind"] == "preflight"
    assert "vda: /var/lib/libvirt/images/mt-local.img is on a local" in refused["msg"]
    plan = migrate("mt-local", check=True, copy_storage="all")
    assert plan["changed"] is True and plan["copied_disks"] == ["vda"]
    assert placement("mt-local") == (running(True), ABSENT)
    result = migrate("mt-local", copy_storage="all")
    assert result.get("failed") is not True, result.get("msg")
    assert result["copied_disks"] == ["vda"]
    assert "VIR_MIGRATE_NON_SHARED_DISK" in result["flags"]
    assert placement("mt-local") == (ABSENT, running(True))
    copied = lab.ssh(DEST, "head -c 512 /var/lib/libvirt/images/mt-local.img | sha256sum").stdout.split()[0]
    spec = importlib.util.spec_from_file_location("bootsector", lab.REPO / "tests/integration/guests/bootsector.py")
    bootsector = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootsector)
    assert copied == hashlib.sha256(bootsector.boot_sector()).hexdigest(), "the disk was not copied"


def test_offline_migration_of_a_stopped_guest(guests):
    assert placement("mt-offline") == ({"present": True, "state": "shutoff", "persistent": True}, ABSENT)
    result = migrate("mt-offline", live=False)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert "VIR_MIGRATE_OFFLINE" in result["flags"]
    assert placement("mt-offline") == (ABSENT, {"present": True, "state": "shutoff", "persistent": True})
    assert migrate("mt-offline", live=False)["changed"] is False


# ---------------------------------------------------------------------------
# Job control and the convergence policy (a Linux guest that keeps dirtying its memory)


def job(operation: str = "info", **options) -> dict:
    return lab.module(SOURCE, "migration_job", dict({"name": "mt-dirty", "operation": operation}, **options))


@pytest.mark.parametrize("linux_guest", [(16, 0.2)], indirect=True)
def test_tune_and_abort_through_migration_job(linux_guest):
    # Slow on purpose (1 MiB/s for 128 MiB), and no downtime ramp so the policy does not retune it.
    proc = lab.start_module(SOURCE, "migrate", {"name": "mt-dirty", "dest_uri": DEST_URI, "bandwidth": 1,
                                                "convergence": {"downtime_steps": 0}})
    try:
        lab.wait_for(lambda: job()["job"]["active"], timeout=60, what="the migration job")
        tuned = job("tune", max_downtime=123, bandwidth=2)
        assert tuned["changed"] is True
        assert tuned["settings"] == {"max_downtime": 123, "bandwidth": 2}
        assert job("tune", max_downtime=123, bandwidth=2)["changed"] is False
        info = job()
        assert info["job"]["operation"] == "migration_out" and info["job"]["data_remaining"] > 0
        aborted = job("abort", dest_uri=DEST_URI)
        assert aborted["changed"] is True
        assert aborted["job"]["active"] is False
        assert aborted["running_on"]["hosts"] == ["source"]
        assert aborted["running_on"]["destination"] == ABSENT
    finally:
        result = lab.finish_module(proc, SOURCE)
    assert result["failed"] is True
    assert "runs on: source" in result["msg"]
    assert placement("mt-dirty") == (running(True), ABSENT)
    assert job("abort")["changed"] is False


@pytest.mark.parametrize("linux_guest", [(2, 1)], indirect=True)
def test_dirtying_guest_migrates_under_the_policy(linux_guest):
    result = migrate("mt-dirty", convergence={"downtime_delay_per_gib": 8, "poll_interval": 0.5})
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert result["stats"]["job_type"] == "completed"
    assert any(action["action"] == "set_downtime" and action["result"] == "ok"
               for action in result["policy_actions"])
    assert placement("mt-dirty") == (ABSENT, running(True))


@pytest.mark.parametrize("linux_guest", [(32, 0.05)], indirect=True)
def test_policy_aborts_a_migration_that_cannot_converge(linux_guest):
    result = migrate("mt-dirty", bandwidth=2,
                     convergence={"completion_timeout_per_gib": 40, "progress_timeout": 60, "poll_interval": 0.5})
    assert result["failed"] is True
    assert "aborted by the convergence policy" in result["msg"]
    aborts = [action for action in result["policy_actions"] if action["action"] == "abort"]
    assert aborts and aborts[0]["result"] == "ok" and aborts[0]["at"] < 30
    assert placement("mt-dirty") == (running(True), ABSENT)
