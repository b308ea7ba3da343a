# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Read what an evacuation works on: the source's guests and each destination's state; changes nothing.

source: its hostname and host UUID, each selected guest (to move, or left with the reason) with
its placement constraints (its metadata element, ``_libvirt/metadata.py``, and the ``constraints``
option: ``constraints.guest_constraints``);
each destination: excluded (the source itself, maintenance, unreachable, the same host UUID),
else its available memory, its CPU verdict per guest, its labels (``host_labels``), the guests
that stay on it with their constraints (residents), and the source's guests already present
there (an interrupted earlier run), which pin those guests to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    libvirt_error_code,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    ConstraintOptions,
    Resident,
    constraint_options,
    guest_constraints,
    labels_of,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    DestinationSpec,
    EvacuationOptions,
    in_maintenance,
    selected,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    CPU_SKIPPED,
    KIB_PER_MIB,
    LIVE,
    OFFLINE,
    CpuVerdict,
    DestinationCapacity,
    GuestToMove,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    SHUTOFF,
    DomainInfo,
    GuestSpec,
    describe_domain,
    guest_spec,
    host_uuid_of,
    lookup_by_uuid,
    migratable_xml,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    read_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    available_memory_kib,
    compare_guest_cpu,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    REFUSE,
    describe_pause,
    paused_source_handling,
)

CpuVerdicts = dict[tuple[str, str], CpuVerdict]
"""(guest uuid, destination name) -> can that destination run that guest's CPU."""


@dataclass(frozen=True)
class LeftGuest:
    """A selected guest that stays on the source untouched, and why."""

    name: str
    uuid: str
    memory_mib: int
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What the evacuation found: the input of placement and of the report."""

    source_name: str
    guests: list[GuestToMove]
    left: list[LeftGuest]
    filtered: list[str]
    destinations: list[DestinationCapacity]
    cpu_verdicts: CpuVerdicts
    conflicts: dict[str, str]  # uuid -> why it cannot be moved
    source_host_uuid: str | None = None


@dataclass(frozen=True)
class SourceGuests:
    """The source host and its selected guests."""

    name: str
    host_uuid: str | None
    guests: list[GuestToMove]
    specs: dict[str, GuestSpec]  # uuid -> what its XML says (for the CPU comparison)
    left: list[LeftGuest]
    filtered: list[str]


@dataclass(frozen=True)
class DestinationReading:
    """One destination: its capacity, the source's guests already there (uuid -> active), CPU verdicts."""

    capacity: DestinationCapacity
    present: dict[str, bool]
    cpu_verdicts: CpuVerdicts


def discover(options: EvacuationOptions, sources: set[str], connect: Callable[..., Any]) -> Discovery:
    """Read the source's guests, then each destination (``sources``: the destinations that are the source)."""
    source = read_source(options, connect)
    readings = [read_destination(options, dest, dest.name in sources, source, connect)
                for dest in options.destinations]
    guests, conflicts = pin_present_guests(source.guests, readings)
    verdicts: CpuVerdicts = {}
    for reading in readings:
        verdicts.update(reading.cpu_verdicts)
    return Discovery(source_name=source.name, guests=guests, left=source.left, filtered=source.filtered,
                     destinations=[reading.capacity for reading in readings], cpu_verdicts=verdicts,
                     conflicts=conflicts, source_host_uuid=source.host_uuid)


# -- the source ----------------------------------------------------------------


