"""The migration orchestrator end to end against the fake libvirt."""

from __future__ import annotations

import fcntl
import time

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common import (
    run_lock as _run_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
    DomainNotFound,
    MigrationFailed,
    MigrationInProgress,
    PreflightFailed,
    SplitBrain,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    CANCEL_DURING_POSTCOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import environment_of, migrate_request

DEST = "qemu+tls://hv2.example.com/system"
SRC = "qemu:///system"
GIB_KIB = 1048576


def migrate(world, check_mode=False, fs_types=None, **params):
    environment = environment_of(world, fs_type_of=(fs_types or {}).get)
    return run_migration(migrate_request(**params), check_mode, environment)


def hv1(world):
    return world.hosts[SRC]


def hv2(world):
    return world.hosts[DEST]


def converging(n=3):
    return lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 1024 // (i + 1), iteration=i + 1)
                                       for i in range(n)])


def running_vm(world, script=None, **kwargs):
    dom = hv1(world).add_domain("vm1", **kwargs)
    dom.script = script or converging()
    return dom


def state_of(host, uuid):
    dom = host.domains.get(uuid)
    if dom is None:
        return None
    return (dom.state()[0], bool(dom.persistent))


RUNNING, PAUSED, SHUTOFF = lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_SHUTOFF


# ---------------------------------------------------------------------------
# Success paths


def test_live_migration_p2p_default(world):
    dom = running_vm(world)
    result = migrate(world)
    uuid = dom.UUIDString()
    assert result["changed"] is True
    assert result["action"] == "migrate"
    assert result["uuid"] == uuid
    assert (result["source"], result["destination"]) == (SRC, DEST)
    assert result["flags"] == ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST",
                               "VIR_MIGRATE_UNDEFINE_SOURCE"]
    assert set(result["params"]) == {"persistent_xml"}
    assert result["params"]["persistent_xml"].startswith("<")
    assert state_of(hv1(world), uuid) is None
    assert state_of(hv2(world), uuid) == (RUNNING, True)
    assert result["stats"]["downtime"] == 42
    assert result["stats"]["time_elapsed"] == 5123
    assert result["stats"]["job_type"] == "completed"
    assert (result["stats"]["active"], result["stats"]["operation"]) == (False, "migration_out")
    assert [a["action"] for a in result["policy_actions"]] == ["set_downtime"]
    assert result["policy_actions"][0]["value"] == 50
    assert result["policy_actions"][0]["result"] == "ok"
    assert {"validate", "connect", "lookup", "reconcile", "preflight", "migrate", "verify", "total"} <= set(
        result["timings"])
    assert result["placement"] == {
        "before": {"source": {"present": True, "state": "running", "persistent": True},
                   "destination": {"present": False, "state": None, "persistent": False}},
        "after": {"source": {"present": False, "state": None, "persistent": False},
                  "destination": {"present": True, "state": "running", "persistent": True}},
    }
    assert [c["name"] for c in result["preflight"]] == ["dest_reachable", "cpu", "memory", "storage", "networks"]
    assert result["host_uuids"] == {"source": hv1(world).host_uuid, "destination": hv2(world).host_uuid}
    assert {c["status"] for c in result["preflight"]} == {"passed"}
    migrate_call = next(c for c in world.calls if c[1] == "migrateToURI3")
    assert migrate_call[2][1] == DEST
    assert migrate_call[2][3] == 27
    assert migrate_call[2][2]["persistent_xml"] == dom.inactive_xml
    assert world.methods() == [("hv1", "migrateToURI3"), ("hv1", "migrateSetMaxDowntime")]


def test_second_run_is_idempotent(world):
    running_vm(world)
    migrate(world)
    world.calls.clear()
    result = migrate(world)
    assert (result["changed"], result["action"]) == (False, "none")
    assert world.mutations == []


def test_check_mode_plans_and_changes_nothing(world):
    dom = running_vm(world)
    result = migrate(world, check_mode=True, bandwidth=100)
    assert result["changed"] is True
    assert result["check_mode"] is True
    assert result["flags_value"] == 27
    assert result["params"]["bandwidth"] == 100
    assert result["placement"]["after"]["destination"] == {"present": True, "state": "running",
                                                           "persistent": True}
    assert world.mutations == []
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)


