# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuate
short_description: Empty a libvirt/KVM hypervisor by migrating its guests to other hosts
version_added: 1.0.0
description:
  - Moves every selected guest of the source hypervisor (O(uri)) to one of the O(destinations) and waits
    for each migration. Running guests migrate live. Stopped persistent guests are migrated offline
    (only their definition moves) or left where they are (O(stopped_guests)).
  - Each guest is migrated by the code path of M(virtops.migration.migrate), with the same options
    (transport, TLS, persistence, tuning, convergence policy, preflight checks). A guest's migration is
    idempotent by UUID and recovers from failures the same way.
  - "Placement. A destination is never chosen when it is listed in O(maintenance_hosts), when it cannot be
    reached, or when it is the source host. Guests are placed largest first (memory), running ones before
    stopped ones. A destination can take a running guest when its hypervisor can run the guest's CPU
    (C(virConnectCompareHypervisorCPU)) and the guest's memory fits in what is left there: free plus
    reclaimable memory, minus O(memory_reserve_mib), minus the memory of the guests already planned there.
    Among the destinations that can take it, a running guest goes where the most memory is left after placing
    it, then where the fewest guests are planned, then by name. A stopped guest needs no memory now; it goes
    where the fewest guests are planned, then where the most memory is left, then by name. The plan is
    deterministic."
  - Placement also honours each guest's constraints (anti-affinity, affinity, pinning, priority, required host
    labels), from its metadata and O(constraints); see O(constraints).
  - A guest that an earlier, interrupted run already started moving (it is present on a destination)
    is pinned to that destination and the move is finished there, never sent to a third host. A guest
    present on two destinations is reported and not touched.
  - At most O(max_parallel) migrations run at once, and at most O(max_parallel_per_destination) into one
    destination. Each migration runs in its own thread with its own libvirt connections.
  - When a guest fits nowhere, check mode reports it and fails. In a real run, O(on_failure=continue) moves
    the others and then fails, naming it. O(on_failure=stop) moves nothing.
  - The module fails when the host was not emptied (a guest failed, fits nowhere or was not started). The
    full result, with the report, is returned with the failure, and the report file is written.
  - The operator stops a run with a cancel request, a file on the source host (O(cancel_path)).
author:
  - virtops.migration maintainers (@virtops)
requirements:
  - libvirt-python (Debian C(python3-libvirt)) on the host that runs the module
