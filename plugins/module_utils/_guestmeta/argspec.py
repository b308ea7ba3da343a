# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The guest_placement module's argument spec.

Choices come from the metadata's own vocabulary (_libvirt/metadata.py) and the backend
(_guestmeta/operations.py); the spec checks them and the need for one of name or uuid,
``request_problems`` what the spec cannot express.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._guestmeta.operations import (
    PIN_CHOICES,
    STATES,
    PlacementRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec import (
    source_connection_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    ANTI_AFFINITY_MODES,
)


def guest_placement_argument_spec() -> dict[str, Any]:
    defaults = PlacementRequest()
    spec = source_connection_argument_spec()
    spec.update({
        "name": {"type": "str"},
        "uuid": {"type": "str"},
        "state": {"type": "str", "default": defaults.state, "choices": list(STATES)},
        "anti_affinity": {
            "type": "list", "elements": "dict",
            "options": {
                "group": {"type": "str", "required": True},
                "mode": {"type": "str", "default": "hard", "choices": list(ANTI_AFFINITY_MODES)},
            },
        },
        "affinity": {"type": "list", "elements": "str"},
        "pin_policy": {"type": "str", "choices": list(PIN_CHOICES)},
        "priority": {"type": "int"},
        "require_labels": {"type": "dict"},
        "clear_origin": {"type": "bool", "default": defaults.clear_origin},
    })
    return spec


GUEST_PLACEMENT_REQUIRED_ONE_OF = [("name", "uuid")]