def test_managed_direct_uses_migrate3_with_destination_connection(world):
    dom = running_vm(world)
    result = migrate(world, p2p=False)
    assert result["flags"] == ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]
    call = next(c for c in world.calls if c[1] == "migrate3")
    assert call[2][1] == DEST
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_keep_source_definition_and_transient_destination(world):
    dom = running_vm(world)
    result = migrate(world, persistent=False, undefine_source=False)
    assert "persistent_xml" not in result["params"]
    assert state_of(hv1(world), dom.UUIDString()) == (SHUTOFF, True)
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, False)


def test_undefine_without_persist_confirmed(world):
    dom = running_vm(world)
    migrate(world, persistent=False, confirm_config_removal=True)
    assert state_of(hv1(world), dom.UUIDString()) is None
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, False)


def test_transient_source_made_persistent_on_destination(world):
    dom = running_vm(world, persistent=False)
    result = migrate(world)
    assert result["params"]["persistent_xml"].startswith("<")
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_offline_migration_of_stopped_domain(world):
    dom = hv1(world).add_domain("vm1", SHUTOFF)
    result = migrate(world, live=False)
    assert result["action"] == "migrate_offline"
    assert result["flags"] == ["VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST",
                               "VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_OFFLINE"]
    assert [c["name"] for c in result["preflight"] if c["name"] == "memory"] == ["memory"]
    assert state_of(hv1(world), dom.UUIDString()) is None
    assert state_of(hv2(world), dom.UUIDString()) == (SHUTOFF, True)


def test_define_on_destination_when_transient_there(world):
    dom = hv2(world).add_domain("vm1", RUNNING, persistent=False)
    result = migrate(world)
    assert (result["changed"], result["action"]) == (True, "define_on_destination")
    assert world.methods() == [("hv2", "defineXML")]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_undefine_leftover_source_definition(world):
    uuid = hv2(world).add_domain("vm1", RUNNING).UUIDString()
    hv1(world).add_domain("vm1", SHUTOFF, uuid=uuid)
    result = migrate(world)
    assert (result["changed"], result["action"]) == (True, "undefine_source")
    assert world.mutations == [("hv1", "undefineFlags", ("vm1", lv.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
                                                         | lv.VIR_DOMAIN_UNDEFINE_KEEP_TPM))]
    assert state_of(hv1(world), uuid) is None


def test_find_by_uuid_when_only_destination_has_it(world):
    uuid = hv2(world).add_domain("vm1", RUNNING).UUIDString()
    result = migrate(world, name=None, uuid=uuid)
    assert (result["changed"], result["domain"]) == (False, "vm1")


def test_paused_source_resumed_then_migrated(world):
    dom = running_vm(world, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_MIGRATION)
    result = migrate(world)
    assert result["actions"] == ["resume_source", "migrate"]
    assert world.methods()[:2] == [("hv1", "resume"), ("hv1", "migrateToURI3")]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
    assert "resumed the paused domain on the source before migrating" in result["recovery"]


def test_user_paused_source_moves_paused_by_default(world):
    dom = running_vm(world, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_USER)
    result = migrate(world)
    assert result["actions"] == ["migrate_paused"]
    assert "VIR_MIGRATE_PAUSED" in result["flags"]
    assert ("hv1", "resume") not in world.methods()
    assert state_of(hv2(world), dom.UUIDString()) == (PAUSED, True)
    assert "paused by its user" in result["explanation"]
    assert any("stays paused on the destination" in warning for warning in result["warnings"])
    assert result["placement"]["after"]["destination"]["state"] == "paused"


def test_user_paused_source_refused_on_request(world):
    dom = running_vm(world, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_USER)
    with pytest.raises(ValidationError, match="paused by its user .* on the source.*on_paused_source: refuse"):
        migrate(world, on_paused_source="refuse")
    assert world.mutations == []
    assert state_of(hv1(world), dom.UUIDString()) == (PAUSED, True)


def test_user_paused_source_check_mode_predicts_paused_arrival(world):
    running_vm(world, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_USER)
    result = migrate(world, check_mode=True)
    assert (result["changed"], result["actions"]) == (True, ["migrate_paused"])
    assert result["placement"]["after"]["destination"]["state"] == "paused"
    assert world.mutations == []


def test_same_host_under_two_names_is_refused_before_lookup(world):
    uuid = running_vm(world).UUIDString()
    hv2(world).host_uuid = hv1(world).host_uuid
    hv2(world).add_domain("vm1", RUNNING, uuid=uuid)  # the one guest, seen through the second name
    with pytest.raises(ValidationError, match="the destination is the source host") as caught:
        migrate(world)
    assert hv1(world).host_uuid in str(caught.value)
    assert "destroy" not in str(caught.value).lower()
    assert world.mutations == []


