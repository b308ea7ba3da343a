# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_source
short_description: The host a migration of a named VM runs from, given what each hypervisor holds
version_added: 2.0.0
description:
  - Picks the host on which M(virtops.migration.migrate) runs to move the VM O(_input) to O(destination), from the
    lists of domains each hypervisor gave, by the rules the module itself follows on two hosts. The playbook
    C(virtops.migration.migrate) uses it when it is not told the source.
  - A VM active (running or paused) on two hosts or more is a split brain; the filter fails and nothing is touched.
  - Else the source is the host where the VM is active; else the first host, other than the destination, where it
    is defined; else, when it is present on the destination only, the first other host, where the module then
    reports that the VM is already on the destination (idempotence).
  - A VM present nowhere fails with the module's own words, C(Domain not found).
  - O(source), when given, is returned as it is (it must not be the destination).
positional: destination, hosts
options:
  _input:
    description:
      - The name of the VM (libvirt domain).
    type: str
    required: true
  destination:
    description:
      - The inventory name of the destination host.
    type: str
    required: true
  hosts:
    description:
      - What each hypervisor holds, in inventory order, one entry per host that answered.
      - C(host) is the inventory name; C(active) the names of the domains running or paused there; C(present)
        the names of every domain there, defined or transient, running or not.
      - The lists of M(community.libvirt.virt)'s C(list_vms) command give them (C(state=running), C(state=paused),
        and no state).
    type: list
    elements: dict
    required: true
  source:
    description:
      - The source host when the caller names it; then O(hosts) is not looked at.
    type: str
author:
  - virtops.migration maintainers (@virtops)
seealso:
  - module: virtops.migration.migrate
  - plugin: virtops.migration.libvirt_uri
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Where web1 runs, to migrate it to hv2
  ansible.builtin.debug:
    msg: >-
      {{ 'web1' | virtops.migration.migration_source('hv2', [
           {'host': 'hv1', 'active': ['web1'], 'present': ['web1', 'db1']},
           {'host': 'hv2', 'active': [], 'present': []},
         ]) }}
  # -> hv1

- name: Each hypervisor's lists, gathered by every host of the play, then the choice
  ansible.builtin.set_fact:
    source_host: >-
      {{ 'web1' | virtops.migration.migration_source('hv2', ansible_play_hosts | map('extract', hostvars, 'domains_here')) }}
  run_once: true
"""

RETURN = r"""
_value:
  description:
    - The inventory name of the host the migration runs from.
  type: str
  sample: hv1
"""

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.locate import (
    migration_source as choose_migration_source,
)


def migration_source(name: str, destination: str, hosts: Iterable[Mapping[str, Any]],
                     source: str | None = None) -> str:
    """The filter: locate.migration_source, its errors as the filter's failure."""
    try:
        return choose_migration_source(str(name), str(destination), list(hosts or []), str(source) if source else None)
    except MigrationError as error:
        raise AnsibleFilterError(str(error)) from error


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"migration_source": migration_source}
