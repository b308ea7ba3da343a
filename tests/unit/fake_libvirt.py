"""A fake ``libvirt`` module for the unit tests.

It models hosts (one per URI), domains with state/persistence, the
migration job of a domain driven by a script of job-stats samples, and it
records every mutating call in ``World.calls`` so tests can assert that a
refused input touched nothing.  Constant values are libvirt's (checked
against the real bindings by test_fake_libvirt.py when they are installed).
"""

from __future__ import annotations

import threading
import uuid as uuid_lib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

# fmt: off
# ---- constants copied from libvirt-python (libvirt 9.0) -------------------
VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE = 1
VIR_CONNECT_COMPARE_CPU_VALIDATE_XML = 2
VIR_CPU_COMPARE_ERROR = -1
VIR_CPU_COMPARE_IDENTICAL = 1
VIR_CPU_COMPARE_INCOMPATIBLE = 0
VIR_CPU_COMPARE_SUPERSET = 2
VIR_DOMAIN_ABORT_JOB_POSTCOPY = 1
VIR_DOMAIN_AFFECT_CONFIG = 2
VIR_DOMAIN_AFFECT_CURRENT = 0
VIR_DOMAIN_AFFECT_LIVE = 1
VIR_DOMAIN_BLOCKED = 2
VIR_DOMAIN_BLOCKED_UNKNOWN = 0
VIR_DOMAIN_CRASHED = 6
VIR_DOMAIN_CRASHED_PANICKED = 1
VIR_DOMAIN_CRASHED_UNKNOWN = 0
VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE = 'auto_converge_throttle'
VIR_DOMAIN_JOB_BOUNDED = 1
VIR_DOMAIN_JOB_CANCELLED = 5
VIR_DOMAIN_JOB_COMPLETED = 3
VIR_DOMAIN_JOB_COMPRESSION_BYTES = 'compression_bytes'
VIR_DOMAIN_JOB_COMPRESSION_CACHE = 'compression_cache'
VIR_DOMAIN_JOB_COMPRESSION_CACHE_MISSES = 'compression_cache_misses'
VIR_DOMAIN_JOB_COMPRESSION_OVERFLOW = 'compression_overflow'
VIR_DOMAIN_JOB_COMPRESSION_PAGES = 'compression_pages'
VIR_DOMAIN_JOB_DATA_PROCESSED = 'data_processed'
VIR_DOMAIN_JOB_DATA_REMAINING = 'data_remaining'
VIR_DOMAIN_JOB_DATA_TOTAL = 'data_total'
VIR_DOMAIN_JOB_DISK_BPS = 'disk_bps'
VIR_DOMAIN_JOB_DISK_PROCESSED = 'disk_processed'
VIR_DOMAIN_JOB_DISK_REMAINING = 'disk_remaining'
VIR_DOMAIN_JOB_DISK_TEMP_TOTAL = 'disk_temp_total'
VIR_DOMAIN_JOB_DISK_TEMP_USED = 'disk_temp_used'
VIR_DOMAIN_JOB_DISK_TOTAL = 'disk_total'
VIR_DOMAIN_JOB_DOWNTIME = 'downtime'
VIR_DOMAIN_JOB_DOWNTIME_NET = 'downtime_net'
VIR_DOMAIN_JOB_ERRMSG = 'errmsg'
VIR_DOMAIN_JOB_FAILED = 4
VIR_DOMAIN_JOB_MEMORY_BPS = 'memory_bps'
VIR_DOMAIN_JOB_MEMORY_CONSTANT = 'memory_constant'
VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE = 'memory_dirty_rate'
VIR_DOMAIN_JOB_MEMORY_ITERATION = 'memory_iteration'
VIR_DOMAIN_JOB_MEMORY_NORMAL = 'memory_normal'
VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES = 'memory_normal_bytes'
VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE = 'memory_page_size'
VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS = 'memory_postcopy_requests'
VIR_DOMAIN_JOB_MEMORY_PROCESSED = 'memory_processed'
VIR_DOMAIN_JOB_MEMORY_REMAINING = 'memory_remaining'
VIR_DOMAIN_JOB_MEMORY_TOTAL = 'memory_total'
VIR_DOMAIN_JOB_NONE = 0
VIR_DOMAIN_JOB_OPERATION = 'operation'
VIR_DOMAIN_JOB_OPERATION_BACKUP = 9
VIR_DOMAIN_JOB_OPERATION_DUMP = 8
VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN = 4
VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT = 5
VIR_DOMAIN_JOB_OPERATION_RESTORE = 3
VIR_DOMAIN_JOB_OPERATION_SAVE = 2
VIR_DOMAIN_JOB_OPERATION_SNAPSHOT = 6
VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_DELETE = 10
VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT = 7
VIR_DOMAIN_JOB_OPERATION_START = 1
VIR_DOMAIN_JOB_OPERATION_UNKNOWN = 0
VIR_DOMAIN_JOB_SETUP_TIME = 'setup_time'
VIR_DOMAIN_JOB_STATS_COMPLETED = 1
VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED = 2
VIR_DOMAIN_JOB_SUCCESS = 'success'
VIR_DOMAIN_JOB_TIME_ELAPSED = 'time_elapsed'
VIR_DOMAIN_JOB_TIME_ELAPSED_NET = 'time_elapsed_net'
VIR_DOMAIN_JOB_TIME_REMAINING = 'time_remaining'
VIR_DOMAIN_JOB_UNBOUNDED = 2
VIR_DOMAIN_METADATA_DESCRIPTION = 0
VIR_DOMAIN_METADATA_ELEMENT = 2
VIR_DOMAIN_METADATA_TITLE = 1
VIR_DOMAIN_NOSTATE = 0
VIR_DOMAIN_NOSTATE_UNKNOWN = 0
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_PAUSED_CRASHED = 10
VIR_DOMAIN_PAUSED_DUMP = 4
VIR_DOMAIN_PAUSED_FROM_SNAPSHOT = 7
VIR_DOMAIN_PAUSED_IOERROR = 5
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_DOMAIN_PAUSED_POSTCOPY = 12
VIR_DOMAIN_PAUSED_POSTCOPY_FAILED = 13
VIR_DOMAIN_PAUSED_SAVE = 3
VIR_DOMAIN_PAUSED_SHUTTING_DOWN = 8
VIR_DOMAIN_PAUSED_SNAPSHOT = 9
VIR_DOMAIN_PAUSED_STARTING_UP = 11
VIR_DOMAIN_PAUSED_UNKNOWN = 0
VIR_DOMAIN_PAUSED_USER = 1
VIR_DOMAIN_PAUSED_WATCHDOG = 6
VIR_DOMAIN_PMSUSPENDED = 7
VIR_DOMAIN_PMSUSPENDED_DISK_UNKNOWN = 0
VIR_DOMAIN_PMSUSPENDED_UNKNOWN = 0
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_RUNNING_BOOTED = 1
VIR_DOMAIN_RUNNING_CRASHED = 9
VIR_DOMAIN_RUNNING_FROM_SNAPSHOT = 4
VIR_DOMAIN_RUNNING_MIGRATED = 2
VIR_DOMAIN_RUNNING_MIGRATION_CANCELED = 6
VIR_DOMAIN_RUNNING_POSTCOPY = 10
VIR_DOMAIN_RUNNING_POSTCOPY_FAILED = 11
VIR_DOMAIN_RUNNING_RESTORED = 3
VIR_DOMAIN_RUNNING_SAVE_CANCELED = 7
VIR_DOMAIN_RUNNING_UNKNOWN = 0
VIR_DOMAIN_RUNNING_UNPAUSED = 5
VIR_DOMAIN_RUNNING_WAKEUP = 8
VIR_DOMAIN_SHUTDOWN = 4
VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN = 1
VIR_DOMAIN_SHUTDOWN_DEFAULT = 0
VIR_DOMAIN_SHUTDOWN_GUEST_AGENT = 2
VIR_DOMAIN_SHUTDOWN_INITCTL = 4
VIR_DOMAIN_SHUTDOWN_PARAVIRT = 16
VIR_DOMAIN_SHUTDOWN_SIGNAL = 8
VIR_DOMAIN_SHUTDOWN_UNKNOWN = 0
VIR_DOMAIN_SHUTDOWN_USER = 1
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_SHUTOFF_CRASHED = 3
VIR_DOMAIN_SHUTOFF_DAEMON = 8
VIR_DOMAIN_SHUTOFF_DESTROYED = 2
VIR_DOMAIN_SHUTOFF_FAILED = 6
VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT = 7
VIR_DOMAIN_SHUTOFF_MIGRATED = 4
VIR_DOMAIN_SHUTOFF_SAVED = 5
VIR_DOMAIN_SHUTOFF_SHUTDOWN = 1
VIR_DOMAIN_SHUTOFF_UNKNOWN = 0
VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA = 16
VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = 8
VIR_DOMAIN_UNDEFINE_KEEP_TPM = 64
VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1
VIR_DOMAIN_UNDEFINE_NVRAM = 4
VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2
VIR_DOMAIN_UNDEFINE_TPM = 32
VIR_DOMAIN_XML_INACTIVE = 2
VIR_DOMAIN_XML_MIGRATABLE = 8
VIR_DOMAIN_XML_SECURE = 1
VIR_DOMAIN_XML_UPDATE_CPU = 4
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_AUTH_FAILED = 45
VIR_ERR_CPU_INCOMPATIBLE = 91
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_INVALID_ARG = 8
VIR_ERR_MIGRATE_PERSIST_FAILED = 69
VIR_ERR_MIGRATE_UNSAFE = 81
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_NO_DOMAIN_METADATA = 80
VIR_ERR_NO_INTERFACE = 57
VIR_ERR_NO_NETWORK = 43
VIR_ERR_NO_STORAGE_POOL = 49
VIR_ERR_NO_STORAGE_VOL = 50
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_OPERATION_ABORTED = 78
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_SYSTEM_ERROR = 38
VIR_FROM_DOMAIN = 20
VIR_FROM_NONE = 0
VIR_FROM_QEMU = 10
VIR_FROM_RPC = 7
VIR_MIGRATE_ABORT_ON_ERROR = 4096
VIR_MIGRATE_AUTO_CONVERGE = 8192
VIR_MIGRATE_CHANGE_PROTECTION = 256
VIR_MIGRATE_COMPRESSED = 2048
VIR_MIGRATE_LIVE = 1
VIR_MIGRATE_NON_SHARED_DISK = 64
VIR_MIGRATE_NON_SHARED_INC = 128
VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES = 262144
VIR_MIGRATE_OFFLINE = 1024
VIR_MIGRATE_PARALLEL = 131072
VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT = 'auto_converge.increment'
VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL = 'auto_converge.initial'
VIR_MIGRATE_PARAM_BANDWIDTH = 'bandwidth'
VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY = 'bandwidth.postcopy'
VIR_MIGRATE_PARAM_COMPRESSION = 'compression'
VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS = 'compression.mt.dthreads'
VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL = 'compression.mt.level'
VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS = 'compression.mt.threads'
VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE = 'compression.xbzrle.cache'
VIR_MIGRATE_PARAM_DEST_NAME = 'destination_name'
VIR_MIGRATE_PARAM_DEST_XML = 'destination_xml'
VIR_MIGRATE_PARAM_DISKS_PORT = 'disks_port'
VIR_MIGRATE_PARAM_DISKS_URI = 'disks_uri'
VIR_MIGRATE_PARAM_GRAPHICS_URI = 'graphics_uri'
VIR_MIGRATE_PARAM_LISTEN_ADDRESS = 'listen_address'
VIR_MIGRATE_PARAM_MIGRATE_DISKS = 'migrate_disks'
VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS = 'parallel.connections'
VIR_MIGRATE_PARAM_PERSIST_XML = 'persistent_xml'
VIR_MIGRATE_PARAM_TLS_DESTINATION = 'tls.destination'
VIR_MIGRATE_PARAM_URI = 'migrate_uri'
VIR_MIGRATE_PAUSED = 32
VIR_MIGRATE_PEER2PEER = 2
VIR_MIGRATE_PERSIST_DEST = 8
VIR_MIGRATE_POSTCOPY = 32768
VIR_MIGRATE_POSTCOPY_RESUME = 524288
VIR_MIGRATE_RDMA_PIN_ALL = 16384
VIR_MIGRATE_TLS = 65536
VIR_MIGRATE_TUNNELLED = 4
VIR_MIGRATE_UNDEFINE_SOURCE = 16
VIR_MIGRATE_UNSAFE = 512
VIR_MIGRATE_ZEROCOPY = 1048576
VIR_NODE_MEMORY_STATS_ALL_CELLS = -1
VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE = 2
# fmt: on

