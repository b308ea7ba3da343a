# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:
    # How to migrate: transport, persistence, tuning, convergence policy, preflight (migrate, evacuate).
    DOCUMENTATION = r"""
options:
  live:
    description:
      - V(true) migrates a running domain live (C(VIR_MIGRATE_LIVE)).
      - V(false) is an offline migration of a shut-off persistent domain (C(VIR_MIGRATE_OFFLINE)); only its
        definition moves. Needs O(persistent=true); cannot copy storage; refused for a running domain.
    type: bool
    default: true
  persistent:
    description:
      - Define the domain persistently on the destination (C(VIR_MIGRATE_PERSIST_DEST), virsh C(--persistent)).
      - The persistent definition is always sent explicitly (C(VIR_MIGRATE_PARAM_PERSIST_XML)), from the option
        C(persistent_xml), else C(xml) (where the module has them), else the source's inactive definition.
    type: bool
    default: true
  undefine_source:
    description:
      - Undefine the domain on the source after a successful migration (C(VIR_MIGRATE_UNDEFINE_SOURCE),
        virsh C(--undefinesource)). NVRAM and TPM state files are kept.
      - With O(persistent=false) on a persistent domain this leaves no definition on any host; that is refused
        unless O(confirm_config_removal=true).
    type: bool
    default: true
  confirm_config_removal:
    description:
      - Confirm that O(undefine_source=true) with O(persistent=false) may leave a persistent domain defined
        nowhere (it runs transient on the destination and its configuration is gone once it stops).
    type: bool
    default: false
  p2p:
    description:
      - V(true) is managed peer-to-peer migration (C(VIR_MIGRATE_PEER2PEER)); the source libvirtd talks to
        the destination URI itself.
      - V(false) is managed direct migration; the module opens both ends and drives them
        (C(virDomainMigrate3)).
    type: bool
    default: true
  tunnelled:
    description:
      - Carry the migration data through the libvirtd connection (C(VIR_MIGRATE_TUNNELLED)). Needs O(p2p=true);
        excludes O(tls), C(migrate_uri), C(listen_address) and O(parallel_connections).
    type: bool
    default: false
  tls:
    description:
      - Encrypt the QEMU migration data stream with TLS (C(VIR_MIGRATE_TLS)), using C(/etc/pki/qemu) on both
        hosts. Excludes O(tunnelled).
    type: bool
    default: false
  bandwidth:
    description:
      - Bandwidth limit in MiB/s (C(VIR_MIGRATE_PARAM_BANDWIDTH)). Unset means libvirt's default (unlimited).
    type: int
  postcopy_bandwidth:
    description:
      - Bandwidth limit in MiB/s for the post-copy phase (C(VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY)).
        Needs O(post_copy=true).
    type: int
  max_downtime:
    description:
      - Maximum tolerable downtime in milliseconds, set with C(virDomainMigrateSetMaxDowntime) as soon as the
        job runs. It is also the start of the downtime ramp (O(convergence.downtime_steps)).
      - Unset, the ramp starts at O(convergence.downtime_max) / O(convergence.downtime_steps).
    type: int
  copy_storage:
    description:
      - Copy disks that are not on shared storage. V(all) copies them whole (C(VIR_MIGRATE_NON_SHARED_DISK)),
        V(inc) copies only what differs from a backing image present on the destination
        (C(VIR_MIGRATE_NON_SHARED_INC)).
      - The disk list sent to libvirt is always explicit (C(VIR_MIGRATE_PARAM_MIGRATE_DISKS)), either the option C(migrate_disks)
        (where the module has it), or every writable disk not known to be on shared storage. Copying a disk that is on shared storage
        would write it onto itself and is refused.
    type: str
    choices: [none, all, inc]
    default: none
  compression:
    description:
      - Compression methods for the migration stream (C(VIR_MIGRATE_COMPRESSED) and
        C(VIR_MIGRATE_PARAM_COMPRESSION)). Both hosts must support the methods named; the preflight check
        V(throughput) compares their libvirt and QEMU versions before anything changes.
      - V(xbzrle) is pre-copy page compression that sends only the changed bytes of pages sent before (needs
        libvirt 1.0.3 and QEMU 1.2.0 or later).
      - V(mt) is pre-copy multithreaded page compression with zlib (needs libvirt 1.3.4 and QEMU 2.4.0 or later;
        QEMU deprecated it in 8.2 in favour of V(zlib) and V(zstd)).
      - V(zlib) and V(zstd) compress the parallel connections' (multifd) channels with zlib or Zstandard (need
        libvirt 9.4.0 and QEMU 5.0.0 or later). They need O(parallel_connections); they cannot be combined with
        V(xbzrle) or V(mt), nor with each other. Such combinations are refused before any connection.
    type: list
    elements: str
    choices: [xbzrle, mt, zlib, zstd]
    default: []
  parallel_connections:
    description:
      - Number of parallel connections for the migration data (C(VIR_MIGRATE_PARALLEL),
        C(VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS)), 1 to 255. QEMU calls this multifd.
      - Needs libvirt 5.2.0 and QEMU 4.0.0 or later on both hosts; the preflight check V(throughput) compares
        their versions before anything changes.
    type: int
  auto_converge:
    description:
      - Let QEMU throttle the guest's vCPUs when the migration does not converge (C(VIR_MIGRATE_AUTO_CONVERGE)).
    type: bool
    default: false
  auto_converge_initial:
    description:
      - Initial CPU throttling percentage for O(auto_converge) (C(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL)).
    type: int
  auto_converge_increment:
    description:
      - Throttling increment in percent for O(auto_converge) (C(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT)).
    type: int
  post_copy:
    description:
      - Allow switching the migration to post-copy (C(VIR_MIGRATE_POSTCOPY)). The switch happens only when the
        convergence policy decides it (O(convergence.on_timeout=postcopy)) or through
        M(virtops.migration.migration_job). Needs O(live=true).
      - Also allows resuming a post-copy migration that failed earlier (C(VIR_MIGRATE_POSTCOPY_RESUME)).
    type: bool
    default: false
  on_postcopy_unavailable:
    description:
      - What to do when O(post_copy=true) and the destination cannot do post-copy. Its QEMU then refuses the
        post-copy capability as the migration starts ("Postcopy is not supported"), before anything moves; libvirt
        offers no way to ask beforehand.
      - V(refuse) fails the migration, naming the destination and the causes to look for (a userfaultfd QEMU cannot
        create, munlockall() refused by a seccomp or container filter) and where its QEMU log says which. The
        domain runs on the source as before.
      - V(precopy) migrates again at once without post-copy, once the failed start is proven to have left the
        domain running on the source only, with a warning; a convergence policy that would have switched to
        post-copy (O(convergence.on_timeout=postcopy)) aborts instead.
    type: str
    choices: [refuse, precopy]
    default: refuse
  on_paused_source:
    description:
      - What to do with a domain found paused on the source and absent from the destination. libvirt's pause
        reason decides what is this module's to undo. Only a domain paused by a migration (reason C(migration), when
        an earlier attempt failed before the source was resumed) may be resumed. A domain paused by its user
        (C(virsh suspend)), by an I/O error or for any other reason is never resumed. It moves paused
        (C(VIR_MIGRATE_PAUSED)) and arrives paused, or is refused.
      - V(resume) resumes a domain a migration paused, then migrates it live; any other paused domain moves
        paused and stays paused.
      - V(migrate_paused) moves every paused domain as it is; it stays paused on the destination.
      - V(refuse) resumes and migrates a domain a migration paused, and refuses a domain paused for any other
        reason, touching nothing.
      - The result's C(explanation) and C(warnings) say which it was; M(virtops.migration.evacuate) reports it per
        guest (C(pause_reason), and guests it leaves on the source).
    type: str
    choices: [resume, migrate_paused, refuse]
    default: resume
  timeout:
    description:
      - Hard wall-clock limit in seconds for the migration job. When reached the job is aborted, whatever
        O(convergence.on_timeout) says (except once post-copy has started, when aborting would lose the guest;
        that is recorded in the result's C(policy_actions)). Unset means no hard limit.
      - The run then returns within a grace of 85 seconds after the limit, whatever a host does, including a
        libvirt daemon that stopped answering (hung, stopped with SIGSTOP, or cut off). That is up to 30 seconds
        for the migrate call to return after the abort (the source's libvirtd gives up a silent destination after
        30 seconds by default), 50 seconds to check both hosts and clean up, of which up to 40 seconds to reopen
        a lost connection (both hosts at once; a libvirt daemon restarted during a migration waits 30 seconds for
        its jobs before the new one starts) and at most 10 seconds for each call after that, and 5 seconds to
        close the connections. A host
        that did not answer in time is listed in the failure's C(unreachable), is never reported as running the
        domain, and nothing is undone there; the message says where the domain runs and what to check once that
        host answers again.
      - Every connection uses libvirt keepalive (a probe every 5 seconds, the peer dropped after 15 seconds of
        silence) and opening a connection gives up after 45 seconds, with or without this option. The limit counts
        from the start of the migration job; connecting and the preflight checks come before it.
    type: int
  preflight_skip:
    description:
      - Preflight checks to skip, by name. V(cpu) (C(virConnectCompareHypervisorCPU) of the guest CPU on the destination), V(memory) (free plus cached
        memory on the destination covers the guest's memory), V(storage) (every disk is shared or copied),
        V(networks) (libvirt networks, bridges and direct devices of the guest exist on the destination),
        V(throughput) (only with O(compression) or O(parallel_connections); the libvirt and QEMU versions of
        both hosts, read with C(virConnectGetLibVersion) and C(virConnectGetVersion), are recent enough for
        them; a host too old is named with the version it has and the version needed).
      - The destination connection check cannot be skipped, nor the comparison of the two hosts' identities
        (host UUIDs), which runs before the domain is looked up.
    type: list
    elements: str
    choices: [cpu, memory, storage, networks, throughput]
    default: []
  convergence:
    description:
      - The convergence policy applied while the migration runs. The module polls the job statistics every
        O(convergence.poll_interval) seconds and records every action it takes in the result's C(policy_actions).
    type: dict
    default: {}
    suboptions:
      completion_timeout_per_gib:
        description:
          - Completion timeout in seconds per GiB of guest RAM (KubeVirt uses 150, Nova 800). When reached,
            O(convergence.on_timeout) is applied. V(0) disables it.
        type: float
        default: 150
      progress_timeout:
        description:
          - Stall timeout in seconds. The migration stalls when C(data_remaining) has not reached a new
            low for this long; then O(convergence.on_timeout) is applied. V(0) disables it.
        type: float
        default: 150
      downtime_max:
        description:
          - The downtime ramp's last value in milliseconds.
        type: int
        default: 500
      downtime_steps:
        description:
          - Number of steps of the downtime ramp. V(0) disables the ramp (then only O(max_downtime) is set).
        type: int
        default: 10
      downtime_delay_per_gib:
        description:
          - Seconds between two ramp steps, per GiB of guest RAM.
        type: float
        default: 75
      on_timeout:
        description:
          - What to do when the completion or progress timeout is reached.
          - V(abort) aborts the job; the domain keeps running on the source.
          - V(postcopy) switches to post-copy (needs O(post_copy=true)); if libvirt refuses, the job is aborted.
          - V(suspend) pauses the guest so the migration finishes (non-live from there on); the guest runs
            again on the destination. If the migration still fails, the source is resumed.
          - The recorded reason (in C(policy_actions)) says when nothing was sent to the destination for the last
            10 seconds or more, the sign of a link that is down or blocked (not of a guest dirtying memory too fast).
        type: str
        choices: [abort, postcopy, suspend]
        default: abort
      poll_interval:
        description:
          - Seconds between two job-statistics polls.
        type: float
        default: 1
"""
