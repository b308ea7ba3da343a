"""Disks that libvirt neither treats as shared nor copies: preflight says so before anything changes.

libvirt 9.0 (qemu_migration.c): qemuMigrationSrcIsSafe skips empty and read-only disks and network
disks, and refuses a writable file disk on a local filesystem unless it is copied;
qemuMigrationAnyCopyDisk copies by default every disk that is not read-only, empty or shareable, and
refuses a read-only or empty disk named in migrate_disks. A read-only disk outside shared storage is
therefore opened at the same path by QEMU on the destination.
"""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    PreflightFailed,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DiskSpec,
    DomainInfo,
    guest_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    FAILED,
    LOCAL,
    MISSING,
    NOT_MIGRATED,
    PASSED,
    PRESENT,
    SHARED,
    UNKNOWN,
    UNVERIFIED,
    PreflightContext,
    check_storage,
    classify_disk,
    classify_disks,
    plan_copied_disks,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import environment_of

SRC = "qemu:///system"
DEST = "qemu+tls://hv2.example.com/system"
UUID = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"
ISO = "/var/lib/libvirt/isos/tools.iso"
NFS_DISK = ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
            "<source protocol='nfs' name='/srv/vm/vm1.img'><host name='nfs1'/></source>"
            "<target dev='vda' bus='virtio'/></disk>")
CDROM = (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{ISO}'/>"
         "<target dev='hdc' bus='ide'/><readonly/></disk>")
LOCAL_FS = {ISO: "ext4", "/var/lib/libvirt/images/data.img": "ext4"}


def disk(**kwargs):
    values = {"target": "vdb", "device": "disk", "disk_type": "file", "source": "/var/lib/libvirt/images/data.img",
              "protocol": None, "readonly": False, "shareable": False}
    values.update(kwargs)
    return DiskSpec(**values)


def cdrom(**kwargs):
    return disk(**dict({"target": "hdc", "device": "cdrom", "source": ISO, "readonly": True}, **kwargs))


def dest(world):
    return world.hosts[DEST]


def request(**params):
    return MigrationRequest.from_params(dict({"name": "vm1", "dest_uri": DEST}, **params))


def storage_check(world, disks_xml, fs_types, **params):
    req = request(**params)
    guest = guest_spec(lv.domain_xml("vm1", UUID, disks=disks_xml))
    dconn = lv.FakeConnection(dest(world))
    verdicts = classify_disks(guest, dconn, fs_types.get)
    copied = plan_copied_disks(req, verdicts)
    info = DomainInfo("vm1", UUID, "running", "booted", True, 1048576, 1048576)
    ctx = PreflightContext(req, lv.FakeConnection(world.hosts[SRC]), dconn, info, guest, verdicts, copied)
    return check_storage(ctx)


# ---------------------------------------------------------------------------
# How libvirt treats each disk


@pytest.mark.parametrize("spec,fs_types,sharing,copied_by_default,must_exist", [
    (cdrom(), LOCAL_FS, LOCAL, False, True),                     # read-only: never copied, never checked
    (cdrom(), {}, UNKNOWN, False, True),                         # same, seen from a controller
    (cdrom(source=None), {}, NOT_MIGRATED, False, False),        # no medium: nothing to open
    (cdrom(), {ISO: "nfs4"}, SHARED, False, False),              # read-only on NFS: shared
    (disk(), LOCAL_FS, LOCAL, True, False),                      # writable local: copied, or libvirt refuses
    (disk(shareable=True), LOCAL_FS, LOCAL, False, False),       # shareable: copied only when listed
    (disk(disk_type="network", protocol="nfs", source="/srv/vm/x.img"), {}, SHARED, False, False),
])
def test_verdict_follows_libvirt(world, spec, fs_types, sharing, copied_by_default, must_exist):
    verdict = classify_disk(spec, lv.FakeConnection(dest(world)), fs_types.get)
    assert (verdict.sharing, verdict.copied_by_default, verdict.must_exist_on_dest) == \
        (sharing, copied_by_default, must_exist)


