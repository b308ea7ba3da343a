# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small statistics over benchmark samples: medians, spreads and ratios (pure, no I/O)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Count, median, minimum and maximum of a list of numbers (None when there are none)."""

    count: int
    median: float | None
    minimum: float | None
    maximum: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "median": self.median, "min": self.minimum, "max": self.maximum}


def numbers(values: Iterable[Any]) -> list[float]:
    """The values that are numbers (None and failed samples left out)."""
    return [float(value) for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]


def summarize(values: Iterable[Any]) -> Summary:
    found = numbers(values)
    if not found:
        return Summary(0, None, None, None)
    return Summary(len(found), statistics.median(found), min(found), max(found))


def median(values: Iterable[Any]) -> float | None:
    return summarize(values).median


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def field(samples: Iterable[dict[str, Any]], key: str, **match: Any) -> list[Any]:
    """``sample[key]`` of every sample whose items equal ``match``."""
    return [sample.get(key) for sample in samples if all(sample.get(k) == v for k, v in match.items())]


def median_of(samples: Iterable[dict[str, Any]], key: str, **match: Any) -> float | None:
    return median(field(samples, key, **match))
