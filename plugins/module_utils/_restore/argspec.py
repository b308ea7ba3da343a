# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The restore module's argument spec: the restored host, the same tuning as migrate, where to look.

Defaults come from RestoreOptions, the options the restore runs with.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    audit_log_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec import (
    source_connection_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.argspec import (
    migration_tuning_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.options import (
    ON_FAILURE_CHOICES,
    REPORT_FORMAT_CHOICES,
    RestoreOptions,
)


def restore_argument_spec() -> dict[str, Any]:
    """The restore module: the restored host + the same tuning as migrate + the hosts to search."""
    defaults = RestoreOptions(search=[])
    spec = source_connection_argument_spec()
    spec.update(migration_tuning_argument_spec())
    spec.update(audit_log_argument_spec())
    spec.update({
        "dest_uri": {"type": "str"},
        "migrate_uri": {"type": "str"},
        "tls_destination": {"type": "str"},
        "search": {"type": "list", "elements": "raw", "required": True},
        "maintenance_hosts": {"type": "list", "elements": "str", "default": list(defaults.maintenance_hosts)},
        "memory_reserve_mib": {"type": "int", "default": defaults.memory_reserve_mib},
        "max_parallel": {"type": "int", "default": defaults.max_parallel},
        "max_parallel_per_destination": {"type": "int", "default": defaults.max_parallel_per_destination},
        "on_failure": {"type": "str", "default": defaults.on_failure, "choices": list(ON_FAILURE_CHOICES)},
        "progress_path": {"type": "path"},
        "progress_interval": {"type": "float", "default": defaults.progress_interval},
        "lock_timeout": {"type": "float", "default": defaults.lock_timeout},
        "report_path": {"type": "path"},
        "report_format": {"type": "str", "default": defaults.report_format, "choices": list(REPORT_FORMAT_CHOICES)},
        "labels": {"type": "dict", "default": {}},
        "cancel_path": {"type": "path", "default": defaults.cancel_path},
    })
    return spec
