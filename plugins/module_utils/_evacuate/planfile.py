# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Plan files: an evacuation's placement written in check mode, then executed exactly, or refused on drift.

The document (``plan_document``) is JSON: ``schema_version``, ``kind``, when and by which run it was
made, the source host, the options that shaped it, each guest in the order the migrations start
with its destination (or none) and why, the guests left on the source, and each destination's
capacity before and after.

A run given a plan file reads it (``parse_plan``), discovers the cluster again and replays the
plan's assignments through a fresh ``Placer`` (``replay``): each planned (guest, destination) is
asked ``Placer.problem``, the single answer to "can this destination take this guest now". Every
difference from the plan is a ``Drift``; any drift refuses the run before anything moves.

Pure, except ``read_plan_file``, ``write_plan_file`` and ``arrived_on_destinations`` (the file system
and libvirt).
"""

from __future__ import annotations

import dataclasses
import json
import uuid as uuid_lib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.discovery import (
    Discovery,
    LeftGuest,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    LIVE,
    MOVE,
    OFFLINE,
    STAY,
    Assignment,
    GuestToMove,
    PlacementPlan,
    Placer,
    mib,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.report import (
    write_atomic,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    lookup_by_uuid,
)

SCHEMA_VERSION = 1
KIND = "evacuation"

SHAPING_OPTIONS = ("include", "exclude", "stopped_guests", "maintenance_hosts", "memory_reserve_mib",
                   "constraints", "host_labels")
"""The options that decide the placement (those the options do not have yet are left out)."""

# Kinds of drift.
GUEST_ADDED = "guest_added"
GUEST_GONE = "guest_gone"
GUEST_LEFT = "guest_left"
GUEST_ELSEWHERE = "guest_elsewhere"
MEMORY_CHANGED = "memory_changed"
MODE_CHANGED = "mode_changed"
DESTINATION_GONE = "destination_gone"
DESTINATION_EXCLUDED = "destination_excluded"
CPU_INCOMPATIBLE = "cpu_incompatible"
MEMORY_SHORT = "memory_short"
CONSTRAINT_VIOLATED = "constraint_violated"


def new_run_id() -> str:
    """A run's identifier."""
    return str(uuid_lib.uuid4())


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the document ----------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it (dataclasses as dicts, tuples and sets as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    return value


def shaping_options(options: EvacuationOptions) -> dict[str, Any]:
    """The destinations and the options that shaped the plan."""
    values = {field.name: jsonable(getattr(options, field.name)) for field in dataclasses.fields(options)
              if field.name in SHAPING_OPTIONS}
    values["destinations"] = [{"name": dest.name, "uri": dest.uri} for dest in options.destinations]
    return values


def planned_guest_entry(item: Assignment) -> dict[str, Any]:
    """One guest of the plan: what placement says of it, its exact memory, and why it goes (or not) there."""
    entry = jsonable(item.as_dict())
    entry["memory_kib"] = item.guest.memory_kib
    return entry


def left_guest_entry(entry: LeftGuest) -> dict[str, Any]:
    return {"name": entry.name, "uuid": entry.uuid, "memory_mib": entry.memory_mib, "reason": entry.reason}


def plan_document(options: EvacuationOptions, discovery: Discovery, plan: PlacementPlan, run_id: str,
                  created: str) -> dict[str, Any]:
    """The plan file's content for this evacuation's placement."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": created,
        "run_id": run_id,
        "source": {"name": discovery.source_name, "uri": options.uri,
                   "host_uuid": discovery.source_host_uuid},
        "options": shaping_options(options),
        "guests": [planned_guest_entry(item) for item in plan.assignments],
        "cannot_move": [{"name": item.guest.name, "uuid": item.guest.uuid,
                         "memory_mib": mib(item.guest.memory_kib), "mode": item.guest.mode, "reason": item.reason}
                        for item in plan.unplaceable],
        "left": [left_guest_entry(entry) for entry in discovery.left],
        "destinations": [jsonable(load.as_dict()) for load in plan.loads],
    }


def render_plan(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_plan_file(path: str, document: Mapping[str, Any]) -> None:
    """Write the plan atomically (mode 0640, like the report); raises ValidationError naming the path."""
    try:
        write_atomic(path, render_plan(document))
    except OSError as exc:
        raise ValidationError("write plan file", f"cannot write the plan file {path}: {exc}",
                              hint="choose a plan_file path the module's user can write") from exc


# -- reading it back -------------------------------------------------------------


@dataclass(frozen=True)
class PlannedGuest:
    """One guest as the plan saw it, and where the plan sends it (None: nowhere)."""

    name: str
    uuid: str
    memory_kib: int
    mode: str
    destination: str | None
    reason: str
    action: str = MOVE
    pin_policy: str | None = None


@dataclass(frozen=True)
class EvacuationPlan:
    """A plan file, read and checked; ``document`` is its content as read."""

    path: str
    run_id: str
    created: str
    source_name: str
    source_uri: str
    source_host_uuid: str | None
    destinations: tuple[str, ...]
    guests: tuple[PlannedGuest, ...]
    left: tuple[str, ...]  # uuids the plan left on the source
    document: Mapping[str, Any]

    def guest(self, uuid: str) -> PlannedGuest | None:
        return next((guest for guest in self.guests if guest.uuid == uuid), None)


def refuse(path: str, message: str, hint: str | None = None) -> ValidationError:
    return ValidationError("read plan file", f"{path}: {message}",
                           hint=hint or "write the plan again: run the evacuation in check mode with plan_file")


def read_plan_file(path: str) -> EvacuationPlan:
    """Read and check the plan file at ``path``; raises ValidationError saying what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise refuse(path, f"cannot read it ({exc.strerror or exc})") from exc
    return parse_plan(text, path)


def parse_plan(text: str, path: str) -> EvacuationPlan:
    """The plan in ``text`` (read from ``path``), checked; raises ValidationError naming every problem found."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise refuse(path, f"not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise refuse(path, "not a plan: the top level is not a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise refuse(path, f"schema_version {version!r} is not supported (this collection reads "
                     f"schema_version {SCHEMA_VERSION})", "write the plan again with this collection's version")
    if document.get("kind") != KIND:
        raise refuse(path, f"kind {document.get('kind')!r} is not a plan this module runs (expected {KIND!r})")
    problems: list[str] = []
    source = mapping_at(document, "source", problems)
    options = mapping_at(document, "options", problems)
    guests = [planned_guest(entry, f"guests[{index}]", problems)
              for index, entry in enumerate(list_at(document, "guests", problems))]
    destinations = [str(entry.get("name")) for entry in list_at(options, "destinations", problems)
                    if isinstance(entry, Mapping)]
    left = [str(entry.get("uuid")) for entry in list_at(document, "left", problems) if isinstance(entry, Mapping)]
    for key in ("name", "uri"):
        if not isinstance(source.get(key), str) or not source.get(key):
            problems.append(f"source.{key} is missing")
    uuids = [guest.uuid for guest in guests if guest is not None]
    problems.extend(f"guest {uuid} is listed twice" for uuid in sorted({u for u in uuids if uuids.count(u) > 1}))
    if problems:
        raise refuse(path, "malformed: " + "; ".join(problems))
    return EvacuationPlan(path=path, run_id=str(document.get("run_id") or ""),
                          created=str(document.get("created") or ""), source_name=source["name"],
                          source_uri=source["uri"], source_host_uuid=source.get("host_uuid"),
                          destinations=tuple(destinations), guests=tuple(g for g in guests if g is not None),
                          left=tuple(left), document=document)


def mapping_at(document: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    value = document.get(key)
    if not isinstance(value, Mapping):
        problems.append(f"{key} is missing or not an object")
        return {}
    return value


def list_at(document: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        problems.append(f"{key} is missing or not a list")
        return []
    return value


def planned_guest(entry: Any, where: str, problems: list[str]) -> PlannedGuest | None:
    """One ``guests`` entry, or None (with the problems noted) when it is malformed."""
    if not isinstance(entry, Mapping):
        problems.append(f"{where} is not an object")
        return None
    missing = [key for key in ("name", "uuid") if not isinstance(entry.get(key), str) or not entry.get(key)]
    memory = entry.get("memory_kib")
    if not isinstance(memory, int) or isinstance(memory, bool) or memory < 0:
        missing.append("memory_kib")
    if entry.get("mode") not in (LIVE, OFFLINE):
        missing.append("mode (live or offline)")
    destination = entry.get("destination")
    if destination is not None and not isinstance(destination, str):
        missing.append("destination (a name or null)")
    action = entry.get("action", MOVE)
    if action not in (MOVE, STAY):
        missing.append("action (move or stay)")
    if missing:
        problems.append("{} has no valid {}".format(where, ", ".join(missing)))
        return None
    why = entry.get("why") if isinstance(entry.get("why"), Mapping) else {}
    return PlannedGuest(entry["name"], entry["uuid"], memory, entry["mode"], destination, str(entry.get("reason") or ""),
                        action, why.get("pin_policy"))


def check_source(plan: EvacuationPlan, uri: str, source_name: str | None = None,
                 host_uuid: str | None = None) -> None:
    """Refuse a plan made for another source host (URI, hostname, or host UUID differ)."""
    differences = []
    if plan.source_uri != uri:
        differences.append(f"its source URI is {plan.source_uri}, this run's is {uri}")
    if source_name is not None and plan.source_name != source_name:
        differences.append(f"its source host is {plan.source_name}, this run's is {source_name}")
    if host_uuid and plan.source_host_uuid and plan.source_host_uuid != host_uuid:
        differences.append(f"its source host UUID is {plan.source_host_uuid}, this host's is {host_uuid}")
    if differences:
        raise refuse(plan.path, "the plan is for another source host: " + "; ".join(differences),
                     "run the plan on its own source host, or plan this host again")


# -- drift -----------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """One way the cluster differs from the plan."""

    kind: str
    subject: str  # the guest or destination it concerns
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message} ({self.kind})"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "message": self.message}


@dataclass(frozen=True)
class Replay:
    """The plan replayed over a fresh discovery: its drift, and the placement to execute when there is none.

    ``arrived``: the plan's guests already on their planned destination (an earlier run of this plan).
    """

    drifts: tuple[Drift, ...]
    placement: PlacementPlan
    placer: Placer
    arrived: tuple[PlannedGuest, ...]


class PlanDrift(MigrationError):
    """The cluster changed since the plan was made: nothing was moved."""

    kind = "plan_drift"


def drift_error(plan: EvacuationPlan, drifts: Sequence[Drift]) -> PlanDrift:
    listed = "; ".join(f"({number}) {drift}" for number, drift in enumerate(drifts, start=1))
    return PlanDrift("follow plan file", f"the cluster drifted from the plan {plan.path} "
                     f"({len(drifts)} difference(s)), nothing was moved: {listed}",
                     hint="plan again (check mode with plan_file), review the new plan, then run it",
                     details={"drift": [drift.as_dict() for drift in drifts], "plan_file": plan.path})


def unmoved(planned: PlannedGuest, guest: GuestToMove) -> Assignment:
    """A guest the plan does not move: pinned to its host (it stays, with its policy), or placed nowhere."""
    if planned.action == STAY:
        why = {"pin_policy": planned.pin_policy} if planned.pin_policy else {}
        return Assignment(guest, None, None, planned.reason, STAY, why)
    return Assignment(guest, None, None, planned.reason)


def replay(plan: EvacuationPlan, discovery: Discovery, arrived_uuids: Sequence[str] = ()) -> Replay:
    """Replay ``plan``'s assignments, in its order, over ``discovery``; every drift is named.

    ``arrived_uuids``: the plan's guests gone from the source and found on their planned destination.
    """
    placer = Placer(discovery.destinations, discovery.cpu_verdicts)
    fresh = {guest.uuid: guest for guest in discovery.guests}
    left = {entry.uuid: entry for entry in discovery.left}
    drifts: list[Drift] = []
    assignments: list[Assignment] = []
    arrived: list[PlannedGuest] = []
    for planned in plan.guests:
        guest = fresh.get(planned.uuid)
        if guest is None:
            if planned.uuid in arrived_uuids and planned.destination is not None:
                arrived.append(planned)
            else:
                drifts.append(missing_guest(planned, left.get(planned.uuid)))
            continue
        changes = guest_changes(planned, guest, discovery.conflicts.get(guest.uuid))
        drifts.extend(changes)
        if changes:
            continue
        if planned.destination is None:
            assignments.append(unmoved(planned, guest))
            continue
        outcome = follow(placer, planned, guest)
        if isinstance(outcome, Drift):
            drifts.append(outcome)
        else:
            assignments.append(outcome)
    drifts.extend(added_guests(plan, discovery))
    return Replay(tuple(drifts), PlacementPlan(assignments, placer.loads), placer, tuple(arrived))


def missing_guest(planned: PlannedGuest, left: LeftGuest | None) -> Drift:
    if left is not None:
        return Drift(GUEST_LEFT, planned.name, f"now stays on the source: {left.reason}")
    where = f" (the plan sends it to {planned.destination}, where it is not either)" if planned.destination else ""
    return Drift(GUEST_GONE, planned.name, f"in the plan, no longer on the source{where}")


def guest_changes(planned: PlannedGuest, guest: GuestToMove, conflict: str | None) -> list[Drift]:
    """How the guest itself differs from the plan (its memory, its mode, a copy on two destinations)."""
    changes = []
    if guest.memory_kib != planned.memory_kib:
        changes.append(Drift(MEMORY_CHANGED, planned.name, f"memory {mib(planned.memory_kib)} MiB in the plan, "
                             f"{mib(guest.memory_kib)} MiB now"))
    if guest.mode != planned.mode:
        changes.append(Drift(MODE_CHANGED, planned.name, f"mode {planned.mode} in the plan, {guest.mode} now "
                             f"(the guest is {guest.state})"))
    if conflict:
        changes.append(Drift(GUEST_ELSEWHERE, planned.name, conflict))
    elif guest.pinned_to is not None and guest.pinned_to != planned.destination:
        changes.append(Drift(GUEST_ELSEWHERE, planned.name, f"already present on {guest.pinned_to}, the plan sends "
                             f"it to {planned.destination or 'nowhere'}"))
    return changes


def follow(placer: Placer, planned: PlannedGuest, guest: GuestToMove) -> Assignment | Drift:
    """The plan's assignment for ``guest``, booked on the fresh placer, or why its destination cannot take it now."""
    destination = planned.destination or ""
    load = placer.load_of(destination)
    if load is None:
        return Drift(DESTINATION_GONE, destination, f"{planned.name} is planned there, and it is no longer a "
                     "destination of this run")
    if guest.pinned_to == destination:
        # An interrupted earlier run: the placer finishes such a move there (maintenance or not).
        pinned = placer.place_pinned(guest)
        if pinned.placed:
            return Assignment(guest, pinned.destination, pinned.dest_uri, f"from the plan: {pinned.reason}")
        return Drift(DESTINATION_EXCLUDED, destination, f"{planned.name}: {pinned.reason}")
    problem = placer.problem(guest, load)
    if problem:
        return Drift(problem_kind(placer, guest, destination, problem), destination,
                     f"cannot take {planned.name} now: {problem}")
    return placer.assign(guest, load, f"from the plan: {planned.reason}")


def problem_kind(placer: Placer, guest: GuestToMove, destination: str, problem: str) -> str:
    """Which rule ``Placer.problem`` refused with (the answer itself is the placer's)."""
    load = placer.load_of(destination)
    if load is None or load.capacity.excluded:
        return DESTINATION_EXCLUDED
    if problem.startswith("cpu:"):
        return CPU_INCOMPATIBLE
    if guest.needs_kib > load.left_kib:
        return MEMORY_SHORT
    return CONSTRAINT_VIOLATED


def added_guests(plan: EvacuationPlan, discovery: Discovery) -> list[Drift]:
    """Guests to move now that the plan does not list (new, or left on the source by the plan)."""
    known = {guest.uuid for guest in plan.guests}
    drifts = []
    for guest in discovery.guests:
        if guest.uuid in known:
            continue
        was = " (the plan left it on the source)" if guest.uuid in plan.left else ""
        drifts.append(Drift(GUEST_ADDED, guest.name, f"{mib(guest.memory_kib)} MiB, {guest.mode}: on the source "
                            f"and not in the plan{was}"))
    return drifts


# -- the plan's guests already moved ------------------------------------------------


def arrived_on_destinations(plan: EvacuationPlan, discovery: Discovery, destination_uris: Mapping[str, str],
                            connect: Callable[..., Any], source_uri: str) -> list[str]:
    """The uuids of the plan's guests gone from the source and defined on their planned destination.

    ``destination_uris``: name -> URI of this run's destinations. A destination that cannot be reached
    finds nothing (its own drift says why).
    """
    on_source = {guest.uuid for guest in discovery.guests} | {entry.uuid for entry in discovery.left}
    wanted: dict[str, list[str]] = {}
    for guest in plan.guests:
        if guest.uuid not in on_source and guest.destination in destination_uris:
            wanted.setdefault(guest.destination, []).append(guest.uuid)
    arrived: list[str] = []
    for name, uuids in sorted(wanted.items()):
        try:
            conn = connect(destination_uris[name], "destination", source_uri=source_uri,
                           dest_uri=destination_uris[name])
        except MigrationError:
            continue
        try:
            arrived.extend(uuid for uuid in uuids if lookup_by_uuid(conn, uuid) is not None)
        finally:
            close_quietly(conn)
    return arrived
