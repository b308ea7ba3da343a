# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Reconciliation: what is found on both hosts (by UUID) -> what to do.

The decision, by what each host holds:

| source              | destination          | action                                 | changed |
|---------------------|----------------------|----------------------------------------|---------|
| running             | absent / shut off    | migrate                                | true    |
| paused by migration | absent / shut off    | resume then migrate, or migrate paused | true    |
| paused otherwise    | absent / shut off    | migrate paused, or refuse              | true    |
| shut off (defined)  | absent               | offline migrate (live: false) else fail| true    |
| absent / shut off   | active, as requested | nothing                                | false   |
| absent / shut off   | active, transient    | define on destination (persistent)     | true    |
| shut off (defined)  | active               | undefine on source (undefine_source)   | true    |
| shut off            | shut off             | live: false: undefine source or nothing; live: true: fail | |
| absent              | shut off             | nothing (offline done / guest stopped)  | false   |
| active, job running | any                  | fail: migration in progress            | false   |
| postcopy failed     | postcopy failed      | post-copy resume (post_copy: true)     | true    |
| active              | active               | fail: split brain, touch nothing       | false   |
| absent              | absent               | fail: VIR_ERR_NO_DOMAIN                | false   |

Before any of this, the two connections' host identities (libvirt's host UUID) are compared:
one UUID behind both URIs is the source host under two names (or a clone with the same
host_uuid), refused whatever the URIs say; its "two copies" of a guest are one guest.