MUTATING = {
    "defineXML", "undefine", "undefineFlags", "destroy", "resume", "suspend",
    "migrateToURI3", "migrate3", "abortJob", "abortJobFlags", "migrateSetMaxDowntime",
    "migrateSetMaxSpeed", "migrateStartPostCopy", "create", "setMetadata",
}


class libvirtError(Exception):
    def __init__(self, msg: str, code: int = VIR_ERR_INTERNAL_ERROR, domain: int = VIR_FROM_QEMU) -> None:
        super().__init__(msg)
        self.err = (code, domain, msg, 2, None, None, None, 0, 0)

    def get_error_code(self) -> int:
        return self.err[0]

    def get_error_domain(self) -> int:
        return self.err[1]

    def get_error_message(self) -> str:
        return self.err[2]


def no_domain(key: str) -> libvirtError:
    return libvirtError(f"Domain not found: no domain with matching name or uuid '{key}'", VIR_ERR_NO_DOMAIN)


@dataclass
class MigrationScript:
    """How a fake migration goes.

    ``samples`` are job-stats dicts returned one per tick; ``outcome`` is what
    happens after the last sample: ``complete``, ``fail`` (libvirtError, the
    destination cleaned by libvirt), ``fail_leave_dest`` (libvirtError and a
    half-made paused domain left on the destination), ``persist_failed`` (with
    VIR_MIGRATE_PERSIST_DEST, the destination cannot save the definition: what
    libvirt's QEMU driver does with the v3 protocol of migrateToURI3/migrate3,
    the destination's copy is killed, the source resumes and keeps its
    definition, the call raises the save error), ``persist_failed_transient``
    (a driver that reports VIR_ERR_MIGRATE_PERSIST_FAILED instead: the guest is
    left running transient on the destination), ``finish_error`` (the domain
    moves but the call raises, like a libvirtd restart at the end) or ``never``
    (repeat the last sample until aborted / switched / suspended).
    ``after_switch`` is how many more ticks post-copy or suspend needs.
    """

    samples: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "complete"
    error_text: str = "operation failed: migration out job: unexpectedly failed"
    after_switch: int = 2
    completed_stats: dict[str, Any] = field(default_factory=lambda: {
        "type": VIR_DOMAIN_JOB_COMPLETED, "operation": VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
        "time_elapsed": 5123, "downtime": 42, "setup_time": 17, "data_total": 1073741824,
        "data_processed": 1100000000, "data_remaining": 0, "memory_iteration": 3,
        "memory_dirty_rate": 0, "memory_bps": 209715200,
    })


