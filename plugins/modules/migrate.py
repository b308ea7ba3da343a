# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Migrate a libvirt/KVM domain to another host, idempotently
version_added: 1.0.0
description:
  - Makes sure a domain runs on the destination hypervisor, migrating it from the source when needed. The same
    task can be re-run after any interruption.
  - The domain is looked up by UUID on both hosts and the action follows a reconciliation table. Running on the
    source only means it is migrated. Running on the destination only, as requested, means nothing to do.
    Transient on the destination with O(persistent=true) means it is defined there. An inactive definition
    left on the source with O(undefine_source=true) is undefined. Found paused on the source by an earlier
    failed migration, it is resumed and migrated; paused by its user (or for any other reason), it is moved
    paused and arrives paused, or refused (O(on_paused_source)).
    Active on both hosts (split brain) is refused and neither is touched. Found on neither host fails
    with libvirt's VIR_ERR_NO_DOMAIN wording.
  - Before the domain is looked up, the host identities (libvirt's host UUID) behind O(uri) and O(dest_uri)
    are compared. One host reached under two names (or a clone with the same host UUID) is refused, whatever
    the URIs say.
  - Before anything changes, bad option combinations are refused and preflight checks run (see
    O(preflight_skip)).
  - While the migration runs, a convergence policy watches libvirt's job statistics. It ramps up the
    tolerated downtime, detects stalls, and aborts, switches to post-copy or suspends on timeout
    (O(convergence)).
  - On failure the job is aborted. A half-made destination domain is removed, and the source is resumed
    if this run paused it. The error names the operation, the domain, both URIs, libvirt's own text and what
    to do next. If libvirt fails to make the domain persistent after the move (VIR_ERR_MIGRATE_PERSIST_FAILED),
    the module defines it on the destination and never undefines the source; the next run removes
    the source's leftover definition.
author:
  - virtops.migration maintainers (@virtops)
requirements:
  - libvirt-python (Debian C(python3-libvirt)) on the host that runs the module
extends_documentation_fragment:
  - virtops.migration._connection
  - virtops.migration._migration_tuning
  - virtops.migration._audit
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode runs validation, reconciliation and the preflight checks. It returns the plan (flags,
        parameters, copied disks) and the predicted placement. It changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows on which host the domain is present, its state and whether it is persistent, before and
        after.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - Decisions are made by UUID from what both hosts hold. A second run reports C(changed=false) once
        the domain runs on the destination as requested.
options:
  name:
    description:
      - Name of the domain on the source (or, once migrated, on the destination).
      - One of O(name) or O(uuid) is required; when both are given they must match.
    type: str
  uuid:
    description:
      - UUID of the domain. Preferred over O(name) for idempotency across renames (O(dest_name)).
    type: str
  dest_name:
    description:
      - Name of the domain on the destination (C(VIR_MIGRATE_PARAM_DEST_NAME)).
    type: str
  xml:
    description:
      - Domain XML to use on the destination for the running domain (C(VIR_MIGRATE_PARAM_DEST_XML)). It may
        only change what is host-specific (disk paths, network sources). Its UUID must be the domain's.
      - Also used as the persistent definition unless O(persistent_xml) is given.
    type: str
  persistent_xml:
    description:
      - Domain XML for the persistent definition on the destination (C(VIR_MIGRATE_PARAM_PERSIST_XML)).
    type: str
  migrate_uri:
    description:
      - Where the migration data goes (C(VIR_MIGRATE_PARAM_URI)). Examples are V(tcp://10.0.0.2) or
        V(tcp://hv2-migration:49152) on a dedicated migration network. Without it, native migration sends the
        data to the destination's host name, which must resolve on the source.
    type: str
  listen_address:
    description:
      - Address the destination QEMU listens on for incoming data (C(VIR_MIGRATE_PARAM_LISTEN_ADDRESS)).
    type: str
  tls_destination:
    description:
      - Host name to verify in the destination's TLS certificate when O(migrate_uri) uses an address the
        certificate does not name (C(VIR_MIGRATE_PARAM_TLS_DESTINATION)). Needs O(tls=true).
    type: str
  migrate_disks:
    description:
      - Target names (V(vda), V(sdb)) of the disks to copy with O(copy_storage). Needs O(copy_storage).
      - Empty means every writable disk not known to be on shared storage.
    type: list
    elements: str
    default: []
  progress_path:
    description:
      - A file the module rewrites (atomically, as JSON) every O(progress_interval) seconds while the domain
        migrates. It holds the memory sent, the rate, what remains, the dirty rate and the expected end, and
        C(line), one line to show. C(playbooks/migrate.yml) runs the module in the background and shows that
        line while it waits.
      - The expected end assumes what remains shrinks at the rate minus the dirty rate. It is left out while
        the guest dirties memory as fast as it is sent; the convergence policy acts on that (O(convergence)).
      - Not written in check mode, nor when the run migrates nothing.
    type: path
  progress_interval:
    description: Seconds between two updates of O(progress_path). Must be positive.
    type: float
    default: 1.0
notes:
  - Runs on the source host by default (O(uri=qemu:///system)); use C(delegate_to) to run it there.
  - libvirt refuses to migrate between hosts with the same host UUID (cloned machines, containers), and a local
    disk without storage copy (C(VIR_ERR_MIGRATE_UNSAFE)). The preflight checks catch both early when they can.
  - The storage check can prove a disk shared when it is a network disk (for example QEMU's NFS client), or when
    it lies on a shared filesystem as seen from this host (only when O(uri) is local), or when the destination
    knows a storage volume at that path. Otherwise it warns and leaves the decision to libvirt.
  - A read-only disk (a cdrom image, for instance) is neither copied nor checked by libvirt, so unless it is on
    shared storage the destination must hold it at the same path. The storage check looks it up in the
    destination's storage pools (refreshing C(dir), C(fs) and C(netfs) pools first) and refuses when it is missing
    there or when no pool there covers its directory (then it cannot be verified). Copy it there into a pool's
    directory, or eject or detach it first; storage copy cannot carry a read-only disk.
  - With O(tls=true), preflight reads the source's QEMU TLS files (C(ca-cert.pem), C(client-cert.pem),
    C(client-key.pem) in the directory C(qemu.conf) gives QEMU, C(/etc/pki/qemu) by default) when O(uri) is
    local. libvirt cannot read the destination's; a migration that fails on a missing one names the host that
    lacks it.
  - With O(compression) or O(parallel_connections), preflight reads the libvirt and QEMU versions of both hosts and
    refuses, before anything changes, when one of them is older than an option needs (for example V(zstd) needs
    libvirt 9.4.0 and QEMU 5.0.0 on both hosts), naming the option, the host's URI, the version it has and the
    version needed. Combinations that never work (V(zlib) or V(zstd) without O(parallel_connections), or with
    V(xbzrle) or V(mt)) are refused before any connection.
  - Only one run migrates a given domain at a time on the machine that runs the module (an C(flock) on
    C(/run/lock/virtops-migrate-<hash of the UUID>.lock), released when the process ends however it ends). A
    second run fails at once with C(error.kind) C(in_progress) and touches nothing; in check mode it only warns.
  - A run on another machine whose migrate call libvirt refuses because a job already holds the domain fails
    the same way and leaves that job alone (it is not this run's to abort).
seealso:
  - module: virtops.migration.migration_job
  - name: virsh migrate
    description: The options this module mirrors.
    link: https://www.libvirt.org/manpages/virsh.html#migrate
"""

EXAMPLES = r"""
- name: Move vm1 from hv1 to hv2 over TLS, persistent there, undefined on hv1
  virtops.migration.migrate:
    name: vm1
    dest_uri: qemu+tls://hv2.example.com/system
  delegate_to: hv1.example.com

- name: Migrate with an encrypted data stream on a dedicated network, bounded in time
  virtops.migration.migrate:
    uuid: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10
    dest_uri: qemu+tls://hv2.example.com/system
    tls: true
    migrate_uri: tcp://10.10.0.2
    tls_destination: hv2.example.com
    bandwidth: 1000
    max_downtime: 300
    timeout: 900
    convergence:
      completion_timeout_per_gib: 150
      progress_timeout: 60
      on_timeout: abort

- name: A busy guest - allow post-copy when pre-copy does not converge
  virtops.migration.migrate:
    name: db1
    dest_uri: qemu+tls://hv3.example.com/system
    auto_converge: true
    post_copy: true
    convergence:
      on_timeout: postcopy

- name: Tunnelled through libvirtd, managed peer-to-peer
  virtops.migration.migrate:
    name: vm2
    dest_uri: qemu+ssh://root@hv2.example.com/system
    tunnelled: true

- name: Managed direct migration of a guest with a local disk, copying the disk
  virtops.migration.migrate:
    name: scratch1
    dest_uri: qemu+tls://hv2.example.com/system
    p2p: false
    copy_storage: all
    migrate_disks: [vda]

- name: Move the definition of a stopped guest (offline migration)
  virtops.migration.migrate:
    name: template1
    dest_uri: qemu+tls://hv2.example.com/system
    live: false

- name: Show the plan only
  virtops.migration.migrate:
    name: vm1
    dest_uri: qemu+tls://hv2.example.com/system
  check_mode: true
  diff: true
  register: plan
"""

RETURN = r"""
run_id:
  description: This run's id (UTC time and a random part); the audit log's record of the run carries it.
  returned: always
  type: str
  sample: 20261201T143901Z-1a2b3c4d
audit_log:
  description:
    - The audit log this run's record was appended to (see O(audit_log)).
    - V(null) when none was written (the log is off, check mode, nothing changed, a refusal before anything was
      tried, or the log could not be written, which is a warning).
  returned: always
  type: str
  sample: /var/log/virtops-migration/audit.jsonl
action:
  description: What was (or, in check mode, would be) done, as C(+)-joined actions, or V(none).
  returned: success
  type: str
  sample: migrate
actions:
  description:
    - The ordered actions. Possible values are V(migrate), V(resume_source), V(migrate_paused),
      V(migrate_offline), V(postcopy_resume), V(define_on_destination) and V(undefine_source).
  returned: success
  type: list
  elements: str
  sample: [resume_source, migrate]
explanation:
  description: Why, in words, from the reconciliation table.
  returned: success
  type: str
  sample: "running on source only: live migration"
domain:
  description: The domain's name.
  returned: success
  type: str
  sample: vm1
uuid:
  description: The domain's UUID.
  returned: success
  type: str
  sample: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10
source:
  description: The source URI.
  returned: always
  type: str
  sample: qemu:///system
destination:
  description: The destination URI.
  returned: always
  type: str
  sample: qemu+tls://hv2.example.com/system
host_uuids:
  description:
    - The host UUID libvirt reports on each side (C(source), C(destination)), compared before the domain is looked
      up. One UUID on both sides is refused as the same host.
    - A side is null when libvirt would not tell; then two active copies are not proven to be on two hosts.
  returned: success
  type: dict
  sample: {source: 6f1c0d2e-3b5e-5e0a-9a53-6c6962766901, destination: 6f1c0d2e-3b5e-5e0a-9a53-6c6962766902}
flags:
  description: Names of the C(VIR_MIGRATE_*) flags used (or planned). Empty when nothing migrates.
  returned: success
  type: list
  elements: str
  sample: [VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_PERSIST_DEST, VIR_MIGRATE_UNDEFINE_SOURCE]
flags_value:
  description: The same flags as an integer.
  returned: success
  type: int
  sample: 27
params:
  description:
    - The typed migration parameters used (or planned), by libvirt name.
    - XML documents are summarized by size and digest, never returned (they can hold secrets).
  returned: success
  type: dict
  sample:
    persistent_xml: "<2481 bytes of domain XML, sha256 1f0c9a3b5e77d2aa...>"
    bandwidth: 1000
copied_disks:
  description: Disk targets sent as C(migrate_disks) for a storage copy.
  returned: success
  type: list
  elements: str
  sample: [vda]
preflight:
  description:
    - Each preflight check with its status (V(passed), V(failed), V(warning) or V(skipped)) and message.
    - Empty when nothing migrates.
  returned: success, and on preflight failure
  type: list
  elements: dict
  sample:
    - {name: cpu, status: passed, message: "the destination can run the guest CPU (...)"}
    - {name: storage, status: passed, message: "vda network disk (protocol nfs)"}
    - {name: throughput, status: passed, message: "source qemu:///system: libvirt 9.0.0, QEMU 7.2.0; destination
       qemu+tls://hv2.example.com/system: libvirt 9.0.0, QEMU 7.2.0; both meet parallel_connections (libvirt >= 5.2.0,
       QEMU >= 4.0.0)"}
timings:
  description: Seconds spent per phase (validate, connect, lookup, reconcile, preflight, migrate, verify, total).
  returned: always
  type: dict
  sample: {validate: 0.001, connect: 0.041, lookup: 0.004, reconcile: 0.0, preflight: 0.02, migrate: 5.31,
           verify: 0.003, total: 5.38}
stats:
  description:
    - libvirt's statistics of the completed migration job (C(virDomainGetJobStats) with
      C(VIR_DOMAIN_JOB_STATS_COMPLETED)), from whichever host still has them. Times are in
      milliseconds and sizes in bytes.
    - Keys are libvirt's own, for example C(time_elapsed), C(downtime), C(setup_time), C(data_total),
      C(data_processed), C(data_remaining), C(memory_iteration), C(memory_bps) and C(memory_dirty_rate)
      (pages per second). The exact set depends on the libvirt and QEMU versions.
    - C(job_type) (V(completed) here) and C(operation) (V(migration_out) or V(migration_in)) are libvirt's
      codes as names, C(active) says whether the job still runs, and C(memory_dirty_rate_bytes) is the
      dirty rate in bytes per second. M(virtops.migration.migration_job) returns the same keys.
    - Empty when nothing migrated, or when libvirt kept them on neither host, as after a post-copy migration that
      undefined the source (O(undefine_source=true)); a warning then says so and RV(phases) still gives the
      time in each phase.
  returned: success
  type: dict
  sample: {active: false, job_type: completed, operation: migration_in, time_elapsed: 5123, downtime: 42,
           setup_time: 17, data_total: 1073741824, data_processed: 1100000000, data_remaining: 0,
           memory_iteration: 3}
phases:
  description:
    - How the live migration's time divided between pre-copy and post-copy, in seconds, as this run's monitor saw
      it. C(postcopy) tells whether the migration switched to post-copy (by the policy, or by
      M(virtops.migration.migration_job) while it ran); C(postcopy_seconds) is null when it did not.
    - Empty when no live migration ran (nothing to do, check mode, offline migration).
  returned: success
  type: dict
  sample: {precopy_seconds: 9.52, postcopy_seconds: 6.08, postcopy: true}
policy_actions:
  description:
    - Every action of the convergence policy, with its time in seconds since the job started, the value,
      the reason and the result. Possible actions are V(set_downtime), V(abort), V(postcopy),
      V(suspend) and V(note).
  returned: success, and on migration failure
  type: list
  elements: dict
  sample:
    - {at: 0.0, action: set_downtime, value: 50, reason: downtime ramp step 0/10, result: ok}
    - {at: 150.0, action: abort, value: null, reason: "completion timeout of 150s (150s per GiB of RAM) reached",
       result: ok}
recovery:
  description: What the module did to recover (resume, abort, destination cleanup, define after a persist failure).
  returned: success, and on migration failure
  type: list
  elements: str
  sample: [destroyed the half-made domain on the destination]
unreachable:
  description:
    - The sides (V(source), V(destination)) that could not be checked after a failed migration, because their
      connection was lost and could not be reopened, or because they did not answer within the recovery's
      deadlines (see O(timeout)). Their state is unknown (C(state=unknown) in RV(placement)) and nothing was
      changed there; empty when both were checked.
  returned: on migration failure
  type: list
  elements: str
  sample: [destination]
warnings:
  description: Things worth knowing that did not stop the run (also emitted as Ansible warnings).
  returned: always
  type: list
  elements: str
  sample: ["preflight cpu: host-passthrough CPU cannot be compared"]
placement:
  description:
    - Where the domain is, before and after (in check mode, the predicted after).
    - Each side holds C(present), C(state) (V(running), V(paused), V(shutoff), V(other) or null) and
      C(persistent).
    - On a migration failure, a side that could not be checked (see RV(unreachable)) has C(state=unknown),
      and C(present) and C(persistent) null.
  returned: success, and on migration failure (C(after) side only, as RV(placement))
  type: dict
  sample:
    before: {source: {present: true, state: running, persistent: true},
             destination: {present: false, state: null, persistent: false}}
    after: {source: {present: false, state: null, persistent: false},
            destination: {present: true, state: running, persistent: true}}
check_mode:
  description: Whether this was a check-mode run (nothing changed).
  returned: success
  type: bool
  sample: false
error:
  description: The failure, broken down (kind, operation, message, domain, URIs, libvirt's text and error code, hint).
  returned: failure
  type: dict
  sample: {kind: preflight, operation: preflight, message: "memory: destination has 512 MiB available, the guest
           needs 2048 MiB", domain: vm1, source_uri: "qemu:///system", dest_uri: "qemu+tls://hv2/system",
           libvirt_error: null, libvirt_error_code: null, hint: "fix the destination, or skip a check you know is
           wrong with preflight_skip"}
last_job_stats:
  description: The last live job statistics seen before a failed migration ended, with the keys of RV(stats).
  returned: on migration failure
  type: dict
  sample: {active: true, job_type: unbounded, operation: migration_out, data_remaining: 524288000,
           memory_iteration: 12, memory_dirty_rate: 25000}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    new_run_id,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.results import (
    emit_warnings,
    placement_diff,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LIBVIRT_LIBRARY_NAME,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.argspec import (
    MIGRATE_REQUIRED_ONE_OF,
    migrate_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.progress import (
    run_ending_progress,
    validate_progress_interval,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.record import (
    run_recorded,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=migrate_argument_spec(),
        required_one_of=MIGRATE_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib(LIBVIRT_LIBRARY_NAME), exception=LIBVIRT_IMPORT_ERROR)
    try:
        request = MigrationRequest.from_params(module.params)
        interval = validate_progress_interval(module.params["progress_interval"])
        progress_path = None if module.check_mode else module.params["progress_path"]
        environment = MigrationEnvironment(progress_path=progress_path, progress_interval=interval)
        trail = AuditTrail(module.params["audit_log"], new_run_id())
        result = run_ending_progress(progress_path, request.uri, lambda: run_recorded(
            request, module.check_mode, trail, lambda req, check: run_migration(req, check, environment)))
    except MigrationError as error:
        failure = emit_warnings(module, error.to_result())
        module.fail_json(msg=str(error), source=module.params["uri"], destination=module.params["dest_uri"],
                         **failure)
    emit_warnings(module, result)
    if module._diff:
        result["diff"] = placement_diff(result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
