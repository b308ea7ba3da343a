# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_job
short_description: Watch and steer a running libvirt migration
version_added: 1.0.0
description:
  - The monitor commands of a live migration, for a domain that is migrating away from the host at O(uri).
  - V(info) returns the live job statistics (QEMU C(info migrate)). V(abort) cancels the job (C(migrate_cancel)),
    waits until it is gone and reports where the domain runs. V(tune) sets the maximum downtime and the bandwidth
    (C(migrate_set_downtime), C(migrate_set_speed)). V(postcopy) switches the migration to post-copy.
  - Values set with V(tune) are read back from libvirt (C(virDomainMigrateGetMaxDowntime),
    C(virDomainMigrateGetMaxSpeed)) and returned in RV(settings).
author:
  - virtops.migration maintainers (@virtops)
requirements:
  - libvirt-python (Debian C(python3-libvirt)) on the host that runs the module
extends_documentation_fragment:
  - virtops.migration._connection.source
  - virtops.migration._audit
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode nothing is sent to libvirt; C(changed) says whether the operation would act.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details:
      - Only V(tune) returns a diff (max downtime and bandwidth before and after).
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - V(tune) compares with the values read from libvirt and only sets what differs. V(abort) with no job
        running and V(postcopy) once in post-copy report no change. V(info) never changes anything.
      - A running migration moves on between two runs, so the job statistics differ from one run to the next.
options:
  name:
    description: Name of the migrating domain. One of O(name) or O(uuid) is required.
    type: str
  uuid:
    description: UUID of the migrating domain.
    type: str
  dest_uri:
    description:
      - Destination URI. Optional; with it, V(abort) also reports whether the domain exists on the destination.
    type: str
  operation:
    description:
      - V(info) reads the live job statistics; it changes nothing.
      - V(abort) aborts the job (C(virDomainAbortJob)) and returns once it is gone (O(wait_timeout)). Refused once
        the migration is in post-copy, because the guest would be lost.
      - V(tune) sets O(max_downtime) and/or O(bandwidth).
      - V(postcopy) switches to post-copy (C(virDomainMigrateStartPostCopy)); the migration must have been started
        with C(post_copy=true). It returns once the domain shows the post-copy state (QEMU reports it after the call
        returns) or the job ended, at most O(wait_timeout) seconds later.
    type: str
    choices: [info, abort, tune, postcopy]
    default: info
  max_downtime:
    description: Maximum tolerable downtime in milliseconds (C(virDomainMigrateSetMaxDowntime)). Only with V(tune).
    type: int
  bandwidth:
    description: Maximum migration bandwidth in MiB/s (C(virDomainMigrateSetMaxSpeed)). Only with V(tune).
    type: int
  wait_timeout:
    description: Seconds V(abort) waits for the job to disappear, and V(postcopy) for the domain to show the switch,
      before failing.
    type: float
    default: 60
seealso:
  - module: virtops.migration.migrate
"""

EXAMPLES = r"""
- name: Live statistics of vm1's migration
  virtops.migration.migration_job:
    name: vm1
  delegate_to: hv1.example.com
  register: job

- name: Allow more downtime and cap the bandwidth
  virtops.migration.migration_job:
    name: vm1
    operation: tune
    max_downtime: 500
    bandwidth: 800

- name: Give up on the migration; vm1 keeps running on hv1
  virtops.migration.migration_job:
    name: vm1
    operation: abort
    dest_uri: qemu+tls://hv2.example.com/system

- name: Force completion by switching to post-copy
  virtops.migration.migration_job:
    name: db1
    operation: postcopy
