# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""A guest's placement constraints, and the sets of them no placement can satisfy.

Pure: values in, values out.  The rules themselves (what each constraint means,
which source wins, what is refused) are explained in the repository's
``docs/placement-metadata.md`` and the evacuate module's documentation; in short:

* a guest's constraints come from its own metadata (``_libvirt/metadata.py``) and from the
  evacuate task's ``constraints`` option; the task option wins field by field (pin policy,
  priority, required labels), groups are the union of both (a group named in both with two
  modes takes the task option's mode);
* ``unsatisfiable`` lists what no placement can honour (a ``block`` pin policy, a hard
  anti-affinity group with more members to place than hosts free of the group, an affinity
  group whose members fit on no single host or that a pinned member splits, a guest whose
  required labels no destination carries, a pair both in an affinity and a hard anti-affinity
  group), each naming the constraint and the guests; the evacuation refuses before it moves
  anything when the list is not empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)

HARD = "hard"
SOFT = "soft"
ANTI_AFFINITY_MODES = (HARD, SOFT)

SKIP = "skip"
SHUTDOWN = "shutdown"
BLOCK = "block"
PIN_POLICIES = (SKIP, SHUTDOWN, BLOCK)

CONSTRAINT_KEYS = ("anti_affinity", "affinity", "pinned", "priority", "require_labels")


@lru_cache(maxsize=4096)
def short_host(name: str) -> str:
    """A host's short name, lower case (``hv2.example.com`` -> ``hv2``)."""
    return name.split(".", 1)[0].lower()


def same_host(one: str | None, other: str | None) -> bool:
    """Two names of one host (a short name matches its FQDN)."""
    return bool(one) and bool(other) and short_host(one or "") == short_host(other or "")


