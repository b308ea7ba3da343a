# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PNG plots of the benchmark results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from analysis import variant_name


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _strip(axis: Any, groups: dict[str, list[float]], ylabel: str) -> None:
    """Every sample as a dot, the median as a bar, one column per group."""
    for index, (_name, values) in enumerate(groups.items()):
        if not values:
            continue
        ordered = sorted(values)
        middle = ordered[len(ordered) // 2] if len(ordered) % 2 else sum(ordered[len(ordered) // 2 - 1:len(ordered) // 2 + 1]) / 2
        axis.bar(index, middle, color="#c6dbef", width=0.6)
        axis.plot([index] * len(values), values, "o", color="#08519c", markersize=4)
    axis.set_xticks(range(len(groups)), list(groups), rotation=15)
    axis.set_ylabel(ylabel)


def plot_b1(section: dict[str, Any], out: Path) -> Path:
    samples = [sample for sample in section.get("samples", []) if sample.get("ok")]
    figure, (times, downtimes) = plt.subplots(1, 2, figsize=(9, 4))
    groups = {}
    for tool in ("module", "virsh"):
        groups[f"{tool} on host"] = [s["host_s"] for s in samples if s["tool"] == tool and s.get("host_s") is not None]
        groups[f"{tool} job"] = [s["job_s"] for s in samples if s["tool"] == tool and s.get("job_s") is not None]
    _strip(times, groups, "seconds")
    times.set_title("B1 one migration")
    _strip(downtimes, {tool: [s["downtime_ms"] for s in samples if s["tool"] == tool and s.get("downtime_ms") is not None]
                       for tool in ("module", "virsh")}, "downtime (ms)")
    downtimes.set_title("B1 downtime")
    return _save(figure, out / "b1_single.png")


def plot_b2(section: dict[str, Any], out: Path) -> Path:
    samples = [sample for sample in section.get("samples", []) if sample.get("ok")]
    names: list[str] = []
    for sample in samples:
        if variant_name(sample) not in names:
            names.append(variant_name(sample))
    names.sort(key=lambda name: (name != "virsh loop", name))
    figure, (totals, downtimes) = plt.subplots(1, 2, figsize=(10, 4))
    _strip(totals, {name: [s["host_s"] for s in samples if variant_name(s) == name and s.get("host_s") is not None]
                    for name in names}, "total seconds (on host)")
    totals.set_title("B2 emptying hv1")
    _strip(downtimes, {name: [g["downtime_ms"] for s in samples if variant_name(s) == name for g in s["guests"]
                              if g.get("downtime_ms") is not None] for name in names}, "per-guest downtime (ms)")
    downtimes.set_title("B2 downtime")
    return _save(figure, out / "b2_evacuate.png")


def plot_b3(section: dict[str, Any], out: Path) -> Path:
    cfg = section.get("config", {})
    samples = section.get("samples", [])
    figure, axis = plt.subplots(figsize=(7, 4))
    tools = [tool for tool in ("virsh", "module", "module-no-throttle") if any(s["tool"] == tool for s in samples)]
    for index, tool in enumerate(tools):
        for sample in (s for s in samples if s["tool"] == tool):
            seconds = sample.get("host_s") or 0
            done = sample.get("completed")
            axis.plot(index, seconds, "o" if done else "x", color="#2ca02c" if done else "#d62728", markersize=9)
    bound = cfg.get("bound_s")
    if bound:
        axis.axhline(bound, color="grey", linestyle="--", label=f"RAM/bandwidth {bound:.0f} s")
        axis.axhline(2 * bound, color="grey", linestyle=":", label="2x RAM/bandwidth")
    labels = {"virsh": "virsh (pre-copy, bounded)", "module": "module (throttling + policy)",
              "module-no-throttle": "module (policy alone)"}
    axis.set_xticks(range(len(tools)), [labels[tool] for tool in tools])
    axis.set_xlim(-0.5, len(tools) - 0.5)
    axis.set_ylabel("seconds (o completed, x aborted)")
    axis.set_title("B3 convergence under dirtying load")
    axis.legend()
    return _save(figure, out / "b3_convergence.png")


def plot_b4_ram(section: dict[str, Any], out: Path) -> Path:
    cfg = section.get("config", {})
    samples = [s for s in section.get("ram_samples", []) if s.get("ok") and s.get("job_s") is not None]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([s["memory_mib"] for s in samples], [s["job_s"] for s in samples], "o", label="libvirt job time")
    sizes = cfg.get("sizes_mib", [])
    bandwidth = cfg.get("bandwidth")
    if sizes and bandwidth:
        axis.plot(sizes, [size / bandwidth for size in sizes], "--", color="grey", label=f"RAM / {bandwidth} MiB/s")
    axis.set_xscale("log", base=2)
    axis.set_xticks(sizes, [str(size) for size in sizes])
    axis.set_xlabel("guest RAM (MiB)")
    axis.set_ylabel("seconds")
    axis.set_title("B4 migration time vs RAM")
    axis.legend()
    return _save(figure, out / "b4_ram.png")


def plot_b4_dirty(section: dict[str, Any], out: Path) -> Path:
    cfg = section.get("config", {})
    samples = section.get("dirty_samples", [])
    figure, axis = plt.subplots(figsize=(7, 4))
    done = [s for s in samples if s.get("ok") and s.get("job_s") is not None]
    failed = [s for s in samples if not s.get("ok")]
    axis.plot([s["nominal_dirty_mib_s"] for s in done], [s["job_s"] for s in done], "o", label="completed")
    if failed:
        axis.plot([s["nominal_dirty_mib_s"] for s in failed], [s.get("host_s") or 0 for s in failed], "x",
                  color="#d62728", label="did not complete")
    bandwidth, memory = cfg.get("bandwidth"), cfg.get("dirty_memory_mib")
    if bandwidth and memory:
        axis.axhline(memory / bandwidth, color="grey", linestyle="--", label=f"RAM / bandwidth ({memory} MiB / {bandwidth} MiB/s)")
        axis.axvline(bandwidth, color="grey", linestyle=":", label="dirty rate = bandwidth")
    axis.set_xlabel("nominal dirty rate (MiB/s)")
    axis.set_ylabel("seconds")
    axis.set_title("B4 migration time vs dirty rate")
    axis.legend()
    return _save(figure, out / "b4_dirty.png")


PLOTS = {"B1": [plot_b1], "B2": [plot_b2], "B3": [plot_b3], "B4": [plot_b4_ram, plot_b4_dirty]}


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    """Every plot of the benchmarks present; the file names written."""
    written = []
    for name, makers in PLOTS.items():
        section = results.get("benchmarks", {}).get(name)
        if not section or section.get("error"):
            continue
        for make in makers:
            written.append(make(section, out).name)
    return written
