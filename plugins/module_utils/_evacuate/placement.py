# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Placement of the guests of an evacuated host onto destination hosts.

Pure: it works on what discovery measured (guests, destinations, CPU
verdicts) and touches no libvirt object, so every rule is unit-testable.

The rules, in order:

1. A destination is never chosen when it is excluded: named in
   ``maintenance_hosts``, unreachable, or the source host itself.
2. A guest already present on a destination (an earlier, interrupted run) is
   pinned there, whatever the other rules say: moving it elsewhere could leave
   it defined on two hosts.  The migrate code path then finishes the move.
3. Guests are placed largest first (memory, then name): bin-packing the big
   ones while the most room is left.  Running (live) guests come before
   stopped (offline) ones.
4. A destination can take a live guest when its CPU can run the guest's CPU
   (``compareHypervisorCPU``) and the guest's memory fits in what is left:
   ``available - memory_reserve - memory of the guests already planned there``.
   A stopped guest needs no memory now, only a compatible CPU.
5. Among the destinations that can take it, a live guest goes where the most
   memory is left *after* placing it; a stopped guest goes where the fewest
   guests are planned.  Then fewer planned guests (live) / more memory left
   (stopped), then the destination name: the plan is deterministic.
6. A guest no destination can take is unplaceable, with the reason per
   destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, field
from typing import Any

LIVE = "live"
OFFLINE = "offline"
KIB_PER_MIB = 1024

# CPU verdicts, as the preflight check reports them.
CPU_PASSED = "passed"
CPU_WARNING = "warning"
CPU_FAILED = "failed"
CPU_SKIPPED = "skipped"


def mib(kib: int) -> int:
    """KiB to MiB, rounded down (what an operator reads)."""
    return int(kib) // KIB_PER_MIB


@dataclass(frozen=True)
class GuestToMove:
    """A guest of the evacuated host that is to move, as discovery found it."""

    name: str
    uuid: str
    state: str
    persistent: bool
    memory_kib: int
    mode: str = LIVE
    pinned_to: str | None = None
    pinned_active: bool = False
    pause_reason: str | None = None  # libvirt's reason when the guest is paused

    @property
    def needs_kib(self) -> int:
        """Memory this guest takes from its destination when it moves."""
        if self.mode != LIVE or (self.pinned_to is not None and self.pinned_active):
            return 0
        return self.memory_kib

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid, "state": self.state, "persistent": self.persistent,
                "memory_mib": mib(self.memory_kib), "mode": self.mode, "pause_reason": self.pause_reason}


@dataclass
class DestinationCapacity:
    """What a candidate destination can take, as discovery measured it (``excluded``: why it takes nothing)."""

    name: str
    uri: str
    available_kib: int = 0
    reserve_kib: int = 0
    excluded: str | None = None

    @property
    def usable_kib(self) -> int:
        return max(0, self.available_kib - self.reserve_kib)


@dataclass
class CpuVerdict:
    status: str
    message: str

    @property
    def compatible(self) -> bool:
        return self.status != CPU_FAILED


@dataclass
class Assignment:
    """Where one guest goes, and why."""

    guest: GuestToMove
    destination: str | None
    dest_uri: str | None
    reason: str

    @property
    def placed(self) -> bool:
        return self.destination is not None

    def as_dict(self) -> dict[str, Any]:
        entry = self.guest.as_dict()
        entry.update({"destination": self.destination, "dest_uri": self.dest_uri,
                      "pinned": self.guest.pinned_to is not None, "reason": self.reason})
        return entry


@dataclass
class DestinationLoad:
    """A destination's capacity (the placer's own copy) with what the plan puts on it."""

    capacity: DestinationCapacity
    planned_kib: int = 0
    planned: list[str] = field(default_factory=list)

    @property
    def left_kib(self) -> int:
        return self.capacity.usable_kib - self.planned_kib

    def as_dict(self) -> dict[str, Any]:
        capacity = self.capacity
        return {"name": capacity.name, "uri": capacity.uri, "excluded": capacity.excluded,
                "available_mib": mib(capacity.available_kib), "reserve_mib": mib(capacity.reserve_kib),
                "usable_mib": mib(capacity.usable_kib), "planned": list(self.planned),
                "planned_mib": mib(self.planned_kib), "left_after_mib": mib(self.left_kib)}


@dataclass
class PlacementPlan:
    assignments: list[Assignment]
    loads: list[DestinationLoad]

    @property
    def unplaceable(self) -> list[Assignment]:
        return [item for item in self.assignments if not item.placed]

    def as_list(self) -> list[dict[str, Any]]:
        return [item.as_dict() for item in self.assignments]


def placement_order(guests: list[GuestToMove]) -> list[GuestToMove]:
    """Pinned guests first, then live before stopped, largest first, then by name."""
    return sorted(guests, key=lambda g: (g.pinned_to is None, g.mode != LIVE, -g.memory_kib, g.name, g.uuid))


def _rank(guest: GuestToMove, load: DestinationLoad) -> tuple[Any, ...]:
    left_after = load.left_kib - guest.needs_kib
    if guest.mode == LIVE:
        return (-left_after, len(load.planned), load.capacity.name)
    return (len(load.planned), -left_after, load.capacity.name)


def _describe(load: DestinationLoad, guest: GuestToMove) -> str:
    left_after = load.left_kib - guest.needs_kib
    return (f"{load.capacity.name} {mib(left_after)} MiB left after placement, "
            f"{len(load.planned)} guest(s) already planned")