def _labels_text(labels: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{name}={value}" for name, value in labels)


@dataclass(frozen=True)
class GuestConstraints:
    """What one guest asks of its placement (the empty value asks nothing).

    ``anti_affinity``: (group, hard|soft); ``affinity``: group names; ``pin_policy``: None when the
    guest may move, else skip|shutdown|block; ``priority``: higher moves first;
    ``require_labels``: (label, value) every destination must carry.
    """

    anti_affinity: tuple[tuple[str, str], ...] = ()
    affinity: tuple[str, ...] = ()
    pin_policy: str | None = None
    priority: int = 0
    require_labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "anti_affinity", tuple(sorted({tuple(pair) for pair in self.anti_affinity})))
        object.__setattr__(self, "affinity", tuple(sorted(set(self.affinity))))
        object.__setattr__(self, "require_labels", tuple(sorted({tuple(pair) for pair in self.require_labels})))

    @property
    def hard_groups(self) -> tuple[str, ...]:
        return tuple(group for group, mode in self.anti_affinity if mode == HARD)

    @property
    def soft_groups(self) -> tuple[str, ...]:
        return tuple(group for group, mode in self.anti_affinity if mode == SOFT)

    @property
    def groups(self) -> tuple[str, ...]:
        """Every anti-affinity group it belongs to, whatever the mode."""
        return tuple(group for group, _mode in self.anti_affinity)

    @property
    def movable(self) -> bool:
        return self.pin_policy is None

    @property
    def empty(self) -> bool:
        return self == GuestConstraints()

    def missing_labels(self, labels: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The required (label, value) pairs ``labels`` (a host's) does not carry."""
        return [(name, value) for name, value in self.require_labels
                if name not in labels or str(labels[name]) != value]

    def as_dict(self) -> dict[str, Any]:
        return {"anti_affinity": [{"group": group, "mode": mode} for group, mode in self.anti_affinity],
                "affinity": list(self.affinity), "pin_policy": self.pin_policy, "priority": self.priority,
                "require_labels": dict(self.require_labels)}


NO_CONSTRAINTS = GuestConstraints()


@dataclass(frozen=True)
class Resident:
    """A guest already on a destination that stays there: its groups count on that host."""

    name: str
    uuid: str | None = None
    constraints: GuestConstraints = NO_CONSTRAINTS


# -- the task option -------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintOptions:
    """The evacuate task's ``constraints`` option, by guest name."""

    anti_affinity: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # (group, guests, mode)
    affinity: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group, guests)
    pinned: tuple[tuple[str, str], ...] = ()  # (guest, policy)
    priority: tuple[tuple[str, int], ...] = ()  # (guest, priority)
    require_labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (guest, ((label, value), ...))

    @property
    def empty(self) -> bool:
        return self == ConstraintOptions()


def constraint_option_problems(raw: Any) -> list[str]:
    """What is wrong with the ``constraints`` option (empty: it can be used)."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return ["constraints must be a dict with anti_affinity, affinity, pinned, priority, require_labels"]
    problems = [f"constraints has an unknown key {key!r} (known: {', '.join(CONSTRAINT_KEYS)})"
                for key in sorted(set(raw) - set(CONSTRAINT_KEYS), key=str)]
    problems += _group_problems(raw.get("anti_affinity"), "anti_affinity", with_mode=True)
    problems += _group_problems(raw.get("affinity"), "affinity", with_mode=False)
    problems += _pinned_problems(raw.get("pinned"))
    priority = raw.get("priority") or {}
    if not isinstance(priority, Mapping):
        problems.append("constraints.priority must be a dict of guest name -> integer")
    else:
        problems += [f"constraints.priority of {name!r} is {value!r}, not an integer" for name, value in priority.items()
                     if isinstance(value, bool) or not _is_int(value)]
    required = raw.get("require_labels") or {}
    if not isinstance(required, Mapping):
        problems.append("constraints.require_labels must be a dict of guest name -> {label: value}")
    else:
        problems += [f"constraints.require_labels of {name!r} must be a dict of label -> value"
                     for name, labels in required.items() if not isinstance(labels, Mapping)]
    return problems


def _is_int(value: Any) -> bool:
    try:
        int(str(value).strip())
    except ValueError:
        return False
    return True


def _group_problems(groups: Any, key: str, with_mode: bool) -> list[str]:
    if groups is None:
        return []
    if not isinstance(groups, list):
        return [f"constraints.{key} must be a list of groups"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, group in enumerate(groups):
        where = f"constraints.{key}[{index}]"
        if not isinstance(group, Mapping):
            problems.append(f"{where} must be a dict with name and guests")
            continue
        allowed = {"name", "guests", "mode"} if with_mode else {"name", "guests"}
        problems += [f"{where} has an unknown key {extra!r}" for extra in sorted(set(group) - allowed, key=str)]
        name = group.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where} has no name")
        elif name in seen:
            problems.append(f"constraints.{key} names the group {name!r} twice")
        else:
            seen.add(name)
        guests = group.get("guests")
        if not isinstance(guests, list) or len(guests) < 2 or not all(isinstance(g, str) and g for g in guests):
            problems.append(f"{where} ({name}) must list at least two guest names")
        if with_mode and group.get("mode", HARD) not in ANTI_AFFINITY_MODES:
            problems.append(f"{where} ({name}) has mode {group.get('mode')!r}, not one of hard, soft")
    return problems


def _pinned_problems(pinned: Any) -> list[str]:
    if pinned is None:
        return []
    if not isinstance(pinned, list):
        return ["constraints.pinned must be a list of {guest, policy}"]
    problems: list[str] = []
    for index, entry in enumerate(pinned):
        where = f"constraints.pinned[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("guest"), str) or not entry.get("guest"):
            problems.append(f"{where} must be a dict with guest and policy")
            continue
        problems += [f"{where} has an unknown key {extra!r}" for extra in sorted(set(entry) - {"guest", "policy"}, key=str)]
        if entry.get("policy", SKIP) not in PIN_POLICIES:
            problems.append(f"{where} ({entry['guest']}) has policy {entry.get('policy')!r}, not one of skip, shutdown, block")
    return problems


def constraint_options(raw: Mapping[str, Any] | None) -> ConstraintOptions:
    """The ``constraints`` option as a value (``constraint_option_problems(raw)`` must be empty)."""
    raw = raw or {}
    return ConstraintOptions(
        anti_affinity=tuple((str(group["name"]), tuple(group["guests"]), str(group.get("mode") or HARD))
                            for group in raw.get("anti_affinity") or []),
        affinity=tuple((str(group["name"]), tuple(group["guests"])) for group in raw.get("affinity") or []),
        pinned=tuple((str(entry["guest"]), str(entry.get("policy") or SKIP)) for entry in raw.get("pinned") or []),
        priority=tuple((str(name), int(str(value).strip())) for name, value in (raw.get("priority") or {}).items()),
        require_labels=tuple((str(name), tuple((str(label), str(value)) for label, value in labels.items()))
                             for name, labels in (raw.get("require_labels") or {}).items()),
    )


def host_label_problems(raw: Any) -> list[str]:
    """What is wrong with the ``host_labels`` option (host -> {label: value})."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return ["host_labels must be a dict of host name -> {label: value}"]
    problems: list[str] = []
    for host, labels in raw.items():
        if not isinstance(labels, Mapping):
            problems.append(f"host_labels of {host!r} must be a dict of label -> value")
        elif any(isinstance(value, (Mapping, list)) for value in labels.values()):
            problems.append(f"host_labels of {host!r}: each label's value must be a string")
    return problems


def labels_of(host_labels: Mapping[str, Mapping[str, Any]] | None, host: str) -> dict[str, str]:
    """The labels ``host_labels`` gives ``host`` (by its name, else by its short name), values as strings."""
    host_labels = host_labels or {}
    labels = host_labels.get(host)
    if labels is None:
        labels = next((value for key, value in host_labels.items() if same_host(str(key), host)), None)
    return {str(name): str(value) for name, value in (labels or {}).items()}


# -- one guest's constraints -------------------------------------------------------


def guest_constraints(name: str, metadata: Any = None, options: ConstraintOptions | None = None) -> GuestConstraints:
    """``name``'s constraints from its metadata (a GuestMetadata, or None) and the task option.

    The task option wins field by field (pin policy, priority, required labels); groups are the
    union (the task option's mode wins for a group named in both).
    """
    options = options or ConstraintOptions()
    anti = dict(getattr(metadata, "anti_affinity", ()))
    anti.update({group: mode for group, guests, mode in options.anti_affinity if name in guests})
    affinity = set(getattr(metadata, "affinity", ()))
    affinity.update(group for group, guests in options.affinity if name in guests)
    pin_policy = getattr(metadata, "pin_policy", None)
    pin_policy = next((policy for guest, policy in options.pinned if guest == name), pin_policy)
    priority = getattr(metadata, "priority", None)
    priority = next((value for guest, value in options.priority if guest == name), priority)
    labels = tuple(getattr(metadata, "require_labels", ()))
    labels = next((value for guest, value in options.require_labels if guest == name), labels)
    return GuestConstraints(anti_affinity=tuple(anti.items()), affinity=tuple(affinity), pin_policy=pin_policy,
                            priority=int(priority or 0), require_labels=labels)


# -- what no placement can satisfy --------------------------------------------------


class GuestLike(Protocol):
    name: str
    constraints: GuestConstraints

    @property
    def source(self) -> str | None:
        ...

    @property
    def needs_kib(self) -> int:
        ...


class HostLike(Protocol):
    name: str
    excluded: str | None
    labels: Mapping[str, Any]
    residents: Sequence[Resident]

    @property
    def usable_kib(self) -> int:
        ...


@dataclass(frozen=True)
class ConstraintProblem:
    """A constraint no placement can honour, and the guests it concerns."""

    constraint: str
    guests: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.constraint} ({', '.join(self.guests)}): {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "guests": list(self.guests), "message": self.message}


