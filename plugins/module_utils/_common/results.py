# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""What the modules do with a logic result before handing it to Ansible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
)


def emit_warnings(module: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Send the result's warnings through ``module.warn`` and drop the key.

    A ``warnings`` key in a module result is deprecated in ansible-core 2.19.
    """
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    return result


def placement_diff(result: dict[str, Any]) -> dict[str, Any]:
    """The before/after placement of the guests, as Ansible's diff mode shows it."""
    return {"before": result["placement"]["before"], "after": result["placement"]["after"]}


def finish_placement_run(module: Any, run: Callable[[], dict[str, Any]]) -> None:
    """Run a module that moves guests by placement (evacuate, restore) and hand its result to Ansible.

    ``run`` returns the result (``failed`` set when not every guest was handled) or raises
    MigrationError for a failure before any guest was handled.
    """
    try:
        result = run()
    except MigrationError as error:
        failure = emit_warnings(module, error.to_result())
        module.fail_json(msg=str(error), changed=False, **failure)
    emit_warnings(module, result)
    if module._diff:
        result["diff"] = placement_diff(result)
    if result.pop("failed"):
        module.fail_json(**result)
    module.exit_json(**result)