def read_source(options: EvacuationOptions, connect: Callable[..., Any]) -> SourceGuests:
    conn = connect(options.uri, "source", source_uri=options.uri)
    try:
        name = str(conn.getHostname())
        host_uuid = host_uuid_of(conn)
        guests: list[GuestToMove] = []
        wanted = constraint_options(options.constraints)
        specs: dict[str, GuestSpec] = {}
        left: list[LeftGuest] = []
        filtered: list[str] = []
        for dom, info in described_domains(conn, options.uri):
            if not selected(info.name, options.include, options.exclude):
                filtered.append(info.name)
                continue
            left_because = reason_to_leave(info, options)
            if left_because:
                left.append(LeftGuest(info.name, info.uuid, info.max_memory_kib // KIB_PER_MIB, left_because))
                continue
            specs[info.uuid] = guest_spec(migratable_xml(dom, inactive=info.state == SHUTOFF))
            guests.append(replace(guest_to_move(info), constraints=guest_constraints(
                info.name, read_guest_metadata(dom), wanted)))
    finally:
        close_quietly(conn)
    return SourceGuests(name, host_uuid, guests, specs, left, filtered)


def described_domains(conn: Any, source_uri: str, dest_uri: str | None = None) -> list[tuple[Any, DomainInfo]]:
    """The source's domains (a destination's with ``dest_uri``) by name, each with its description (those
    undefined meanwhile are skipped)."""
    whose = "a destination's" if dest_uri else "the source's"
    try:
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError as exc:
        raise MigrationError.from_libvirt("list domains", exc, f"cannot list {whose} domains",
                                          source_uri=source_uri, dest_uri=dest_uri)
    described = []
    for dom in sorted(domains, key=lambda d: d.name()):
        try:
            described.append((dom, describe_domain(dom)))
        except libvirt.libvirtError as exc:
            if libvirt_error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # undefined since the listing: nothing to move
            raise MigrationError.from_libvirt("read domain", exc, f"cannot read one of {whose} domains",
                                              domain=dom.name(), source_uri=source_uri, dest_uri=dest_uri)
    return described


def guest_to_move(info: DomainInfo) -> GuestToMove:
    return GuestToMove(name=info.name, uuid=info.uuid, state=info.state, persistent=info.persistent,
                       memory_kib=info.max_memory_kib, mode=OFFLINE if info.state == SHUTOFF else LIVE,
                       pause_reason=info.reason if info.state == PAUSED else None)


def reason_to_leave(info: DomainInfo, options: EvacuationOptions) -> str | None:
    """Why a selected guest stays on the source untouched, or None when it is to move."""
    if info.state == SHUTOFF and options.stopped_guests == "leave":
        return "stopped; left on the source (stopped_guests: leave)"
    on_paused_source = options.migration.get("on_paused_source") or "resume"
    if info.state == PAUSED and not info.postcopy_state and \
            paused_source_handling(info.reason, on_paused_source) == REFUSE:
        return f"{describe_pause(info.reason)}; left on the source (on_paused_source: refuse)"
    return None


# -- the destinations ----------------------------------------------------------


def read_destination(options: EvacuationOptions, dest: DestinationSpec, is_source: bool, source: SourceGuests,
                     connect: Callable[..., Any]) -> DestinationReading:
    capacity = DestinationCapacity(dest.name, dest.uri, reserve_kib=options.memory_reserve_mib * KIB_PER_MIB,
                                   labels=destination_labels(options, dest))
    if is_source:
        capacity.excluded = "the source host itself"
        return DestinationReading(capacity, {}, {})
    maintenance = in_maintenance(dest, options.maintenance_hosts)
    if maintenance:
        capacity.excluded = "maintenance (maintenance_hosts)"
    try:
        conn = connect(dest.uri, "destination", source_uri=options.uri, dest_uri=dest.uri)
    except MigrationError as error:
        text = error.libvirt_error or error.message
        capacity.excluded = capacity.excluded or f"unreachable ({text})"
        return DestinationReading(capacity, {}, {})
    try:
        if source.host_uuid and host_uuid_of(conn) == source.host_uuid:
            capacity.excluded = (f"same host UUID as the source ({source.host_uuid}): the source itself "
                                 "or a clone with a duplicate host_uuid")
            return DestinationReading(capacity, {}, {})
        present = guests_present(conn, source.guests)
        verdicts: CpuVerdicts = {}
        if not maintenance:
            capacity.residents = residents_of(conn, options.uri, dest.uri, source.guests,
                                              constraint_options(options.constraints))
            capacity.available_kib = available_memory_kib(conn)
            verdicts = compare_cpus(conn, dest.name, source, options)
        return DestinationReading(capacity, present, verdicts)
    finally:
        close_quietly(conn)


def destination_labels(options: EvacuationOptions, dest: DestinationSpec) -> dict[str, str]:
    """``host_labels`` of the destination, by its name or else the host of its URI."""
    labels = labels_of(options.host_labels, dest.name)
    host = parse_uri(dest.uri).host
    return labels or (labels_of(options.host_labels, host) if host else {})


def residents_of(conn: Any, source_uri: str, dest_uri: str, guests: Sequence[GuestToMove],
                 wanted: ConstraintOptions) -> tuple[Resident, ...]:
    """The guests defined on a destination that stay there (not the source's), each with its constraints."""
    moving = {guest.uuid for guest in guests}
    return tuple(Resident(info.name, info.uuid, guest_constraints(info.name, read_guest_metadata(dom), wanted))
                 for dom, info in described_domains(conn, source_uri, dest_uri) if info.uuid not in moving)


def guests_present(conn: Any, guests: Sequence[GuestToMove]) -> dict[str, bool]:
    """The guests already defined on this destination (an interrupted earlier run): uuid -> active there."""
    present: dict[str, bool] = {}
    for guest in guests:
        dom = lookup_by_uuid(conn, guest.uuid)
        if dom is not None:
            present[guest.uuid] = describe_domain(dom).active
    return present


def cpu_signature(spec: GuestSpec) -> str:
    return json.dumps([spec.emulator, spec.arch, spec.machine, spec.virt_type, spec.cpu_mode, spec.cpu_xml])


def compare_cpus(conn: Any, dest_name: str, source: SourceGuests, options: EvacuationOptions) -> CpuVerdicts:
    """Each guest's CPU verdict on this destination (guests with the same CPU definition are compared once)."""
    if "cpu" in (options.migration.get("preflight_skip") or []):
        return {(guest.uuid, dest_name): CpuVerdict(CPU_SKIPPED, "skipped by preflight_skip")
                for guest in source.guests}
    by_signature: dict[str, CpuVerdict] = {}
    verdicts: CpuVerdicts = {}
    for guest in source.guests:
        spec = source.specs[guest.uuid]
        key = cpu_signature(spec)
        if key not in by_signature:
            result = compare_guest_cpu(conn, spec)
            by_signature[key] = CpuVerdict(result.status, result.message)
        verdicts[(guest.uuid, dest_name)] = by_signature[key]
    return verdicts


def pin_present_guests(guests: list[GuestToMove], readings: list[DestinationReading]
                       ) -> tuple[list[GuestToMove], dict[str, str]]:
    """Pin each guest found on a destination to it; one found on two is a conflict (uuid -> why)."""
    pins: dict[str, tuple[str, bool]] = {}
    conflicts: dict[str, str] = {}
    for reading in readings:
        here = reading.capacity.name
        for uuid, active in reading.present.items():
            if uuid in pins:
                conflicts[uuid] = (f"present on both {pins[uuid][0]} and {here}: "
                                   "inspect the hosts and remove the stale copy")
            else:
                pins[uuid] = (here, active)
    pinned = [replace(guest, pinned_to=pins[guest.uuid][0], pinned_active=pins[guest.uuid][1])
              if guest.uuid in pins else guest for guest in guests]
    return pinned, conflicts
