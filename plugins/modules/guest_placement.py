# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: guest_placement
short_description: Set or clear a guest's placement constraints in its libvirt metadata
version_added: 1.1.0
description:
  - Keeps a guest's placement constraints in its own domain XML, in the element C(<virtops:guest>) under
    C(<metadata>) in the namespace C(https://virtops.dev/xmlns/migration/1) (C(virDomainSetMetadata)). The
    constraints travel with the guest when it migrates and survive the loss of the controller.
  - The constraints are anti-affinity groups (never two members on one host), affinity groups (kept together),
    a pin policy for a guest that must not move, a priority (higher moves first) and host labels a destination
    must carry. M(virtops.migration.evacuate) reads them; constraints given to it as options win per field,
    groups are the union of both (see C(docs/placement-metadata.md) in the collection's source repository).
  - With O(state=present) each constraint option given replaces that field; options left out keep what the guest
    holds. O(state=absent) removes every constraint.
  - The origin record that an evacuation writes into the same element (the host a guest came from) is kept,
    unless O(clear_origin=true).
  - The element is written live when the guest runs and to its definition when it is persistent, and only when it
    differs from what the guest holds.
author:
  - virtops.migration maintainers (@virtops)
requirements:
  - libvirt-python (Debian C(python3-libvirt)) on the host that runs the module
extends_documentation_fragment:
  - virtops.migration._connection.source
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode the element is read and compared, nothing is written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The element before and after, as XML.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
options:
  name:
    description: Name of the guest. One of O(name) or O(uuid) is required.
    type: str
  uuid:
    description: UUID of the guest. With O(name) too, both must name the same guest.
    type: str
  state:
    description:
      - V(present) sets the constraint options given and keeps the others.
      - V(absent) removes every constraint; it takes no constraint option. The origin stays unless
        O(clear_origin=true).
    type: str
    choices: [present, absent]
    default: present
  anti_affinity:
    description:
      - The anti-affinity groups of the guest; replaces the ones it holds. V([]) removes them all.
      - No two guests of one V(hard) group run on one host; a V(soft) group is kept apart when there is room, and
        the evacuation warns when it is not.
    type: list
    elements: dict
    suboptions:
      group:
        description: The group's name.
        type: str
        required: true
      mode:
        description: V(hard) or V(soft).
        type: str
        choices: [hard, soft]
        default: hard
  affinity:
    description: The affinity groups of the guest (their members are kept on one host); replaces the ones it holds.
    type: list
    elements: str
  pin_policy:
    description:
      - The guest must not move. What an evacuation of its host does with it. V(skip) leaves it there and reports
        it; V(shutdown) shuts it down and starts it again when the host is back; V(block) refuses the evacuation.
      - V(none) removes the pin.
    type: str
    choices: [skip, shutdown, block, none]
  priority:
    description: Guests with a higher priority move first. To drop it, run with O(state=absent) and set the rest again.
    type: int
  require_labels:
    description:
      - Host labels a destination must carry, label name to value (for example C(rack) or a failure domain);
        replaces the ones the guest holds. V({}) removes them all.
      - Values are compared as text.
    type: dict
  clear_origin:
    description:
      - Remove the origin an evacuation recorded (the host the guest came from, read by a restore).
      - With O(state=absent) it removes the whole element, even one that does not parse.
    type: bool
    default: false
notes:
  - The element can also be read and edited with C(virsh metadata GUEST --uri https://virtops.dev/xmlns/migration/1
    --key virtops).
  - An element with a value this module does not accept (an unknown pin policy, a priority that is no integer) is
    refused with an error naming the guest and the value. Child elements it does not know (a newer version's)
    are written back unchanged; attributes it does not know on the children it knows are dropped when it writes.
seealso:
  - module: virtops.migration.evacuate
"""

EXAMPLES = r"""
- name: Keep the two database replicas on different hosts
  virtops.migration.guest_placement:
    name: "{{ item }}"
    anti_affinity:
      - group: db
        mode: hard
  loop: [db1, db2]
  delegate_to: "{{ hostvars[item].virtops_host }}"

- name: The licence server stays on its host; an evacuation skips and reports it
  virtops.migration.guest_placement:
    name: licence1
    pin_policy: skip

- name: Move first, and only to hosts in rack r1
  virtops.migration.guest_placement:
    uuid: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10
    priority: 100
    require_labels:
      rack: r1

- name: Drop every constraint, keep where the guest came from
  virtops.migration.guest_placement:
    name: web1
    state: absent

- name: Forget the origin after a restore is no longer wanted
  virtops.migration.guest_placement:
    name: web1
    clear_origin: true
"""

RETURN = r"""
domain:
  description: The guest's name.
  returned: success
  type: str
  sample: db1
uuid:
  description: The guest's UUID.
  returned: success
  type: str
  sample: 6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10
metadata:
  description:
    - The guest's constraints and origin after the run (in check mode, what they would be).
    - C(anti_affinity) is a list of C(group) and C(mode); C(affinity) a list of group names; C(pin_policy) is
      null when the guest may move; C(require_labels) maps label to value; C(origin) holds C(host),
      C(host_uuid), C(run_id) and C(time) (ISO 8601, UTC), or is null.
  returned: success
  type: dict
  sample: {anti_affinity: [{group: db, mode: hard}], affinity: [], pin_policy: null, priority: 10,
           require_labels: {rack: r1}, origin: {host: hv1, host_uuid: 0b5c3c6e-8d55-4a43-9d8e-3c1f1f0a7e21,
           run_id: 20261201T140000Z-3f2a, time: "2026-12-01T14:00:00Z"}}
written_to:
  description: Where the element was (in check mode, would be) written, V(live) and/or V(config); empty when unchanged.
  returned: success
  type: list
  elements: str
  sample: [live, config]
error:
  description: The failure, broken down (kind, operation, message, domain, URI, libvirt's text and error code, hint).
  returned: failure
  type: dict
  sample: {kind: validation, operation: read placement metadata, message: "pin policy 'forever' is not one of
           skip, shutdown, block", domain: db1, source_uri: "qemu:///system", dest_uri: null, libvirt_error: null,
           libvirt_error_code: null, hint: "correct the guest's metadata"}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._guestmeta.argspec import (
    GUEST_PLACEMENT_REQUIRED_ONE_OF,
    guest_placement_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._guestmeta.operations import (
    PlacementRequest,
    run_guest_placement,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LIBVIRT_LIBRARY_NAME,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=guest_placement_argument_spec(),
        required_one_of=GUEST_PLACEMENT_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib(LIBVIRT_LIBRARY_NAME), exception=LIBVIRT_IMPORT_ERROR)
    try:
        result = run_guest_placement(PlacementRequest.from_params(module.params), check_mode=module.check_mode)
    except MigrationError as error:
        module.fail_json(msg=str(error), **error.to_result())
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
