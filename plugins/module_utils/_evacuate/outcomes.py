# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""What became of each guest of an evacuation: its result, or its state while the run goes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Per-guest results.
MIGRATED = "migrated"
FINISHED = "finished"
UNCHANGED = "unchanged"
FAILED = "failed"
UNPLACEABLE = "unplaceable"
NOT_STARTED = "not_started"
LEFT = "left"
PLANNED = "planned"
WOULD_FAIL = "would_fail"
CANCELLED = "cancelled"
"""The operator's cancel request stopped the guest's move: aborted while it ran, or never started."""
# Progress-only states: QUEUED and MIGRATING (in _common/progress.py, the shared progress writer).

PROBLEM_RESULTS = (FAILED, UNPLACEABLE, NOT_STARTED, WOULD_FAIL, CANCELLED)
MOVED_RESULTS = (MIGRATED, FINISHED, UNCHANGED)
"""The guest is on its destination (a re-run sees it there)."""
ON_DESTINATION_RESULTS = (*MOVED_RESULTS, PLANNED)
"""The guest is (or, in check mode, would be) on its destination."""


@dataclass(frozen=True)
class GuestOutcome:
    """How one guest's turn ended: its result, the message for its row, and the migrate result (or error)."""

    result: str
    message: str | None = None
    migration: dict[str, Any] = field(default_factory=dict)
