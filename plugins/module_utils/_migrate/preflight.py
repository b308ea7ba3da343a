# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Preflight checks: fail early, with a clear message, before anything changes.

Named checks (skippable through ``preflight_skip``): ``cpu``, ``memory``,
``storage``, ``networks``, and ``throughput`` (only when ``compression`` or
``parallel_connections`` is set: both hosts' libvirt and QEMU versions against
what those options need, decided in capabilities.py).  ``dest_reachable`` always runs: every other step
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

A read-only disk is the exception libvirt does not guard: it is neither checked
nor copied, so unless it is on shared storage the destination must hold it at
the same path. That is looked up through the destination's storage pools; a
path no pool there covers cannot be verified and is refused, with the ways out.
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    PreflightFailed,
    ValidationError,
    libvirt_error_code,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DiskSpec,
    DomainInfo,
    GuestSpec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.capabilities import (
    HostVersions,
    requirements_for,
    shortfalls,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
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
NOT_MIGRATED = "not_migrated"  # no medium: nothing to open on either host

# Where a disk that libvirt neither copies nor treats as shared stands on the destination.
PRESENT = "present"
MISSING = "missing"
UNVERIFIED = "unverified"
# Pool types whose refresh only lists a directory: safe to refresh before looking a path up.
REFRESH_SAFE_POOL_TYPES = frozenset(("dir", "fs", "netfs"))


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
    """How libvirt will treat one disk in a migration (libvirt 9.0, qemu_migration.c).

    - qemuMigrationSrcIsSafe skips an empty or read-only disk and a network disk; a file
      disk must be on a shared filesystem of the source, or copied;
    - qemuMigrationAnyCopyDisk copies, by default, every disk that is neither read-only,
      empty nor ``<shareable/>``; an explicit list copies exactly the disks it names, and a
      read-only or empty disk named there is refused ("Cannot migrate empty or read-only disk").

    So a read-only disk outside shared storage is neither checked nor copied: QEMU on the
    destination opens the same path, and the migration fails there when it is missing.
    ``on_dest`` says whether the destination has it (only for such disks).
    """

    target: str
    sharing: str
    reason: str
    readonly: bool = False
    shareable: bool = False
    device: str = "disk"
    path: str | None = None
    on_dest: str | None = None
    on_dest_reason: str = ""

    @property
    def copyable(self) -> bool:
        """libvirt can copy it when it is listed: it has a medium and is writable."""
        return self.sharing != NOT_MIGRATED and not self.readonly

    @property
    def copied_by_default(self) -> bool:
        """Outside shared storage and one libvirt's default list would copy (not read-only, not shareable)."""
        return self.copyable and not self.shareable and self.sharing in (LOCAL, UNKNOWN)

    @property
    def must_exist_on_dest(self) -> bool:
        """Never copied, never checked by libvirt, and not on shared storage: the destination needs the path."""
        return self.readonly and self.sharing in (LOCAL, UNKNOWN)

    @property
    def label(self) -> str:
        kind = "read-only " if self.readonly else ("shareable " if self.shareable else "")
        return f"{self.target} ({kind}{self.device} {self.path})" if self.path else f"{self.target} ({kind}{self.device})"


def _pool_type_of_volume(conn: Any, path: str) -> str | None:
    try:
        volume = conn.storageVolLookupByPath(path)
        pool = volume.storagePoolLookupByVolume()
        return ET.fromstring(pool.XMLDesc(0)).get("type")
    except libvirt.libvirtError:
        return None


def _pools_covering(conn: Any, directory: str) -> list[tuple[Any, str, str]]:
    """(pool, name, type) of the active pools whose target directory is ``directory``."""
    found = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        root = ET.fromstring(pool.XMLDesc(0))
        target = root.findtext("target/path")
        if target and os.path.normpath(target) == directory:
            found.append((pool, root.findtext("name") or "?", root.get("type") or "?"))
    return found


def refresh_if_safe(pool: Any, pool_type: str | None) -> bool:
    """Refresh libvirt's view of a pool whose refresh only lists a directory; True when done."""
    if pool_type not in REFRESH_SAFE_POOL_TYPES:
        return False
    try:
        pool.refresh(0)
    except libvirt.libvirtError:
        return False
    return True


def find_volume_on_host(conn: Any, pool_name: str, volume_name: str) -> tuple[str, str]:
    """(PRESENT | MISSING | UNVERIFIED, why) for a ``<source pool= volume=>`` disk on the host behind ``conn``."""
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        pool_type = ET.fromstring(pool.XMLDesc(0)).get("type")
        active = bool(pool.isActive())
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return MISSING, f"the destination has no storage pool {pool_name}"
        return UNVERIFIED, f"the destination's storage pool {pool_name} cannot be read ({libvirt_error_text(exc)})"
    if not active:
        return MISSING, f"the destination's storage pool {pool_name} is not active"
    for first in (True, False):
        try:
            pool.storageVolLookupByName(volume_name)
            return PRESENT, f"the destination has volume {volume_name} in storage pool {pool_name}"
        except libvirt.libvirtError:
            if first and not refresh_if_safe(pool, pool_type):
                return UNVERIFIED, (f"the destination's storage pool {pool_name} has no volume {volume_name} as far "
                                    "as libvirt knows, and it could not be refreshed")
    return MISSING, f"the destination has no volume {volume_name} in storage pool {pool_name} (refreshed)"


def find_on_host(conn: Any, path: str) -> tuple[str, str]:
    """(PRESENT | MISSING | UNVERIFIED, why) for a file path on the host behind ``conn``.

    libvirt sees a host's files through its storage pools only: a volume at ``path`` is
    PRESENT. Otherwise the pools whose directory holds ``path`` are refreshed (only the
    types whose refresh merely lists a directory) and asked again: still absent is MISSING.
    No pool over that directory, or none that could be refreshed, is UNVERIFIED.
    """
    try:
        volume = conn.storageVolLookupByPath(path)
        pool_name = volume.storagePoolLookupByVolume().name()
        return PRESENT, f"the destination has {path} (storage pool {pool_name})"
    except libvirt.libvirtError:
        pass
    directory = os.path.dirname(os.path.normpath(path))
    try:
        covering = _pools_covering(conn, directory)
    except libvirt.libvirtError as exc:
        return UNVERIFIED, (f"the destination's storage pools cannot be listed ({libvirt_error_text(exc)}), "
                            f"so {path} cannot be verified there")
    if not covering:
        return UNVERIFIED, (f"no active storage pool on the destination has the directory {directory}, "
                            f"so {path} cannot be verified there")
    refreshed = [name for pool, name, pool_type in covering if refresh_if_safe(pool, pool_type)]
    if not refreshed:
        names = ", ".join(name for _pool, name, _type in covering)
        return UNVERIFIED, f"the destination's storage pool {names} could not be refreshed to look for {path}"
    try:
        volume = conn.storageVolLookupByPath(path)
        return PRESENT, f"the destination has {path} (storage pool {volume.storagePoolLookupByVolume().name()})"
    except libvirt.libvirtError:
        return MISSING, "the destination has no {} (storage pool {} refreshed)".format(path, ", ".join(refreshed))


def _sharing(disk: DiskSpec, dconn: Any, fs_type_of: Callable[[str], str | None] | None) -> tuple[str, str]:
    if disk.disk_type == "network":
        return SHARED, "network disk (protocol %s)" % (disk.protocol or "?")
    path = disk.source or ""
    fs_type = fs_type_of(path) if fs_type_of is not None and path.startswith("/") else None
    if fs_type in SHARED_FS_TYPES:
        return SHARED, f"{path} is on a {fs_type} filesystem"
    pool_type = _pool_type_of_volume(dconn, path) if path.startswith("/") else None
    if pool_type in SHARED_POOL_TYPES:
        return SHARED, f"destination pool of type {pool_type} holds {path}"
    if fs_type is not None:
        # libvirt judges the source's filesystem: a file of the same name on the destination is not shared.
        return LOCAL, f"{path} is on a local {fs_type} filesystem of the source"
    if pool_type is not None:
        return SHARED, f"destination sees {path} (pool type {pool_type})"
    return UNKNOWN, f"cannot tell whether {path} is shared from here"


def classify_disk(disk: DiskSpec, dconn: Any, fs_type_of: Callable[[str], str | None] | None) -> DiskVerdict:
    """Decide how libvirt will treat this disk, and whether the destination can use it without a copy."""
    attributes = {"readonly": disk.readonly, "shareable": disk.shareable, "device": disk.device, "path": disk.source}
    if disk.empty:
        return DiskVerdict(disk.target, NOT_MIGRATED, "no medium, nothing to open on the destination", **attributes)
    sharing, reason = _sharing(disk, dconn, fs_type_of)
    verdict = DiskVerdict(disk.target, sharing, reason, **attributes)
    if verdict.must_exist_on_dest:
        source = disk.source or ""
        if disk.disk_type == "volume" and "/" in source:
            pool_name, volume_name = source.split("/", 1)
            verdict.on_dest, verdict.on_dest_reason = find_volume_on_host(dconn, pool_name, volume_name)
        elif source.startswith("/"):
            verdict.on_dest, verdict.on_dest_reason = find_on_host(dconn, source)
        else:
            verdict.on_dest, verdict.on_dest_reason = UNVERIFIED, f"{source} cannot be looked up on the destination"
    return verdict


def classify_disks(guest: GuestSpec, dconn: Any, fs_type_of: Callable[[str], str | None] | None) -> list[DiskVerdict]:
    return [classify_disk(disk, dconn, fs_type_of) for disk in guest.disks if disk.device in ("disk", "lun", "cdrom", "floppy")]


def why_not_copied(verdict: DiskVerdict) -> str:
    """Why storage copy leaves this disk where it is, in libvirt's terms."""
    if verdict.sharing == NOT_MIGRATED:
        return f"{verdict.target} has no medium"
    if verdict.sharing == SHARED:
        return f"{verdict.target} is on shared storage ({verdict.reason})"
    if verdict.readonly:
        return f"{verdict.label} is read-only: libvirt never copies a read-only disk"
    return f"{verdict.label} is shareable: libvirt copies it only when migrate_disks names it"


def plan_copied_disks(request: MigrationRequest, verdicts: list[DiskVerdict]) -> list[str]:
    """The explicit migrate_disks list for a storage copy (guards shared disks).

    libvirt's default with VIR_MIGRATE_NON_SHARED_* copies every writable disk
    that is not ``<shareable/>``, including a disk on NFS, which would copy
    it onto itself.  So the list is always explicit: the user's (refused if it
    names a shared disk, or one libvirt cannot copy), or every disk libvirt's
    default would copy that is not known to be shared.
    """
    if request.copy_storage == "none":
        return []
    by_target = {verdict.target: verdict for verdict in verdicts}
    if request.migrate_disks:
        _refuse_uncopyable(request, [by_target[t] for t in request.migrate_disks if t in by_target])
        return list(request.migrate_disks)
    copied = [v.target for v in verdicts if v.copied_by_default]
    if not copied:
        left = [v for v in verdicts if v.must_exist_on_dest or (v.shareable and v.sharing in (LOCAL, UNKNOWN))]
        reasons = "; ".join(why_not_copied(v) for v in verdicts) or "the domain has no disk"
        if not left:
            raise ValidationError(
                "plan storage copy", f"copy_storage: {request.copy_storage} but every disk is on shared storage or "
                f"has no medium: {reasons}", hint="set copy_storage: none", **request.context())
        raise ValidationError(
            "plan storage copy", f"copy_storage: {request.copy_storage} copies no disk: {reasons}",
            hint="; ".join(disk_ways_out(v) for v in left), **request.context())
    return copied


def _refuse_uncopyable(request: MigrationRequest, named: list[DiskVerdict]) -> None:
    shared = [v for v in named if v.sharing == SHARED]
    if shared:
        raise ValidationError(
            "plan storage copy", "migrate_disks names disks on shared storage: {} ({}); copying a "
            "shared disk writes it onto itself".format(", ".join(v.target for v in shared), shared[0].reason),
            hint="drop them from migrate_disks", **request.context())
    uncopyable = [v for v in named if not v.copyable]
    if uncopyable:
        raise ValidationError(
            "plan storage copy", "migrate_disks names disks libvirt cannot copy: {} (libvirt refuses an empty or "
            "read-only disk: 'Cannot migrate empty or read-only disk')".format(
                "; ".join(why_not_copied(v) for v in uncopyable)),
            hint="drop them from migrate_disks; a read-only disk must exist at the same path on the destination "
                 "(or be ejected or detached first)", **request.context())


def disk_ways_out(verdict: DiskVerdict) -> str:
    """What the operator can do about a disk that would be neither shared nor copied."""
    if verdict.readonly:
        eject = (f"eject it (virsh change-media DOMAIN {verdict.target} --eject --live --config)"
                 if verdict.device in ("cdrom", "floppy") else
                 f"detach it (virsh detach-disk DOMAIN {verdict.target} --live --config)")
        return (f"for {verdict.target}: copy {verdict.path} to the same path on the destination (into a directory "
                "a storage pool there covers, so preflight can see it), or move it to the shared storage, or "
                f"{eject} before migrating; storage copy cannot carry a read-only disk")
    return (f"for {verdict.target}: name it in migrate_disks with copy_storage (libvirt copies a shareable disk "
            "only when listed), or move it to the shared storage")


# ---------------------------------------------------------------------------
# The checks


def read_text_or_none(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


@dataclass
class PreflightContext:
    request: MigrationRequest
    source_conn: Any
    dest_conn: Any
    source: DomainInfo
    guest: GuestSpec
    disk_verdicts: list[DiskVerdict]
    copied_disks: list[str]
    path_exists: Callable[[str], bool] = os.path.exists
    read_text: Callable[[str], str | None] = read_text_or_none


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
    """Every disk is shared, copied, empty, or (read-only) found at the same path on the destination."""
    local, left_behind, unknown, described = [], [], [], []
    for verdict in ctx.disk_verdicts:
        if verdict.target in ctx.copied_disks:
            described.append(f"{verdict.target} copied ({ctx.request.copy_storage})")
        elif verdict.must_exist_on_dest and verdict.on_dest == PRESENT:
            described.append(f"{verdict.label}: {verdict.on_dest_reason}")
        elif verdict.must_exist_on_dest:
            left_behind.append(verdict)
        elif verdict.sharing == LOCAL:
            local.append(verdict)
        elif verdict.sharing == UNKNOWN:
            unknown.append(f"{verdict.target}: {verdict.reason}")
        else:
            described.append(f"{verdict.target} {verdict.reason}")
    problems = []
    if local:
        problems.append("disks on local storage and no storage copy (libvirt refuses: 'Migration without shared "
                        "storage is unsafe'): {}. Put them on the shared export or set copy_storage{}".format(
                            "; ".join(f"{v.target}: {v.reason}" for v in local),
                            "".join(f"; {disk_ways_out(v)}" for v in local if v.shareable)))
    if left_behind:
        problems.append("disks neither shared nor copied, which QEMU on the destination must open at the same path "
                        "(libvirt neither copies nor checks a read-only disk): {}. Ways out: {}".format(
                            "; ".join(f"{v.label}: {v.reason}, and {v.on_dest_reason}" for v in left_behind),
                            "; ".join(disk_ways_out(v) for v in left_behind)))
    if problems:
        return CheckResult("storage", FAILED, ". ".join(problems))
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


def read_host_versions(conn: Any, side: str, uri: str) -> HostVersions:
    """The libvirt and hypervisor (QEMU) versions of the host behind ``conn`` (libvirtError if unreadable)."""
    return HostVersions(side, uri, int(conn.getLibVersion()), int(conn.getVersion()))


def throughput_requested(request: MigrationRequest) -> bool:
    return bool(request.compression) or bool(request.parallel_connections)


def check_throughput(ctx: PreflightContext) -> CheckResult:
    """Both hosts' libvirt and QEMU are recent enough for ``compression`` and ``parallel_connections``."""
    request = ctx.request
    try:
        hosts = [read_host_versions(ctx.source_conn, "source", request.uri),
                 read_host_versions(ctx.dest_conn, "destination", request.dest_uri)]
    except libvirt.libvirtError as exc:
        return CheckResult("throughput", WARNING, f"the libvirt and QEMU versions of the source {request.uri} and the "
                           f"destination {request.dest_uri} cannot be read ({libvirt_error_text(exc)}), so compression "
                           "and parallel_connections cannot be checked; libvirt refuses them when the migration starts "
                           "if a host lacks them")
    requirements = requirements_for(request.compression, request.parallel_connections)
    missing = shortfalls(requirements, hosts)
    compared = "; ".join(host.summary for host in hosts)
    if missing:
        return CheckResult("throughput", FAILED, "{} (compared {})".format("; ".join(s.message for s in missing), compared))
    return CheckResult("throughput", PASSED, "{}; both meet {}".format(
        compared, ", ".join(requirement.label for requirement in requirements)))


CHECKS: tuple[tuple[str, Callable[[PreflightContext], CheckResult]], ...] = (
    ("cpu", check_cpu),
    ("memory", check_memory),
    ("storage", check_storage),
    ("networks", check_networks),
)


# ---------------------------------------------------------------------------
# TLS on the migration data stream (tls: true): QEMU's certificate files on each side

QEMU_CONF = "/etc/libvirt/qemu.conf"
QEMU_TLS_DIR = "/etc/pki/qemu"
MIGRATE_TLS_DIR = "/etc/pki/libvirt-migrate"
# QEMU's tls-creds-x509 object: the destination listens (endpoint server), the source connects
# (endpoint client); the destination verifies the client (default_tls_x509_verify), so both need the CA.
SOURCE_TLS_FILES = ("ca-cert.pem", "client-cert.pem", "client-key.pem")
DEST_TLS_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem")
TLS_FILES_HINT = ("issue {directory} on {host} with the libvirt_pki role (it gives QEMU ca-cert.pem, server-cert.pem, "
                  "server-key.pem, client-cert.pem and client-key.pem), or migrate without tls")
CREDENTIALS_TEXT = re.compile(r"Unable to access credentials (\S+?): ([^:;]+)")


def qemu_conf_value(text: str, key: str) -> str | None:
    """A string setting of qemu.conf (``key = "value"``), None when it is not set."""
    found = re.search(r'^\s*' + re.escape(key) + r'\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return found.group(1) if found else None


def migration_tls_dir(qemu_conf: str | None, path_exists: Callable[[str], bool]) -> str:
    """The directory libvirt 9.0 gives QEMU for migration TLS (virQEMUDriverConfigSetDefaults)."""
    text = qemu_conf or ""
    explicit = qemu_conf_value(text, "migrate_tls_x509_cert_dir")
    if explicit:
        return explicit
    if path_exists(MIGRATE_TLS_DIR):
        return MIGRATE_TLS_DIR
    return qemu_conf_value(text, "default_tls_x509_cert_dir") or QEMU_TLS_DIR


def host_label(conn: Any, side: str) -> str:
    """``the destination (hv2.example.com)``: the side and the name libvirt gives its host."""
    try:
        return f"the {side} ({conn.getHostname()})"
    except libvirt.libvirtError:
        return f"the {side}"


def check_migration_tls(ctx: PreflightContext) -> CheckResult:
    """The source's QEMU TLS files, read here when the task runs on the source.

    libvirt exposes no way to read the destination's: a file missing there fails the migration
    before any memory is copied, and migration_tls_diagnosis names that host in the error.
    """
    destination_note = ("the destination's ({}) cannot be read through libvirt".format(", ".join(DEST_TLS_FILES)))
    if parse_uri(ctx.request.uri).is_remote:
        return CheckResult("tls", WARNING, "QEMU's TLS files for the migration stream cannot be read from here "
                           f"(the task does not run on the source); {destination_note}")
    directory = migration_tls_dir(ctx.read_text(QEMU_CONF), ctx.path_exists)
    missing = [os.path.join(directory, name) for name in SOURCE_TLS_FILES
               if not ctx.path_exists(os.path.join(directory, name))]
    source = host_label(ctx.source_conn, "source")
    if missing:
        hint = TLS_FILES_HINT.format(directory=directory, host=source)
        return CheckResult("tls", FAILED, "{} lacks {}, which QEMU there needs for TLS on the migration stream "
                           "(tls: true): {}".format(source, ", ".join(missing), hint))
    return CheckResult("tls", PASSED, "{} has {} in {}; {}".format(source, ", ".join(SOURCE_TLS_FILES), directory,
                                                                   destination_note))


def migration_tls_diagnosis(libvirt_text: str, request: MigrationRequest,
                            report: PreflightReport | None) -> tuple[str, str] | None:
    """(cause, next step) naming the host that lacks a QEMU TLS file, from libvirt's text; None otherwise.

    QEMU says "Unable to access credentials PATH: REASON" on whichever side lacks the file, and libvirt
    relays it without saying which: server-cert/server-key are the destination's, client-cert/client-key
    the source's, and a missing ca-cert is the destination's when preflight found the source's.
    """
    found = CREDENTIALS_TEXT.search(libvirt_text)
    if not request.tls or found is None:
        return None
    path, reason = found.group(1), found.group(2).strip()
    name, directory = os.path.basename(path), os.path.dirname(path)
    source = f"the source ({parse_uri(request.uri).host or socket.gethostname()})"
    dest = f"the destination ({parse_uri(request.dest_uri).host})"
    source_checked = report is not None and any(r.name == "tls" and r.status == PASSED for r in report.results)
    if name in DEST_TLS_FILES and (name not in SOURCE_TLS_FILES or source_checked):
        host = dest
    elif name in SOURCE_TLS_FILES and name not in DEST_TLS_FILES:
        host = source
    else:
        host = f"{dest} or {source} (both need it)"
    cause = f"{host} lacks {path} ({reason}), which QEMU there needs for TLS on the migration stream (tls: true)"
    return cause, TLS_FILES_HINT.format(directory=directory, host=host)


def run_named_check(name: str, check: Callable[[PreflightContext], CheckResult], ctx: PreflightContext) -> CheckResult:
    """The check's result, or SKIPPED when preflight_skip names it."""
    if name in ctx.request.preflight_skip:
        return CheckResult(name, SKIPPED, "skipped by preflight_skip")
    return check(ctx)


def run_preflight(ctx: PreflightContext) -> PreflightReport:
    """Run every check not skipped; PreflightFailed lists all failures at once.

    With compression or parallel_connections, both hosts' versions are checked (``throughput``).
    With tls: true the source's QEMU TLS files are checked too (not skippable: the check reads
    libvirt's own settings, and a missing file always fails the migration).
    """
    report = PreflightReport([check_dest_reachable(ctx)])
    for name, check in CHECKS:
        report.results.append(run_named_check(name, check, ctx))
    if throughput_requested(ctx.request):
        report.results.append(run_named_check("throughput", check_throughput, ctx))
    if ctx.request.tls:
        report.results.append(check_migration_tls(ctx))
    if report.failures:
        raise PreflightFailed(
            "preflight", "; ".join(f"{r.name}: {r.message}" for r in report.failures),
            hint="fix what the failed checks name, or skip a check you know is wrong with preflight_skip",
            details={"preflight": report.as_list()}, **ctx.request.context())
    return report