def sample(remaining: int, total: int = 1073741824, iteration: int = 1, elapsed: int = 1000,
           dirty_rate: int = 1000) -> dict[str, Any]:
    """A job-stats dict for a running outgoing migration."""
    return {
        "type": VIR_DOMAIN_JOB_UNBOUNDED, "operation": VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
        "time_elapsed": elapsed, "data_total": total, "data_processed": total - remaining,
        "data_remaining": remaining, "memory_total": total, "memory_processed": total - remaining,
        "memory_remaining": remaining, "memory_iteration": iteration, "memory_dirty_rate": dirty_rate,
        "memory_page_size": 4096, "memory_bps": 104857600, "downtime": 300,
    }


def domain_xml(name: str, uuid: str, memory_kib: int = 1048576, disks: str | None = None,
               interfaces: str | None = None, cpu: str | None = None, virt_type: str = "kvm") -> str:
    if disks is None:
        disks = ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                 f"<source protocol='nfs' name='/srv/vm/{name}.img'><host name='nfs1'/></source>"
                 "<target dev='vda' bus='virtio'/></disk>")
    if interfaces is None:
        interfaces = "<interface type='network'><source network='default'/></interface>"
    if cpu is None:
        cpu = "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>"
    return (
        f"<domain type='{virt_type}'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='KiB'>{memory_kib}</memory><currentMemory unit='KiB'>{memory_kib}</currentMemory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        f"{cpu}<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{disks}{interfaces}</devices></domain>"
    )


def metadata_element(xml: str, uri: str | None) -> str | None:
    """The first element of ``uri``'s namespace under <metadata>, without its namespace (as libvirt returns it)."""
    found = ET.fromstring(xml).find("metadata")
    for child in found if found is not None else ():
        if child.tag.startswith(f"{{{uri}}}"):
            copy = ET.fromstring(ET.tostring(child))
            for node in copy.iter():
                node.tag = node.tag.split("}", 1)[-1]
            return ET.tostring(copy, encoding="unicode")
    return None


def with_metadata_element(xml: str, uri: str | None, key: str | None, text: str | None) -> str:
    """The domain XML with ``uri``'s element replaced by ``text`` in that namespace (None: removed)."""
    ET.register_namespace(key or "ns", uri or "")
    root = ET.fromstring(xml)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.Element("metadata")
        root.insert(3, metadata)
    for child in list(metadata):
        if child.tag.startswith(f"{{{uri}}}"):
            metadata.remove(child)
    if text is not None:
        element = ET.fromstring(text)
        for node in element.iter():
            node.tag = f"{{{uri}}}{node.tag.split('}', 1)[-1]}"
        metadata.append(element)
    return ET.tostring(root, encoding="unicode")


