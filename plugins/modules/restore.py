# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: restore
short_description: Move the guests of a libvirt/KVM hypervisor back once it is out of maintenance
version_added: 2.0.0
description:
  - Finds, on the O(search) hosts, every guest whose origin (recorded in the guest's own libvirt metadata by the
    evacuation that moved it, so it travels with the guest and survives the loss of the controller) names the
    restored host, and migrates each one back to it. Running guests migrate live, stopped persistent guests
    offline.
  - "The origin names the host and its host UUID. A guest whose origin names the restored host by name (a short
    name matches the full one) but with another host UUID left a host that is gone (reinstalled or replaced
    under the same name): it stays where it is and is reported V(left), with both UUIDs."
  - Each guest is migrated by the code path of M(virtops.migration.migrate), with the same options (transport,
    TLS, persistence, tuning, convergence policy, preflight checks), and is idempotent by UUID. Once a guest is
    home, its origin record is removed from its metadata.
  - "Placement is the evacuation's, with the restored host as the only destination: a running guest goes home
    when the restored host can run its CPU and its memory fits in what is left there (free plus reclaimable
    memory, minus O(memory_reserve_mib), minus the guests already planned there), largest first. A guest that
    does not fit stays where it is and is reported V(unplaceable), with the numbers."
  - The restored host must be out of maintenance; a restore to a host named in O(maintenance_hosts) is refused
    before anything moves.
  - A restore takes the same lock as an evacuation of the same O(uri) on the machine that runs the module, so a
    restore and an evacuation of one host never run at once.
  - At most O(max_parallel) migrations run at once, and at most O(max_parallel_per_destination) into the
    restored host. The module fails when a guest that belongs home did not get there (failed, does not fit, or
    not started); the full result, with the report, is returned with the failure.
  - The operator stops a run with a cancel request, a file on the restored host (O(cancel_path)).
author:
  - virtops.migration maintainers (@virtops)
requirements:
  - libvirt-python (Debian C(python3-libvirt)) on the host that runs the module
extends_documentation_fragment:
  - virtops.migration._migration_tuning
  - virtops.migration._audit
  - virtops.migration._cancel_request
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode finds the guests, places them, and runs the migrate module's checks for each one. It returns
        what would move (RV(plan), RV(vms)) and changes nothing (no origin record is cleared, no file written).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff maps each guest to its host before and after (in check mode, the planned host).
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - The origin record stays until a guest is home, so a re-run after an interruption moves only what is left
        and finishes a move caught half-way. A guest already home only has its origin record cleared, once.
options:
  uri:
    description:
      - libvirt connection URI of the host to restore, as the module opens it.
      - The default, V(qemu:///system), means the task runs on the restored host (delegate it there), like
        M(virtops.migration.evacuate) runs on the host it empties.
    type: str
    default: qemu:///system
  dest_uri:
    description:
      - "The restored host's URI as the O(search) hosts reach it, for example V(qemu+tls://hv1.example.com/system):
        the destination of every migration."
      - Required when O(uri) is local; defaults to O(uri) when O(uri) is remote.
    type: str
  migrate_uri:
    description:
      - The migration data stream's URI on the restored host, as in M(virtops.migration.migrate).
    type: str
  tls_destination:
    description:
      - The name the migration's TLS certificate check expects for the restored host, as in M(virtops.migration.migrate).
    type: str
  search:
    description:
      - The hosts to look for the restored host's guests on (where the evacuation sent them). Each entry is a
        libvirt URI (its host part is the host's name) or a dictionary with C(uri) and optionally C(name).
      - An entry that is the restored host itself is ignored (so a whole inventory group can be passed). An
        unreachable one is reported in RV(search) and a warning; the guests there, if any, stay.
    type: list
    elements: raw
    required: true
  maintenance_hosts:
    description:
      - Names of hosts in maintenance. When the restored host is one of them the restore is refused before
        anything moves. A short name matches the fully qualified one.
    type: list
    elements: str
    default: []
  labels:
    description:
      - "The restored host's placement labels, C({label: value}) (the evacuation's O(virtops.migration.evacuate#module:host_labels)
        entry for this host, e.g. from its inventory variable C(virtops_host_labels)). A guest whose constraints require
        labels the restored host does not carry stays where it is and is reported V(unplaceable)."
    type: dict
    default: {}
  memory_reserve_mib:
    description:
      - Memory in MiB kept free on the restored host for the host itself; placement never plans beyond it.
    type: int
    default: 512
  max_parallel:
    description:
      - Most migrations running at once.
    type: int
    default: 2
  max_parallel_per_destination:
    description:
      - Most migrations running at once into the restored host (its only destination, so this bounds the run too).
    type: int
    default: 1
  on_failure:
    description:
      - V(continue) keeps migrating the other guests when one fails or does not fit.
      - V(stop) starts no new migration after a failure; when a guest does not fit, nothing is moved at all.
    type: str
    choices: [continue, stop]
    default: continue
  progress_path:
    description:
      - A JSON file rewritten (atomically) every O(progress_interval) seconds while guests migrate, of the same
        shape as M(virtops.migration.evacuate)'s (each guest's state and percentage, one line in C(line),
        C(finished)). The percentage comes from the job statistics on the host each guest comes from.
        Not written in check mode.
    type: path
  progress_interval:
    description:
      - Seconds between two updates of O(progress_path).
    type: float
    default: 1
  lock_timeout:
    description:
      - A run started while a restore or an evacuation of the same O(uri) holds the lock waits up to this many
        seconds for it to end, then moves only what is left. V(0) fails at once. Check mode does not wait.
    type: float
    default: 3600
  report_path:
    description:
      - Where to write the report (atomically, mode 0640). It lists each guest with the host it comes from, the
        restored host, result, time, downtime and data sent. Not written in check mode.
    type: path
  report_format:
    description:
      - V(json) writes RV(report) as JSON. V(text) writes the readable table of RV(report_text).
    type: str
    choices: [json, text]
    default: json
  live:
    description:
      - Must stay V(true). Running guests always migrate live and stopped guests offline.
    type: bool
    default: true
