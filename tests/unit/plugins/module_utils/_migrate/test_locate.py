# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""locate.choose_source: the source host of a migration, from what each host holds (its decision table)."""

from __future__ import annotations

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    SplitBrain,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.locate import (
    HostDomains,
    choose_source,
    migration_source,
)


def hosts(**held: tuple[list[str], list[str]]) -> list[HostDomains]:
    """hv1=(active, present), ... in keyword order (the inventory order)."""
    return [HostDomains(host, frozenset(active), frozenset(active) | frozenset(present))
            for host, (active, present) in held.items()]


NOTHING: tuple[list[str], list[str]] = ([], [])


@pytest.mark.parametrize("held,expected", [
    # active on one host other than the destination: that host, wherever else it is defined
    ({"hv1": (["web1"], []), "hv2": NOTHING, "hv3": NOTHING}, "hv1"),
    ({"hv1": ([], ["web1"]), "hv2": NOTHING, "hv3": (["web1"], [])}, "hv3"),
    # active nowhere: the first host other than the destination where it is defined
    ({"hv1": NOTHING, "hv2": NOTHING, "hv3": ([], ["web1"])}, "hv3"),
    ({"hv1": ([], ["web1"]), "hv2": ([], ["web1"]), "hv3": ([], ["web1"])}, "hv1"),
    # active on the destination, still defined on another host: that host (the module undefines it or keeps it)
    ({"hv1": NOTHING, "hv2": (["web1"], []), "hv3": ([], ["web1"])}, "hv3"),
    # on the destination only, active or not: the first other host, where the module says it is already there
    ({"hv1": NOTHING, "hv2": (["web1"], []), "hv3": NOTHING}, "hv1"),
    ({"hv1": NOTHING, "hv2": ([], ["web1"]), "hv3": NOTHING}, "hv1"),
    ({"hv2": (["web1"], []), "hv3": NOTHING}, "hv3"),
])
def test_source_by_the_table(held, expected):
    assert choose_source("web1", "hv2", hosts(**held)) == expected


@pytest.mark.parametrize("held", [
    {"hv1": (["web1"], []), "hv2": NOTHING, "hv3": (["web1"], [])},
    {"hv1": (["web1"], []), "hv2": (["web1"], []), "hv3": NOTHING},
])
def test_active_on_two_hosts_is_split_brain(held):
    with pytest.raises(SplitBrain) as raised:
        choose_source("web1", "hv2", hosts(**held))
    text = str(raised.value)
    assert "active on several hosts" in text and "split brain" in text and "nothing was touched" in text
    assert "domain 'web1'" in text
    assert ", ".join(host for host, (active, _present) in held.items() if active) in text


def test_present_nowhere_is_domain_not_found_in_the_module_s_words():
    with pytest.raises(DomainNotFound) as raised:
        choose_source("web1", "hv2", hosts(hv1=(["db1"], []), hv2=NOTHING, hv3=([], ["web2"])))
    assert "Domain not found: no domain with matching name 'web1' on any of hv1, hv2, hv3" in str(raised.value)


def test_no_host_answered_is_domain_not_found():
    with pytest.raises(DomainNotFound, match="no host answered"):
        choose_source("web1", "hv2", [])


def test_only_the_destination_looked_at_cannot_run_the_migration():
    with pytest.raises(ValidationError, match="no other host"):
        choose_source("web1", "hv2", hosts(hv2=(["web1"], [])))


def test_a_given_source_is_taken_as_it_is():
    assert choose_source("web1", "hv2", [], source="hv3") == "hv3"
    assert choose_source("web1", "hv2", hosts(hv1=(["web1"], [])), source="hv3") == "hv3"


def test_a_given_source_that_is_the_destination_is_refused():
    with pytest.raises(ValidationError, match="both hv2"):
        choose_source("web1", "hv2", [], source="hv2")


def test_no_name_is_refused():
    with pytest.raises(ValidationError, match="no domain name"):
        choose_source("", "hv2", hosts(hv1=(["web1"], [])))


def test_plain_values_an_active_domain_counts_as_present():
    seen = [{"host": "hv1", "active": ["web1"]}, {"host": "hv2", "present": []}]
    assert migration_source("web1", "hv2", seen) == "hv1"
    assert HostDomains.from_mapping(seen[0]).present == frozenset({"web1"})


@pytest.mark.parametrize("entry,message", [
    ({"active": []}, "no 'host' key"),
    ({"host": "hv1", "active": "web1"}, "must be a list of names"),
    ({"host": "hv1", "present": 3}, "must be a list of names"),
])
def test_plain_values_that_are_not_lists_of_names_are_refused(entry, message):
    with pytest.raises(ValidationError, match=message):
        migration_source("web1", "hv2", [entry])