class Placer:
    """Apply the placement rules to discovered guests and destinations."""

    def __init__(self, destinations: list[DestinationCapacity],
                 cpu_verdicts: dict[tuple[str, str], CpuVerdict] | None = None) -> None:
        self.loads = [DestinationLoad(copy(dest)) for dest in sorted(destinations, key=lambda d: d.name)]
        self.cpu_verdicts = cpu_verdicts or {}

    def load_of(self, name: str) -> DestinationLoad | None:
        return next((load for load in self.loads if load.capacity.name == name), None)

    def cpu_of(self, guest: GuestToMove, dest: str) -> CpuVerdict:
        return self.cpu_verdicts.get((guest.uuid, dest), CpuVerdict(CPU_SKIPPED, "not compared"))

    def plan(self, guests: list[GuestToMove]) -> PlacementPlan:
        assignments = [self.place(guest) for guest in placement_order(guests)]
        return PlacementPlan(assignments, self.loads)

    def assign(self, guest: GuestToMove, load: DestinationLoad, reason: str) -> Assignment:
        load.planned_kib += guest.needs_kib
        load.planned.append(guest.name)
        return Assignment(guest, load.capacity.name, load.capacity.uri, reason)

    def place(self, guest: GuestToMove) -> Assignment:
        if guest.pinned_to is not None:
            return self.place_pinned(guest)
        refused: list[str] = []
        fitting: list[DestinationLoad] = []
        for load in self.loads:
            problem = self.problem(guest, load)
            if problem:
                refused.append(f"{load.capacity.name}: {problem}")
            else:
                fitting.append(load)
        if not fitting:
            return Assignment(guest, None, None, "fits nowhere: " + "; ".join(refused) if refused
                              else "fits nowhere: no destination given")
        fitting.sort(key=lambda load: _rank(guest, load))
        chosen = fitting[0]
        rule = ("most memory left after placement" if guest.mode == LIVE
                else "fewest guests planned (a stopped guest needs no memory now)")
        size = f"{mib(guest.memory_kib)} MiB, {guest.mode}"
        reason = f"{size}; {rule}: {_describe(chosen, guest)}"
        others = [_describe(load, guest) for load in fitting[1:]] + refused
        if others:
            reason += "; other candidates: " + "; ".join(others)
        cpu = self.cpu_of(guest, chosen.capacity.name)
        if cpu.status == CPU_WARNING:
            reason += f"; cpu: {cpu.message}"
        return self.assign(guest, chosen, reason)

    def place_pinned(self, guest: GuestToMove) -> Assignment:
        load = self.load_of(guest.pinned_to or "")
        if load is None:
            return Assignment(guest, None, None, f"already present on {guest.pinned_to}, which is not a "
                              "destination of this run: add it to the destinations to finish the move")
        if load.capacity.excluded and not load.capacity.excluded.startswith("maintenance"):
            return Assignment(guest, None, None, f"already present on {load.capacity.name}, which cannot be "
                              f"used ({load.capacity.excluded})")
        reason = (f"already present on {load.capacity.name} (an earlier run was interrupted): finishing the move "
                  "there, never to another host")
        if load.capacity.excluded:
            reason += f"; note: {load.capacity.name} is {load.capacity.excluded}"
        return self.assign(guest, load, reason)

    def lose(self, name: str, why: str) -> None:
        """A destination became unreachable during the run: place nothing more there."""
        load = self.load_of(name)
        if load is not None and not load.capacity.excluded:
            load.capacity.excluded = f"unreachable during this run ({why})"

    def replace(self, item: Assignment) -> None:
        """Place ``item``'s guest again, after its destination was lost; ``item`` is updated in place."""
        lost = item.destination
        load = self.load_of(lost or "")
        if load is not None and item.guest.name in load.planned:
            load.planned.remove(item.guest.name)
            load.planned_kib -= item.guest.needs_kib
        again = self.place(item.guest)
        item.destination, item.dest_uri = again.destination, again.dest_uri
        item.reason = f"re-placed, {lost} was lost: {again.reason}"

    def problem(self, guest: GuestToMove, load: DestinationLoad) -> str | None:
        """Why ``load`` cannot take ``guest`` (None: it can)."""
        if load.capacity.excluded:
            return load.capacity.excluded
        cpu = self.cpu_of(guest, load.capacity.name)
        if not cpu.compatible:
            return f"cpu: {cpu.message}"
        if guest.needs_kib > load.left_kib:
            return (f"{mib(load.left_kib)} MiB left (available {mib(load.capacity.available_kib)} MiB - reserve "
                    f"{mib(load.capacity.reserve_kib)} MiB - planned {mib(load.planned_kib)} MiB), the guest "
                    f"needs {mib(guest.needs_kib)} MiB")
        return None


def hold_back(plan: PlacementPlan, reasons: Mapping[str, str]) -> PlacementPlan:
    """``plan`` with the guests named in ``reasons`` (uuid -> why it cannot be moved) placed nowhere.

    The destinations' tallies keep them: what they leave unused is not offered to the others.
    """
    assignments = [Assignment(item.guest, None, None, reasons[item.guest.uuid]) if item.guest.uuid in reasons
                   else item for item in plan.assignments]
    return PlacementPlan(assignments, plan.loads)


def plan_placement(guests: list[GuestToMove], destinations: list[DestinationCapacity],
                   cpu_verdicts: dict[tuple[str, str], CpuVerdict] | None = None) -> PlacementPlan:
    """The placement plan for ``guests`` (see the module docstring for the rules)."""
    return Placer(destinations, cpu_verdicts).plan(guests)