A paused source is resumed only when libvirt says a migration paused it (reason
``migration``: an earlier attempt failed before the source was resumed). A guest paused by
its user, an I/O error or anything else is never resumed: it moves paused and arrives paused,
or is refused (``on_paused_source: refuse``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    MigrationInProgress,
    SplitBrain,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    RUNNING,
    SHUTOFF,
    DomainInfo,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

MIGRATE = "migrate"
RESUME_SOURCE = "resume_source"
MIGRATE_PAUSED = "migrate_paused"
MIGRATE_OFFLINE = "migrate_offline"
POSTCOPY_RESUME = "postcopy_resume"
DEFINE_ON_DEST = "define_on_destination"
UNDEFINE_SOURCE = "undefine_source"
MIGRATING_ACTIONS = (MIGRATE, MIGRATE_PAUSED, MIGRATE_OFFLINE, POSTCOPY_RESUME)

PAUSED_BY_MIGRATION = "migration"  # the pause reason libvirt gives a source a migration paused
RESUME, MOVE_PAUSED, REFUSE = "resume", "migrate_paused", "refuse"  # on_paused_source


@dataclass
class Observed:
    """Both sides, looked up by UUID, before anything is done."""

    source: DomainInfo | None
    destination: DomainInfo | None
    source_job_active: bool = False
    dest_name_owner: str | None = None  # UUID of another domain holding the target name
    hosts_distinct: bool = False  # both host UUIDs read, and they differ: two copies are two guests


@dataclass
class Reconciliation:
    """The decision: ordered actions, whether that changes anything, and why."""

    actions: list[str]
    changed: bool
    explanation: str
    warnings: list[str] = field(default_factory=list)

    @property
    def migrates(self) -> bool:
        return any(action in MIGRATING_ACTIONS for action in self.actions)

    @property
    def action(self) -> str:
        return "+".join(self.actions) if self.actions else "none"


def domain_not_found(request: MigrationRequest) -> DomainNotFound:
    key = request.uuid or request.name
    return DomainNotFound(
        "reconcile",
        "Domain not found: no domain with matching {} '{}' on either host".format("uuid" if request.uuid else "name", key),
        hint="check the name/uuid and the URIs; the domain may have been undefined",
        **request.context(),
    )


def refuse_same_host(request: MigrationRequest, source_host_uuid: str | None, dest_host_uuid: str | None) -> bool:
    """Refuse two URIs that reach one host; True when both identities were read and differ.

    Runs before anything is looked up: on one host under two names every domain is found "on both
    hosts", and treating that as split brain would advise destroying the only copy.
    """
    if source_host_uuid and source_host_uuid == dest_host_uuid:
        raise ValidationError(
            "compare hosts",
            f"the destination is the source host: both connections reach a libvirtd with host UUID "
            f"{source_host_uuid} (one host under two names, or a clone that kept its host_uuid); nothing was touched",
            hint="point dest_uri at another hypervisor; if it is another machine, give it a host_uuid of its own "
                 "(libvirtd role: libvirtd_host_uuid) and restart libvirtd there", **request.context())
    return bool(source_host_uuid and dest_host_uuid)


def _describe(info: DomainInfo) -> str:
    kind = "persistent" if info.persistent else "transient"
    return f"{info.state} ({info.reason}, {kind})"


def _both_active(request: MigrationRequest, observed: Observed, source: DomainInfo,
                 dest: DomainInfo) -> Reconciliation:
    if source.reason == "postcopy_failed" and dest.postcopy_state:
        if request.post_copy:
            return Reconciliation(
                [POSTCOPY_RESUME], True,
                "a post-copy migration failed earlier (source paused, destination holds the newer "
                "memory); resuming the post-copy migration (VIR_MIGRATE_POSTCOPY_RESUME)")
        raise SplitBrain(
            "reconcile", "an earlier post-copy migration failed: the guest's memory is split between "
            f"the hosts (source {_describe(source)}, destination {_describe(dest)})",
            hint="re-run with post_copy: true to resume the post-copy migration; never resume or "
                 "destroy either side by hand", **request.context())
    raise SplitBrain(
        "reconcile",
        f"domain is active on both hosts (source {_describe(source)}, destination {_describe(dest)}); nothing was touched",
        hint=_split_brain_hint(observed, source, dest), **request.context())


def _split_brain_hint(observed: Observed, source: DomainInfo, dest: DomainInfo) -> str:
    """Advise destroying a copy only when two running copies on two distinct hosts are proven."""
    if observed.hosts_distinct and source.state == RUNNING and dest.state == RUNNING:
        return ("two copies run on two distinct hosts: find out which copy is authoritative (the one whose disk "
                "holds the current data) and destroy the other one by hand")
    if not observed.hosts_distinct:
        return ("the hosts' identities could not be compared, so these may be one guest seen twice: inspect both "
                "hosts by hand and destroy nothing until you know they are two copies")
    return ("one copy is not running: inspect both hosts by hand and destroy nothing until you know which copy "
            "holds the guest's current state")


def _source_active(request: MigrationRequest, source: DomainInfo) -> Reconciliation:
    if not request.live:
        raise ValidationError(
            "reconcile", f"domain is {source.state} on the source; offline migration (live: false) would only "
            "copy its definition while it keeps running here",
            hint="use live: true, or shut the domain down first", **request.context())
    if source.state == RUNNING:
        return Reconciliation([MIGRATE], True, "running on source only: live migration")
    if source.postcopy_state:
        raise SplitBrain(
            "reconcile", "source is paused by a failed post-copy migration and the destination has "
            "no domain: the guest's memory may be lost", hint="inspect both hosts by hand",
            **request.context())
    if source.state == PAUSED:
        return _source_paused(request, source)
    raise ValidationError("reconcile", f"domain is in state {_describe(source)} on the source, which cannot be migrated", **request.context())


def paused_source_handling(pause_reason: str, on_paused_source: str) -> str:
    """What to do with a guest paused on the source: RESUME, MOVE_PAUSED or REFUSE.

    Only a pause libvirt attributes to a migration is this collection's to undo; any other pause
    (the user's ``virsh suspend``, an I/O error, a watchdog) is a state somebody chose or must see.
    """
    if pause_reason == PAUSED_BY_MIGRATION:
        return MOVE_PAUSED if on_paused_source == MOVE_PAUSED else RESUME
    return REFUSE if on_paused_source == REFUSE else MOVE_PAUSED


def describe_pause(pause_reason: str) -> str:
    if pause_reason == PAUSED_BY_MIGRATION:
        return "paused by a migration (an earlier attempt failed before the source was resumed)"
    if pause_reason == "user":
        return "paused by its user (virsh suspend or the like)"
    return f"paused (reason: {pause_reason})"


def _source_paused(request: MigrationRequest, source: DomainInfo) -> Reconciliation:
    handling = paused_source_handling(source.reason, request.on_paused_source)
    why = f"{describe_pause(source.reason)} on the source, not on the destination"
    if handling == RESUME:
        return Reconciliation(
            [RESUME_SOURCE, MIGRATE], True,
            f"{why}: resuming it on the source, then migrating (on_paused_source: {request.on_paused_source})")
    if handling == REFUSE:
        raise ValidationError(
            "reconcile", f"the domain is {why}; on_paused_source: refuse leaves it alone; nothing was touched",
            hint="resume it yourself if it should run, or let it move paused (on_paused_source: resume, the "
                 "default, or migrate_paused): it arrives paused", **request.context())
    return Reconciliation(
        [MIGRATE_PAUSED], True,
        f"{why}: migrating it paused; it arrives paused on the destination and stays paused",
        [f"the domain is {describe_pause(source.reason)}: it moves paused and stays paused on the destination"])


def _dest_active(request: MigrationRequest, source: DomainInfo | None, dest: DomainInfo) -> Reconciliation:
    actions: list[str] = []
    reasons: list[str] = []
    warnings: list[str] = []
    if request.persistent and not dest.persistent:
        actions.append(DEFINE_ON_DEST)
        reasons.append("it is transient there and persistent: true, so it will be defined there")
    if not request.persistent and dest.persistent:
        warnings.append("domain is already persistent on the destination; persistent: false does not "
                        "undefine it")
    if source is not None and source.persistent:
        if request.undefine_source:
            actions.append(UNDEFINE_SOURCE)
            reasons.append("the source still holds an inactive definition, which will be undefined "
                           "(undefine_source: true)")
        else:
            reasons.append("the source keeps its inactive definition (undefine_source: false)")
    if dest.state == PAUSED:
        warnings.append(f"domain is paused on the destination (reason: {dest.reason}); this module does not "
                        "resume it there")
    head = "running on destination" if dest.state == RUNNING else f"active ({dest.state}) on destination"
    if not actions:
        explanation = f"{head}, configuration as requested: nothing to do"
        if reasons:
            explanation += "; " + "; ".join(reasons)
        return Reconciliation([], False, explanation, warnings)
    return Reconciliation(actions, True, "{}; {}".format(head, "; ".join(reasons)), warnings)


def _source_inactive(request: MigrationRequest, dest: DomainInfo | None) -> Reconciliation:
    """Shut off on the source; shut off on the destination too, or absent there."""
    if dest is None:
        if request.live:
            raise ValidationError(
                "reconcile", "domain is shut off on the source; a live migration needs a running domain",
                hint="start it first, or set live: false to move its definition (offline migration)",
                **request.context())
        return Reconciliation([MIGRATE_OFFLINE], True,
                              "shut off and defined on source only: offline migration of its definition")
    if request.live:
        raise ValidationError(
            "reconcile", "domain is defined on both hosts but running on neither",
            hint="start it on the host that should run it, or use live: false", **request.context())
    if request.undefine_source:
        return Reconciliation([UNDEFINE_SOURCE], True, "defined (shut off) on both hosts: undefining "
                              "the source's definition (undefine_source: true)")
    return Reconciliation([], False, "defined (shut off) on both hosts; undefine_source: false keeps both")


def _destination_only_inactive(request: MigrationRequest) -> Reconciliation:
    """Absent on the source, shut off (defined) on the destination."""
    warnings = []
    if request.live:
        warnings.append("domain is defined on the destination but shut off; this module does not start it")
    return Reconciliation([], False, "defined (shut off) on destination only: already migrated", warnings)


def reconcile(request: MigrationRequest, observed: Observed) -> Reconciliation:
    """Decide what to do from what both hosts hold for this UUID."""
    source, dest = observed.source, observed.destination
    if source is None and dest is None:
        raise domain_not_found(request)
    if observed.source_job_active:
        raise MigrationInProgress(
            "reconcile", "a migration job is already running for this domain (another run?); nothing "
            "was touched", hint="watch or abort it with virtops.migration.migration_job, then re-run",
            **request.context())
    if observed.dest_name_owner and (dest is None or observed.dest_name_owner != dest.uuid):
        raise ValidationError(
            "reconcile", f"the destination already has a different domain (UUID {observed.dest_name_owner}) with the target name",
            hint="remove or rename that domain, or set dest_name", **request.context())
    if source is not None and source.active:
        if dest is not None and dest.active:
            return _both_active(request, observed, source, dest)
        return _source_active(request, source)
    if dest is not None and dest.active:
        return _dest_active(request, source, dest)
    if source is None:
        return _destination_only_inactive(request)
    return _source_inactive(request, dest)


# ---------------------------------------------------------------------------
# Placement before/after, for check mode and diff mode.


def placement_of(info: DomainInfo | None) -> dict[str, Any]:
    if info is None:
        return {"present": False, "state": None, "persistent": False}
    return {"present": True, "state": info.state, "persistent": info.persistent}


def placement(observed: Observed) -> dict[str, Any]:
    return {"source": placement_of(observed.source), "destination": placement_of(observed.destination)}


def predicted_placement(request: MigrationRequest, observed: Observed, decision: Reconciliation) -> dict[str, Any]:
    """Where the domain will be, and how defined, once the actions have run."""
    after = placement(observed)
    src, dst = after["source"], after["destination"]
    if decision.migrates:
        offline = MIGRATE_OFFLINE in decision.actions
        dst.update(present=True,
                   state=SHUTOFF if offline else (PAUSED if MIGRATE_PAUSED in decision.actions else RUNNING),
                   persistent=request.persistent or dst["persistent"])
        source_persistent = observed.source is not None and observed.source.persistent
        if source_persistent and not request.undefine_source:
            src.update(present=True, state=SHUTOFF, persistent=True)
        else:
            src.update(present=False, state=None, persistent=False)
    if DEFINE_ON_DEST in decision.actions:
        dst["persistent"] = True
    if UNDEFINE_SOURCE in decision.actions:
        src.update(present=False, state=None, persistent=False)
    return after
