# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every benchmark gets: the lab, the run options, its guests (always removed) and a load log."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labaccess import BenchLab, log


def machine_load() -> dict[str, Any]:
    """This machine's load average and how many QEMU processes (every lab's guests) run right now."""
    load1, load5, _load15 = os.getloadavg()
    proc = subprocess.run(["pgrep", "-c", "-f", "qemu-system"], capture_output=True, text=True, check=False)
    qemu = int(proc.stdout.strip() or 0)
    return {"load1": round(load1, 2), "load5": round(load5, 2), "qemu_processes": qemu}


@dataclass
class Context:
    lab: BenchLab
    smoke: bool
    runs: int | None
    load_log: list[dict[str, Any]] = field(default_factory=list)
    precreated: set[str] = field(default_factory=set)

    def note_load(self, label: str) -> None:
        self.load_log.append({"at": time.time(), "label": label, **machine_load()})

    @contextlib.contextmanager
    def guests(self, guests: list[dict[str, Any]], boot_timeout: float = 120) -> Iterator[list[dict[str, Any]]]:
        """Create ``guests`` (removing leftovers first), wait for the Linux ones to boot, remove them after.

        Guests created up front (``create_upfront``) are used as they are and left for ``remove_upfront``.
        """
        if all(guest["name"] in self.precreated for guest in guests):
            yield guests
            return
        log("creating guests " + ", ".join(guest["name"] for guest in guests))
        try:
            self.lab.create_guests(guests)
            self.lab.wait_booted(guests, boot_timeout)
            yield guests
        finally:
            log("removing guests " + ", ".join(guest["name"] for guest in guests))
            self.lab.remove_guests(guests)

    def create_upfront(self, guests: list[dict[str, Any]], boot_timeout: float = 120) -> None:
        """Create (and boot) every guest of several benchmarks at once: one playbook run instead of many."""
        log("creating guests up front " + ", ".join(guest["name"] for guest in guests))
        self.precreated.update(guest["name"] for guest in guests)
        self.lab.create_guests(guests)
        self.lab.wait_booted(guests, boot_timeout)

    def remove_upfront(self, guests: list[dict[str, Any]]) -> None:
        log("removing the guests created up front")
        self.lab.remove_guests(guests)
        self.precreated.clear()