"""

RETURN = r"""
operation:
  description: The operation run.
  returned: success
  type: str
  sample: info
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
job:
  description:
    - The job statistics (C(virDomainGetJobStats)) after the operation, under libvirt's own key names, as
      M(virtops.migration.migrate) returns them in its C(stats). Times are in milliseconds, sizes in bytes
      and rates in bytes per second; C(memory_dirty_rate) is in pages per second. The exact set depends on
      the libvirt and QEMU versions.
    - C(active) says whether a job runs. C(job_type) is V(none), V(bounded), V(unbounded), V(completed),
      V(failed) or V(cancelled). C(operation) is V(migration_out), V(migration_in) and so on.
    - The statistics cover elapsed and remaining time (C(time_elapsed), C(time_remaining)), data and memory
      totals (processed and remaining), disk progress, C(memory_bps) and C(memory_iteration).
    - The dirty rate is given twice, in pages per second (C(memory_dirty_rate)) and in bytes per second
      (C(memory_dirty_rate_bytes)). C(downtime) is the downtime QEMU currently expects.
  returned: success
  type: dict
  sample: {active: true, job_type: unbounded, operation: migration_out, time_elapsed: 12000,
           data_total: 2147483648, data_processed: 1800000000, data_remaining: 400000000, memory_iteration: 4,
           memory_dirty_rate: 25000, memory_page_size: 4096, memory_dirty_rate_bytes: 102400000,
           memory_bps: 117000000, downtime: 310}
last_job:
  description: The job statistics just before the abort, with the keys of RV(job).
  returned: when O(operation=abort) aborted a job
  type: dict
  sample: {active: true, job_type: unbounded, operation: migration_out, data_remaining: 400000000}
settings:
  description: Max downtime (ms) and bandwidth (MiB/s) as read back from libvirt (null when it cannot tell).
  returned: success
  type: dict
  sample: {max_downtime: 500, bandwidth: 800}
postcopy:
  description: Whether the domain is in a post-copy phase (running or paused for post-copy, or post-copy failed).
  returned: success
  type: bool
  sample: false
running_on:
  description:
    - Where the domain is after an abort. C(source) and C(destination) hold C(present), C(state) and
      C(persistent); C(destination) is null without O(dest_uri).
    - C(hosts) lists the sides where it is active.
  returned: when O(operation=abort)
  type: dict
  sample: {source: {present: true, state: running, persistent: true},
           destination: {present: false, state: null, persistent: false}, hosts: [source]}
message:
  description: Explanation when there was nothing to do, or when the migration ended right after the switch to
    post-copy, before the domain showed it.
  returned: when O(operation=abort) found no job; when O(operation=postcopy) saw the job end first
  type: str
  sample: no migration job was running
run_id:
  description: This run's id (UTC time and a random part); the audit log's record of the run carries it.
  returned: always
  type: str
  sample: 20261201T143901Z-1a2b3c4d
audit_log:
  description:
    - The audit log this run's record was appended to (see O(audit_log)). V(abort), V(postcopy) and V(tune) that
      changed something or failed trying are recorded, their action the operation; V(info) never is.
    - V(null) when none was written (the log is off, check mode, nothing changed, or the log could not be
      written, which is a warning).
  returned: always
  type: str
  sample: /var/log/virtops-migration/audit.jsonl
error:
  description: The failure, broken down (kind, operation, message, domain, URIs, libvirt's text and error code, hint).
  returned: failure
  type: dict
  sample: {kind: job, operation: switch to post-copy, message: libvirt refused the operation, domain: vm1,
           source_uri: "qemu:///system", dest_uri: null, libvirt_error: "Requested operation is not valid",
           libvirt_error_code: 55, hint: "the migration must have been started with post_copy: true"}
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
)
from ansible_collections.virtops.migration.plugins.module_utils._job.argspec import (
    MIGRATION_JOB_REQUIRED_ONE_OF,
    migration_job_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.operations import (
    JobController,
    JobRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.record import (
    run_recorded_job,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LIBVIRT_LIBRARY_NAME,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=migration_job_argument_spec(),
        required_one_of=MIGRATION_JOB_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib(LIBVIRT_LIBRARY_NAME), exception=LIBVIRT_IMPORT_ERROR)
    try:
        request = JobRequest.from_params(module.params)
        trail = AuditTrail(module.params["audit_log"], new_run_id())
        result = run_recorded_job(request, module.check_mode, trail,
                                  JobController(request, check_mode=module.check_mode).run)
    except MigrationError as error:
        failure = emit_warnings(module, error.to_result())
        module.fail_json(msg=str(error), **failure)
    emit_warnings(module, result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