class FakeDomain:
    def __init__(self, host: FakeHost, name: str, uuid: str, state: int, persistent: bool,
                 memory_kib: int = 1048576, xml: str | None = None, reason: int = 1) -> None:
        self.host = host
        self._name = name
        self._uuid = uuid
        self._state = state
        self._reason = reason
        self.persistent = persistent
        self.memory_kib = memory_kib
        self.xml = xml or domain_xml(name, uuid, memory_kib)
        self.inactive_xml = self.xml if persistent else None
        self.script: MigrationScript | None = None
        self.job: FakeJob | None = None
        self.completed_stats: dict[str, Any] | None = None
        self.max_downtime = 300
        self.max_speed = 8796093022207
        self.fail_on: dict[str, libvirtError] = {}
        # Like QEMU's event, the post-copy state shows only some reads after migrateStartPostCopy returned.
        self.postcopy_state_after_reads = 0
        self._postcopy_pending: int | None = None

    # -- plumbing
    def _call(self, method: str, *args: Any) -> None:
        self.host.world.record(self.host, method, self._name, *args)
        if method in self.fail_on:
            raise self.fail_on[method]

    def _exists(self) -> None:
        if self.host.domains.get(self._uuid) is not self:
            raise no_domain(self._uuid)

    # -- read
    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:
        return self._uuid

    def state(self, flags: int = 0) -> list[int]:
        self._exists()
        if self._postcopy_pending is not None:
            if self._postcopy_pending <= 0:
                self._state, self._reason = VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY
                self._postcopy_pending = None
            else:
                self._postcopy_pending -= 1
        return [self._state, self._reason]

    def info(self) -> list[int]:
        self._exists()
        return [self._state, self.memory_kib, self.memory_kib, 1, 1000]

    def isPersistent(self) -> int:
        self._exists()
        return int(self.persistent)

    def isActive(self) -> int:
        self._exists()
        return int(self._state != VIR_DOMAIN_SHUTOFF)

    def XMLDesc(self, flags: int = 0) -> str:
        self._exists()
        if flags & VIR_DOMAIN_XML_INACTIVE and self.inactive_xml:
            return self.inactive_xml
        return self.xml

    def jobStats(self, flags: int = 0) -> dict[str, Any]:
        self._exists()
        if flags & VIR_DOMAIN_JOB_STATS_COMPLETED:
            return dict(self.completed_stats or {"type": VIR_DOMAIN_JOB_NONE})
        if self.job is None or self.job.finished.is_set():
            return {"type": VIR_DOMAIN_JOB_NONE}
        return self.job.stats()

    def jobInfo(self) -> list[int]:
        stats = self.jobStats()
        return [stats["type"], stats.get("time_elapsed", 0), 0, stats.get("data_total", 0),
                stats.get("data_processed", 0), stats.get("data_remaining", 0), 0, 0, 0, 0, 0, 0]

    def migrateGetMaxDowntime(self, flags: int = 0) -> int:
        return self.max_downtime

    def metadata(self, type: int, uri: str | None, flags: int = 0) -> str:
        """virDomainGetMetadata(ELEMENT): the element in ``uri``'s namespace, its namespace stripped."""
        self._exists()
        if type != VIR_DOMAIN_METADATA_ELEMENT:
            raise libvirtError("this fake knows VIR_DOMAIN_METADATA_ELEMENT only", VIR_ERR_INVALID_ARG)
        live, _config = self._affected(flags, writing=False)
        element = metadata_element(self.xml if live else (self.inactive_xml or self.xml), uri)
        if element is None:
            raise libvirtError("metadata not found: Requested metadata element is not present",
                               VIR_ERR_NO_DOMAIN_METADATA, VIR_FROM_DOMAIN)
        return element

    def _affected(self, flags: int, writing: bool) -> tuple[bool, bool]:
        """virDomainObjUpdateModificationImpact: which of live and config ``flags`` address, or the error."""
        active = self._state != VIR_DOMAIN_SHUTOFF
        live, config = bool(flags & VIR_DOMAIN_AFFECT_LIVE), bool(flags & VIR_DOMAIN_AFFECT_CONFIG)
        if not live and not config:
            live, config = active, not active
        if live and not active:
            raise libvirtError("Requested operation is not valid: domain is not running", VIR_ERR_OPERATION_INVALID)
        if config and not self.persistent:
            raise libvirtError("Requested operation is not valid: transient domains do not have any persistent "
                               "config", VIR_ERR_OPERATION_INVALID)
        if live and config and not writing:
            raise libvirtError("invalid argument: flags 'affect live' and 'affect config' are mutually exclusive",
                               VIR_ERR_INVALID_ARG)
        return live, config

    def migrateGetMaxSpeed(self, flags: int = 0) -> int:
        return self.max_speed

    # -- write
    def resume(self) -> int:
        self._call("resume")
        self._exists()
        if self._state != VIR_DOMAIN_PAUSED:
            raise libvirtError("Requested operation is not valid: domain is not paused", VIR_ERR_OPERATION_INVALID)
        self._state, self._reason = VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED
        return 0

    def suspend(self) -> int:
        self._call("suspend")
        self._exists()
        self._state, self._reason = VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER
        if self.job is not None and not self.job.finished.is_set():
            self.job.switch("suspend")
        return 0

    def destroy(self) -> int:
        self._call("destroy")
        self._exists()
        if self.persistent:
            self._state, self._reason = VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED
        else:
            del self.host.domains[self._uuid]
        return 0

    def undefineFlags(self, flags: int = 0) -> int:
        self._call("undefineFlags", flags)
        self._exists()
        if self._state == VIR_DOMAIN_SHUTOFF:
            del self.host.domains[self._uuid]
        else:
            self.persistent = False
            self.inactive_xml = None
        return 0

    def undefine(self) -> int:
        return self.undefineFlags(0)

    def abortJob(self) -> int:
        self._call("abortJob")
        return self._abort_job(0)

    def abortJobFlags(self, flags: int = 0) -> int:
        self._call("abortJobFlags", flags)
        return self._abort_job(flags)

    def _abort_job(self, flags: int) -> int:
        """libvirt 9.0's qemuDomainAbortJobFlags: post-copy is only paused, and only when asked to."""
        postcopy = self.job is not None and not self.job.finished.is_set() and self.job.switched == "postcopy"
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY and not postcopy:
            raise libvirtError("Requested operation is not valid: current job is not outgoing migration in "
                               "post-copy mode", VIR_ERR_OPERATION_INVALID)
        if self.job is None or self.job.finished.is_set():
            raise libvirtError("Requested operation is not valid: no job is active on the domain",
                               VIR_ERR_OPERATION_INVALID)
        if postcopy and not flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY:
            raise libvirtError("Requested operation is not valid: cannot abort migration in post-copy mode",
                               VIR_ERR_OPERATION_INVALID)
        if postcopy:
            self.job.abort("postcopy_paused")
        else:
            self.job.abort()
        return 0

    def migrateSetMaxDowntime(self, downtime: int, flags: int = 0) -> int:
        self._call("migrateSetMaxDowntime", downtime)
        self.max_downtime = downtime
        return 0

    def setMetadata(self, type: int, metadata: str | None, key: str | None, uri: str | None, flags: int = 0) -> int:
        """virDomainSetMetadata(ELEMENT): replace (None: remove) the element of ``uri`` live and/or in the config."""
        self._call("setMetadata", type, metadata, key, uri, flags)
        self._exists()
        if type != VIR_DOMAIN_METADATA_ELEMENT:
            raise libvirtError("this fake knows VIR_DOMAIN_METADATA_ELEMENT only", VIR_ERR_INVALID_ARG)
        live, config = self._affected(flags, writing=True)
        if live:
            self.xml = with_metadata_element(self.xml, uri, key, metadata)
        if config:
            self.inactive_xml = with_metadata_element(self.inactive_xml or self.xml, uri, key, metadata)
        return 0

    def migrateSetMaxSpeed(self, bandwidth: int, flags: int = 0) -> int:
        self._call("migrateSetMaxSpeed", bandwidth)
        self.max_speed = bandwidth
        return 0

    def migrateStartPostCopy(self, flags: int = 0) -> int:
        self._call("migrateStartPostCopy")
        if self.job is None or self.job.finished.is_set():
            raise libvirtError("Requested operation is not valid: no job is active", VIR_ERR_OPERATION_INVALID)
        if not self.job.flags & VIR_MIGRATE_POSTCOPY:
            raise libvirtError("Requested operation is not valid: switching to post-copy requires "
                               "migration to be started with VIR_MIGRATE_POSTCOPY flag",
                               VIR_ERR_OPERATION_INVALID)
        self.job.switch("postcopy")
        if self.postcopy_state_after_reads:
            self._postcopy_pending = self.postcopy_state_after_reads
        else:
            self._state, self._reason = VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY
        return 0

    def migrateToURI3(self, dconnuri: str, params: dict[str, Any], flags: int = 0) -> int:
        self._call("migrateToURI3", dconnuri, dict(params), flags)
        if not flags & VIR_MIGRATE_PEER2PEER:
            raise libvirtError("migrateToURI3 without VIR_MIGRATE_PEER2PEER needs a migrate URI",
                               VIR_ERR_INVALID_ARG)
        dest = self.host.world.host_for(dconnuri)
        self.host.world.migrate(self, dest, params, flags)
        return 0

    def migrate3(self, dconn: FakeConnection, params: dict[str, Any], flags: int = 0) -> FakeDomain:
        self._call("migrate3", dconn.host.uri, dict(params), flags)
        return self.host.world.migrate(self, dconn.host, params, flags)