def test_split_brain_on_two_proven_hosts_names_the_copy_to_destroy(world):
    uuid = running_vm(world).UUIDString()
    hv2(world).add_domain("vm1", RUNNING, uuid=uuid)
    with pytest.raises(SplitBrain) as caught:
        migrate(world)
    assert "destroy the other one by hand" in caught.value.hint
    assert world.mutations == []


def test_paused_source_migrated_paused(world):
    dom = running_vm(world, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_MIGRATION)
    result = migrate(world, on_paused_source="migrate_paused")
    assert "VIR_MIGRATE_PAUSED" in result["flags"]
    assert ("hv1", "resume") not in world.methods()
    assert state_of(hv2(world), dom.UUIDString()) == (PAUSED, True)


def test_storage_copy_plans_explicit_local_disks(world):
    disks = ("<disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm1.qcow2'/>"
             "<target dev='vda'/></disk>"
             "<disk type='file' device='disk'><source file='/srv/nfs/data.img'/><target dev='vdb'/></disk>"
             "<disk type='file' device='cdrom'><readonly/><target dev='sda'/></disk>")
    running_vm(world, xml=lv.domain_xml("vm1", "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10", disks=disks),
               uuid="6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10")
    fs = {"/var/lib/libvirt/images/vm1.qcow2": "ext4", "/srv/nfs/data.img": "nfs4"}
    result = migrate(world, fs_types=fs, copy_storage="all")
    assert result["params"]["migrate_disks"] == ["vda"]
    assert result["copied_disks"] == ["vda"]
    assert "VIR_MIGRATE_NON_SHARED_DISK" in result["flags"]
    storage = next(c for c in result["preflight"] if c["name"] == "storage")
    assert storage["status"] == "passed"
    assert "vdb /srv/nfs/data.img is on a nfs4 filesystem" in storage["message"]


def test_storage_copy_of_shared_disk_refused(world):
    running_vm(world)
    with pytest.raises(ValidationError, match="every disk is on shared storage"):
        migrate(world, copy_storage="all")
    with pytest.raises(ValidationError, match="names disks on shared storage: vda"):
        migrate(world, copy_storage="all", migrate_disks=["vda"])
    assert world.mutations == []


def test_libvirt_error_but_domain_on_destination_is_treated_as_migrated(world):
    dom = running_vm(world, script=lv.MigrationScript(samples=[lv.sample(100)], outcome="finish_error"))
    result = migrate(world)
    assert result["changed"] is True
    assert any("treated as migrated" in w for w in result["warnings"])
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


# ---------------------------------------------------------------------------
# Refused before anything is touched


@pytest.mark.parametrize("params,error,message", [
    ({"dest_uri": "qemu:///system"}, ValidationError, "dest_uri is local"),
    ({"dest_uri": "qemu+tls//hv2/system"}, ValidationError, "malformed"),
    ({"tunnelled": True, "p2p": False}, ValidationError, "needs p2p"),
    ({"tunnelled": True, "tls": True}, ValidationError, "exclude each other"),
    ({"post_copy": True, "live": False}, ValidationError, "post-copy needs a live migration"),
    ({"migrate_disks": ["vda"]}, ValidationError, "copy_storage is none"),
    ({"live": False, "persistent": False}, ValidationError, "needs persistent: true"),
    ({"bandwidth": -1}, ValidationError, "must not be negative"),
    ({"max_downtime": -1}, ValidationError, "must not be negative"),
    ({"timeout": -5}, ValidationError, "must not be negative"),
    ({"persistent": False}, ValidationError, "defined on no host"),
    ({"name": "nope"}, DomainNotFound, "Domain not found"),
    ({"live": False}, ValidationError, "offline migration (live: false) would only copy"),
    ({"copy_storage": "all", "migrate_disks": ["vdq"]}, ValidationError, "does not have: vdq"),
])
def test_bad_inputs_touch_nothing(world, params, error, message):
    running_vm(world)
    with pytest.raises(error) as caught:
        migrate(world, **params)
    assert message in str(caught.value)
    assert world.mutations == []
    assert caught.value.source_uri == SRC


def test_split_brain_touches_nothing(world):
    uuid = running_vm(world).UUIDString()
    hv2(world).add_domain("vm1", RUNNING, uuid=uuid)
    with pytest.raises(SplitBrain) as caught:
        migrate(world)
    assert "active on both hosts" in str(caught.value)
    assert str(caught.value).startswith("reconcile failed (domain 'vm1', source qemu:///system, destination "
                                        "qemu+tls://hv2.example.com/system)")
    assert world.mutations == []