def affinity_units(guests: Sequence[Any]) -> list[list[Any]]:
    """The guests grouped into units that move together: affinity groups joined by shared members."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for guest in guests:
        for group in guest.constraints.affinity:
            parent[find("g:" + guest.name)] = find("a:" + group)
    units: dict[str, list[Any]] = {}
    for guest in guests:
        units.setdefault(find("g:" + guest.name), []).append(guest)
    return list(units.values())


def unsatisfiable(guests: Sequence[GuestLike], destinations: Sequence[HostLike]) -> list[ConstraintProblem]:
    """Every constraint among ``guests`` (to place) that no placement onto ``destinations`` can honour."""
    problems: list[ConstraintProblem] = []
    problems += [ConstraintProblem("pin policy block", (guest.name,), "the guest is pinned to its host with "
                                   "policy block: the maintenance of its host is refused")
                 for guest in guests if guest.constraints.pin_policy == BLOCK]
    problems += _contradictions(guests)
    movable = [guest for guest in guests if guest.constraints.movable]
    problems += _split_affinity(guests)
    open_hosts = [host for host in destinations if not host.excluded]
    for guest in movable:
        if guest.constraints.require_labels and not any(
                not guest.constraints.missing_labels(host.labels) and not same_host(host.name, guest.source)
                for host in open_hosts):
            problems.append(ConstraintProblem(f"required labels {_labels_text(guest.constraints.require_labels)}",
                                              (guest.name,), "no usable destination carries them"))
    units = affinity_units(movable)
    problems += [problem for unit in units if len(unit) > 1 for problem in _unit_fits_nowhere(unit, open_hosts)]
    problems += _crowded_groups(units, open_hosts)
    return problems


def _contradictions(guests: Sequence[GuestLike]) -> list[ConstraintProblem]:
    """Pairs in one affinity group and one hard anti-affinity group."""
    problems = []
    for group in sorted({group for guest in guests for group in guest.constraints.affinity}):
        members = [guest for guest in guests if group in guest.constraints.affinity]
        for anti in sorted({name for guest in members for name in guest.constraints.hard_groups}):
            both = tuple(sorted(guest.name for guest in members if anti in guest.constraints.hard_groups))
            if len(both) > 1:
                problems.append(ConstraintProblem(f"affinity group {group} and anti-affinity group {anti} (hard)",
                                                  both, "the same guests are to share a host and never to share one"))
    return problems


def _split_affinity(guests: Sequence[GuestLike]) -> list[ConstraintProblem]:
    """Affinity groups with a member pinned to its host and another that would move."""
    problems = []
    for group in sorted({group for guest in guests for group in guest.constraints.affinity}):
        members = [guest for guest in guests if group in guest.constraints.affinity]
        staying = sorted(guest.name for guest in members if not guest.constraints.movable)
        moving = sorted(guest.name for guest in members if guest.constraints.movable)
        if staying and moving:
            problems.append(ConstraintProblem(
                f"affinity group {group}", tuple(staying + moving),
                f"{', '.join(staying)} pinned to its host while {', '.join(moving)} would move: the group would split"))
    return problems


def _unit_fits_nowhere(unit: Sequence[GuestLike], hosts: Sequence[HostLike]) -> list[ConstraintProblem]:
    names = tuple(sorted(guest.name for guest in unit))
    groups = sorted({group for guest in unit for group in guest.constraints.affinity})
    constraint = "affinity group " + ", ".join(groups)
    labels: dict[str, set[str]] = {}
    for guest in unit:
        for label, value in guest.constraints.require_labels:
            labels.setdefault(label, set()).add(value)
    clashing = sorted(label for label, values in labels.items() if len(values) > 1)
    if clashing:
        return [ConstraintProblem(constraint, names, f"its members require different values of {', '.join(clashing)}")]
    needed = sum(guest.needs_kib for guest in unit)
    sources = {guest.source for guest in unit if guest.source}
    eligible = [host for host in hosts if not any(same_host(host.name, source) for source in sources)
                and all(str(host.labels.get(label, "")) in values and label in host.labels
                        for label, values in labels.items())]
    if not eligible:
        return [ConstraintProblem(constraint, names, "no usable destination carries the labels its members require")]
    largest = max(host.usable_kib for host in eligible)
    if needed > largest:
        return [ConstraintProblem(constraint, names, f"its members need {needed // 1024} MiB on one host, the largest "
                                  f"usable destination offers {largest // 1024} MiB")]
    return []


def _crowded_groups(units: Sequence[Sequence[GuestLike]], hosts: Sequence[HostLike]) -> list[ConstraintProblem]:
    """Hard anti-affinity groups with more units to place than hosts without a member of the group."""
    problems = []
    placing: dict[str, list[Sequence[GuestLike]]] = {}
    for unit in units:
        for group in sorted({group for guest in unit for group in guest.constraints.hard_groups}):
            placing.setdefault(group, []).append(unit)
    holding: dict[str, int] = {}  # group -> usable hosts with a resident member
    for host in hosts:
        for group in {group for resident in host.residents for group in resident.constraints.groups}:
            holding[group] = holding.get(group, 0) + 1
    for group in sorted(placing):
        free = len(hosts) - holding.get(group, 0)
        if len(placing[group]) > free:
            names = tuple(sorted(guest.name for unit in placing[group] for guest in unit
                                 if group in guest.constraints.groups))
            problems.append(ConstraintProblem(
                f"anti-affinity group {group} (hard)", names,
                f"{len(placing[group])} member(s) to place need as many hosts, {free} usable destination(s) "
                f"hold no member of the group"))
    return problems


def refuse_unsatisfiable(problems: Sequence[ConstraintProblem], **context: Any) -> None:
    """Raise one ValidationError naming every unsatisfiable constraint and its guests (none: return)."""
    if not problems:
        return
    listed = "; ".join(f"({number}) {problem}" for number, problem in enumerate(problems, start=1))
    raise ValidationError("check placement constraints",
                          f"{len(problems)} placement constraint(s) cannot be satisfied, nothing was moved: {listed}",
                          hint="change the guests' metadata (the guest_placement module) or the constraints "
                          "option, add destinations or host labels, or move the pinned guests by hand", **context)
