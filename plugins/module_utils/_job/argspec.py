# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migration_job module's argument spec.

Defaults come from JobRequest, the request the operations run with; the spec is where the
operation's name and the need for one of name or uuid are checked.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    audit_log_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.operations import (
    OPERATIONS,
    JobRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec import (
    source_connection_argument_spec,
)


def migration_job_argument_spec() -> dict[str, Any]:
    defaults = JobRequest()
    spec = source_connection_argument_spec()
    spec.update({
        "dest_uri": {"type": "str"},
        "name": {"type": "str"},
        "uuid": {"type": "str"},
        "operation": {"type": "str", "default": defaults.operation, "choices": list(OPERATIONS)},
        "max_downtime": {"type": "int"},
        "bandwidth": {"type": "int"},
        "wait_timeout": {"type": "float", "default": defaults.wait_timeout},
    })
    spec.update(audit_log_argument_spec())
    return spec


MIGRATION_JOB_REQUIRED_ONE_OF = [("name", "uuid")]