class FakeJob:
    """The running migration of a domain, advanced by World.tick()."""

    def __init__(self, domain: FakeDomain, dest: FakeHost, params: dict[str, Any], flags: int) -> None:
        self.domain = domain
        self.dest = dest
        self.params = params
        self.flags = flags
        self.script = domain.script or MigrationScript()
        self.index = 0
        self.current = self.script.samples[0] if self.script.samples else sample(0)
        self.finished = threading.Event()
        self.result: str | None = None
        self.switched: str | None = None
        self.switch_ticks = 0
        self.started_at = domain.host.world.clock()  # libvirt's time_elapsed is the job's age

    def stats(self) -> dict[str, Any]:
        age_ms = round((self.domain.host.world.clock() - self.started_at) * 1000)
        return dict(self.current, time_elapsed=age_ms)

    def switch(self, how: str) -> None:
        self.switched = how
        self.switch_ticks = self.script.after_switch

    def abort(self, result: str = "aborted") -> None:
        self.result = result
        self.finished.set()

    def tick(self) -> None:
        if self.finished.is_set():
            return
        if self.switched:
            self.switch_ticks -= 1
            if self.switch_ticks <= 0:
                self.result = "complete"
                self.finished.set()
            return
        self.index += 1
        if self.index < len(self.script.samples):
            self.current = self.script.samples[self.index]
            return
        if self.script.outcome == "never":
            return
        self.result = self.script.outcome
        self.finished.set()


class FakeNetwork:
    def __init__(self, name: str, active: bool) -> None:
        self._name = name
        self.active = active

    def isActive(self) -> int:
        return int(self.active)


