"""Preflight checks and storage classification in isolation."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DiskSpec,
    DomainInfo,
    guest_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    LOCAL,
    NOT_MIGRATED,
    SHARED,
    UNKNOWN,
    PreflightContext,
    check_cpu,
    check_networks,
    check_throughput,
    classify_disk,
    mount_fs_type,
    run_preflight,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

UUID = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"
MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv/vm rw,relatime shared:20 - nfs4 nfs1:/export/vm rw,vers=4.2
41 40 0:36 / /srv/vm/local rw,relatime shared:21 - xfs /dev/sdb1 rw
"""


@pytest.mark.parametrize("path,fs_type", [
    ("/srv/vm/vm1.qcow2", "nfs4"),
    ("/srv/vm/local/scratch.img", "xfs"),
    ("/var/lib/libvirt/images/a.img", "ext4"),
    ("/srv/vmx/a.img", "ext4"),
])
def test_mount_fs_type_longest_prefix(tmp_path, path, fs_type):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    assert mount_fs_type(path, str(mountinfo)) == fs_type


def test_mount_fs_type_unreadable_is_unknown(tmp_path):
    assert mount_fs_type("/x", str(tmp_path / "missing")) is None


def disk(**kwargs):
    values = {"target": "vda", "device": "disk", "disk_type": "file", "source": "/img/a.qcow2",
              "protocol": None, "readonly": False, "shareable": False}
    values.update(kwargs)
    return DiskSpec(**values)


@pytest.mark.parametrize("spec,fs_types,volumes,sharing", [
    (disk(disk_type="network", source="/export/a.img", protocol="nfs"), {}, {}, SHARED),
    (disk(readonly=True), {}, {}, UNKNOWN),  # never copied: the destination needs the same path
    (disk(source=None, device="cdrom"), {}, {}, NOT_MIGRATED),
    (disk(shareable=True), {}, {}, UNKNOWN),  # libvirt checks a shareable disk like any writable one
    (disk(), {"/img/a.qcow2": "ext4"}, {"/img/a.qcow2": "dir"}, LOCAL),
    (disk(), {"/img/a.qcow2": "nfs"}, {}, SHARED),
    (disk(), {"/img/a.qcow2": "ext4"}, {}, LOCAL),
    (disk(), {}, {"/img/a.qcow2": "netfs"}, SHARED),
    (disk(), {}, {"/img/a.qcow2": "dir"}, SHARED),
    (disk(), {}, {}, UNKNOWN),
])
def test_classify_disk(world, spec, fs_types, volumes, sharing):
    dest = world.hosts["qemu+tls://hv2.example.com/system"]
    dest.volumes.update(volumes)
    verdict = classify_disk(spec, lv.FakeConnection(dest), fs_types.get)
    assert verdict.sharing == sharing


def context(world, cpu=None, interfaces=None, **params):
    request = MigrationRequest.from_params({"name": "vm1", "dest_uri": "qemu+tls://hv2.example.com/system", **params})
    guest = guest_spec(lv.domain_xml("vm1", UUID, cpu=cpu, interfaces=interfaces))
    info = DomainInfo("vm1", UUID, "running", "booted", True, 1048576, 1048576)
    source = lv.FakeConnection(world.hosts["qemu:///system"])
    dest = lv.FakeConnection(world.hosts["qemu+tls://hv2.example.com/system"])
    return PreflightContext(request, source, dest, info, guest, [], [])


def test_cpu_host_passthrough_cannot_be_compared(world):
    result = check_cpu(context(world, cpu="<cpu mode='host-passthrough'/>"))
    assert result.status == "warning"
    assert world.calls == []


def test_cpu_compare_unsupported_is_a_warning_other_errors_fail(world):
    dest = world.hosts["qemu+tls://hv2.example.com/system"]
    dest.cpu_error = lv.libvirtError("this function is not supported by the connection driver",
                                     lv.VIR_ERR_NO_SUPPORT)
    assert check_cpu(context(world)).status == "warning"
    dest.cpu_error = lv.libvirtError("the CPU is incompatible with host CPU: Host CPU does not provide "
                                     "required features: avx512f", lv.VIR_ERR_CPU_INCOMPATIBLE)
    result = check_cpu(context(world))
    assert result.status == "failed"
    assert "avx512f" in result.message


def test_cpu_compare_passes_guest_cpu_and_virt_type(world):
    assert check_cpu(context(world)).status == "passed"
    call = next(c for c in world.calls if c[1] == "compareHypervisorCPU")
    assert call[2][0] == "kvm"
    assert "<model fallback=\"forbid\">qemu64</model>" in call[2][1]


def test_networks_bridges_and_direct(world):
    interfaces = ("<interface type='bridge'><source bridge='br0'/></interface>"
                  "<interface type='direct'><source dev='eth9' mode='bridge'/></interface>"
                  "<interface type='user'/>")
    result = check_networks(context(world, interfaces=interfaces))
    assert result.status == "failed"
    assert "interface eth9" in result.message
    assert "br0" not in result.message


DEST_URI = "qemu+tls://hv2.example.com/system"


def test_throughput_passes_with_the_lab_versions_and_lists_them(world):
    report = run_preflight(context(world, parallel_connections=2, compression=["xbzrle"]))
    [entry] = [r for r in report.as_list() if r["name"] == "throughput"]
    assert entry["status"] == "passed"
    assert f"source qemu:///system: libvirt 9.0.0, QEMU 7.2.0; destination {DEST_URI}: libvirt 9.0.0, QEMU 7.2.0" \
        in entry["message"]
    assert "parallel_connections (libvirt >= 5.2.0, QEMU >= 4.0.0)" in entry["message"]
    assert "compression xbzrle (libvirt >= 1.0.3, QEMU >= 1.2.0)" in entry["message"]


def test_throughput_not_checked_without_the_options(world):
    report = run_preflight(context(world))
    assert "throughput" not in [r.name for r in report.results]


def test_throughput_refuses_zstd_on_libvirt_9_0(world):
    result = check_throughput(context(world, parallel_connections=2, compression=["zstd"]))
    assert result.status == "failed"
    assert "compression zstd needs libvirt 9.4.0 or later on both hosts" in result.message
    assert "the source qemu:///system has libvirt 9.0.0" in result.message
    assert f"the destination {DEST_URI} has libvirt 9.0.0" in result.message
    assert "upgrade libvirt on the destination to 9.4.0 or later" in result.message


def test_throughput_unreadable_versions_are_a_warning(world):
    world.hosts[DEST_URI].version_error = lv.libvirtError(
        "this function is not supported by the connection driver: virConnectGetVersion", lv.VIR_ERR_NO_SUPPORT)
    result = check_throughput(context(world, parallel_connections=2))
    assert result.status == "warning"
    assert "virConnectGetVersion" in result.message
