# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt_uri
short_description: The libvirt URI with which the collection's playbooks open a host
version_added: 2.0.0
description:
  - The URI of a host from its inventory variables, by the rule the playbooks C(virtops.migration.migrate)
    and C(virtops.migration.evacuate) use for every hypervisor.
  - The host's C(virtops_libvirt_uri) when it is set; else C(qemu+tls://NAME/system), where NAME is the
    host's C(virtops_libvirt_fqdn) when it is set, else its inventory name.
  - Apply it to a host's variables (C(hostvars[NAME])), or to an inventory name with O(hostvars) as its
    argument. A name that has no variables (not in the inventory) gets C(qemu+tls://NAME/system).
positional: hostvars
options:
  _input:
    description:
      - One host's variables (a mapping holding at least C(inventory_hostname)), or an inventory host name.
    type: raw
    required: true
  hostvars:
    description:
      - Every host's variables, by inventory name (the magic variable C(hostvars)); used when O(_input) is a name.
    type: dict
author:
  - virtops.migration maintainers (@virtops)
seealso:
  - module: virtops.migration.migrate
  - module: virtops.migration.evacuate
"""

EXAMPLES = r"""
- name: The URI of hv2 (qemu+tls://hv2.example.com/system when its virtops_libvirt_fqdn says hv2.example.com)
  ansible.builtin.debug:
    msg: "{{ 'hv2' | virtops.migration.libvirt_uri(hostvars) }}"

- name: The same, from the host's variables
  ansible.builtin.debug:
    msg: "{{ hostvars['hv2'] | virtops.migration.libvirt_uri }}"

- name: Migrate a VM to hv2
  virtops.migration.migrate:
    name: web1
    dest_uri: "{{ 'hv2' | virtops.migration.libvirt_uri(hostvars) }}"

- name: Every other hypervisor as a destination of an evacuation of hv1 (name and URI)
  vars:
    others: "{{ groups['hypervisors'] | difference(['hv1']) }}"
  virtops.migration.evacuate:
    destinations: >-
      {{ dict(others | zip(others | map('virtops.migration.libvirt_uri', hostvars)))
         | dict2items(key_name='name', value_name='uri') }}
  delegate_to: hv1
"""

RETURN = r"""
_value:
  description:
    - The host's libvirt URI.
  type: str
  sample: qemu+tls://hv2.example.com/system
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

URI_VARIABLE = "virtops_libvirt_uri"
FQDN_VARIABLE = "virtops_libvirt_fqdn"


def uri_of(name: str, variables: Mapping[str, Any]) -> str:
    """A host's ``virtops_libvirt_uri``, else ``qemu+tls://<virtops_libvirt_fqdn or name>/system``."""
    uri = variables.get(URI_VARIABLE)
    if uri:
        return str(uri)
    return f"qemu+tls://{variables.get(FQDN_VARIABLE) or name}/system"


def libvirt_uri(host: Any, hostvars: Mapping[str, Any] | None = None) -> str:
    """The filter: ``host`` is one host's variables, or an inventory name looked up in ``hostvars``."""
    if isinstance(host, Mapping):
        name = host.get("inventory_hostname")
        if not name:
            raise AnsibleFilterError("libvirt_uri: the host's variables hold no inventory_hostname; give "
                                     "hostvars[NAME], or the name with hostvars as argument")
        return uri_of(str(name), host)
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError(f"libvirt_uri: expected a host name or a host's variables, got {host!r}")
    if hostvars is not None and not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"libvirt_uri: hostvars must be a mapping of host names to variables, got {type(hostvars).__name__}")
    variables = hostvars[host] if hostvars is not None and host in hostvars else {}
    return uri_of(host, variables)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"libvirt_uri": libvirt_uri}