class FakeHost:
    def __init__(self, world: World, uri: str, hostname: str, host_uuid: str | None = None) -> None:
        self.world = world
        self.uri = uri
        self.hostname = hostname
        self.host_uuid = host_uuid or str(uuid_lib.uuid4())
        self.domains: dict[str, FakeDomain] = {}
        self.reachable = True
        self.open_error: libvirtError | None = None
        self.cpu_result = VIR_CPU_COMPARE_IDENTICAL
        self.incompatible_cpu_models: set[str] = set()
        self.cpu_error: libvirtError | None = None
        self.memory_stats = {"total": 16777216, "free": 8388608, "buffers": 0, "cached": 1048576}
        self.networks: dict[str, FakeNetwork] = {"default": FakeNetwork("default", True)}
        self.interfaces: set[str] = {"br0", "eth0"}
        self.volumes: dict[str, str] = {}
        self.pools: dict[str, FakePool] = {}
        self.pools_error: libvirtError | None = None
        self.define_error: libvirtError | None = None
        # virConnectGetLibVersion / virConnectGetVersion (QEMU): Debian 12's libvirt 9.0.0 and QEMU 7.2.0.
        self.lib_version = 9000000
        self.hypervisor_version = 7002000
        self.version_error: libvirtError | None = None

    def add_domain(self, name: str, state: int = VIR_DOMAIN_RUNNING, persistent: bool = True,
                   uuid: str | None = None, reason: int | None = None, **kwargs: Any) -> FakeDomain:
        uuid = uuid or str(uuid_lib.uuid4())
        if reason is None:
            reason = {VIR_DOMAIN_RUNNING: VIR_DOMAIN_RUNNING_BOOTED, VIR_DOMAIN_PAUSED: VIR_DOMAIN_PAUSED_USER,
                      VIR_DOMAIN_SHUTOFF: VIR_DOMAIN_SHUTOFF_SHUTDOWN}.get(state, 0)
        if "xml" not in kwargs:
            kwargs["xml"] = domain_xml(name, uuid, kwargs.get("memory_kib", 1048576))
        dom = FakeDomain(self, name, uuid, state, persistent, reason=reason, **kwargs)
        self.domains[uuid] = dom
        return dom


def add_pool(host: FakeHost, name: str, pool_type: str, target: str, files: tuple[str, ...] = (),
             **kwargs: Any) -> FakePool:
    """A storage pool on ``host`` over the directory ``target`` holding ``files`` (full paths)."""
    pool = FakePool(pool_type, name, target, files=set(files), host=host, **kwargs)
    host.pools[name] = pool
    return pool


class FakeVolume:
    def __init__(self, path: str, pool_type: str, pool: FakePool | None = None) -> None:
        self.path = path
        self.pool_type = pool_type
        self.pool = pool

    def storagePoolLookupByVolume(self) -> FakePool:
        return self.pool or FakePool(self.pool_type)


class FakePool:
    """A storage pool: ``files`` are what its directory holds, ``known`` what libvirt listed at the last refresh."""

    def __init__(self, pool_type: str, name: str = "p", target: str | None = None, active: bool = True,
                 files: set[str] | None = None, host: FakeHost | None = None,
                 refresh_error: libvirtError | None = None) -> None:
        self.pool_type = pool_type
        self._name = name
        self.target = target
        self.active = active
        self.files = set(files or ())
        self.known = set(self.files)
        self.host = host
        self.refresh_error = refresh_error

    def name(self) -> str:
        return self._name

    def isActive(self) -> int:
        return int(self.active)

    def XMLDesc(self, flags: int = 0) -> str:
        target = f"<target><path>{self.target}</path></target>" if self.target else ""
        return f"<pool type='{self.pool_type}'><name>{self._name}</name>{target}</pool>"

    def storageVolLookupByName(self, name: str) -> FakeVolume:
        for path in self.known:
            if path.rsplit("/", 1)[-1] == name:
                return FakeVolume(path, self.pool_type, self)
        raise libvirtError(f"Storage volume not found: no storage vol with matching name '{name}'",
                           VIR_ERR_NO_STORAGE_VOL)

    def refresh(self, flags: int = 0) -> int:
        if self.host is not None:
            self.host.world.record(self.host, "storagePoolRefresh", self._name)
        if self.refresh_error is not None:
            raise self.refresh_error
        self.known = set(self.files)
        return 0


