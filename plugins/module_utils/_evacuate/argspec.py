# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The evacuate module's argument spec: the source connection, the same tuning as migrate, what to move where.

Defaults come from EvacuationOptions, the options the evacuation runs with.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    audit_log_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    ON_FAILURE_CHOICES,
    REPORT_FORMAT_CHOICES,
    STOPPED_GUESTS_CHOICES,
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec import (
    source_connection_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.argspec import (
    migration_tuning_argument_spec,
)


def evacuate_argument_spec() -> dict[str, Any]:
    """The evacuate module: source connection + the same tuning as migrate + what to move where."""
    defaults = EvacuationOptions(destinations=[])
    spec = source_connection_argument_spec()
    spec.update(migration_tuning_argument_spec())
    spec.update({
        "destinations": {"type": "list", "elements": "raw", "required": True},
        "include": {"type": "list", "elements": "str", "default": list(defaults.include)},
        "exclude": {"type": "list", "elements": "str", "default": list(defaults.exclude)},
        "constraints": {"type": "dict", "default": dict(defaults.constraints)},
        "host_labels": {"type": "dict", "default": dict(defaults.host_labels)},
        "stopped_guests": {"type": "str", "default": defaults.stopped_guests, "choices": list(STOPPED_GUESTS_CHOICES)},
        "maintenance_hosts": {"type": "list", "elements": "str", "default": list(defaults.maintenance_hosts)},
        "memory_reserve_mib": {"type": "int", "default": defaults.memory_reserve_mib},
        "max_parallel": {"type": "int", "default": defaults.max_parallel},
        "max_parallel_per_destination": {"type": "int", "default": defaults.max_parallel_per_destination},
        "on_failure": {"type": "str", "default": defaults.on_failure, "choices": list(ON_FAILURE_CHOICES)},
        "plan_file": {"type": "path"},
        "progress_path": {"type": "path"},
        "progress_interval": {"type": "float", "default": defaults.progress_interval},
        "lock_timeout": {"type": "float", "default": defaults.lock_timeout},
        "report_path": {"type": "path"},
        "report_format": {"type": "str", "default": defaults.report_format, "choices": list(REPORT_FORMAT_CHOICES)},
        "cancel_path": {"type": "path", "default": defaults.cancel_path},
    })
    spec.update(audit_log_argument_spec())
    return spec