extends_documentation_fragment:
  - virtops.migration._connection.SOURCE
  - virtops.migration._migration_tuning
  - virtops.migration._audit
  - virtops.migration._cancel_request
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode discovers the guests, places them, and runs the migrate module's checks for each one
        (reconciliation, preflight). It returns the plan (RV(plan)), with each guest's destination and the reason.
        It fails with a clear message when a guest fits nowhere or would fail its preflight checks.
        It changes nothing and writes neither the progress nor the report file.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff maps each guest to its host before and after (in check mode, the planned host).
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - An empty source host reports C(changed=false). A re-run after an interruption moves only what is left.
options:
  destinations:
    description:
      - The hosts the guests may go to. Each entry is a libvirt URI (its host part is the destination's name),
        or a dictionary with C(uri) and optionally C(name), C(migrate_uri) and C(tls_destination). The last two are
        used for the guests sent there, like the migrate module's options of the same names.
      - An entry that is the source host itself is ignored (so a whole inventory group can be passed).
      - The runbook C(virtops.migration.evacuate) passes the other hypervisors of the inventory group.
    type: list
    elements: raw
    required: true
  include:
    description:
      - Only guests whose name matches one of these shell patterns (C(fnmatch), case-sensitive) are moved.
    type: list
    elements: str
    default: ['*']
  exclude:
    description:
      - Guests whose name matches one of these shell patterns are not moved (applied after O(include)).
        They are listed in RV(filtered_out).
    type: list
    elements: str
    default: []
  constraints:
    description:
      - "Placement constraints by guest name, beside those each guest carries in its own metadata (set with
        M(virtops.migration.guest_placement)). Keys (all optional): C(anti_affinity), a list of groups
        C({name, guests, mode}) whose members never share a host (C(mode) V(hard), the default) or share one only
        when no other host can take them, with a warning (V(soft)); C(affinity), a list of groups C({name, guests})
        kept on one host (placed together, largest group first); C(pinned), a list of C({guest, policy}): the guest
        does not move, and C(policy) says what happens to it: V(skip) (the default: stays, reported V(left)),
        V(shutdown) (stays, reported V(left), to be shut down for the maintenance and started again once its
        host is back), V(block) (the whole evacuation is refused); C(priority), a dict guest -> integer (higher
        is placed and moved first); C(require_labels), a dict guest -> C({label: value}) every destination must
        carry (see O(host_labels))."
      - "Which wins: for the pin policy, the priority and the required labels, this option wins over the guest's
        metadata; groups are the union of both (a group named in both takes this option's mode). Guests already
        on a destination count for its groups."
      - "A set no placement can satisfy is refused before anything moves (check mode too), naming each constraint
        and its guests: a pin policy V(block); a hard anti-affinity group with more members to place than usable
        destinations without a member; an affinity group whose members fit together on no destination, require
        different label values, or are split by a pinned member; a guest whose required labels no usable
        destination carries; two guests in one affinity group and one hard anti-affinity group."
    type: dict
    default: {}
  host_labels:
    description:
      - "Labels of the destinations, a dict host name -> C({label: value}), e.g. from inventory variables
        (C(rack), C(failure_domain)). A short name matches the fully qualified one. Only guests that require
        labels (O(constraints), or their metadata) look at them."
    type: dict
    default: {}
  stopped_guests:
    description:
      - What to do with stopped (shut off) persistent guests.
      - V(migrate) moves their definition to a destination (offline migration, C(VIR_MIGRATE_OFFLINE)).
        Options that only make sense for a running guest (O(post_copy), O(auto_converge)) are not applied to them.
      - V(leave) leaves them defined on the source; they are reported with the result V(left).
    type: str
    choices: [migrate, leave]
    default: migrate
  maintenance_hosts:
    description:
      - Names of hosts in maintenance; they are never chosen as a destination. A short name matches the
        fully qualified one. A guest already present on such a host (an interrupted run) is still finished there.
      - The runbook fills it from its maintenance marker, the file C(/etc/virtops/maintenance) on each hypervisor
        (libvirt has no host-wide metadata a module could read).
    type: list
    elements: str
    default: []
  memory_reserve_mib:
    description:
      - Memory in MiB kept free on every destination for the host itself; placement never plans beyond it.
    type: int
    default: 512
  max_parallel:
    description:
      - Most migrations running at once out of the source host (oVirt and KubeVirt default to 2 outgoing
        migrations per host).
    type: int
    default: 2
  max_parallel_per_destination:
    description:
      - Most migrations running at once into one destination.
    type: int
    default: 1
  on_failure:
    description:
      - V(continue) keeps migrating the other guests when one fails or fits nowhere.
      - With V(continue), a destination found unreachable during the run (a connection to it refused, or lost
        during a migration and not reopened) takes no more guests; those planned for it are placed again on the
        other destinations by the same rules, or reported V(unplaceable). A guest whose run could not connect
        to it (nothing was touched) is placed again too; one whose migration was under way when the
        destination was lost stays where the recovery left it (on the source), reported V(failed).
      - V(stop) starts no new migration after a failure (those running finish); when a guest fits nowhere,
        nothing is moved at all.
    type: str
    choices: [continue, stop]
    default: continue
  plan_file:
    description:
      - "In check mode: the plan is written to this file (JSON, mode 0640, replaced atomically): C(schema_version),
        C(kind) V(evacuation), C(created), C(run_id), the C(source) host (name, URI, host UUID), the C(options)
        that shaped it (destinations, O(memory_reserve_mib), O(maintenance_hosts), O(include), O(exclude),
        O(stopped_guests)), each guest in C(guests) in the order the migrations start with its C(destination)
        (null: it fits nowhere) and C(reason), the guests that C(cannot_move) and those C(left) on the source,
        each with why, and each destination's memory before and after (C(destinations))."
      - "In a real run: the plan in this file is executed exactly: its destinations, in its order, never a fresh
        placement (and no guest is placed again when a destination is lost during the run). The cluster is
        discovered again first; when it drifted from the plan, nothing is moved and the module fails naming
        each drift: a guest added to or gone from the source, a guest's memory or mode (running or stopped)
        changed, a destination no longer given, newly excluded (O(maintenance_hosts), unreachable), whose CPU
        or free memory cannot take what the plan puts there now. Plan again, review, then run."
      - A plan made for another source host (URI, hostname or host UUID), of another C(schema_version) or
        C(kind), or not readable as a plan is refused before anything is touched.
      - A guest of the plan already on its planned destination (an earlier run of the same plan) is reported
        V(unchanged).
    type: path
  progress_path:
    description:
      - A JSON file rewritten (atomically) every O(progress_interval) seconds while guests migrate. It holds
        each guest's state (V(queued), V(migrating), then its result), its destination and the percentage of
        its migration. The percentage is computed as C((data_total - data_remaining) / data_total) of the live
        job statistics, and is 100 once done. A ready-made one-line summary is in the key C(line). C(finished)
        becomes V(true) when the run ends.
      - Meant to be read while the module runs with C(async), see the examples. Not written in check mode.
    type: path
  progress_interval:
    description:
      - Seconds between two updates of O(progress_path).
    type: float
    default: 1
  lock_timeout:
    description:
      - Only one evacuation of a source URI runs at a time on the machine that runs the module (an C(flock) on
        C(/run/lock/virtops-evacuate-<hash of uri>.lock), released when the process ends however it ends).
      - A run started while another one holds the lock waits up to this many seconds for it to end, reporting
        C(waiting) in O(progress_path), then moves only what is left. V(0) fails at once. This matters when
        a playbook running the module with C(async) was killed and is run again, since the first evacuation keeps
        running.
      - Check mode does not wait; it warns that the plan may change.
    type: float
    default: 3600
  report_path:
    description:
      - Where to write the report (atomically, mode 0640). It lists each guest with its source, destination, result,
        time, downtime and data sent, and ends with the run id and the time. Not written in check mode.
      - Each run keeps its own report; a later run never overwrites it. For a file name, the run's report is
        that name with the run id inserted before the extension (C(evacuate-hv1-20261201T143901Z-1a2b3c4d.txt)
        for C(evacuate-hv1.txt)), and the name itself becomes a symbolic link to the latest run's report. A
        regular file already there (from an earlier version) is kept, renamed with its time inserted.
      - For a directory (an existing one, or a path ending with C(/)), the run's report is
        C(evacuate-SOURCE-RUNID.txt) (or C(.json)) in it, and no link is made.
    type: path
  report_format:
    description:
      - V(json) writes RV(report) as JSON. V(text) writes the readable table of RV(report_text).
    type: str
    choices: [json, text]
    default: json
  live:
    description:
      - Must stay V(true). Running guests always migrate live and stopped guests offline (O(stopped_guests)).
    type: bool
    default: true
notes:
  - Runs on the source host by default (O(uri=qemu:///system)); use C(delegate_to) to run it there.
  - "Plan files: run once in check mode with O(plan_file) to write the plan, review it, then run without check
    mode with the same O(plan_file). The run refuses, before anything moves, when the cluster drifted from the
    plan, and otherwise executes exactly the plan, not a fresh placement. See the examples."
  - "Progress in ansible-playbook's normal output: a module cannot print while it runs. Run this module with
    C(async) and C(poll: 0), then read O(progress_path) with M(ansible.builtin.slurp) in a loop with
    C(loop_control.pause), C(loop_control.label) set to the file's C(line) key and
    C(loop_control.break_when) on its C(finished) key. Every poll prints one line with each migrating
    guest's percentage. Collect the result with M(ansible.builtin.async_status). See the examples."
  - Guests already migrated are not on the source any more, so a re-run only sees what is left. Guests kept
    defined on the source (O(undefine_source=false)) are seen again and reported V(unchanged).
  - "Origin: just before a guest moves, the source host's name and host UUID and the time are written into the
    guest's own metadata (the C(origin) of the element M(virtops.migration.guest_placement) manages), live and in
    its definition, so it travels with the guest and a restore finds its home without the controller. A guest that
    already holds an origin keeps it (an interrupted evacuation re-run, or a guest evacuated again before it was
    restored). Check mode writes nothing. When the record cannot be written the guest still moves, with a warning."
seealso:
  - module: virtops.migration.migrate
  - module: virtops.migration.migration_job
  - module: virtops.migration.guest_placement
"""

EXAMPLES = r"""
- name: Show where the guests of hv1 would go (check mode)
  virtops.migration.evacuate:
    destinations:
      - qemu+tls://hv2.example.com/system
      - qemu+tls://hv3.example.com/system
  delegate_to: hv1.example.com
  check_mode: true
  diff: true
  register: evacuation_plan

- name: Empty hv1, two migrations at a time, never onto a host in maintenance
  virtops.migration.evacuate:
    destinations:
      - {name: hv2, uri: qemu+tls://hv2.example.com/system, migrate_uri: tcp://10.10.0.2}
      - {name: hv3, uri: qemu+tls://hv3.example.com/system, migrate_uri: tcp://10.10.0.3}
    maintenance_hosts: [hv3]
    exclude: ['scratch-*']
    tls: true
    max_parallel: 2
    max_parallel_per_destination: 1
    memory_reserve_mib: 2048
    on_failure: continue
    convergence:
      completion_timeout_per_gib: 150
      on_timeout: abort
    report_path: /var/log/virtops/evacuate-hv1.txt
    report_format: text
  delegate_to: hv1.example.com

- name: Empty hv1 keeping the database replicas apart and the web pair together, in the same rack
  virtops.migration.evacuate:
    destinations: [qemu+tls://hv2.example.com/system, qemu+tls://hv3.example.com/system,
                   qemu+tls://hv4.example.com/system]
    constraints:
      anti_affinity:
        - {name: db, guests: [db1, db2, db3], mode: hard}
      affinity:
        - {name: web, guests: [web1, web2]}
      pinned:
        - {guest: license-server, policy: shutdown}
      priority: {db1: 10}
      require_labels:
        web1: {rack: r1}
    host_labels: "{{ dict(groups['hypervisors'] | zip(groups['hypervisors'] | map('extract', hostvars, 'virtops_host_labels'))) }}"
  delegate_to: hv1.example.com

# Plan to a file, review it, then execute exactly that plan.
- name: Write the plan for hv1 (check mode)
  virtops.migration.evacuate:
    destinations:
      - qemu+tls://hv2.example.com/system
      - qemu+tls://hv3.example.com/system
    plan_file: /var/lib/virtops/plan-hv1.json
  delegate_to: hv1.example.com
  check_mode: true

- name: Execute the plan (refused, with nothing moved, if the cluster drifted from it)
  virtops.migration.evacuate:
    destinations:
      - qemu+tls://hv2.example.com/system
      - qemu+tls://hv3.example.com/system
    plan_file: /var/lib/virtops/plan-hv1.json
  delegate_to: hv1.example.com

# Progress visible in the normal output: run in the background and poll the progress file.
- name: Remove the progress file of an earlier run
  ansible.builtin.file:
    path: /run/virtops/evacuate-progress.json
    state: absent
  delegate_to: hv1.example.com

- name: Evacuate hv1 in the background
  virtops.migration.evacuate:
    destinations: "{{ groups['hypervisors'] | difference(['hv1']) | map('regex_replace', '^(.*)$', 'qemu+tls://\\1/system') }}"
    progress_path: /run/virtops/evacuate-progress.json
    report_path: /var/log/virtops/evacuate-hv1.json
  delegate_to: hv1.example.com
  async: 7200
  poll: 0
  register: evacuation_job

- name: Evacuation progress
  ansible.builtin.slurp:
    src: /run/virtops/evacuate-progress.json
  delegate_to: hv1.example.com
  register: evacuation_progress
  failed_when: false
  loop: "{{ range(0, 7200 // 3) | list }}"
  loop_control:
    pause: 3
    label: "{{ (evacuation_progress.content | b64decode | from_json).line if evacuation_progress.content is defined else 'starting' }}"
    break_when:
      - evacuation_progress.content is defined
      - (evacuation_progress.content | b64decode | from_json).finished

- name: Collect the evacuation result
  ansible.builtin.async_status:
    jid: "{{ evacuation_job.ansible_job_id }}"
  delegate_to: hv1.example.com
  register: evacuation
  until: evacuation.finished
  retries: 20
  delay: 3

- name: Show the report
  ansible.builtin.debug:
    msg: "{{ evacuation.report_lines }}"
"""

RETURN = r"""
changed:
  description: Whether any guest was moved (or, in check mode, would be), or an interrupted move was finished.
  returned: always
  type: bool
  sample: true
msg:
  description: What happened in one sentence, or why the host was not emptied.
  returned: always
  type: str
  sample: "the guests cannot all be placed: 1 guest(s) were not moved: big1 (unplaceable: fits nowhere: ...)"
cancelled:
  description:
    - The operator's cancel request (O(cancel_path)) stopped the run. RV(msg) names the request and when it was
      written, and counts the guests moved, the migrations aborted and the guests not started.
  returned: when the run was cancelled
  type: bool
  sample: true
source:
  description: The source host's URI and name (its hostname as libvirt reports it).
  returned: success, and when the host was not emptied
  type: dict
  sample: {uri: "qemu:///system", name: hv1}
destinations:
  description:
    - Each destination with what placement measured and planned. C(excluded) says why a destination is never
      chosen (maintenance, unreachable, the source host), else null.
    - Memory is in MiB. C(usable_mib) is C(available_mib - reserve_mib), and C(left_after_mib) is what is left
      once the planned guests are there.
  returned: success, and when the host was not emptied
  type: list
  elements: dict
  sample:
    - {name: hv2, uri: "qemu+tls://hv2.example.com/system", excluded: null, available_mib: 7680, reserve_mib: 512,
       usable_mib: 7168, planned: [db1, web2], planned_mib: 3072, left_after_mib: 4096}
plan:
  description:
    - The placement, in the order the migrations start (pinned guests first, then largest first).
    - Each entry holds the guest (C(name), C(uuid), C(state), C(persistent), C(memory_mib), C(mode) V(live) or
      V(offline)), its C(destination) and C(dest_uri) (null when it fits nowhere or stays), C(pinned), and C(reason).
    - C(action) is V(move), or V(stay) for a guest pinned to its host (O(constraints)).
    - "C(why) holds the reason's facts: C(memory_needed_mib), C(memory_left_after_mib) on the destination once
      the guest is there, C(cpu) (the CPU comparison's result) and C(cpu_message), C(constraints_satisfied) and
      C(soft_broken) (soft anti-affinity groups it shares a host with), the number of C(candidates) and of
      destinations C(refused); for a guest that fits nowhere, C(refused) maps the first destinations to why and
      C(refused_count) counts them; for a guest that stays, C(pin_policy)."
    - C(pause_reason) is libvirt's reason for a guest found paused (V(user), V(migration), V(ioerror) ...), null
      otherwise. Only a guest a migration paused is resumed; any other moves paused (O(on_paused_source)).
  returned: success, and when the host was not emptied
  type: list
  elements: dict
  sample:
    - {name: db1, uuid: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10, state: running, persistent: true, memory_mib: 2048,
       mode: live, pause_reason: null, destination: hv2, dest_uri: "qemu+tls://hv2.example.com/system", pinned: false,
       reason: "2048 MiB, live; most memory left after placement: hv2 5120 MiB left after placement, 0 guest(s)
       already planned; other candidates: hv3 4096 MiB left after placement, 0 guest(s) already planned"}
vms:
  description:
    - One entry per guest, in plan order, then the guests left on the source.
    - C(result) is V(migrated), V(finished) (an interrupted move completed without migrating again),
      V(unchanged), V(failed), V(unplaceable), V(not_started) (O(on_failure=stop)), V(cancelled) (the operator's
      cancel request, see O(cancel_path), aborted its migration or kept it from starting; the guest stays on the
      source), V(left) (O(stopped_guests=leave), or a paused guest refused by O(on_paused_source=refuse)), and in
      check mode V(planned) or V(would_fail).
    - C(pause_reason) is libvirt's reason for a guest found paused, null otherwise; the text report says under
      the table whether it was resumed (a migration had paused it) or moved paused.
    - C(seconds) is the time the guest's migration took, C(downtime_ms) and C(data_sent_bytes) come from
      libvirt's completed job statistics (C(downtime), C(data_processed)).
    - C(details) is the migrate module's result for that guest (flags, preflight, timings, stats, policy
      actions, recovery), or its error.
    - C(re_placed_from) lists the destinations this guest was planned for and that were lost during the run
      (see O(on_failure)); C(to) is where it went (or was last planned) instead.
  returned: success, and when the host was not emptied
  type: list
  elements: dict
  sample:
    - {name: db1, uuid: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10, from: hv1, to: hv2, mode: live, memory_mib: 2048,
       result: migrated, changed: true, action: migrate, seconds: 12.4, downtime_ms: 38,
       data_sent_bytes: 2199023255, message: "running on source only: live migration", reason: "...", re_placed_from: [],
       pause_reason: null, details: {}}
filtered_out:
  description: Guests of the source not selected by O(include) and O(exclude).
  returned: success, and when the host was not emptied
  type: list
  elements: str
  sample: [scratch-1]
summary:
  description: Counts per result, the number of changed guests, the number of problems and the total seconds.
  returned: success, and when the host was not emptied
  type: dict
  sample: {total: 6, by_result: {migrated: 5, unplaceable: 1}, changed: 5, problems: 1, seconds: 61.2}
report:
  description: The report written to O(report_path) as JSON (RV(vms) without C(details), plus RV(summary)).
  returned: success, and when the host was not emptied
  type: dict
  sample: {source_name: hv1, source_uri: "qemu:///system", check_mode: false, summary: {total: 1}, vms: [],
           run_id: 20261201T143901Z-1a2b3c4d, time: "2026-12-01T14:41:12.402Z"}
report_lines:
  description: The report table as lines (print it with M(ansible.builtin.debug)).
  returned: success, and when the host was not emptied
  type: list
  elements: str
  sample:
    - "VM   FROM  TO   MODE  RESULT    TIME    DOWNTIME  DATA SENT"
    - "---  ----  ---  ----  --------  ------  --------  ---------"
    - "db1  hv1   hv2  live  migrated  12.4 s  38 ms     2.0 GiB"
report_text:
  description: The readable report (heading, table, totals, messages), as written with O(report_format=text).
  returned: success, and when the host was not emptied
  type: str
  sample: "Evacuation of hv1 (qemu:///system)\n..."
report_path:
  description:
    - The file this run's report was written to (see O(report_path)); null when not asked, and nothing is
      written in check mode.
  returned: success, and when the host was not emptied
  type: str
  sample: /var/log/virtops/evacuate-hv1-20261201T143901Z-1a2b3c4d.json
run_id:
  description:
    - This run's id (UTC time and a random part). The report and the audit log's records of the run carry it.
  returned: success, and when the host was not emptied
  type: str
  sample: 20261201T143901Z-1a2b3c4d
audit_log:
  description:
    - The audit log the run's records were appended to (see O(audit_log)). It holds one record per guest
      move tried (action C(evacuate); its C(started_at) and C(finished_at) bound the time the guest could
      be on both hosts; C(source) and C(destination) are host names) and one summary record (no guest).
    - Null when none was written (the log is off, check mode, or it could not be written, which is a warning).
  returned: success, and when the host was not emptied
  type: str
  sample: /var/log/virtops-migration/audit.jsonl
plan_file:
  description: The plan file written (check mode) or executed (a real run).
  returned: when O(plan_file) is given and the evacuation ran
  type: str
  sample: /var/lib/virtops/plan-hv1.json
plan_document:
  description: The plan file's content (see O(plan_file)).
  returned: when O(plan_file) is given and the evacuation ran
  type: dict
  sample: {schema_version: 1, kind: evacuation, created: "2026-12-01T14:00:00Z",
           run_id: 0b8f6c52-3c1e-4f0a-9d2b-5a7c1e9f4d21, source: {name: hv1, uri: "qemu:///system", host_uuid: null},
           options: {}, guests: [], cannot_move: [], left: [], destinations: []}
progress_path:
  description: The progress file (null when not asked).
  returned: success, and when the host was not emptied
  type: str
  sample: /run/virtops/evacuate-progress.json
placement:
  description: Each guest's host before and after (in check mode, the planned host; a guest not moved stays on the source).
  returned: success, and when the host was not emptied
  type: dict
  sample: {before: {db1: hv1, web1: hv1}, after: {db1: hv2, web1: hv3}}
check_mode:
  description: Whether this was a check-mode run (nothing changed).
  returned: success, and when the host was not emptied
  type: bool
  sample: false
error:
  description:
    - A failure before any guest was handled (bad options, source unreachable), broken down as in the migrate module.
    - C(kind) V(cancelled) is a run refused because the operator's cancel request stands (O(cancel_path)).
  returned: on such a failure
  type: dict
  sample: {kind: validation, operation: validate options, message: destinations is empty, domain: null,
           source_uri: "qemu:///system", dest_uri: null, libvirt_error: null, libvirt_error_code: null, hint: null}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.virtops.migration.plugins.module_utils._common.results import (
    finish_placement_run,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.argspec import (
    evacuate_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
    run_evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LIBVIRT_LIBRARY_NAME,
)


def main() -> None:
    module = AnsibleModule(argument_spec=evacuate_argument_spec(), supports_check_mode=True)
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib(LIBVIRT_LIBRARY_NAME), exception=LIBVIRT_IMPORT_ERROR)
    finish_placement_run(module, lambda: run_evacuation(EvacuationOptions.from_params(module.params), check_mode=module.check_mode))


if __name__ == "__main__":
    main()