def test_same_name_other_uuid_on_destination_refused(world):
    running_vm(world)
    hv2(world).add_domain("vm1", SHUTOFF)
    with pytest.raises(ValidationError, match="different domain"):
        migrate(world)
    assert world.mutations == []


def test_destination_unreachable_fails_before_touching_source(world):
    running_vm(world)
    hv2(world).reachable = False
    with pytest.raises(ConnectionFailed) as caught:
        migrate(world)
    assert "Connection refused" in caught.value.libvirt_error
    assert "libvirtd is not listening" in caught.value.hint
    assert world.mutations == []


def test_tls_failure_names_the_cause(world):
    running_vm(world)
    hv2(world).open_error = lv.libvirtError("authentication failed: Failed to verify peer's certificate",
                                            lv.VIR_ERR_AUTH_FAILED)
    with pytest.raises(ConnectionFailed) as caught:
        migrate(world)
    assert "SANs" in caught.value.hint
    assert "Failed to verify peer's certificate" in str(caught.value)


@pytest.mark.parametrize("setup,check,message", [
    (lambda w: setattr(hv2(w), "cpu_result", lv.VIR_CPU_COMPARE_INCOMPATIBLE), "cpu", "cannot run the guest CPU"),
    (lambda w: hv2(w).memory_stats.update(free=1024, cached=0), "memory", "the guest needs 1024 MiB"),
    (lambda w: hv2(w).networks.clear(), "networks", "network default: Network not found"),
    (lambda w: setattr(hv2(w).networks["default"], "active", False), "networks", "not active"),
])
def test_preflight_failures_touch_nothing_and_can_be_skipped(world, setup, check, message):
    dom = running_vm(world)
    setup(world)
    with pytest.raises(PreflightFailed) as caught:
        migrate(world)
    assert message in str(caught.value)
    assert [c["status"] for c in caught.value.details["preflight"] if c["name"] == check] == ["failed"]
    assert world.mutations == []
    result = migrate(world, preflight_skip=[check])
    assert [c["status"] for c in result["preflight"] if c["name"] == check] == ["skipped"]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_old_qemu_on_the_destination_refused_before_anything_changes(world):
    dom = running_vm(world)
    hv2(world).hypervisor_version = 3001000
    with pytest.raises(PreflightFailed) as caught:
        migrate(world, parallel_connections=4)
    message = str(caught.value)
    assert f"parallel_connections needs QEMU 4.0.0 or later on both hosts; the destination {DEST} has QEMU 3.1.0" in message
    assert "drop parallel_connections (and zlib or zstd from compression), or upgrade QEMU on the destination to " \
        "4.0.0 or later" in message
    assert [c["status"] for c in caught.value.details["preflight"] if c["name"] == "throughput"] == ["failed"]
    assert world.mutations == []
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    result = migrate(world, check_mode=True, parallel_connections=4, preflight_skip=["throughput"])
    assert [c["status"] for c in result["preflight"] if c["name"] == "throughput"] == ["skipped"]


def test_throughput_passes_with_the_lab_versions(world):
    dom = running_vm(world)
    result = migrate(world, parallel_connections=2, compression=["xbzrle"])
    [entry] = [c for c in result["preflight"] if c["name"] == "throughput"]
    assert entry["status"] == "passed"
    assert "libvirt 9.0.0, QEMU 7.2.0" in entry["message"]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_zstd_on_libvirt_9_0_refused_naming_9_4_0(world):
    running_vm(world)
    with pytest.raises(PreflightFailed, match="compression zstd needs libvirt 9.4.0 or later"):
        migrate(world, parallel_connections=2, compression=["zstd"])
    assert world.mutations == []
    hv1(world).lib_version = hv2(world).lib_version = 9004000
    result = migrate(world, check_mode=True, parallel_connections=2, compression=["zstd"])
    assert [c["status"] for c in result["preflight"] if c["name"] == "throughput"] == ["passed"]
    assert result["params"]["compression"] == ["zstd"]


def test_local_disk_without_copy_fails_preflight(world):
    disks = "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm1.qcow2'/><target dev='vda'/></disk>"
    running_vm(world, xml=lv.domain_xml("vm1", "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10", disks=disks),
               uuid="6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10")
    with pytest.raises(PreflightFailed, match="vda: /var/lib/libvirt/images/vm1.qcow2 is on a local ext4"):
        migrate(world, fs_types={"/var/lib/libvirt/images/vm1.qcow2": "ext4"})
    assert world.mutations == []


