# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter virtops.migration.libvirt_uri: the URI rule of the playbooks, in one place."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.virtops.migration.plugins.filter.libvirt_uri import (
    FilterModule,
    libvirt_uri,
)

HOSTVARS = {
    "hv1": {"inventory_hostname": "hv1", "virtops_libvirt_fqdn": "hv1.example.com"},
    "hv2": {"inventory_hostname": "hv2", "virtops_libvirt_uri": "qemu+ssh://root@hv2.example.com/system",
            "virtops_libvirt_fqdn": "ignored.example.com"},
    "hv3": {"inventory_hostname": "hv3"},
    "hv4": {"inventory_hostname": "hv4", "virtops_libvirt_uri": "", "virtops_libvirt_fqdn": None},
}


@pytest.mark.parametrize("host,expected", [
    ("hv1", "qemu+tls://hv1.example.com/system"),     # virtops_libvirt_fqdn
    ("hv2", "qemu+ssh://root@hv2.example.com/system"),  # virtops_libvirt_uri wins over the FQDN
    ("hv3", "qemu+tls://hv3/system"),                 # neither: the inventory name
    ("hv4", "qemu+tls://hv4/system"),                 # empty values count as unset
])
def test_the_rule_by_name_and_by_the_host_s_variables(host, expected):
    assert libvirt_uri(host, HOSTVARS) == expected
    assert libvirt_uri(HOSTVARS[host]) == expected


def test_a_name_without_variables_is_its_own_host_name():
    assert libvirt_uri("hv9", HOSTVARS) == "qemu+tls://hv9/system"
    assert libvirt_uri("hv9") == "qemu+tls://hv9/system"


@pytest.mark.parametrize("value,message", [
    ({"virtops_libvirt_fqdn": "hv1.example.com"}, "no inventory_hostname"),
    (42, "expected a host name"),
    ("", "expected a host name"),
])
def test_what_is_not_a_host_is_refused(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        libvirt_uri(value, HOSTVARS)


def test_hostvars_must_be_a_mapping():
    with pytest.raises(AnsibleFilterError, match="hostvars must be a mapping"):
        libvirt_uri("hv1", ["hv1"])


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"libvirt_uri": libvirt_uri}
