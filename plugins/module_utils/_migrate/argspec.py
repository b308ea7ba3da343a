# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migrate module's argument spec, and the tuning options every module that migrates accepts.

``migration_tuning_argument_spec`` matches the doc fragment ``virtops.migration._migration_tuning``.
Defaults come from the code that uses them (MigrationRequest, PolicyConfig), so docs, spec and behaviour
agree; the choices are checked here only, by Ansible, before the request is built.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    audit_log_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec import (
    connection_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ON_TIMEOUT_CHOICES,
    PolicyConfig,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    COMPRESSION_CHOICES,
    COPY_STORAGE_CHOICES,
    PAUSED_SOURCE_CHOICES,
    POSTCOPY_UNAVAILABLE_CHOICES,
    PREFLIGHT_CHECKS,
    MigrationRequest,
)


def convergence_argument_spec() -> dict[str, Any]:
    defaults = PolicyConfig()
    return {
        "completion_timeout_per_gib": {"type": "float", "default": defaults.completion_timeout_per_gib},
        "progress_timeout": {"type": "float", "default": defaults.progress_timeout},
        "downtime_max": {"type": "int", "default": defaults.downtime_max},
        "downtime_steps": {"type": "int", "default": defaults.downtime_steps},
        "downtime_delay_per_gib": {"type": "float", "default": defaults.downtime_delay_per_gib},
        "on_timeout": {"type": "str", "default": defaults.on_timeout, "choices": list(ON_TIMEOUT_CHOICES)},
        "poll_interval": {"type": "float", "default": defaults.poll_interval},
    }


def migration_tuning_argument_spec() -> dict[str, Any]:
    """How to migrate: the options any module that migrates domains accepts."""
    defaults = MigrationRequest(dest_uri="")
    return {
        "live": {"type": "bool", "default": defaults.live},
        "persistent": {"type": "bool", "default": defaults.persistent},
        "undefine_source": {"type": "bool", "default": defaults.undefine_source},
        "confirm_config_removal": {"type": "bool", "default": defaults.confirm_config_removal},
        "p2p": {"type": "bool", "default": defaults.p2p},
        "tunnelled": {"type": "bool", "default": defaults.tunnelled},
        "tls": {"type": "bool", "default": defaults.tls},
        "bandwidth": {"type": "int"},
        "postcopy_bandwidth": {"type": "int"},
        "max_downtime": {"type": "int"},
        "copy_storage": {"type": "str", "default": defaults.copy_storage, "choices": list(COPY_STORAGE_CHOICES)},
        "compression": {"type": "list", "elements": "str", "default": list(defaults.compression), "choices": list(COMPRESSION_CHOICES)},
        "parallel_connections": {"type": "int"},
        "auto_converge": {"type": "bool", "default": defaults.auto_converge},
        "auto_converge_initial": {"type": "int"},
        "auto_converge_increment": {"type": "int"},
        "post_copy": {"type": "bool", "default": defaults.post_copy},
        "on_postcopy_unavailable": {"type": "str", "default": defaults.on_postcopy_unavailable,
                                    "choices": list(POSTCOPY_UNAVAILABLE_CHOICES)},
        "on_paused_source": {"type": "str", "default": defaults.on_paused_source, "choices": list(PAUSED_SOURCE_CHOICES)},
        "timeout": {"type": "int"},
        "preflight_skip": {"type": "list", "elements": "str", "default": list(defaults.preflight_skip), "choices": list(PREFLIGHT_CHECKS)},
        "convergence": {"type": "dict", "default": {}, "options": convergence_argument_spec(),
                        "apply_defaults": True},
    }


def migrate_argument_spec() -> dict[str, Any]:
    """The migrate module: connection + tuning + the options that name one domain."""
    spec = connection_argument_spec()
    spec.update(migration_tuning_argument_spec())
    spec.update({
        "name": {"type": "str"},
        "uuid": {"type": "str"},
        "dest_name": {"type": "str"},
        "xml": {"type": "str"},
        "persistent_xml": {"type": "str"},
        "migrate_uri": {"type": "str"},
        "listen_address": {"type": "str"},
        "tls_destination": {"type": "str"},
        "migrate_disks": {"type": "list", "elements": "str", "default": list(MigrationRequest(dest_uri="").migrate_disks)},
        "progress_path": {"type": "path"},
        "progress_interval": {"type": "float", "default": 1.0},
    })
    spec.update(audit_log_argument_spec())
    return spec


MIGRATE_REQUIRED_ONE_OF = [("name", "uuid")]