def test_unknown_disk_sharing_is_a_warning_and_destination_pool_counts(world):
    disks = "<disk type='file' device='disk'><source file='/vm/vm1.img'/><target dev='vda'/></disk>"
    uuid = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"
    running_vm(world, xml=lv.domain_xml("vm1", uuid, disks=disks), uuid=uuid)
    result = migrate(world, check_mode=True)
    assert result["warnings"] == [("preflight storage: vda: cannot tell whether /vm/vm1.img is shared from "
                                  "here; libvirt refuses the migration if they are not shared")]
    hv2(world).volumes["/vm/vm1.img"] = "netfs"
    result = migrate(world, check_mode=True)
    assert result["warnings"] == []


# ---------------------------------------------------------------------------
# Convergence policy in action, failure handling


def never_converging():
    return lv.MigrationScript(samples=[lv.sample(500_000_000, iteration=i) for i in range(1, 4)], outcome="never")


def test_never_converging_is_aborted_and_source_keeps_running(world):
    dom = running_vm(world, script=never_converging())
    with pytest.raises(MigrationFailed) as caught:
        migrate(world, convergence={"completion_timeout_per_gib": 5, "progress_timeout": 0,
                                    "downtime_steps": 0})
    error = caught.value
    assert "aborted by the convergence policy: completion timeout of 5s" in str(error)
    assert "the domain now runs on: source" in str(error)
    assert error.libvirt_error == "operation aborted: migration out job: canceled by client"
    assert [a["action"] for a in error.details["policy_actions"]] == ["abort"]
    assert error.details["policy_actions"][0]["at"] == 5.0
    assert error.details["placement"]["destination"]["present"] is False
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert state_of(hv2(world), dom.UUIDString()) is None
    assert ("hv1", "abortJob") in world.methods()


def test_stall_triggers_postcopy(world):
    dom = running_vm(world, script=never_converging())
    convergence = {"on_timeout": "postcopy", "progress_timeout": 3, "downtime_steps": 0}
    result = migrate(world, post_copy=True, convergence=convergence)
    assert [a["action"] for a in result["policy_actions"]] == ["postcopy"]
    assert "no progress for 3s" in result["policy_actions"][0]["reason"]
    assert "VIR_MIGRATE_POSTCOPY" in result["flags"]
    assert ("hv1", "migrateStartPostCopy") in world.methods()
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
    phases = result["phases"]
    assert phases["postcopy"] is True and phases["precopy_seconds"] >= 3 and phases["postcopy_seconds"] >= 0
    assert result["stats"]["job_type"] == "completed"


def test_phases_of_a_migration_that_stayed_in_precopy(world):
    running_vm(world)
    phases = migrate(world)["phases"]
    assert phases["postcopy"] is False and phases["postcopy_seconds"] is None and phases["precopy_seconds"] >= 0


def test_no_completed_statistics_on_either_host_is_said(world, monkeypatch):
    running_vm(world)
    original = lv.FakeDomain.jobStats

    def none_kept(self, flags=0):
        if flags & lv.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {"type": lv.VIR_DOMAIN_JOB_NONE}
        return original(self, flags)

    monkeypatch.setattr(lv.FakeDomain, "jobStats", none_kept)
    result = migrate(world)
    assert result["changed"] is True and result["stats"] == {}
    assert any("kept no statistics of the completed migration" in warning for warning in result["warnings"])


def test_timeout_suspend_finishes_the_migration(world):
    dom = running_vm(world, script=never_converging())
    result = migrate(world, convergence={"on_timeout": "suspend", "completion_timeout_per_gib": 4,
                                         "downtime_steps": 0})
    assert [(a["action"], a["at"], a["result"]) for a in result["policy_actions"]] == [("suspend", 4.0, "ok")]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)


def test_source_we_suspended_is_resumed_after_hard_timeout(world):
    script = never_converging()
    script.after_switch = 10_000
    dom = running_vm(world, script=script)
    with pytest.raises(MigrationFailed) as caught:
        migrate(world, timeout=8, convergence={"on_timeout": "suspend", "completion_timeout_per_gib": 3,
                                               "downtime_steps": 0})
    assert [a["action"] for a in caught.value.details["policy_actions"]] == ["suspend", "abort"]
    assert "resumed the domain on the source (this run had paused it)" in caught.value.details["recovery"]
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert world.methods()[-1] == ("hv1", "resume")


