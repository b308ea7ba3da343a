# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""What both hosts hold for the requested domain, before anything is done.

The domain is named by the request (name or UUID); its UUID is resolved once (the request's,
the source's domain of that name, or the destination's) and every later lookup is by that UUID.
Nothing here changes a host.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    migration_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    describe_domain,
    find_domain,
    host_uuid_of,
    lookup_by_name,
    lookup_by_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.session import (
    DESTINATION,
    SOURCE,
    Session,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    Observed,
    domain_not_found,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)


@dataclass(frozen=True)
class HostUUIDs:
    """Each side's host UUID, None where libvirt would not say (then the hosts are not proven distinct)."""

    source: str | None
    destination: str | None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str | None]:
        return {"source": self.source, "destination": self.destination}


@dataclass(frozen=True)
class Named:
    """The domain as the request names it: the source's domain of that name or UUID, and the resolved UUID.

    ``uuid`` is None only when neither host holds a domain of that name (the request gave no UUID).
    """

    source_dom: Any
    uuid: str | None


@dataclass(frozen=True)
class Found:
    """Both sides, looked up by the domain's UUID: the libvirt handles and what they are.

    ``uuid``: the request's UUID, else the one resolved by name; None when no host holds the name.
    """

    uuid: str | None
    source_dom: Any
    dest_dom: Any
    observed: Observed


@dataclass(frozen=True)
class Located:
    """The domain a host holds: its UUID (every later lookup is by it) and its name."""

    uuid: str
    name: str


def read_host_uuids(session: Session) -> HostUUIDs:
    uuids: list[str | None] = []
    warnings: list[str] = []
    for role, conn in ((SOURCE, session.source), (DESTINATION, session.destination)):
        try:
            uuids.append(host_uuid_of(conn))
        except (libvirt.libvirtError, ET.ParseError) as exc:
            warnings.append(f"could not read the {role}'s host UUID: {exc}")
            uuids.append(None)
    return HostUUIDs(uuids[0], uuids[1], tuple(warnings))


def resolve_domain(session: Session, request: MigrationRequest) -> Named:
    """Find the requested domain on the source (by UUID, else name), else its UUID on the destination by name."""
    source_dom = find_domain(session.source, request.name, request.uuid)
    uuid = source_dom.UUIDString() if source_dom is not None else request.uuid
    if uuid is None:
        by_name = lookup_by_name(session.destination, request.dest_name or request.name or "")
        uuid = by_name.UUIDString() if by_name is not None else None
    return Named(source_dom, uuid)


@contextmanager
def domain_lock(uuid: str | None, check_mode: bool, warn: Callable[[str], None],
                **context: Any) -> Iterator[bool]:
    """Hold this domain's run lock; yields True while it is held by a run that changes things.

    Two runs started at once both find no job; without the lock the second's migrate call fails
    on the first's job and its recovery would abort the first's migration.  A domain found nowhere
    has no UUID and nothing to lock.  Raises MigrationInProgress when another run holds it.
    """
    if uuid is None:
        yield False
        return
    with migration_lock(uuid, check_mode, **context) as lock:
        if lock.warning:
            warn(lock.warning)
        yield not check_mode and not lock.warning


def job_active(dom: Any, info: DomainInfo | None) -> bool:
    """A job (a migration, another run's?) runs on this active domain."""
    if dom is None or info is None or not info.active:
        return False
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return False
    return stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE


def name_owner(session: Session, request: MigrationRequest, source: DomainInfo | None,
               dest: DomainInfo | None) -> str | None:
    """UUID of another destination domain holding the target name, if any."""
    target = request.dest_name or (source.name if source else request.name)
    if not target:
        return None
    other = lookup_by_name(session.destination, target)
    if other is None:
        return None
    owner = other.UUIDString()
    mine = source.uuid if source else (dest.uuid if dest else None)
    return None if owner == mine else owner


def observe(session: Session, request: MigrationRequest, named: Named, locked: bool, hosts_distinct: bool) -> Found:
    """Both sides by UUID; the source is looked up again once locked (another run may have moved it meanwhile)."""
    uuid = named.uuid
    source_dom = named.source_dom
    if locked and source_dom is not None and uuid:
        source_dom = lookup_by_uuid(session.source, uuid)
    dest_dom = lookup_by_uuid(session.destination, uuid) if uuid else None
    source = describe_domain(source_dom) if source_dom is not None else None
    dest = describe_domain(dest_dom) if dest_dom is not None else None
    observed = Observed(source, dest, job_active(source_dom, source), name_owner(session, request, source, dest),
                        hosts_distinct)
    return Found(request.uuid or uuid, source_dom, dest_dom, observed)


def locate(request: MigrationRequest, found: Found) -> Located:
    """The domain found on either host; DomainNotFound (as ``reconcile`` says it) when on neither."""
    info = found.observed.source or found.observed.destination
    if info is None:
        raise domain_not_found(request)
    return Located(found.uuid or info.uuid, info.name)
