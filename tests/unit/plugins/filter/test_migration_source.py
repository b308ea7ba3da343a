# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter virtops.migration.migration_source: locate.choose_source, its errors as the filter's failure."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.virtops.migration.plugins.filter.migration_source import (
    FilterModule,
    migration_source,
)

SEEN = [
    {"host": "hv1", "active": ["web1"], "present": ["web1", "db1"]},
    {"host": "hv2", "active": [], "present": []},
    {"host": "hv3", "active": [], "present": ["db1"]},
]


def test_the_host_that_runs_it():
    assert migration_source("web1", "hv2", SEEN) == "hv1"


def test_on_the_destination_only_another_host_runs_the_module():
    seen = [{"host": "hv1", "active": [], "present": []}, {"host": "hv2", "active": ["web1"], "present": ["web1"]}]
    assert migration_source("web1", "hv2", seen) == "hv1"


def test_a_given_source_needs_no_lists():
    assert migration_source("web1", "hv2", [], source="hv3") == "hv3"


def test_split_brain_fails_the_filter_with_the_whole_message():
    seen = SEEN + [{"host": "hv4", "active": ["web1"], "present": []}]
    with pytest.raises(AnsibleFilterError, match=r"active on several hosts \(hv1, hv4\): split brain; nothing was touched"):
        migration_source("web1", "hv2", seen)


def test_not_found_fails_the_filter_in_the_module_s_words():
    with pytest.raises(AnsibleFilterError, match="Domain not found: no domain with matching name 'web9' on any of hv1, hv2, hv3"):
        migration_source("web9", "hv2", SEEN)


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"migration_source": migration_source}
