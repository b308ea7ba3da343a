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
   destination (the first three, and how many more).

Placement constraints (``constraints.py``; the rules in ``docs/placement-metadata.md``):

7. A guest pinned to its host (pin policy skip, shutdown or block) is not placed: it stays,
   with its policy in the reason (block makes ``constraints.unsatisfiable`` refuse the run).
8. Guests of one affinity group are placed as a unit on one host (units largest first); a
   higher ``priority`` is placed (and moved) first, then the order of rule 3.
9. A destination cannot take a guest that needs labels it lacks, that is the guest's own
   source host (guests of several source hosts are placed at once), that already holds
   (resident or planned) another member of one of its hard anti-affinity groups, or that is
   not where the rest of its affinity group is.  Soft anti-affinity ranks first in rule 5:
   a destination without another member wins; with one, the guest goes there with a warning.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    BLOCK,
    NO_CONSTRAINTS,
    SHUTDOWN,
    SKIP,
    GuestConstraints,
    Resident,
    affinity_units,
    same_host,
)

LIVE = "live"
OFFLINE = "offline"
KIB_PER_MIB = 1024

# CPU verdicts, as the preflight check reports them.
CPU_PASSED = "passed"
CPU_WARNING = "warning"
CPU_FAILED = "failed"
CPU_SKIPPED = "skipped"

# What an assignment does with its guest.
MOVE = "move"
STAY = "stay"

SHOWN = 3
"""How many other destinations a reason names (then how many more there are)."""

STAY_REASONS = {
    SKIP: "pinned to its host (pin policy skip): stays where it is, not moved",
    SHUTDOWN: "pinned to its host (pin policy shutdown): stays; to be shut down for the maintenance and "
              "started again once its host is back",
    BLOCK: "pinned to its host (pin policy block): the maintenance of its host is refused",
}


def mib(kib: int) -> int:
    """KiB to MiB, rounded down (what an operator reads)."""
    return int(kib) // KIB_PER_MIB


@dataclass(frozen=True)
class GuestToMove:
    """A guest of an evacuated host that is to move, as discovery found it.

    ``source``: the host it leaves (None: the one source of the run); ``constraints``: what it
    asks of its placement.
    """

    name: str
    uuid: str
    state: str
    persistent: bool
    memory_kib: int
    mode: str = LIVE
    pinned_to: str | None = None
    pinned_active: bool = False
    pause_reason: str | None = None  # libvirt's reason when the guest is paused
    constraints: GuestConstraints = NO_CONSTRAINTS
    source: str | None = None

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
    """What a candidate destination can take, as discovery measured it (``excluded``: why it takes nothing).

    ``labels``: the host's labels (``host_labels``); ``residents``: the guests already on it that stay
    there (their memory is already out of ``available_kib``, their groups count).
    """

    name: str
    uri: str
    available_kib: int = 0
    reserve_kib: int = 0
    excluded: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    residents: tuple[Resident, ...] = ()

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


NOT_COMPARED = CpuVerdict(CPU_SKIPPED, "not compared")


@dataclass
class Assignment:
    """Where one guest goes, and why (``why``: the same in numbers and lists, for plans and reports)."""

    guest: GuestToMove
    destination: str | None
    dest_uri: str | None
    reason: str
    action: str = MOVE
    why: dict[str, Any] = field(default_factory=dict)

    @property
    def placed(self) -> bool:
        return self.destination is not None

    def as_dict(self) -> dict[str, Any]:
        entry = self.guest.as_dict()
        entry.update({"destination": self.destination, "dest_uri": self.dest_uri,
                      "pinned": self.guest.pinned_to is not None, "reason": self.reason,
                      "action": self.action, "why": dict(self.why)})
        if self.guest.source is not None:
            entry["source"] = self.guest.source
        return entry


