# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""After the actions: where the domain is now, what libvirt says of the completed job.

A migration libvirt reported as done is checked on both hosts: the domain must run (or, offline,
be defined) on the destination; anything left that the options asked to remove is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.session import (
    DESTINATION,
    SOURCE,
    Session,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    MIGRATE_OFFLINE,
    UNDEFINE_SOURCE,
    Observed,
    Reconciliation,
    placement,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)


@dataclass(frozen=True)
class Verified:
    """Both sides after the actions: the placement, the libvirt handles, and what looks wrong."""

    placement: dict[str, Any]
    source_dom: Any
    dest_dom: Any
    warnings: list[str]


def verify(request: MigrationRequest, uuid: str, decision: Reconciliation, session: Session) -> Verified:
    """Read both sides again; MigrationFailed when a migration libvirt reported is not there."""
    source_dom, source = session.read(SOURCE, uuid)
    dest_dom, dest = session.read(DESTINATION, uuid)
    after = placement(Observed(source, dest))
    warnings: list[str] = []
    if decision.migrates:
        refuse_missing_on_destination(request, decision, dest, after)
        if source is not None and source.active:
            warnings.append("the domain is still active on the source after the migration")
    if request.persistent and dest is not None and not dest.persistent:
        warnings.append("persistent: true but the domain is transient on the destination")
    if request.undefine_source and source is not None and source.persistent and \
            (decision.migrates or UNDEFINE_SOURCE in decision.actions):
        warnings.append("undefine_source: true but the source still holds a definition")
    return Verified(after, source_dom, dest_dom, warnings)


def refuse_missing_on_destination(request: MigrationRequest, decision: Reconciliation, dest: DomainInfo | None,
                                  after: dict[str, Any]) -> None:
    offline = MIGRATE_OFFLINE in decision.actions
    if dest is None or (not offline and not dest.active):
        raise MigrationFailed("verify", "libvirt reported success but the domain is not %s on the "
                              "destination" % ("defined" if offline else "running"),
                              hint="inspect both hosts", details={"placement": after}, **request.context())


def completed_stats(verified: Verified) -> dict[str, Any]:
    """libvirt's completed-job statistics, from whichever side still has them."""
    for dom in (verified.dest_dom, verified.source_dom):
        if dom is None:
            continue
        try:
            stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            continue
        if stats and stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
            return job_statistics(stats)
    return {}