notes:
  - Runs on the restored host by default (O(uri=qemu:///system), with O(dest_uri) naming it for the others).
  - The playbook C(virtops.migration.restore) runs this module with the other hypervisors of the inventory group
    as O(search), the hosts that carry the maintenance mark as O(maintenance_hosts), and shows the progress.
seealso:
  - module: virtops.migration.evacuate
  - module: virtops.migration.migrate
"""

EXAMPLES = r"""
- name: Show which guests would come back to hv1 (check mode)
  virtops.migration.restore:
    dest_uri: qemu+tls://hv1.example.com/system
    search:
      - qemu+tls://hv2.example.com/system
      - qemu+tls://hv3.example.com/system
  delegate_to: hv1.example.com
  check_mode: true
  diff: true

- name: Bring the guests of hv1 home, refused while hv1 is in maintenance
  virtops.migration.restore:
    dest_uri: qemu+tls://hv1.example.com/system
    search:
      - {name: hv2, uri: qemu+tls://hv2.example.com/system}
      - {name: hv3, uri: qemu+tls://hv3.example.com/system}
    maintenance_hosts: "{{ hosts_in_maintenance }}"
    tls: true
    memory_reserve_mib: 1024
    report_path: /var/log/virtops/restore-hv1.txt
    report_format: text
    audit_log: /var/log/virtops-migration/audit.jsonl
  delegate_to: hv1.example.com
  register: restore

- name: Show the report
  ansible.builtin.debug:
    msg: "{{ restore.report_lines }}"
"""

RETURN = r"""
changed:
  description: Whether any guest was moved or had its origin record cleared (or, in check mode, would).
  returned: always
  type: bool
  sample: true
msg:
  description: What happened in one sentence, or why a guest did not come home.
  returned: always
  type: str
  sample: "3 guest(s) handled"
cancelled:
  description:
    - The operator's cancel request (O(cancel_path)) stopped the run. RV(msg) names the request and when it was
      written, and counts the guests moved, the migrations aborted and the guests not started.
  returned: when the run was cancelled
  type: bool
  sample: true
run_id:
  description: This run's identifier, in the report and in every audit log line of the run.
  returned: success, and when a guest did not come home
  type: str
  sample: 20261201T143901Z-1a2b3c4d
audit_log:
  description:
    - The audit log the run's records were appended to (see O(audit_log)). It holds one record per guest
      move tried (action C(restore); its C(started_at) and C(finished_at) bound the time the guest could
      be on both hosts; C(source) and C(destination) are host names) and one summary record (no guest).
    - Null when none was written (the log is off, check mode, or it could not be written, which is a warning).
  returned: success, and when a guest did not come home
  type: str
  sample: /var/log/virtops-migration/audit.jsonl
host:
  description: The restored host, its name as libvirt reports it, its URIs and its host UUID.
  returned: success, and when a guest did not come home
  type: dict
  sample: {name: hv1, uri: "qemu:///system", dest_uri: "qemu+tls://hv1.example.com/system", host_uuid: "5f1c..."}
search:
  description: Each search host, the guests of the restored host found there, and why it was not searched (else null).
  returned: success, and when a guest did not come home
  type: list
  elements: dict
  sample: [{name: hv2, uri: "qemu+tls://hv2.example.com/system", excluded: null, guests: [web1, db1]}]
destinations:
  description: The restored host as placement measured it (one entry, the shape of M(virtops.migration.evacuate)'s).
  returned: success, and when a guest did not come home
  type: list
  elements: dict
  sample:
    - {name: hv1, uri: "qemu+tls://hv1.example.com/system", excluded: null, available_mib: 7680, reserve_mib: 512,
       usable_mib: 7168, planned: [db1, web1], planned_mib: 3072, left_after_mib: 4096}
plan:
  description: Each guest to bring home with the reason for the decision (null C(destination) when it does not fit).
  returned: success, and when a guest did not come home
  type: list
  elements: dict
  sample:
    - {name: db1, uuid: "1b4e...", state: running, persistent: true, memory_mib: 2048, mode: live,
       destination: hv1, dest_uri: "qemu+tls://hv1.example.com/system", pinned: false, reason: "2048 MiB, live; ..."}
vms:
  description:
    - One row per guest of the restored host. C(from) is where it was, C(to) the restored host (null when it
      stays). C(result) is V(migrated), V(finished) (an interrupted move finished), V(unchanged) (already home;
      its origin record cleared), V(left) (its origin is gone), V(unplaceable) (does not fit), V(failed),
      V(not_started), V(cancelled) (the operator's cancel request, see O(cancel_path), aborted its migration or
      kept it from starting; the guest stays where it was), or in check mode V(planned) and V(would_fail).
      C(details) holds the migrate result.
  returned: success, and when a guest did not come home
  type: list
  elements: dict
  sample:
    - {name: db1, uuid: "1b4e...", from: hv2, to: hv1, mode: live, memory_mib: 2048, result: migrated, changed: true,
       action: migrate, seconds: 12.4, downtime_ms: 38, data_sent_bytes: 2147483648, message: null,
       reason: "...", re_placed_from: [], pause_reason: null, details: {}}
summary:
  description: Counts per result, the number of changed guests, the number of problems and the total seconds.
  returned: success, and when a guest did not come home
  type: dict
  sample: {total: 3, by_result: {migrated: 2, left: 1}, changed: 2, problems: 0, seconds: 31.0}
report:
  description:
    - The report written to O(report_path) as JSON (RV(vms) without C(details), plus RV(summary)).
    - C(source_name) and C(source_uri) name the restored host.
  returned: success, and when a guest did not come home
  type: dict
  sample: {operation: Restore, run_id: 20261201T143901Z-1a2b3c4d, source_name: hv1, source_uri: "qemu:///system",
           check_mode: false, summary: {total: 1}, vms: []}
report_lines:
  description: The report table as lines (print it with M(ansible.builtin.debug)).
  returned: success, and when a guest did not come home
  type: list
  elements: str
  sample:
    - "VM   FROM  TO   MODE  RESULT    TIME    DOWNTIME  DATA SENT"
    - "---  ----  ---  ----  --------  ------  --------  ---------"
    - "db1  hv2   hv1  live  migrated  12.4 s  38 ms     2.0 GiB"
report_text:
  description: The readable report (heading, table, totals, messages), as written with O(report_format=text).
  returned: success, and when a guest did not come home
  type: str
  sample: "Restore of hv1 (qemu:///system)\n..."
report_path:
  description: Where the report was written (null when not asked, and nothing is written in check mode).
  returned: success, and when a guest did not come home
  type: str
  sample: /var/log/virtops/restore-hv1.json
progress_path:
  description: The progress file (null when not asked).
  returned: success, and when a guest did not come home
  type: str
  sample: /run/virtops/restore-progress.json
placement:
  description: Each guest's host before and after (in check mode, the planned host; a guest that stays keeps its host).
  returned: success, and when a guest did not come home
  type: dict
  sample: {before: {db1: hv2, web1: hv3}, after: {db1: hv1, web1: hv1}}
check_mode:
  description: Whether this was a check-mode run (nothing changed).
  returned: success, and when a guest did not come home
  type: bool
  sample: false
error:
  description:
    - A failure before any guest was handled (bad options, restored host in maintenance or unreachable).
    - C(kind) V(cancelled) is a run refused because the operator's cancel request stands (O(cancel_path)).
  returned: on such a failure
  type: dict
  sample: {kind: validation, operation: validate options, message: "hv1 is still in maintenance (maintenance_hosts): nothing was moved",
           domain: null, source_uri: "qemu:///system", dest_uri: null, libvirt_error: null, libvirt_error_code: null, hint: null}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.virtops.migration.plugins.module_utils._common.results import (
    finish_placement_run,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LIBVIRT_LIBRARY_NAME,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.argspec import (
    restore_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.options import (
    RestoreOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.run import (
    run_restore,
)


def main() -> None:
    module = AnsibleModule(argument_spec=restore_argument_spec(), supports_check_mode=True)
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib(LIBVIRT_LIBRARY_NAME), exception=LIBVIRT_IMPORT_ERROR)
    finish_placement_run(module, lambda: run_restore(RestoreOptions.from_params(module.params), check_mode=module.check_mode))


if __name__ == "__main__":
    main()
