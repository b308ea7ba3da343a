# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Read what a restore works on: the restored host, and its guests on the search hosts; changes nothing.

A guest belongs to the restored host when the origin in its own metadata (``_libvirt/metadata.py``,
written by the evacuation that moved it) names it. ``origin_verdict`` decides, on values:

| origin in the guest's metadata                         | verdict |
|--------------------------------------------------------|---------|
| none, or another host's name                           | not ours (ignored) |
| the restored host's name, no host UUID recorded        | HOME: it goes back |
| the restored host's name and its host UUID             | HOME: it goes back |
| the restored host's name, another host UUID            | LOST: the host it left is gone (reinstalled or replaced under the same name); the guest stays |

Names match without regard to case, and a short name matches the full name that starts with it
(``hv1`` and ``hv1.example.com``; two different full names never match).

On the restored host: its name, host UUID and free memory (the placement's single destination),
the guests whose origin names it and that are nowhere else (already home), and those also found on
a search host (an interrupted restore: the guest is pinned there and its move is finished). Every
guest carries its placement constraints (``constraints.guest_constraints`` of its metadata), and the
guests that stay on the restored host are its residents, so the evacuation's Placer honours them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    GuestConstraints,
    Resident,
    guest_constraints,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.discovery import (
    CpuVerdicts,
    SourceGuests,
    compare_cpus,
    described_domains,
    guest_to_move,
    reason_to_leave,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    DestinationSpec,
    in_maintenance,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    KIB_PER_MIB,
    LIVE,
    OFFLINE,
    DestinationCapacity,
    GuestToMove,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    SHUTOFF,
    DomainInfo,
    GuestSpec,
    guest_spec,
    host_uuid_of,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    Origin,
    read_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    available_memory_kib,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.options import (
    RestoreOptions,
)

HOME = "home"
LOST = "lost"


def same_host_name(recorded: str, name: str) -> bool:
    """``recorded`` and ``name`` name one host: equal without case, or one is the other's short name."""
    first, second = recorded.lower(), name.lower()
    if first == second:
        return True
    if "." in first and "." in second:
        return False
    return first.split(".", 1)[0] == second.split(".", 1)[0]


def origin_verdict(origin: Origin | None, host_name: str, host_uuid: str | None) -> str | None:
    """HOME, LOST or None (not a guest of this host): the table in the module docstring."""
    if origin is None or not same_host_name(origin.host, host_name):
        return None
    if origin.host_uuid and host_uuid and origin.host_uuid.lower() != host_uuid.lower():
        return LOST
    return HOME


def lost_reason(origin: Origin, host_name: str, host_uuid: str | None, where: str) -> str:
    return (f"its origin is gone: it left {origin.host} with host UUID {origin.host_uuid}, and the host named "
            f"{host_name} now has host UUID {host_uuid} (reinstalled or replaced): it stays on {where}")


@dataclass(frozen=True)
class StayingGuest:
    """A guest of the restored host that stays where it is, and why."""

    name: str
    uuid: str
    host: str
    memory_mib: int
    mode: str
    reason: str


@dataclass(frozen=True)
class HomeGuest:
    """A guest on the restored host whose origin names it: it is home; its origin record is to be cleared."""

    name: str
    uuid: str
    memory_mib: int
    mode: str
    persistent: bool


@dataclass(frozen=True)
class HostedDomain:
    """A domain on the restored host: its description, its origin verdict and its placement constraints."""

    info: DomainInfo
    verdict: str | None
    constraints: GuestConstraints


@dataclass(frozen=True)
class RestoredHost:
    """The restored host: its identity and capacity, and its domains by uuid."""

    name: str
    uri: str
    host_uuid: str | None
    capacity: DestinationCapacity
    domains: dict[str, HostedDomain]


@dataclass(frozen=True)
class SearchReading:
    """One search host: its guests that belong to the restored host, or why it was not searched."""

    name: str
    uri: str
    excluded: str | None = None
    guests: tuple[GuestToMove, ...] = ()
    specs: tuple[tuple[str, GuestSpec], ...] = ()
    staying: tuple[StayingGuest, ...] = ()
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "excluded": self.excluded,
                "guests": [guest.name for guest in self.guests] + [guest.name for guest in self.staying]}


@dataclass(frozen=True)
class RestoreDiscovery:
    """What the restore found: the input of placement and of the report."""

    host: RestoredHost
    guests: list[GuestToMove]
    holders: dict[str, SearchReading]  # uuid -> the search host that holds the guest
    staying: list[StayingGuest]
    home: list[HomeGuest]
    cpu_verdicts: CpuVerdicts
    conflicts: dict[str, str]  # uuid -> why it cannot be moved
    search: list[SearchReading]
    warnings: list[str]

    @property
    def sources(self) -> dict[str, str]:
        """uuid -> the URI of the search host that holds the guest."""
        return {uuid: reading.uri for uuid, reading in self.holders.items()}


def discover(options: RestoreOptions, connect: Callable[..., Any]) -> RestoreDiscovery:
    """Read the restored host (refused when in maintenance), then each search host."""
    conn = connect(options.uri, "destination", source_uri=options.uri)
    try:
        host = read_restored_host(options, conn)
        refuse_maintenance(options, host)
        search = [read_search_host(options, spec, host, connect) for spec in options.search]
        verdicts: CpuVerdicts = {}
        for reading in search:
            if reading.guests:
                source = SourceGuests(reading.name, None, list(reading.guests), dict(reading.specs), [], [])
                verdicts.update(compare_cpus(conn, host.name, source, options))
    finally:
        close_quietly(conn)
    return combine(host, search, verdicts)


def read_restored_host(options: RestoreOptions, conn: Any) -> RestoredHost:
    name = str(conn.getHostname())
    host_uuid = host_uuid_of(conn)
    capacity = DestinationCapacity(name, options.restored_uri, available_kib=available_memory_kib(conn),
                                   reserve_kib=options.memory_reserve_mib * KIB_PER_MIB,
                                   labels={str(key): str(value) for key, value in options.labels.items()})
    domains: dict[str, HostedDomain] = {}
    for dom, info in described_domains(conn, options.uri):
        meta = read_guest_metadata(dom)
        domains[info.uuid] = HostedDomain(info, origin_verdict(meta.origin, name, host_uuid),
                                          guest_constraints(info.name, meta))
    return RestoredHost(name, options.uri, host_uuid, capacity, domains)


def refuse_maintenance(options: RestoreOptions, host: RestoredHost) -> None:
    if in_maintenance(DestinationSpec(host.name, options.restored_uri), options.maintenance_hosts):
        raise ValidationError("validate options", f"{host.name} is still in maintenance (maintenance_hosts): "
                              "nothing was moved", hint="clear its maintenance mark first, then restore it",
                              source_uri=options.uri)


def read_search_host(options: RestoreOptions, spec: DestinationSpec, host: RestoredHost,
                     connect: Callable[..., Any]) -> SearchReading:
    """The guests of ``host`` on the search host ``spec`` (those to move, those that stay)."""
    try:
        conn = connect(spec.uri, "source", source_uri=spec.uri, dest_uri=options.restored_uri)
    except MigrationError as error:
        return SearchReading(spec.name, spec.uri, excluded=f"unreachable ({error.libvirt_error or error.message})")
    try:
        if host.host_uuid and host_uuid_of(conn) == host.host_uuid:
            return SearchReading(spec.name, spec.uri, excluded="the restored host itself")
        guests: list[GuestToMove] = []
        specs: list[tuple[str, GuestSpec]] = []
        staying: list[StayingGuest] = []
        warnings: list[str] = []
        for dom, info in described_domains(conn, spec.uri):
            try:
                meta = read_guest_metadata(dom)
            except MigrationError as error:
                warnings.append(f"{info.name} on {spec.name}: {error}")
                continue
            origin = meta.origin
            verdict = origin_verdict(origin, host.name, host.host_uuid)
            mode = OFFLINE if info.state == SHUTOFF else LIVE
            memory_mib = info.max_memory_kib // KIB_PER_MIB
            if verdict == LOST and origin is not None:
                reason = lost_reason(origin, host.name, host.host_uuid, spec.name)
                staying.append(StayingGuest(info.name, info.uuid, spec.name, memory_mib, mode, reason))
            elif verdict == HOME:
                left_because = reason_to_leave(info, options)
                if left_because:
                    reason = left_because.replace("left on the source", f"it stays on {spec.name}")
                    staying.append(StayingGuest(info.name, info.uuid, spec.name, memory_mib, mode, reason))
                    continue
                specs.append((info.uuid, guest_spec(migratable_xml(dom, inactive=info.state == SHUTOFF))))
                guests.append(replace(guest_to_move(info), source=spec.name,
                                      constraints=guest_constraints(info.name, meta)))
    finally:
        close_quietly(conn)
    return SearchReading(spec.name, spec.uri, None, tuple(guests), tuple(specs), tuple(staying), tuple(warnings))


def combine(host: RestoredHost, search: list[SearchReading], verdicts: CpuVerdicts) -> RestoreDiscovery:
    """The guests to move (pinned home when already there), conflicts, those home and those staying."""
    holders: dict[str, SearchReading] = {}
    conflicts: dict[str, str] = {}
    guests: dict[str, GuestToMove] = {}
    for reading in search:
        for guest in reading.guests:
            if guest.uuid in holders:
                conflicts[guest.uuid] = (f"present on both {holders[guest.uuid].name} and {reading.name}: "
                                         "inspect the hosts and remove the stale copy")
                continue
            holders[guest.uuid] = reading
            guests[guest.uuid] = pinned_home(guest, host)
    home = [home_guest(hosted.info) for uuid, hosted in host.domains.items()
            if hosted.verdict == HOME and uuid not in guests]
    host.capacity.residents = tuple(Resident(hosted.info.name, uuid, hosted.constraints)
                                    for uuid, hosted in host.domains.items() if uuid not in guests)
    staying = [guest for reading in search for guest in reading.staying]
    warnings = [warning for reading in search for warning in reading.warnings]
    warnings += [f"{reading.name} was not searched: {reading.excluded}; guests of {host.name} there, if any, stay"
                 for reading in search if reading.excluded and reading.excluded != "the restored host itself"]
    return RestoreDiscovery(host, list(guests.values()), holders, staying, home, verdicts, conflicts, search,
                            warnings)


def pinned_home(guest: GuestToMove, host: RestoredHost) -> GuestToMove:
    """A guest also present on the restored host (an interrupted restore) is pinned there."""
    present = host.domains.get(guest.uuid)
    if present is None:
        return guest
    return replace(guest, pinned_to=host.name, pinned_active=present.info.active)


def home_guest(info: DomainInfo) -> HomeGuest:
    return HomeGuest(info.name, info.uuid, info.max_memory_kib // KIB_PER_MIB,
                     OFFLINE if info.state == SHUTOFF else LIVE, info.persistent)
