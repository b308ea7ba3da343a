# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Preflight checks: fail early, with a clear message, before anything changes.

Named checks (skippable through ``preflight_skip``): ``cpu``, ``memory``,
``storage``, ``networks``.  ``dest_reachable`` always runs: every other step
needs the destination connection.  The hosts' identities (host UUIDs) are
compared earlier, before the domain is looked up (_reconcile.refuse_same_host).

What storage sharing can and cannot be detected, honestly:
- network disks (``<disk type='network'>``, e.g. QEMU's NFS client, RBD) are shared;
- a file/block disk is shared when this machine sees its path on a shared
  filesystem (NFS, CephFS, GFS2, ...), which is only meaningful when the task
  runs on the source host (``uri`` is local), or when the destination's
  libvirt knows a storage volume at that path;
- otherwise sharing is *unknown*: a warning, and libvirt itself refuses an
  unsafe migration (VIR_ERR_MIGRATE_UNSAFE).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._domain import (
    DiskSpec,
    DomainInfo,
    GuestSpec,
)
from ansible_collections.virtops.migration.plugins.module_utils._errors import (
    PreflightFailed,
    ValidationError,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt_dep import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._params import (
    MigrationRequest,
)

PASSED = "passed"
FAILED = "failed"
WARNING = "warning"
SKIPPED = "skipped"

SHARED_FS_TYPES = frozenset((
    "nfs", "nfs4", "gfs", "gfs2", "ocfs2", "afs", "cifs", "smb3", "smbfs", "ceph", "fuse.ceph",
    "gpfs", "fuse.quobyte", "acfs", "glusterfs", "fuse.glusterfs", "beegfs", "lustre",
))
SHARED_POOL_TYPES = frozenset(("netfs", "rbd", "iscsi", "iscsi-direct", "gluster", "sheepdog", "vstorage"))

SHARED = "shared"
LOCAL = "local"
UNKNOWN = "unknown"
NOT_MIGRATED = "not_migrated"  # read-only, shareable or empty: libvirt skips these


@dataclass
class CheckResult:
    name: str
    status: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass
class PreflightReport:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.status == FAILED]

    @property
    def warnings(self) -> list[str]:
        return [f"preflight {r.name}: {r.message}" for r in self.results if r.status == WARNING]

    def as_list(self) -> list[dict[str, str]]:
        return [result.as_dict() for result in self.results]


# ---------------------------------------------------------------------------
# Storage classification


def mount_fs_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Filesystem type of the mount holding ``path`` on this machine (None: unknown)."""
    try:
        with open(mountinfo, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    best_point, best_type = "", None
    real = os.path.realpath(path)
    for line in lines:
        left, _dash, right = line.partition(" - ")
        fields_left, fields_right = left.split(), right.split()
        if len(fields_left) < 5 or not fields_right:
            continue
        point = fields_left[4].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best_point):
            best_point, best_type = point, fields_right[0]
    return best_type


@dataclass
class DiskVerdict:
    target: str
    sharing: str
    reason: str


def _dest_pool_type(dconn: Any, path: str) -> str | None:
    try:
        volume = dconn.storageVolLookupByPath(path)
        pool = volume.storagePoolLookupByVolume()
        return ET.fromstring(pool.XMLDesc(0)).get("type")
    except libvirt.libvirtError:
        return None


def classify_disk(disk: DiskSpec, dconn: Any, fs_type_of: Callable[[str], str | None] | None) -> DiskVerdict:
    """Decide whether the destination can use this disk without copying it."""
    if disk.empty or disk.readonly or disk.shareable:
        why = "empty" if disk.empty else ("read-only" if disk.readonly else "shareable")
        return DiskVerdict(disk.target, NOT_MIGRATED, f"{why} disk, libvirt does not migrate it")
    if disk.disk_type == "network":
        return DiskVerdict(disk.target, SHARED, "network disk (protocol %s)" % (disk.protocol or "?"))
    path = disk.source or ""
    fs_type = fs_type_of(path) if fs_type_of is not None else None
    if fs_type in SHARED_FS_TYPES:
        return DiskVerdict(disk.target, SHARED, f"{path} is on a {fs_type} filesystem")
    pool_type = _dest_pool_type(dconn, path) if path.startswith("/") else None
    if pool_type in SHARED_POOL_TYPES:
        return DiskVerdict(disk.target, SHARED, f"destination pool of type {pool_type} holds {path}")
    if pool_type is not None:
        return DiskVerdict(disk.target, SHARED, f"destination sees {path} (pool type {pool_type})")
    if fs_type is not None:
        return DiskVerdict(disk.target, LOCAL, f"{path} is on a local {fs_type} filesystem")
    return DiskVerdict(disk.target, UNKNOWN, f"cannot tell whether {path} is shared from here")


def classify_disks(guest: GuestSpec, dconn: Any, fs_type_of: Callable[[str], str | None] | None) -> list[DiskVerdict]:
    return [classify_disk(disk, dconn, fs_type_of) for disk in guest.disks if disk.device in ("disk", "lun", "cdrom", "floppy")]


def plan_copied_disks(request: MigrationRequest, verdicts: list[DiskVerdict]) -> list[str]:
    """The explicit migrate_disks list for a storage copy (guards shared disks).

    libvirt's default with VIR_MIGRATE_NON_SHARED_* copies every writable disk
    that is not ``<shareable/>``, including a disk on NFS, which would copy
    it onto itself.  So the list is always explicit: the user's (refused if it
    names a shared disk), or every disk that is not known to be shared.
    """
    if request.copy_storage == "none":
        return []
    by_target = {verdict.target: verdict for verdict in verdicts}
    if request.migrate_disks:
        shared = [t for t in request.migrate_disks if by_target.get(t) and by_target[t].sharing == SHARED]
        if shared:
            raise ValidationError(
                "plan storage copy", "migrate_disks names disks on shared storage: {} ({}); copying a "
                "shared disk writes it onto itself".format(", ".join(shared), by_target[shared[0]].reason),
                hint="drop them from migrate_disks", **request.context())
        return list(request.migrate_disks)
    copied = [v.target for v in verdicts if v.sharing in (LOCAL, UNKNOWN)]
    if not copied:
        raise ValidationError(
            "plan storage copy", f"copy_storage: {request.copy_storage} but every disk is on shared storage or not migrated",
            hint="set copy_storage: none", **request.context())
    return copied


# ---------------------------------------------------------------------------
# The checks


@dataclass
class PreflightContext:
    request: MigrationRequest
    source_conn: Any
    dest_conn: Any
    source: DomainInfo
    guest: GuestSpec
    disk_verdicts: list[DiskVerdict]
    copied_disks: list[str]


def host_uuid_of(conn: Any) -> str | None:
    """The host UUID libvirt reports for the host behind ``conn`` (its identity, whatever the URI says)."""
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid")


def check_dest_reachable(ctx: PreflightContext) -> CheckResult:
    version = ctx.dest_conn.getLibVersion()
    major, minor = version // 1000000, (version // 1000) % 1000
    return CheckResult("dest_reachable", PASSED, f"destination libvirt {major}.{minor} answers")


def check_cpu(ctx: PreflightContext) -> CheckResult:
    return compare_guest_cpu(ctx.dest_conn, ctx.guest)


def compare_guest_cpu(dest_conn: Any, guest: GuestSpec) -> CheckResult:
    """Can the hypervisor behind ``dest_conn`` run the guest's CPU? (also used by evacuate's placement)"""
    if not guest.cpu_xml:
        return CheckResult("cpu", WARNING, "the domain XML has no <cpu> element; nothing to compare")
    if guest.cpu_mode == "host-passthrough":
        return CheckResult("cpu", WARNING, "host-passthrough CPU cannot be compared: the destination "
                           "needs an identical host CPU and microcode")
    try:
        verdict = dest_conn.compareHypervisorCPU(
            guest.emulator, guest.arch, guest.machine, guest.virt_type, guest.cpu_xml, 0)
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return CheckResult("cpu", WARNING, f"destination cannot compare CPUs: {libvirt_error_text(exc)}")
        return CheckResult("cpu", FAILED, f"compareHypervisorCPU failed: {libvirt_error_text(exc)}")
    if verdict in (libvirt.VIR_CPU_COMPARE_IDENTICAL, libvirt.VIR_CPU_COMPARE_SUPERSET):
        word = "identical" if verdict == libvirt.VIR_CPU_COMPARE_IDENTICAL else "superset"
        return CheckResult("cpu", PASSED, f"destination can run the guest CPU ({word})")
    return CheckResult("cpu", FAILED, "the destination hypervisor cannot run the guest CPU "
                       "(compareHypervisorCPU: incompatible)")


def available_memory_kib(conn: Any) -> int:
    """Free + reclaimable page cache on the host, in KiB."""
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        return int(stats.get("free", 0)) + int(stats.get("buffers", 0)) + int(stats.get("cached", 0))
    except libvirt.libvirtError:
        return int(conn.getFreeMemory()) // 1024


def check_memory(ctx: PreflightContext) -> CheckResult:
    if not ctx.request.live:
        return CheckResult("memory", PASSED, "offline migration needs no memory on the destination")
    needed = ctx.source.max_memory_kib
    available = available_memory_kib(ctx.dest_conn)
    text = f"destination has {available // 1024} MiB available, the guest needs {needed // 1024} MiB"
    return CheckResult("memory", FAILED if available < needed else PASSED, text)


def check_storage(ctx: PreflightContext) -> CheckResult:
    problems, unknown, described = [], [], []
    for verdict in ctx.disk_verdicts:
        if verdict.target in ctx.copied_disks:
            described.append(f"{verdict.target} copied ({ctx.request.copy_storage})")
        elif verdict.sharing == LOCAL:
            problems.append(f"{verdict.target}: {verdict.reason}")
        elif verdict.sharing == UNKNOWN:
            unknown.append(f"{verdict.target}: {verdict.reason}")
        else:
            described.append(f"{verdict.target} {verdict.reason}")
    if problems:
        return CheckResult("storage", FAILED, "disks on local storage and no storage copy: {}. Put them on "
                           "the shared export or set copy_storage".format("; ".join(problems)))
    if unknown:
        return CheckResult("storage", WARNING, "{}; libvirt refuses the migration if they are not shared".format("; ".join(unknown)))
    return CheckResult("storage", PASSED, "; ".join(described) or "no disks")


def _lookup_network(conn: Any, kind: str, name: str) -> str | None:
    """None when the destination has it, else the problem."""
    try:
        if kind == "network":
            network = conn.networkLookupByName(name)
            return None if network.isActive() else f"network {name} is defined but not active"
        conn.interfaceLookupByName(name)
        return None
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return f"?cannot list host interfaces there ({libvirt_error_text(exc)})"
        return f"{kind} {name}: {libvirt_error_text(exc)}"


def check_networks(ctx: PreflightContext) -> CheckResult:
    missing, unverifiable, found = [], [], []
    for iface in ctx.guest.interfaces:
        if iface.iface_type not in ("network", "bridge", "direct") or not iface.source:
            continue
        problem = _lookup_network(ctx.dest_conn, "network" if iface.iface_type == "network" else "interface",
                                  iface.source)
        label = f"{iface.iface_type} {iface.source}"
        if problem is None:
            found.append(label)
        elif problem.startswith("?"):
            unverifiable.append(f"{label}: {problem[1:]}")
        else:
            missing.append(problem)
    if missing:
        return CheckResult("networks", FAILED, "missing on the destination: {}".format("; ".join(missing)))
    if unverifiable:
        return CheckResult("networks", WARNING, "; ".join(unverifiable))
    return CheckResult("networks", PASSED, ("present on destination: {}".format(", ".join(found))) if found
                       else "no host networks used")


CHECKS: tuple[tuple[str, Callable[[PreflightContext], CheckResult]], ...] = (
    ("cpu", check_cpu),
    ("memory", check_memory),
    ("storage", check_storage),
    ("networks", check_networks),
)


def run_preflight(ctx: PreflightContext) -> PreflightReport:
    """Run every check not skipped; PreflightFailed lists all failures at once."""
    report = PreflightReport([check_dest_reachable(ctx)])
    for name, check in CHECKS:
        if name in ctx.request.preflight_skip:
            report.results.append(CheckResult(name, SKIPPED, "skipped by preflight_skip"))
        else:
            report.results.append(check(ctx))
    if report.failures:
        raise PreflightFailed(
            "preflight", "; ".join(f"{r.name}: {r.message}" for r in report.failures),
            hint="fix the destination, or skip a check you know is wrong with preflight_skip",
            details={"preflight": report.as_list()}, **ctx.request.context())
    return report
