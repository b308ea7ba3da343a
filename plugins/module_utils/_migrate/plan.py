# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""What a migration sends to libvirt: every VIR_MIGRATE_* flag and typed parameter, in one place.

``plan_migration`` computes them from the request, the decision (a paused source moves paused,
a failed post-copy migration is resumed) and what preflight found (the disks to copy, the
source's persistent definition).  The check-mode result reports the same plan the run then uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    MIGRATE_PAUSED,
    POSTCOPY_RESUME,
    Reconciliation,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

# Flag names in the order they are reported.
FLAG_NAMES = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_TUNNELLED",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_UNDEFINE_SOURCE",
    "VIR_MIGRATE_PAUSED",
    "VIR_MIGRATE_NON_SHARED_DISK",
    "VIR_MIGRATE_NON_SHARED_INC",
    "VIR_MIGRATE_CHANGE_PROTECTION",
    "VIR_MIGRATE_UNSAFE",
    "VIR_MIGRATE_OFFLINE",
    "VIR_MIGRATE_COMPRESSED",
    "VIR_MIGRATE_ABORT_ON_ERROR",
    "VIR_MIGRATE_AUTO_CONVERGE",
    "VIR_MIGRATE_RDMA_PIN_ALL",
    "VIR_MIGRATE_POSTCOPY",
    "VIR_MIGRATE_TLS",
    "VIR_MIGRATE_PARALLEL",
    "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    "VIR_MIGRATE_POSTCOPY_RESUME",
)

XML_PARAM_NAMES = ("destination_xml", "persistent_xml")


@dataclass(frozen=True)
class Plan:
    """What would be sent to libvirt (nothing, when the decision moves no domain)."""

    flags: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    copied_disks: list[str] = field(default_factory=list)

    @property
    def persistent_xml(self) -> str | None:
        return self.params.get(libvirt.VIR_MIGRATE_PARAM_PERSIST_XML)


def migration_flags(request: MigrationRequest) -> int:
    """The VIR_MIGRATE_* flags the request asks for."""
    wanted = {
        "VIR_MIGRATE_LIVE": request.live,
        "VIR_MIGRATE_OFFLINE": not request.live,
        "VIR_MIGRATE_PEER2PEER": request.p2p,
        "VIR_MIGRATE_TUNNELLED": request.tunnelled,
        "VIR_MIGRATE_TLS": request.tls,
        "VIR_MIGRATE_PERSIST_DEST": request.persistent,
        "VIR_MIGRATE_UNDEFINE_SOURCE": request.undefine_source,
        "VIR_MIGRATE_NON_SHARED_DISK": request.copy_storage == "all",
        "VIR_MIGRATE_NON_SHARED_INC": request.copy_storage == "inc",
        "VIR_MIGRATE_COMPRESSED": bool(request.compression),
        "VIR_MIGRATE_PARALLEL": bool(request.parallel_connections),
        "VIR_MIGRATE_AUTO_CONVERGE": request.auto_converge,
        "VIR_MIGRATE_POSTCOPY": request.post_copy,
    }
    flags = 0
    for name, enabled in wanted.items():
        if enabled:
            flags |= getattr(libvirt, name)
    return flags


def decision_flags(decision: Reconciliation) -> int:
    """The flags the decision adds: a paused source moves paused; a failed post-copy migration is resumed."""
    flags = 0
    if MIGRATE_PAUSED in decision.actions:
        flags |= libvirt.VIR_MIGRATE_PAUSED
    if POSTCOPY_RESUME in decision.actions:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME
    return flags


def flag_names(flags: int) -> list[str]:
    """Names of the VIR_MIGRATE_* bits set in ``flags``."""
    return [name for name in FLAG_NAMES if flags & getattr(libvirt, name, 0)]


def persistent_xml_for(request: MigrationRequest, source_inactive_xml: str | None) -> str | None:
    """The persistent definition to send: always one when persistent is asked.

    Order: ``persistent_xml``, then ``xml`` (so an edited live definition is
    also what persists, the bug Nova fixed), then the source's inactive
    definition.
    """
    if not request.persistent:
        return None
    return request.persistent_xml or request.xml or source_inactive_xml


def migration_params(
    request: MigrationRequest,
    persistent_xml: str | None = None,
    migrate_disks: list[str] | None = None,
) -> dict[str, Any]:
    """The VIR_MIGRATE_PARAM_* typed parameters for migrateToURI3/migrate3."""
    candidates = (
        ("VIR_MIGRATE_PARAM_DEST_NAME", request.dest_name),
        ("VIR_MIGRATE_PARAM_DEST_XML", request.xml),
        ("VIR_MIGRATE_PARAM_PERSIST_XML", persistent_xml if request.persistent else None),
        ("VIR_MIGRATE_PARAM_BANDWIDTH", request.bandwidth),
        ("VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY", request.postcopy_bandwidth),
        ("VIR_MIGRATE_PARAM_URI", request.migrate_uri),
        ("VIR_MIGRATE_PARAM_LISTEN_ADDRESS", request.listen_address),
        ("VIR_MIGRATE_PARAM_MIGRATE_DISKS", list(migrate_disks or request.migrate_disks) or None),
        ("VIR_MIGRATE_PARAM_COMPRESSION", list(request.compression) or None),
        ("VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", request.parallel_connections),
        ("VIR_MIGRATE_PARAM_TLS_DESTINATION", request.tls_destination),
        ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL", request.auto_converge_initial),
        ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT", request.auto_converge_increment),
    )
    params: dict[str, Any] = {}
    for constant, value in candidates:
        if value is None:
            continue
        if request.copy_storage == "none" and constant == "VIR_MIGRATE_PARAM_MIGRATE_DISKS":
            continue
        params[getattr(libvirt, constant)] = value
    return params


def plan_migration(request: MigrationRequest, decision: Reconciliation, source_inactive_xml: str | None,
                   copied_disks: list[str]) -> Plan:
    """The flags and parameters of this migration."""
    flags = migration_flags(request) | decision_flags(decision)
    params = migration_params(request, persistent_xml_for(request, source_inactive_xml), copied_disks)
    return Plan(flags, params, copied_disks)


def undefine_flags() -> int:
    """Undefining a source definition keeps NVRAM and TPM state: on shared storage the destination uses them."""
    return libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params for the result: XML documents (which may hold secrets) summarized."""
    shown: dict[str, Any] = {}
    for key, value in params.items():
        if key in XML_PARAM_NAMES and isinstance(value, str):
            digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
            shown[key] = f"<{len(value)} bytes of domain XML, sha256 {digest}...>"
        else:
            shown[key] = value
    return shown
