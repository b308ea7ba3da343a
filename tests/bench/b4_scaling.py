# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""B4: the module's migration time against guest RAM and against the guest's dirty rate, at a fixed cap.

RAM series: one guest per size, most of its RAM filled with random data (``fill_mib``; zero pages
would cross almost for free), moved back and forth ``runs`` times. Dirty series: one guest of fixed
size per dirty rate (``dirty_mib`` rewritten every ``dirty_interval`` seconds; the nominal rate is
their quotient, the rate QEMU measured is recorded when libvirt reports it).
"""

from __future__ import annotations

from typing import Any

from context import Context
from labaccess import log
from migrations import run_module

HOSTS = ("hv1", "hv2")


def fill_for(memory_mib: int) -> int:
    """RAM filled with random data: three quarters of it, less what the guest's kernel needs."""
    return max(0, memory_mib * 3 // 4 - 32)


def config(ctx: Context) -> dict[str, Any]:
    if ctx.smoke:
        return {"bandwidth": 128, "sizes_mib": [128], "runs": 1, "dirty_memory_mib": 128, "dirty_fill_mib": 0,
                "dirty_points": [{"dirty_mib": 8, "dirty_interval": 0.5}], "timeout_s": 120}
    return {"bandwidth": 64, "sizes_mib": [128, 256, 512, 1024, 2048], "runs": ctx.runs or 2,
            "dirty_memory_mib": 256, "dirty_fill_mib": fill_for(256),
            "dirty_points": [{"dirty_mib": 0, "dirty_interval": 1}, {"dirty_mib": 8, "dirty_interval": 1},
                             {"dirty_mib": 8, "dirty_interval": 0.5}, {"dirty_mib": 8, "dirty_interval": 0.25},
                             {"dirty_mib": 16, "dirty_interval": 0.25}],
            "timeout_s": 300}


def other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"bandwidth": cfg["bandwidth"], "timeout": cfg["timeout_s"]}


def measured_dirty_rate(stats: dict[str, Any]) -> float | None:
    """The dirty rate QEMU measured last (MiB/s), when libvirt reports it."""
    rate, page = stats.get("memory_dirty_rate"), stats.get("memory_page_size")
    return None if rate is None or not page else round(rate * page / 1024 / 1024, 1)


def migrate_back_and_forth(ctx: Context, guest: dict[str, Any], cfg: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, Any]]:
    samples = []
    here = guest["host"]
    for index in range(cfg["runs"]):
        ctx.note_load(f"B4 {guest['name']} {index}")
        sample = run_module(ctx.lab, guest["name"], here, other(here), options(cfg))
        sample.update(extra, run=index, measured_dirty_mib_s=measured_dirty_rate(sample.get("stats") or {}))
        samples.append(sample)
        log(f"B4 {guest['name']} {extra}: ok={sample['ok']} job {sample['job_s']} s data {sample['data_mib']} MiB")
        if sample["ok"]:
            here = other(here)
    return samples


def ram_guests(ctx: Context, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": f"bench-b4-ram{size}", "host": HOSTS[0], "kind": "linux", "memory_mib": size,
             "fill_mib": 0 if ctx.smoke else fill_for(size)} for size in cfg["sizes_mib"]]


def dirty_guests(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for point in cfg["dirty_points"]:
        nominal = round(point["dirty_mib"] / point["dirty_interval"], 1)
        found.append({"name": f"bench-b4-dirty{int(nominal)}", "host": HOSTS[0], "kind": "linux",
                      "memory_mib": cfg["dirty_memory_mib"], "fill_mib": cfg["dirty_fill_mib"],
                      "nominal_dirty_mib_s": nominal, **point})
    return found


def guests(ctx: Context) -> list[dict[str, Any]]:
    cfg = config(ctx)
    return ram_guests(ctx, cfg) + dirty_guests(cfg)


def run(ctx: Context) -> dict[str, Any]:
    cfg = config(ctx)
    section: dict[str, Any] = {"config": cfg, "ram_samples": [], "dirty_samples": []}
    for guest in ram_guests(ctx, cfg):
        with ctx.guests([guest], boot_timeout=180):
            section["ram_samples"] += migrate_back_and_forth(
                ctx, guest, cfg, {"memory_mib": guest["memory_mib"], "fill_mib": guest["fill_mib"]})
    for guest in dirty_guests(cfg):
        point = {key: guest[key] for key in ("dirty_mib", "dirty_interval")}
        with ctx.guests([guest], boot_timeout=180):
            section["dirty_samples"] += migrate_back_and_forth(
                ctx, guest, cfg, {"memory_mib": guest["memory_mib"], "nominal_dirty_mib_s": guest["nominal_dirty_mib_s"],
                                  **point})
    return section
