# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Argument-spec pieces shared by migrate, migration_job and evacuate.

Each piece matches a doc fragment: ``connection_argument_spec`` and
``source_connection_argument_spec`` <-> ``virtops.migration._connection``
(DOCUMENTATION / SOURCE), ``migration_tuning_argument_spec`` <->
``virtops.migration._migration_tuning``.  Defaults come from the code that
uses them (PolicyConfig, MigrationRequest) so docs, spec and behaviour agree.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import (
    ON_FAILURE_CHOICES,
    REPORT_FORMAT_CHOICES,
    STOPPED_GUESTS_CHOICES,
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._params import (
    COMPRESSION_CHOICES,
    COPY_STORAGE_CHOICES,
    PAUSED_SOURCE_CHOICES,
    PREFLIGHT_CHECKS,
)
from ansible_collections.virtops.migration.plugins.module_utils._policy import (
    ON_TIMEOUT_CHOICES,
    PolicyConfig,
)

DEFAULT_URI = "qemu:///system"


def source_connection_argument_spec() -> dict[str, Any]:
    return {"uri": {"type": "str", "default": DEFAULT_URI}}


def connection_argument_spec() -> dict[str, Any]:
    spec = source_connection_argument_spec()
    spec["dest_uri"] = {"type": "str", "required": True}
    return spec


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
    return {
        "live": {"type": "bool", "default": True},
        "persistent": {"type": "bool", "default": True},
        "undefine_source": {"type": "bool", "default": True},
        "confirm_config_removal": {"type": "bool", "default": False},
        "p2p": {"type": "bool", "default": True},
        "tunnelled": {"type": "bool", "default": False},
        "tls": {"type": "bool", "default": False},
        "bandwidth": {"type": "int"},
        "postcopy_bandwidth": {"type": "int"},
        "max_downtime": {"type": "int"},
        "copy_storage": {"type": "str", "default": "none", "choices": list(COPY_STORAGE_CHOICES)},
        "compression": {"type": "list", "elements": "str", "default": [], "choices": list(COMPRESSION_CHOICES)},
        "parallel_connections": {"type": "int"},
        "auto_converge": {"type": "bool", "default": False},
        "auto_converge_initial": {"type": "int"},
        "auto_converge_increment": {"type": "int"},
        "post_copy": {"type": "bool", "default": False},
        "on_paused_source": {"type": "str", "default": "resume", "choices": list(PAUSED_SOURCE_CHOICES)},
        "timeout": {"type": "int"},
        "preflight_skip": {"type": "list", "elements": "str", "default": [], "choices": list(PREFLIGHT_CHECKS)},
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
        "migrate_disks": {"type": "list", "elements": "str", "default": []},
    })
    return spec


MIGRATE_REQUIRED_ONE_OF = [("name", "uuid")]


def migration_job_argument_spec() -> dict[str, Any]:
    spec = source_connection_argument_spec()
    spec.update({
        "dest_uri": {"type": "str"},
        "name": {"type": "str"},
        "uuid": {"type": "str"},
        "operation": {"type": "str", "default": "info", "choices": ["info", "abort", "tune", "postcopy"]},
        "max_downtime": {"type": "int"},
        "bandwidth": {"type": "int"},
        "wait_timeout": {"type": "float", "default": 60.0},
    })
    return spec


def evacuate_argument_spec() -> dict[str, Any]:
    """The evacuate module: source connection + the same tuning as migrate + what to move where."""
    defaults = EvacuationOptions(destinations=[])
    spec = source_connection_argument_spec()
    spec.update(migration_tuning_argument_spec())
    spec.update({
        "destinations": {"type": "list", "elements": "raw", "required": True},
        "include": {"type": "list", "elements": "str", "default": list(defaults.include)},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "stopped_guests": {"type": "str", "default": defaults.stopped_guests, "choices": list(STOPPED_GUESTS_CHOICES)},
        "maintenance_hosts": {"type": "list", "elements": "str", "default": []},
        "memory_reserve_mib": {"type": "int", "default": defaults.memory_reserve_mib},
        "max_parallel": {"type": "int", "default": defaults.max_parallel},
        "max_parallel_per_destination": {"type": "int", "default": defaults.max_parallel_per_destination},
        "on_failure": {"type": "str", "default": defaults.on_failure, "choices": list(ON_FAILURE_CHOICES)},
        "progress_path": {"type": "path"},
        "progress_interval": {"type": "float", "default": defaults.progress_interval},
        "lock_timeout": {"type": "float", "default": defaults.lock_timeout},
        "report_path": {"type": "path"},
        "report_format": {"type": "str", "default": defaults.report_format, "choices": list(REPORT_FORMAT_CHOICES)},
    })
    return spec
