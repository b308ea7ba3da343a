# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Which host a migration of a named domain runs from, when only its destination is given.

The migrate module decides on two hosts (``reconcile.py``); this picks the source among many
with the same rules, so that the module, run there, does what the request means:

| the domain, across the hosts looked at              | source                                     |
|-----------------------------------------------------|--------------------------------------------|
| active (running or paused) on two hosts or more     | fail: split brain, nothing touched         |
| active on one host other than the destination       | that host                                  |
| else present (defined) on a host that is not the destination | the first such host                |
| present on the destination only                     | the first other host: the module, run there, reports that it is already on the destination |
| present nowhere                                     | fail: Domain not found                     |

A source named by the caller is taken as it is (the module then decides on those two hosts).
Pure: it works on the lists each host gave of its domains and touches no libvirt object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    SplitBrain,
    ValidationError,
)

OPERATION = "locate the source"


@dataclass(frozen=True)
class HostDomains:
    """The domains one host holds, by name: ``active`` (running or paused), ``present`` (every one)."""

    host: str
    active: frozenset[str]
    present: frozenset[str]

    @classmethod
    def from_mapping(cls, seen: Mapping[str, Any]) -> HostDomains:
        """``{"host": NAME, "active": [names], "present": [names]}``; active domains count as present."""
        try:
            host = seen["host"]
        except (KeyError, TypeError):
            raise ValidationError(OPERATION, f"a host's domain list has no 'host' key: {seen!r}") from None
        active = frozenset(_names(seen.get("active"), host, "active"))
        return cls(str(host), active, active | frozenset(_names(seen.get("present"), host, "present")))


def _names(values: Iterable[Any] | None, host: str, key: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError(OPERATION, f"the '{key}' domains of {host} must be a list of names, not {values!r}")
    return [str(value) for value in values]


def choose_source(name: str, destination: str, hosts: Sequence[HostDomains], source: str | None = None) -> str:
    """The host the migration of domain ``name`` to ``destination`` runs from (see the table above)."""
    if not name:
        raise ValidationError(OPERATION, "no domain name given")
    if source:
        return _given_source(name, destination, source)
    active = [seen.host for seen in hosts if name in seen.active]
    if len(active) > 1:
        raise _split_brain(name, active)
    elsewhere = [seen.host for seen in hosts if seen.host != destination]
    candidates = [host for host in active if host != destination] or \
                 [seen.host for seen in hosts if seen.host != destination and name in seen.present]
    if candidates:
        return candidates[0]
    if any(seen.host == destination and name in seen.present for seen in hosts):
        if elsewhere:
            return elsewhere[0]
        raise ValidationError(OPERATION, f"domain '{name}' is on {destination} and no other host was looked at to run "
                                         "the migration from", domain=name)
    raise _not_found(name, [seen.host for seen in hosts])


def _given_source(name: str, destination: str, source: str) -> str:
    if source == destination:
        raise ValidationError(OPERATION, f"the source and the destination are both {source}",
                              hint="name two different hosts, or leave the source out to have it found", domain=name)
    return source


def _split_brain(name: str, active_on: list[str]) -> SplitBrain:
    """reconcile's split brain, over more than two hosts: two active copies, nothing decided by hand here."""
    return SplitBrain(
        OPERATION, "domain is active on several hosts ({}): split brain; nothing was touched".format(", ".join(active_on)),
        hint="inspect these hosts by hand and destroy nothing until you know which copy holds the guest's "
             "current state", domain=name)


def _not_found(name: str, looked_at: list[str]) -> DomainNotFound:
    """reconcile's Domain not found, naming every host looked at."""
    where = "any of " + ", ".join(looked_at) if looked_at else "any host (no host answered)"
    return DomainNotFound(
        OPERATION, f"Domain not found: no domain with matching name '{name}' on {where}",
        hint="check the name and the inventory group; the domain may have been undefined", domain=name)


def migration_source(name: str, destination: str, seen: Iterable[Mapping[str, Any]], source: str | None = None) -> str:
    """choose_source over plain values, e.g. what each host listed, as a playbook gathers it."""
    return choose_source(name, destination, [HostDomains.from_mapping(entry) for entry in seen or []], source)