def test_refused_postcopy_switch_falls_back_to_abort(world):
    dom = running_vm(world, script=never_converging())
    dom.fail_on["migrateStartPostCopy"] = lv.libvirtError("operation failed: post-copy not possible",
                                                          lv.VIR_ERR_OPERATION_FAILED)
    with pytest.raises(MigrationFailed) as caught:
        migrate(world, post_copy=True, convergence={"on_timeout": "postcopy", "completion_timeout_per_gib": 2,
                                                    "downtime_steps": 0})
    actions = caught.value.details["policy_actions"]
    assert [(a["action"], a["result"]) for a in actions] == [
        ("postcopy", "failed: operation failed: post-copy not possible"), ("abort", "ok")]
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)


def test_half_made_destination_is_removed(world):
    dom = running_vm(world, script=lv.MigrationScript(samples=[lv.sample(100)], outcome="fail_leave_dest",
                                                      error_text="operation failed: job: unexpectedly failed"))
    with pytest.raises(MigrationFailed) as caught:
        migrate(world)
    assert caught.value.libvirt_error == "operation failed: job: unexpectedly failed"
    assert "destroyed the half-made domain on the destination" in caught.value.details["recovery"]
    assert state_of(hv2(world), dom.UUIDString()) is None
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert caught.value.hint == "fix the cause and re-run; re-running is safe"


def test_qemu_persist_failure_leaves_the_guest_on_the_source(world):
    # libvirt's QEMU driver kills the destination's copy and resumes the source: nothing to recover.
    dom = running_vm(world, script=lv.MigrationScript(samples=[lv.sample(10)], outcome="persist_failed"))
    with pytest.raises(MigrationFailed) as caught:
        migrate(world)
    error = caught.value
    assert error.error_code == lv.VIR_ERR_SYSTEM_ERROR
    assert "No space left on device" in error.libvirt_error
    assert "the domain now runs on: source" in str(error), str(error)
    assert error.hint == "fix the cause and re-run; re-running is safe"
    assert state_of(hv2(world), dom.UUIDString()) is None
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert [(host, method) for host, method, _args in world.calls
            if method in ("defineXML", "undefineFlags", "destroy")] == []


def test_persist_failed_defines_on_destination_and_keeps_source(world):
    # A driver that reports VIR_ERR_MIGRATE_PERSIST_FAILED leaves the guest running transient there.
    dom = running_vm(world, script=lv.MigrationScript(samples=[lv.sample(10)], outcome="persist_failed_transient"))
    with pytest.raises(MigrationFailed) as caught:
        migrate(world)
    error = caught.value
    assert error.error_code == lv.VIR_ERR_MIGRATE_PERSIST_FAILED
    assert error.operation == "persist on destination"
    assert "defined the domain on the destination with the persistent XML" in error.details["recovery"]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
    assert state_of(hv1(world), dom.UUIDString()) == (SHUTOFF, True)
    assert ("hv1", "undefineFlags") not in world.methods()
    # The next run finishes the job: the source's leftover definition is removed.
    result = migrate(world)
    assert result["action"] == "undefine_source"
    assert state_of(hv1(world), dom.UUIDString()) is None


def test_persist_failed_and_define_failed_still_keeps_source(world):
    dom = running_vm(world, script=lv.MigrationScript(samples=[lv.sample(10)], outcome="persist_failed_transient"))
    hv2(world).define_error = lv.libvirtError("disk full", lv.VIR_ERR_OPERATION_FAILED)
    with pytest.raises(MigrationFailed) as caught:
        migrate(world)
    assert "defining on the destination failed too: disk full" in caught.value.details["recovery"]
    assert "do not undefine the source" in caught.value.hint
    assert state_of(hv1(world), dom.UUIDString()) == (SHUTOFF, True)
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, False)


def test_migration_already_running_is_reported(world):
    dom = running_vm(world)
    dom.job = lv.FakeJob(dom, hv2(world), {}, 0)
    with pytest.raises(Exception, match="already running") as caught:
        migrate(world)
    assert caught.value.kind == "in_progress"
    assert world.mutations == []


# ---------------------------------------------------------------------------
# Two runs against one domain at once


