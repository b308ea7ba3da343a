"""The fake libvirt must agree with the real bindings on every constant it defines."""

from __future__ import annotations

import threading

import fake_libvirt
import pytest
from fake_libvirt import MigrationScript, libvirtError, sample


def test_fake_constants_match_real_libvirt(real_libvirt):
    names = [name for name in dir(fake_libvirt) if name.startswith("VIR_")]
    assert len(names) > 150
    mismatched = {name: (getattr(fake_libvirt, name), getattr(real_libvirt, name, None))
                  for name in names if getattr(real_libvirt, name, None) != getattr(fake_libvirt, name)}
    assert mismatched == {}


def test_fake_migration_methods_exist_in_real_bindings(real_libvirt):
    for method in ("migrateToURI3", "migrate3", "jobStats", "abortJob", "abortJobFlags", "migrateSetMaxDowntime",
                   "migrateGetMaxDowntime", "migrateSetMaxSpeed", "migrateGetMaxSpeed",
                   "migrateStartPostCopy", "undefineFlags", "XMLDesc", "state", "info", "metadata", "setMetadata"):
        assert hasattr(real_libvirt.virDomain, method), method
    for method in ("compareHypervisorCPU", "getMemoryStats", "getCapabilities", "lookupByUUIDString",
                   "networkLookupByName", "interfaceLookupByName", "storageVolLookupByPath", "defineXML",
                   "listAllStoragePools", "storagePoolLookupByName"):
        assert hasattr(real_libvirt.virConnect, method), method
    for method in ("refresh", "isActive", "name", "XMLDesc", "storageVolLookupByName"):
        assert hasattr(real_libvirt.virStoragePool, method), method


# ---------------------------------------------------------------------------
# Migration semantics, as libvirt 9.0's QEMU driver has them (src/qemu/qemu_migration.c, qemu_driver.c)

DEST = "qemu+tls://hv2.example.com/system"
P2P_LIVE = fake_libvirt.VIR_MIGRATE_PEER2PEER | fake_libvirt.VIR_MIGRATE_LIVE | fake_libvirt.VIR_MIGRATE_PERSIST_DEST


def source_and_dest(world):
    return world.hosts["qemu:///system"], world.hosts[DEST]


def test_offline_migration_needs_persist_dest(world):
    source, dest = source_and_dest(world)
    dom = source.add_domain("vm1", fake_libvirt.VIR_DOMAIN_SHUTOFF)
    with pytest.raises(libvirtError, match="offline migration must be specified with the persistent flag set") as caught:
        dom.migrateToURI3(DEST, {}, fake_libvirt.VIR_MIGRATE_PEER2PEER | fake_libvirt.VIR_MIGRATE_OFFLINE)
    assert caught.value.get_error_code() == fake_libvirt.VIR_ERR_OPERATION_INVALID
    assert dest.domains == {}
    dom.migrateToURI3(DEST, {}, fake_libvirt.VIR_MIGRATE_PEER2PEER | fake_libvirt.VIR_MIGRATE_OFFLINE
                      | fake_libvirt.VIR_MIGRATE_PERSIST_DEST)
    assert dest.domains[dom.UUIDString()].state() == [fake_libvirt.VIR_DOMAIN_SHUTOFF, fake_libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED]


def test_live_migration_of_a_shut_off_domain_is_refused(world):
    source, dest = source_and_dest(world)
    dom = source.add_domain("vm1", fake_libvirt.VIR_DOMAIN_SHUTOFF)
    with pytest.raises(libvirtError, match="Requested operation is not valid: domain is not running") as caught:
        dom.migrateToURI3(DEST, {}, P2P_LIVE)
    assert caught.value.get_error_code() == fake_libvirt.VIR_ERR_OPERATION_INVALID
    assert dest.domains == {}


@pytest.mark.parametrize("paused_by", ["the user on the source", "VIR_MIGRATE_PAUSED"])
def test_a_guest_that_arrives_paused_is_paused_by_the_user(world, paused_by):
    # qemuMigrationDstComplete sets VIR_DOMAIN_PAUSED_USER on a destination domain left paused.
    source, dest = source_and_dest(world)
    user_paused = paused_by == "the user on the source"
    dom = source.add_domain("vm1", fake_libvirt.VIR_DOMAIN_PAUSED if user_paused else fake_libvirt.VIR_DOMAIN_RUNNING)
    dom.script = MigrationScript(samples=[])
    dom.migrateToURI3(DEST, {}, P2P_LIVE | (0 if user_paused else fake_libvirt.VIR_MIGRATE_PAUSED))
    assert dest.domains[dom.UUIDString()].state() == [fake_libvirt.VIR_DOMAIN_PAUSED, fake_libvirt.VIR_DOMAIN_PAUSED_USER]


def test_qemu_persist_failure_kills_the_destination_copy_and_resumes_the_source(world):
    source, dest = source_and_dest(world)
    dom = source.add_domain("vm1")
    dom.script = MigrationScript(samples=[sample(0)], outcome="persist_failed")
    with pytest.raises(libvirtError, match="No space left on device") as caught:
        migrate_in_background(world, dom, P2P_LIVE).join_and_raise()
    assert caught.value.get_error_code() == fake_libvirt.VIR_ERR_SYSTEM_ERROR
    assert dest.domains == {}
    assert dom.state() == [fake_libvirt.VIR_DOMAIN_RUNNING, fake_libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert dom.isPersistent()


class Migration:
    def __init__(self, world, dom, flags: int) -> None:
        self.world, self.dom, self.error = world, dom, None
        self.thread = threading.Thread(target=self.run, args=(flags,), daemon=True)
        self.thread.start()

    def run(self, flags: int) -> None:
        try:
            self.dom.migrateToURI3(DEST, {}, flags)
        except libvirtError as exc:
            self.error = exc

    def wait_until_underway(self) -> None:
        for _attempt in range(200):
            if self.dom.job is not None and self.dom.job in self.world.jobs:
                return
            threading.Event().wait(0.01)
        raise AssertionError("the migration did not start")

    def join_and_raise(self) -> None:
        for _attempt in range(200):
            if not self.thread.is_alive():
                break
            self.world.tick(1)
            self.thread.join(0.01)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def migrate_in_background(world, dom, flags: int) -> Migration:
    return Migration(world, dom, flags)


def test_abort_in_post_copy_needs_the_post_copy_flag_and_only_pauses(world):
    source, dest = source_and_dest(world)
    dom = source.add_domain("vm1")
    dom.script = MigrationScript(samples=[sample(100)], outcome="never")
    migration = migrate_in_background(world, dom, P2P_LIVE | fake_libvirt.VIR_MIGRATE_POSTCOPY)
    migration.wait_until_underway()
    with pytest.raises(libvirtError, match="current job is not outgoing migration in post-copy mode"):
        dom.abortJobFlags(fake_libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
    dom.migrateStartPostCopy()
    with pytest.raises(libvirtError, match="cannot abort migration in post-copy mode") as caught:
        dom.abortJob()
    assert caught.value.get_error_code() == fake_libvirt.VIR_ERR_OPERATION_INVALID
    dom.abortJobFlags(fake_libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
    with pytest.raises(libvirtError, match="failed in post-copy phase"):
        migration.join_and_raise()
    assert dom.state() == [fake_libvirt.VIR_DOMAIN_PAUSED, fake_libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    expected = [fake_libvirt.VIR_DOMAIN_RUNNING, fake_libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED]
    assert dest.domains[dom.UUIDString()].state() == expected