class FakeConnection:
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.closed = False
        self.keepalive: tuple[int, int] | None = None

    def close(self) -> int:
        self.closed = True
        return 0

    def getURI(self) -> str:
        return self.host.uri

    def getHostname(self) -> str:
        return self.host.hostname

    def getLibVersion(self) -> int:
        return self.host.lib_version

    def getVersion(self) -> int:
        if self.host.version_error is not None:
            raise self.host.version_error
        return self.host.hypervisor_version

    def isAlive(self) -> int:
        return int(self.host.reachable)

    def setKeepAlive(self, interval: int, count: int) -> int:
        if not EVENT_LOOP["registered"]:
            raise libvirtError("internal error: keepalive needs an event loop: call virEventRegisterDefaultImpl "
                               "before opening the connection")
        self.keepalive = (interval, count)
        return 0

    def lookupByUUIDString(self, uuid: str) -> FakeDomain:
        if not isinstance(uuid, str):
            raise TypeError("lookupByUUIDString() argument 1 must be str")
        dom = self.host.domains.get(uuid)
        if dom is None:
            raise no_domain(uuid)
        return dom

    def listAllDomains(self, flags: int = 0) -> list[FakeDomain]:
        with self.host.world.lock:
            return list(self.host.domains.values())

    def lookupByName(self, name: str) -> FakeDomain:
        for dom in self.host.domains.values():
            if dom.name() == name:
                return dom
        raise no_domain(name)

    def defineXML(self, xml: str) -> FakeDomain:
        self.host.world.record(self.host, "defineXML", xml)
        if self.host.define_error is not None:
            raise self.host.define_error
        import xml.etree.ElementTree as ET

        root = ET.fromstring(xml)
        uuid, name = root.findtext("uuid"), root.findtext("name")
        dom = self.host.domains.get(uuid)
        if dom is None:
            return self.host.add_domain(name, VIR_DOMAIN_SHUTOFF, True, uuid=uuid, xml=xml)
        dom.persistent = True
        dom.inactive_xml = xml
        return dom

    def getCapabilities(self) -> str:
        return (f"<capabilities><host><uuid>{self.host.host_uuid}</uuid>"
                "<cpu><arch>x86_64</arch><model>Skylake</model></cpu></host></capabilities>")

    def compareHypervisorCPU(self, emulator: str | None, arch: str | None, machine: str | None,
                             virttype: str | None, xmlCPU: str, flags: int = 0) -> int:
        self.host.world.record(self.host, "compareHypervisorCPU", virttype, xmlCPU)
        if self.host.cpu_error is not None:
            raise self.host.cpu_error
        if any(f">{model}<" in xmlCPU for model in self.host.incompatible_cpu_models):
            return VIR_CPU_COMPARE_INCOMPATIBLE
        return self.host.cpu_result

    def getMemoryStats(self, cellNum: int, flags: int = 0) -> dict[str, int]:
        return dict(self.host.memory_stats)

    def getFreeMemory(self) -> int:
        return self.host.memory_stats["free"] * 1024

    def networkLookupByName(self, name: str) -> FakeNetwork:
        if name not in self.host.networks:
            raise libvirtError(f"Network not found: no network with matching name '{name}'", VIR_ERR_NO_NETWORK)
        return self.host.networks[name]

    def interfaceLookupByName(self, name: str) -> object:
        if name not in self.host.interfaces:
            raise libvirtError(f"Interface not found: couldn't find interface named '{name}'",
                               VIR_ERR_NO_INTERFACE)
        return object()

    def storageVolLookupByPath(self, path: str) -> FakeVolume:
        if path in self.host.volumes:
            return FakeVolume(path, self.host.volumes[path])
        for pool in self.host.pools.values():
            if pool.active and path in pool.known:
                return FakeVolume(path, pool.pool_type, pool)
        raise libvirtError(f"Storage volume not found: no storage vol with matching path '{path}'",
                           VIR_ERR_NO_STORAGE_VOL)

    def storagePoolLookupByName(self, name: str) -> FakePool:
        if name not in self.host.pools:
            raise libvirtError(f"Storage pool not found: no storage pool with matching name '{name}'",
                               VIR_ERR_NO_STORAGE_POOL)
        return self.host.pools[name]

    def listAllStoragePools(self, flags: int = 0) -> list[FakePool]:
        if self.host.pools_error is not None:
            raise self.host.pools_error
        pools = list(self.host.pools.values())
        if flags & VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE:
            pools = [pool for pool in pools if pool.active]
        return pools