def hold(path):
    """Hold an flock on ``path`` as another run would; close the handle to release it."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held across the test, closed by the caller
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write("pid 4242, started 2026-01-01 00:00:00\n")
    handle.flush()
    return handle


def test_a_second_run_of_a_domain_being_migrated_fails_at_once_and_touches_nothing(world):
    dom = running_vm(world)
    holder = hold(_run_lock.lock_path_for("migrate", dom.UUIDString()))
    try:
        with pytest.raises(MigrationInProgress) as caught:
            migrate(world)
    finally:
        holder.close()
    assert "already running from this machine (pid 4242" in caught.value.message
    assert "nothing was touched" in caught.value.message
    assert "migration_job" in caught.value.hint
    assert world.mutations == []
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)


def test_the_domain_lock_is_keyed_by_uuid_when_the_run_names_the_domain_by_uuid(world):
    dom = running_vm(world)
    holder = hold(_run_lock.lock_path_for("migrate", dom.UUIDString()))
    try:
        with pytest.raises(MigrationInProgress):
            migrate(world, name=None, uuid=dom.UUIDString().upper())
    finally:
        holder.close()
    assert world.mutations == []


def test_the_domain_lock_is_released_when_the_run_ends(world):
    dom = running_vm(world)
    migrate(world)
    path = _run_lock.lock_path_for("migrate", dom.UUIDString())
    with open(path, encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
    assert migrate(world)["changed"] is False


def test_check_mode_with_the_domain_lock_held_plans_and_warns(world):
    dom = running_vm(world)
    holder = hold(_run_lock.lock_path_for("migrate", dom.UUIDString()))
    try:
        result = migrate(world, check_mode=True)
    finally:
        holder.close()
    assert result["changed"] is True
    assert any("already running from this machine" in warning for warning in result["warnings"])
    assert world.mutations == []


def test_a_job_started_from_elsewhere_after_the_look_up_is_left_alone(world):
    """Another machine's run starts its job between this run's look-up and its migrate call."""
    dom = running_vm(world)
    foreign = lv.FakeJob(dom, hv2(world), {}, lv.VIR_MIGRATE_LIVE)
    original = dom.migrateToURI3

    def start_foreign_job_first(*args):
        dom.job = foreign
        return original(*args)

    dom.migrateToURI3 = start_foreign_job_first
    with pytest.raises(MigrationInProgress) as caught:
        migrate(world)
    assert "this run started none and nothing was touched" in caught.value.message
    assert "another migration job is already running" in caught.value.libvirt_error
    assert not foreign.finished.is_set(), "the other run's job was aborted"
    assert [method for _host, method in world.methods()] == ["migrateToURI3"]
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)


def test_a_job_older_than_the_call_is_never_tuned_while_libvirt_waits_for_its_lock(world):
    """Another machine's run started its job after this run's look-up, a second before its call: libvirt makes
    the call wait for that job's lock, and the monitor sees that job meanwhile. It must never act on it."""
    dom = running_vm(world)
    foreign = lv.FakeJob(dom, hv2(world), {}, lv.VIR_MIGRATE_LIVE)

    def wait_for_the_job_lock(*args):
        began = world.clock()
        foreign.started_at = began - 1
        dom.job = foreign
        while world.clock() - began < 3:  # the monitor's polls move the clock
            time.sleep(0.01)
        raise lv.libvirtError("Timed out during operation: cannot acquire state change lock (held by "
                              "monitor=remoteDispatchDomainMigratePerform3Params)", lv.VIR_ERR_OPERATION_TIMEOUT)

    dom.migrateToURI3 = wait_for_the_job_lock
    with pytest.raises(MigrationInProgress, match="this run started none") as caught:
        migrate(world, convergence={"poll_interval": 0.5})
    assert world.methods() == [], "the monitor acted on the other run's job"
    assert not foreign.finished.is_set(), "the other run's job was aborted"
    assert any("older than this run's migrate call" in warning for warning in caught.value.details["warnings"])


def test_an_offline_migration_refused_for_another_job_touches_nothing(world):
    dom = hv1(world).add_domain("vm1", state=SHUTOFF)
    dom.fail_on["migrateToURI3"] = lv.libvirtError(
        "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatch)",
        lv.VIR_ERR_OPERATION_TIMEOUT)
    with pytest.raises(MigrationInProgress, match="this run started none"):
        migrate(world, live=False)
    assert state_of(hv1(world), dom.UUIDString()) == (SHUTOFF, True)
    assert state_of(hv2(world), dom.UUIDString()) is None


POSTCOPY_REFUSED = ("internal error: unable to execute QEMU command 'migrate-set-capabilities': "
                    "Postcopy is not supported")


