# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The connection options every module accepts, matching the doc fragment
``virtops.migration._connection`` (DOCUMENTATION for ``uri`` and ``dest_uri``, SOURCE for ``uri`` alone)."""

from __future__ import annotations

from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
)


def source_connection_argument_spec() -> dict[str, Any]:
    return {"uri": {"type": "str", "default": DEFAULT_URI}}


def connection_argument_spec() -> dict[str, Any]:
    spec = source_connection_argument_spec()
    spec["dest_uri"] = {"type": "str", "required": True}
    return spec