class World:
    """All fake hosts, the clock, and the journal of mutating calls."""

    def __init__(self) -> None:
        self.hosts: dict[str, FakeHost] = {}
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self.now = 1000.0
        self.jobs: list[FakeJob] = []
        self.lock = threading.Lock()

    def add_host(self, uri: str, hostname: str, host_uuid: str | None = None) -> FakeHost:
        host = FakeHost(self, uri, hostname, host_uuid)
        self.hosts[uri] = host
        return host

    def host_for(self, uri: str) -> FakeHost:
        host = self.hosts.get(uri)
        if host is None or not host.reachable:
            raise libvirtError(f"unable to connect to server at '{uri}': Connection refused",
                               VIR_ERR_SYSTEM_ERROR, VIR_FROM_RPC)
        return host

    def record(self, host: FakeHost, method: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((host.hostname, method, args))

    @property
    def mutations(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        return [call for call in self.calls if call[1] in MUTATING]

    def methods(self) -> list[tuple[str, str]]:
        return [(hostname, method) for hostname, method, _args in self.mutations]

    # -- clock
    def clock(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for job in list(self.jobs):
            job.tick()

    def wait(self, event: threading.Event, seconds: float) -> None:
        self.tick(seconds)
        event.wait(0.05)

    # -- migration
    def migrate(self, dom: FakeDomain, dest: FakeHost, params: dict[str, Any], flags: int) -> FakeDomain:
        if flags & VIR_MIGRATE_TUNNELLED and not flags & VIR_MIGRATE_PEER2PEER:
            raise libvirtError("unsupported configuration: tunnelled migration requires peer2peer",
                               VIR_ERR_ARGUMENT_UNSUPPORTED)
        if dom.job is not None and not dom.job.finished.is_set():
            raise libvirtError("Requested operation is not valid: another migration job is already running for "
                               f"domain '{dom.name()}'", VIR_ERR_OPERATION_INVALID)
        refused = self.refused_by_begin(dom, flags)
        if refused:
            raise libvirtError(f"Requested operation is not valid: {refused}", VIR_ERR_OPERATION_INVALID)
        if flags & VIR_MIGRATE_OFFLINE:
            return self._finish(dom, dest, params, flags)
        job = FakeJob(dom, dest, params, flags)
        dom.job = job
        incoming = dest.add_domain(params.get(VIR_MIGRATE_PARAM_DEST_NAME, dom.name()), VIR_DOMAIN_PAUSED,
                                   False, uuid=dom.UUIDString(), reason=VIR_DOMAIN_PAUSED_MIGRATION,
                                   memory_kib=dom.memory_kib, xml=dom.xml)
        with self.lock:
            self.jobs.append(job)
        if dom.script is not None and not dom.script.samples and dom.script.outcome == "complete":
            job.result = "complete"
            job.finished.set()
        job.finished.wait(30)
        with self.lock:
            self.jobs.remove(job)
        return self._conclude(job, incoming)

    @staticmethod
    def refused_by_begin(dom: FakeDomain, flags: int) -> str | None:
        """What libvirt 9.0's QEMU driver refuses before a migration starts (qemuMigrationSrcBegin*)."""
        if not flags & VIR_MIGRATE_OFFLINE:
            return None if dom._state != VIR_DOMAIN_SHUTOFF else "domain is not running"
        if flags & (VIR_MIGRATE_NON_SHARED_DISK | VIR_MIGRATE_NON_SHARED_INC):
            return "offline migration cannot handle non-shared storage"
        if not flags & VIR_MIGRATE_PERSIST_DEST:
            return "offline migration must be specified with the persistent flag set"
        if flags & VIR_MIGRATE_TUNNELLED:
            return "tunnelled offline migration does not make sense"
        return None

    def _conclude(self, job: FakeJob, incoming: FakeDomain) -> FakeDomain:
        dom, dest = job.domain, job.dest
        result = job.result or "timeout"
        if result.startswith("persist_failed") and not job.flags & VIR_MIGRATE_PERSIST_DEST:
            result = "complete"  # nothing to persist
        if result == "complete":
            return self._finish(dom, dest, job.params, job.flags, incoming)
        if result == "finish_error":
            self._finish(dom, dest, job.params, job.flags, incoming)
            raise libvirtError("Unable to read from monitor: Connection reset by peer", VIR_ERR_OPERATION_FAILED)
        if result == "persist_failed":
            # qemuMigrationDstFinishFresh (v3): the destination's copy is stopped and removed, the
            # source's Confirm phase resumes it; the save error reaches the caller.
            dest.domains.pop(incoming.UUIDString(), None)
            if dom._state == VIR_DOMAIN_RUNNING:
                dom._reason = VIR_DOMAIN_RUNNING_MIGRATION_CANCELED
            raise libvirtError(f"Failed to create file '/etc/libvirt/qemu/{incoming.name()}.xml.new': "
                               "No space left on device", VIR_ERR_SYSTEM_ERROR, VIR_FROM_NONE)
        if result == "persist_failed_transient":
            moved = self._finish(dom, dest, job.params, job.flags & ~VIR_MIGRATE_PERSIST_DEST
                                 & ~VIR_MIGRATE_UNDEFINE_SOURCE, incoming, keep_source=True)
            moved.persistent = False
            raise libvirtError("Failed to make domain persistent after migration",
                               VIR_ERR_MIGRATE_PERSIST_FAILED)
        if result == "postcopy_paused":
            # abortJobFlags(VIR_DOMAIN_ABORT_JOB_POSTCOPY): the guest runs on the destination, its memory
            # partly still on the source; both sides wait for a post-copy recovery.
            dom._state, dom._reason = VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
            incoming._state, incoming._reason = VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_POSTCOPY_FAILED
            raise libvirtError("operation failed: job 'migration out' failed in post-copy phase",
                               VIR_ERR_OPERATION_FAILED)
        if result != "fail_leave_dest":
            dest.domains.pop(incoming.UUIDString(), None)
        if dom._reason in (VIR_DOMAIN_PAUSED_MIGRATION, VIR_DOMAIN_PAUSED_POSTCOPY) and result == "aborted" \
                and job.switched != "suspend":
            dom._state, dom._reason = VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_MIGRATION_CANCELED
        if result == "aborted":
            raise libvirtError("operation aborted: migration out job: canceled by client",
                               VIR_ERR_OPERATION_ABORTED)
        raise libvirtError(dom.script.error_text if dom.script else "migration failed", VIR_ERR_OPERATION_FAILED)

    def _finish(self, dom: FakeDomain, dest: FakeHost, params: dict[str, Any], flags: int,
                incoming: FakeDomain | None = None, keep_source: bool = False) -> FakeDomain:
        uuid = dom.UUIDString()
        name = params.get(VIR_MIGRATE_PARAM_DEST_NAME, dom.name())
        offline = bool(flags & VIR_MIGRATE_OFFLINE)
        was_paused = dom._state == VIR_DOMAIN_PAUSED and not (dom.job and dom.job.switched)
        existing = dest.domains.get(uuid)
        if incoming is not None:
            target = incoming
        elif existing is not None:
            target = existing
        else:
            target = dest.add_domain(name, VIR_DOMAIN_SHUTOFF, True, uuid=uuid, xml=dom.xml)
        if offline:
            target._state, target._reason = VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED
        elif was_paused or flags & VIR_MIGRATE_PAUSED:
            # qemuMigrationDstComplete: a guest that arrives paused is paused by the user.
            target._state, target._reason = VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER
        else:
            target._state, target._reason = VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_MIGRATED
        if flags & VIR_MIGRATE_PERSIST_DEST:
            target.persistent = True
            target.inactive_xml = params.get(VIR_MIGRATE_PARAM_PERSIST_XML, dom.inactive_xml or dom.xml)
        stats = dict(dom.script.completed_stats if dom.script else MigrationScript().completed_stats)
        target.completed_stats = stats
        if dom.persistent and not (flags & VIR_MIGRATE_UNDEFINE_SOURCE):
            dom._state, dom._reason = VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED
            dom.completed_stats = stats
        elif not keep_source or not dom.persistent:
            dom.host.domains.pop(uuid, None)
        else:
            dom._state, dom._reason = VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED
        return target


CURRENT = World()


def open(name: str | None = None) -> FakeConnection:
    host = CURRENT.hosts.get(name or "")
    if host is None:
        raise libvirtError(f"Cannot recv data: ssh: Could not resolve hostname: Name or service not known "
                           f"({name})", VIR_ERR_SYSTEM_ERROR, VIR_FROM_RPC)
    if host.open_error is not None:
        raise host.open_error
    if not host.reachable:
        raise libvirtError(f"unable to connect to server at '{host.hostname}:16514': Connection refused",
                           VIR_ERR_SYSTEM_ERROR, VIR_FROM_RPC)
    return FakeConnection(host)


def getVersion() -> int:
    return 9000000


# ---- the event loop keepalive needs (virEventRegisterDefaultImpl + a thread running virEventRunDefaultImpl)
EVENT_LOOP = {"registered": False, "iterations": 0}


def virEventRegisterDefaultImpl() -> int:
    EVENT_LOOP["registered"] = True
    return 0


def virEventRunDefaultImpl() -> int:
    if not EVENT_LOOP["registered"]:
        raise libvirtError("internal error: no event loop registered")
    EVENT_LOOP["iterations"] += 1
    threading.Event().wait(0.2)
    return 0