@pytest.fixture
def destination_without_postcopy(monkeypatch):
    """The destination's QEMU refuses the post-copy capability as a migration with VIR_MIGRATE_POSTCOPY starts."""
    original = lv.FakeDomain.migrateToURI3

    def refuse_postcopy(self, dconnuri, params, flags=0):
        if flags & lv.VIR_MIGRATE_POSTCOPY:
            self._call("migrateToURI3", dconnuri, dict(params), flags)
            raise lv.libvirtError(POSTCOPY_REFUSED, lv.VIR_ERR_INTERNAL_ERROR)
        return original(self, dconnuri, params, flags)

    monkeypatch.setattr(lv.FakeDomain, "migrateToURI3", refuse_postcopy)


def test_postcopy_refused_by_the_destination_names_it_and_the_causes(world, destination_without_postcopy):
    dom = running_vm(world)
    with pytest.raises(MigrationFailed) as caught:
        migrate(world, post_copy=True)
    error = caught.value
    assert f"the destination ({DEST}) cannot do post-copy" in str(error) and "before anything moved" in str(error)
    assert "vm.unprivileged_userfaultfd" in error.hint and "on_postcopy_unavailable: precopy" in error.hint
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert state_of(hv2(world), dom.UUIDString()) is None


def test_postcopy_refused_goes_on_in_precopy_when_asked(world, destination_without_postcopy):
    dom = running_vm(world)
    result = migrate(world, post_copy=True, on_postcopy_unavailable="precopy",
                     convergence={"on_timeout": "postcopy"})
    calls = [call for call in world.calls if call[1] == "migrateToURI3"]
    assert [bool(call[2][-1] & lv.VIR_MIGRATE_POSTCOPY) for call in calls] == [True, False]
    assert result["changed"] is True and result["phases"]["postcopy"] is False
    assert any("cannot do post-copy" in warning and "pre-copy" in warning for warning in result["warnings"])
    assert any("migrating again in pre-copy" in note for note in result["recovery"])
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
    assert state_of(hv1(world), dom.UUIDString()) is None


# ---------------------------------------------------------------------------
# The operator's cancel request (evacuate and restore hand it to each migration)


CANCEL = "/var/lib/virtops/cancel"


def migrate_cancelled(world, cancel_requested, **params):
    environment = environment_of(world, fs_type_of={}.get, cancel_requested=cancel_requested)
    return run_migration(migrate_request(**params), False, environment)


def test_a_cancel_aborts_the_running_migration_and_the_guest_stays_on_the_source(world):
    dom = running_vm(world, script=never_converging())
    with pytest.raises(MigrationFailed) as caught:
        migrate_cancelled(world, lambda: CANCEL if world.now >= 1003 else None,
                          convergence={"completion_timeout_per_gib": 0, "progress_timeout": 0, "downtime_steps": 0})
    error = caught.value
    assert f"migration failed (cancelled by the operator ({CANCEL}): the running migration was aborted)" in str(error)
    assert "aborted by the convergence policy" not in str(error)
    assert "the domain now runs on: source" in str(error)
    assert error.details["cancelled"] is True
    assert [(a["action"], a["reason"], a["result"]) for a in error.details["policy_actions"]] == [
        ("abort", f"cancelled by the operator ({CANCEL})", "ok")]
    assert state_of(hv1(world), dom.UUIDString()) == (RUNNING, True)
    assert state_of(hv2(world), dom.UUIDString()) is None
    assert ("hv1", "abortJob") in world.methods()


def test_a_cancel_during_postcopy_leaves_the_migration_to_finish(world):
    dom = running_vm(world, script=never_converging())
    convergence = {"on_timeout": "postcopy", "progress_timeout": 3, "downtime_steps": 0}

    def after_the_switch():
        return CANCEL if dom.job is not None and dom.job.switched == "postcopy" else None

    result = migrate_cancelled(world, after_the_switch, post_copy=True, convergence=convergence)
    assert result["changed"] is True and result["phases"]["postcopy"] is True
    assert [(a["action"], a["reason"]) for a in result["policy_actions"]][-1] == ("note", CANCEL_DURING_POSTCOPY)
    assert [a["action"] for a in result["policy_actions"]].count("abort") == 0
    assert CANCEL_DURING_POSTCOPY in result["warnings"]
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
    assert ("hv1", "abortJob") not in world.methods()


def test_without_a_cancel_request_the_migration_runs_as_before(world):
    dom = running_vm(world)
    result = migrate_cancelled(world, lambda: None)
    assert result["changed"] is True and result["policy_actions"][0]["action"] == "set_downtime"
    assert state_of(hv2(world), dom.UUIDString()) == (RUNNING, True)