@dataclass
class DestinationLoad:
    """A destination's capacity (the placer's own copy) with what the plan puts on it.

    ``members``: anti-affinity group -> the guests of it on this host (residents and planned).
    """

    capacity: DestinationCapacity
    planned_kib: int = 0
    planned: list[str] = field(default_factory=list)
    members: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for resident in self.capacity.residents:
            for group in resident.constraints.groups:
                self.members.setdefault(group, set()).add(resident.name)

    @property
    def left_kib(self) -> int:
        return self.capacity.usable_kib - self.planned_kib

    def others_of(self, group: str, name: str) -> set[str]:
        """The other members of ``group`` on this host."""
        return self.members.get(group, set()) - {name}

    def as_dict(self) -> dict[str, Any]:
        capacity = self.capacity
        return {"name": capacity.name, "uri": capacity.uri, "excluded": capacity.excluded,
                "available_mib": mib(capacity.available_kib), "reserve_mib": mib(capacity.reserve_kib),
                "usable_mib": mib(capacity.usable_kib), "planned": list(self.planned),
                "planned_mib": mib(self.planned_kib), "left_after_mib": mib(self.left_kib),
                "labels": dict(capacity.labels), "residents": [resident.name for resident in capacity.residents]}


@dataclass
class PlacementPlan:
    assignments: list[Assignment]
    loads: list[DestinationLoad]

    @property
    def unplaceable(self) -> list[Assignment]:
        return [item for item in self.assignments if not item.placed and item.action == MOVE]

    @property
    def staying(self) -> list[Assignment]:
        """The guests pinned to their host (pin policy skip, shutdown or block)."""
        return [item for item in self.assignments if item.action == STAY]

    def as_list(self) -> list[dict[str, Any]]:
        return [item.as_dict() for item in self.assignments]


def _order_key(guest: GuestToMove) -> tuple[Any, ...]:
    return (guest.pinned_to is None, -guest.constraints.priority, guest.mode != LIVE, -guest.memory_kib,
            guest.name, guest.uuid)


def placement_order(guests: Sequence[GuestToMove]) -> list[GuestToMove]:
    """Pinned guests first, then higher priority, live before stopped, largest first, then by name."""
    return sorted(guests, key=_order_key)


def unit_order(units: Sequence[Sequence[GuestToMove]]) -> list[list[GuestToMove]]:
    """Affinity units (each in placement order) like guests: pinned, priority, live, total size, name."""
    def key(unit: list[GuestToMove]) -> tuple[Any, ...]:
        first = unit[0]
        return (all(guest.pinned_to is None for guest in unit), -max(guest.constraints.priority for guest in unit),
                all(guest.mode != LIVE for guest in unit), -sum(guest.memory_kib for guest in unit),
                first.name, first.uuid)
    return sorted((placement_order(unit) for unit in units), key=key)


def _names(names: set[str] | list[str]) -> str:
    ordered = sorted(names)
    text = ", ".join(ordered[:SHOWN])
    return text + (f" and {len(ordered) - SHOWN} more" if len(ordered) > SHOWN else "")


def _describe(load: DestinationLoad, needs_kib: int) -> str:
    return (f"{load.capacity.name} {mib(load.left_kib - needs_kib)} MiB left after placement, "
            f"{len(load.planned)} guest(s) already planned")


def stay(guest: GuestToMove) -> Assignment:
    """A guest pinned to its host: it stays, its policy says what happens to it."""
    policy = guest.constraints.pin_policy or SKIP
    return Assignment(guest, None, None, STAY_REASONS[policy], STAY, {"pin_policy": policy})