def test_writable_local_file_is_local_even_when_the_destination_has_the_same_path(world):
    """libvirt judges the source's filesystem: a file of that name on the destination is not shared."""
    lv.add_pool(dest(world), "images", "dir", "/var/lib/libvirt/images", ("/var/lib/libvirt/images/data.img",))
    verdict = classify_disk(disk(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert verdict.sharing == LOCAL
    assert plan_copied_disks(request(copy_storage="all"), [verdict]) == ["vdb"]


# ---------------------------------------------------------------------------
# Looking the path up on the destination


def test_read_only_disk_found_in_a_destination_pool_after_a_refresh(world):
    pool = lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos")
    pool.files.add(ISO)  # copied there after libvirt last listed the pool
    verdict = classify_disk(cdrom(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert (verdict.on_dest, "storage pool isos" in verdict.on_dest_reason) == (PRESENT, True)
    assert ("hv2", "storagePoolRefresh", ("isos",)) in world.calls
    assert world.mutations == []


def test_read_only_disk_already_known_needs_no_refresh(world):
    lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos", (ISO,))
    verdict = classify_disk(cdrom(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert verdict.on_dest == PRESENT
    assert not [call for call in world.calls if call[1] == "storagePoolRefresh"]


def test_read_only_disk_missing_from_the_covering_pool(world):
    lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos", ("/var/lib/libvirt/isos/other.iso",))
    verdict = classify_disk(cdrom(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert verdict.on_dest == MISSING
    assert verdict.on_dest_reason == f"the destination has no {ISO} (storage pool isos refreshed)"


@pytest.mark.parametrize("setup,needle", [
    (lambda host: None, "no active storage pool on the destination has the directory /var/lib/libvirt/isos"),
    (lambda host: lv.add_pool(host, "isos", "dir", "/var/lib/libvirt/isos", active=False),
     "no active storage pool"),
    (lambda host: lv.add_pool(host, "parent", "dir", "/var/lib/libvirt"), "no active storage pool"),
    (lambda host: lv.add_pool(host, "vg", "logical", "/var/lib/libvirt/isos"), "could not be refreshed"),
    (lambda host: lv.add_pool(host, "isos", "dir", "/var/lib/libvirt/isos", refresh_error=lv.libvirtError(
        "Requested operation is not valid: pool 'isos' has asynchronous jobs running.")), "could not be refreshed"),
    (lambda host: setattr(host, "pools_error", lv.libvirtError("this function is not supported by the connection "
                                                               "driver: virConnectListAllStoragePools")),
     "cannot be listed"),
])
def test_read_only_disk_that_cannot_be_verified(world, setup, needle):
    setup(dest(world))
    verdict = classify_disk(cdrom(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert verdict.on_dest == UNVERIFIED
    assert needle in verdict.on_dest_reason
    assert not [call for call in world.calls if call[1] == "storagePoolRefresh" and call[2] == ("vg",)]


# ---------------------------------------------------------------------------
# The storage check and the copy plan


@pytest.mark.parametrize("pool_files", [None, ()])
def test_storage_check_refuses_a_read_only_disk_the_destination_lacks(world, pool_files):
    if pool_files is not None:
        lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos", pool_files)
    result = storage_check(world, NFS_DISK + CDROM, LOCAL_FS)
    assert result.status == FAILED
    for words in (f"hdc (read-only cdrom {ISO})", "same path", "copy " + ISO, "shared storage",
                  "virsh change-media DOMAIN hdc --eject", "storage copy cannot carry a read-only disk"):
        assert words in result.message, (words, result.message)
    assert "vda" not in result.message


def test_storage_check_passes_a_read_only_disk_the_destination_has(world):
    lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos", (ISO,))
    result = storage_check(world, NFS_DISK + CDROM, LOCAL_FS)
    assert result.status == PASSED
    assert f"the destination has {ISO} (storage pool isos)" in result.message


def test_copy_storage_all_names_the_read_only_disk_it_cannot_copy(world):
    with pytest.raises(ValidationError) as caught:
        storage_check(world, NFS_DISK + CDROM, LOCAL_FS, copy_storage="all")
    text = str(caught.value)
    assert "copies no disk" in text
    assert "vda is on shared storage" in text
    assert "libvirt never copies a read-only disk" in text
    assert "virsh change-media DOMAIN hdc --eject" in text
    assert "set copy_storage: none" not in text


def test_copy_storage_all_with_only_shared_disks_still_says_set_none(world):
    with pytest.raises(ValidationError) as caught:
        storage_check(world, NFS_DISK, {}, copy_storage="all")
    assert "set copy_storage: none" in str(caught.value)


def test_migrate_disks_naming_a_read_only_disk_is_refused(world):
    with pytest.raises(ValidationError) as caught:
        storage_check(world, NFS_DISK + CDROM, LOCAL_FS, copy_storage="all", migrate_disks=["hdc"])
    assert "Cannot migrate empty or read-only disk" in str(caught.value)


def test_shareable_local_disk_is_not_copied_unless_listed(world):
    shareable = ("<disk type='file' device='disk'><source file='/var/lib/libvirt/images/data.img'/>"
                 "<target dev='vdb' bus='virtio'/><shareable/></disk>")
    result = storage_check(world, NFS_DISK + shareable, LOCAL_FS)
    assert result.status == FAILED
    assert "name it in migrate_disks" in result.message
    with pytest.raises(ValidationError):
        storage_check(world, NFS_DISK + shareable, LOCAL_FS, copy_storage="all")
    listed = storage_check(world, NFS_DISK + shareable, LOCAL_FS, copy_storage="all", migrate_disks=["vdb"])
    assert listed.status == PASSED


# ---------------------------------------------------------------------------
# End to end: check mode predicts the refusal, a real run refuses before anything changes


def guest_with_cdrom(world):
    dom = world.hosts[SRC].add_domain("vm1", xml=lv.domain_xml("vm1", UUID, disks=NFS_DISK + CDROM), uuid=UUID)
    dom.script = lv.MigrationScript()
    return dom


def migrate(world, check_mode):
    return run_migration(request(), check_mode, environment_of(world, fs_type_of=LOCAL_FS.get))


@pytest.mark.parametrize("check_mode", [True, False])
def test_run_refuses_a_read_only_disk_the_destination_lacks(world, check_mode):
    guest_with_cdrom(world)
    with pytest.raises(PreflightFailed) as caught:
        migrate(world, check_mode)
    assert "hdc (read-only cdrom" in str(caught.value)
    assert world.mutations == []
    assert world.hosts[SRC].domains[UUID].state()[0] == lv.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize("check_mode", [True, False])
def test_run_migrates_when_the_destination_has_the_read_only_disk(world, check_mode):
    guest_with_cdrom(world)
    lv.add_pool(dest(world), "isos", "dir", "/var/lib/libvirt/isos", (ISO,))
    result = migrate(world, check_mode)
    assert result["changed"] is True
    storage = next(check for check in result["preflight"] if check["name"] == "storage")
    assert storage["status"] == PASSED
    assert (UUID in dest(world).domains) is not check_mode


# ---------------------------------------------------------------------------
# A read-only disk given as <source pool= volume=>: looked up by pool and volume name


def pool_volume_cdrom():
    return cdrom(disk_type="volume", source="isos/tools.iso")


@pytest.mark.parametrize("setup,on_dest,needle", [
    (lambda host: lv.add_pool(host, "isos", "dir", "/srv/isos", ("/srv/isos/tools.iso",)), PRESENT,
     "volume tools.iso in storage pool isos"),
    (lambda host: lv.add_pool(host, "isos", "dir", "/srv/isos").files.add("/srv/isos/tools.iso"), PRESENT,
     "volume tools.iso in storage pool isos"),
    (lambda host: lv.add_pool(host, "isos", "dir", "/srv/isos"), MISSING, "(refreshed)"),
    (lambda host: None, MISSING, "the destination has no storage pool isos"),
    (lambda host: lv.add_pool(host, "isos", "dir", "/srv/isos", ("/srv/isos/tools.iso",), active=False), MISSING,
     "not active"),
    (lambda host: lv.add_pool(host, "isos", "rbd", "isos"), UNVERIFIED, "could not be refreshed"),
])
def test_read_only_pool_volume_disk(world, setup, on_dest, needle):
    setup(dest(world))
    verdict = classify_disk(pool_volume_cdrom(), lv.FakeConnection(dest(world)), LOCAL_FS.get)
    assert verdict.sharing == UNKNOWN  # "isos/tools.iso" is no path of this host: no mount table verdict
    assert (verdict.on_dest, needle in verdict.on_dest_reason) == (on_dest, True), verdict.on_dest_reason