class Placer:
    """Apply the placement rules to discovered guests and destinations."""

    def __init__(self, destinations: list[DestinationCapacity],
                 cpu_verdicts: dict[tuple[str, str], CpuVerdict] | None = None) -> None:
        self.loads = [DestinationLoad(copy(dest)) for dest in sorted(destinations, key=lambda d: d.name)]
        self.by_name = {load.capacity.name: load for load in self.loads}
        self.cpu_verdicts = cpu_verdicts or {}
        self.affinity_hosts: dict[str, dict[str, set[str]]] = {}  # group -> host -> members there
        for load in self.loads:
            for resident in load.capacity.residents:
                for group in resident.constraints.affinity:
                    self.affinity_hosts.setdefault(group, {}).setdefault(load.capacity.name, set()).add(resident.name)

    def load_of(self, name: str) -> DestinationLoad | None:
        return self.by_name.get(name)

    def cpu_of(self, guest: GuestToMove, dest: str) -> CpuVerdict:
        return self.cpu_verdicts.get((guest.uuid, dest)) or NOT_COMPARED

    def plan(self, guests: list[GuestToMove]) -> PlacementPlan:
        moving = [guest for guest in guests if guest.constraints.movable or guest.pinned_to is not None]
        staying = [stay(guest) for guest in placement_order(guests)
                   if not guest.constraints.movable and guest.pinned_to is None]
        assignments: list[Assignment] = []
        for unit in unit_order(affinity_units(moving)):
            assignments.extend(self.place_unit(unit))
        return PlacementPlan(assignments + staying, self.loads)

    # -- bookkeeping ---------------------------------------------------------------

    def assign(self, guest: GuestToMove, load: DestinationLoad, reason: str,
               why: dict[str, Any] | None = None) -> Assignment:
        load.planned_kib += guest.needs_kib
        load.planned.append(guest.name)
        for group in guest.constraints.groups:
            load.members.setdefault(group, set()).add(guest.name)
        for group in guest.constraints.affinity:
            self.affinity_hosts.setdefault(group, {}).setdefault(load.capacity.name, set()).add(guest.name)
        return Assignment(guest, load.capacity.name, load.capacity.uri, reason, MOVE, why or {})

    def unassign(self, guest: GuestToMove, load: DestinationLoad) -> None:
        if guest.name not in load.planned:
            return
        load.planned.remove(guest.name)
        load.planned_kib -= guest.needs_kib
        for group in guest.constraints.groups:
            load.members.get(group, set()).discard(guest.name)
        for group in guest.constraints.affinity:
            self.affinity_hosts.get(group, {}).get(load.capacity.name, set()).discard(guest.name)

    # -- placing -------------------------------------------------------------------

    def place(self, guest: GuestToMove) -> Assignment:
        if guest.pinned_to is not None:
            return self.place_pinned(guest)
        return self.place_together([guest])[0]

    def place_unit(self, unit: list[GuestToMove]) -> list[Assignment]:
        """One guest, or an affinity group on one host (members already present somewhere go first)."""
        if len(unit) == 1 or any(guest.pinned_to is not None for guest in unit):
            return [self.place(guest) for guest in unit]
        return self.place_together(unit)

    def place_together(self, members: list[GuestToMove]) -> list[Assignment]:
        """Place ``members`` (one guest or an affinity unit) on the one destination that suits them best."""
        refused: list[tuple[DestinationLoad, str]] = []
        fitting: list[DestinationLoad] = []
        for load in self.loads:
            problem = self.unit_problem(members, load)
            if problem:
                refused.append((load, problem))
            else:
                fitting.append(load)
        needs = sum(guest.needs_kib for guest in members)
        if not fitting:
            return [self.unplaced(guest, members, refused) for guest in members]
        ranked = heapq.nsmallest(SHOWN + 1, fitting, key=lambda load: self.rank(members, load, needs))
        chosen = ranked[0]
        others = [_describe(load, needs) for load in ranked[1:]]
        others += [f"{load.capacity.name}: {problem}" for load, problem in refused[:SHOWN - len(others)]]
        more = len(fitting) - 1 + len(refused) - len(others)
        reason = self.reason(members, chosen, needs, others, more)
        whys = [self.why(guest, members, chosen, needs, len(fitting), len(refused)) for guest in members]
        for guest, why in zip(members, whys):
            broken = why["soft_broken"]
            if broken:
                reason += "; warning: soft anti-affinity broken: " + "; ".join(broken)
        assignments = [self.assign(members[0], chosen, reason, whys[0])]
        assignments += [self.assign(guest, chosen, f"with {members[0].name} (affinity group "
                                    f"{', '.join(sorted(set(guest.constraints.affinity)))}): {reason}", why)
                        for guest, why in zip(members[1:], whys[1:])]
        return assignments

    def reason(self, members: list[GuestToMove], chosen: DestinationLoad, needs: int, others: list[str],
               more: int) -> str:
        lead = members[0]
        rule = ("most memory left after placement" if needs or lead.mode == LIVE
                else "fewest guests planned (a stopped guest needs no memory now)")
        if len(members) == 1:
            size = f"{mib(lead.memory_kib)} MiB, {lead.mode}"
        else:
            groups = sorted({group for guest in members for group in guest.constraints.affinity})
            size = (f"affinity group {', '.join(groups)} placed together ({', '.join(g.name for g in members)}, "
                    f"{mib(needs)} MiB)")
        if lead.constraints.priority:
            size += f", priority {lead.constraints.priority}"
        reason = f"{size}; {rule}: {_describe(chosen, needs)}"
        if others:
            reason += "; other candidates: " + "; ".join(others)
        if more > 0:
            reason += f" (and {more} more)"
        for guest in members:
            cpu = self.cpu_of(guest, chosen.capacity.name)
            if cpu.status == CPU_WARNING:
                reason += f"; cpu: {cpu.message}" if len(members) == 1 else f"; cpu of {guest.name}: {cpu.message}"
        return reason

    def unplaced(self, guest: GuestToMove, members: list[GuestToMove],
                 refused: list[tuple[DestinationLoad, str]]) -> Assignment:
        if not refused:
            return Assignment(guest, None, None, "fits nowhere: no destination given",
                              why={"memory_needed_mib": mib(guest.needs_kib), "refused": {}, "refused_count": 0})
        shown = "; ".join(f"{load.capacity.name}: {problem}" for load, problem in refused[:SHOWN])
        if len(refused) > SHOWN:
            shown += f" (and {len(refused) - SHOWN} more)"
        lead = "fits nowhere: "
        if len(members) > 1:
            lead = f"fits nowhere with its affinity group ({', '.join(g.name for g in members)}): "
        why = {"memory_needed_mib": mib(guest.needs_kib),
               "refused": {load.capacity.name: problem for load, problem in refused[:SHOWN]},
               "refused_count": len(refused)}
        return Assignment(guest, None, None, lead + shown, why=why)

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
        return self.assign(guest, load, reason, {"already_present": True})

    def lose(self, name: str, why: str) -> None:
        """A destination became unreachable during the run: place nothing more there."""
        load = self.load_of(name)
        if load is not None and not load.capacity.excluded:
            load.capacity.excluded = f"unreachable during this run ({why})"

    def replace(self, item: Assignment) -> None:
        """Place ``item``'s guest again, after its destination was lost; ``item`` is updated in place."""
        lost = item.destination
        load = self.load_of(lost or "")
        if load is not None:
            self.unassign(item.guest, load)
        again = self.place(item.guest)
        item.destination, item.dest_uri, item.why = again.destination, again.dest_uri, again.why
        item.reason = f"re-placed, {lost} was lost: {again.reason}"

    # -- the rules -------------------------------------------------------------------

    def problem(self, guest: GuestToMove, load: DestinationLoad) -> str | None:
        """Why ``load`` cannot take ``guest`` now (None: it can): exclusion, CPU, memory, every hard constraint."""
        return self.guest_problem(guest, load, 0)

    def unit_problem(self, members: list[GuestToMove], load: DestinationLoad) -> str | None:
        """Why ``load`` cannot take every guest of ``members`` at once (None: it can)."""
        besides = 0
        for guest in members:
            problem = self.guest_problem(guest, load, besides)
            if problem:
                return problem if len(members) == 1 else f"{guest.name}: {problem}"
            besides += guest.needs_kib
        return None

    def guest_problem(self, guest: GuestToMove, load: DestinationLoad, besides_kib: int) -> str | None:
        """``problem`` with ``besides_kib`` more memory already taken (by the rest of its affinity unit)."""
        capacity = load.capacity
        if capacity.excluded:
            return capacity.excluded
        if guest.source is not None and same_host(guest.source, capacity.name):
            return "the guest's own source host"
        cpu = self.cpu_of(guest, capacity.name)
        if not cpu.compatible:
            return f"cpu: {cpu.message}"
        left = load.left_kib - besides_kib
        if guest.needs_kib > left:
            text = (f"{mib(left)} MiB left (available {mib(capacity.available_kib)} MiB - reserve "
                    f"{mib(capacity.reserve_kib)} MiB - planned {mib(load.planned_kib)} MiB")
            if besides_kib:
                text += f" - {mib(besides_kib)} MiB of its affinity group"
            return text + f"), the guest needs {mib(guest.needs_kib)} MiB"
        constraints = guest.constraints
        if constraints.require_labels:
            missing = constraints.missing_labels(capacity.labels)
            if missing:
                return "lacks the required label(s) " + ", ".join(f"{name}={value}" for name, value in missing)
        for group in constraints.hard_groups:
            others = load.others_of(group, guest.name)
            if others:
                return f"anti-affinity group {group} (hard): {_names(others)} already there"
        for group in constraints.affinity:
            hosts = self.affinity_elsewhere(group, guest.name)
            if hosts and capacity.name not in hosts:
                return f"affinity group {group}: its other members are on {_names(hosts)}"
        return None

    def affinity_elsewhere(self, group: str, name: str) -> set[str]:
        """The usable hosts holding another member of the affinity ``group`` (resident or planned)."""
        return {host for host, names in self.affinity_hosts.get(group, {}).items()
                if names - {name} and not self.by_name[host].capacity.excluded}

    def soft_clashes(self, guest: GuestToMove, load: DestinationLoad) -> list[str]:
        """The soft anti-affinity groups ``load`` would break for ``guest``, with the members there."""
        return [f"{group}: {_names(others)} on {load.capacity.name}" for group in guest.constraints.soft_groups
                for others in [load.others_of(group, guest.name)] if others]

    def rank(self, members: list[GuestToMove], load: DestinationLoad, needs: int) -> tuple[Any, ...]:
        clashes = sum(len(self.soft_clashes(guest, load)) for guest in members if guest.constraints.soft_groups)
        left_after = load.left_kib - needs
        if needs or members[0].mode == LIVE:
            return (clashes, -left_after, len(load.planned), load.capacity.name)
        return (clashes, len(load.planned), -left_after, load.capacity.name)

    def why(self, guest: GuestToMove, members: list[GuestToMove], load: DestinationLoad, needs: int,
            candidates: int, refused: int) -> dict[str, Any]:
        """The numbers and constraints behind placing ``guest`` (with ``members``) on ``load``."""
        host = load.capacity.name
        constraints = guest.constraints
        cpu = self.cpu_of(guest, host)
        satisfied = [f"anti-affinity {group} ({mode}): no other member on {host}"
                     for group, mode in constraints.anti_affinity if not load.others_of(group, guest.name)]
        satisfied += [f"affinity {group}: with {_names({g.name for g in members} - {guest.name})}"
                      if len(members) > 1 else f"affinity {group}" for group in constraints.affinity]
        if constraints.require_labels:
            satisfied.append("labels " + ", ".join(f"{name}={value}" for name, value in constraints.require_labels))
        if constraints.priority:
            satisfied.append(f"priority {constraints.priority}")
        return {"memory_needed_mib": mib(guest.needs_kib), "memory_left_after_mib": mib(load.left_kib - needs),
                "cpu": cpu.status, "cpu_message": cpu.message, "constraints_satisfied": satisfied,
                "soft_broken": self.soft_clashes(guest, load), "candidates": candidates, "refused": refused}


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
