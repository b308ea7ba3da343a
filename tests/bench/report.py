# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""results.md: the machine, the targets and one table per benchmark (pure: results in, text out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis import fmt
from stats import summarize


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub markdown table; cells are str()-ed, pipes escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def spread(found: dict[str, Any], digits: int = 2, unit: str = "") -> str:
    """``median (min-max)`` of a summary dict."""
    if not found or found.get("median") is None:
        return "n/a"
    return f"{fmt(found['median'], digits, unit)} ({fmt(found['min'], digits)}-{fmt(found['max'], digits)})"


def machine_section(results: dict[str, Any]) -> list[str]:
    machine = results.get("machine") or {}
    controller = machine.get("controller", {})
    rows = [
        ("CPU", f"{controller.get('cores')} cores, {controller.get('cpu_model')}"),
        ("Memory", f"{controller.get('memory_mib')} MiB"),
        ("Kernel", controller.get("kernel")),
        ("Accelerator", controller.get("accelerator")),
    ]
    for host, info in sorted((machine.get("hosts") or {}).items()):
        rows.append((f"{host}", f"libvirt {info.get('libvirt')}, QEMU {info.get('qemu')}, {info.get('os')}"))
    load = results.get("load_log") or []
    if load:
        load1 = summarize(entry["load1"] for entry in load)
        qemu = summarize(entry["qemu_processes"] for entry in load)
        rows.append(("Load while measuring", (f"1-min load average {fmt(load1.median, 1)} median "
                     f"({fmt(load1.minimum, 1)}-{fmt(load1.maximum, 1)}); QEMU processes on the machine (every "
                                              f"lab's guests, ours included) {fmt(qemu.median, 0)} median ({fmt(qemu.minimum, 0)}-"
                                              f"{fmt(qemu.maximum, 0)})")))
    return ["## Machine", "", *table(("", ""), rows), ""]


def targets_section(summary: dict[str, Any]) -> list[str]:
    rows = [(found["target"], found["wanted"], found["value"], verdict(found["met"]), found["why"])
            for found in summary.get("targets", [])]
    return ["## Targets", "", *table(("Target", "Wanted", "Measured", "Verdict", "Why"), rows), ""]


def b1_section(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    found = summary["B1"]
    cfg = results["benchmarks"]["B1"]["config"]
    guest = cfg["guest"]
    tools = found["tools"]
    rows = [(tool, tools[tool]["host_s"]["count"], spread(tools[tool]["host_s"], 3), spread(tools[tool]["cli_s"]),
             spread(tools[tool]["job_s"], 3), spread(tools[tool]["downtime_ms"], 0))
            for tool in ("module", "virsh")]
    rows.append(("ratio module/virsh", "", fmt(found["ratios"]["host_s"], 3), fmt(found["ratios"]["cli_s"], 3),
                 fmt(found["ratios"]["job_s"], 3), ""))
    fixed = found["fixed_cost"]
    phase_rows = [(phase, fmt(value, 4)) for phase, value in fixed["phases_s"].items()]
    phase_rows += [("module total - libvirt job time", fmt(fixed["module_total_minus_job_s"], 3)),
                   ("  of which before the migration (validate..preflight)", fmt(fixed["module_before_migration_s"], 3)),
                   ("  of which watching the job (migrate phase - job time)", fmt(fixed["module_monitoring_s"], 3)),
                   ("virsh process - libvirt job time (for comparison)", fmt(fixed["virsh_process_minus_job_s"], 3))]
    idem = found["idempotent"]
    idem_rows = [("inside the module (timings.total)", spread(idem["module_s"], 3)),
                 ("module process on the host (AnsiballZ run directly with python3)", spread(idem["process_s"], 3)),
                 ("ansible CLI end to end", spread(idem["cli_s"], 2)),
                 ("ansible CLI running ansible.builtin.ping (the CLI's floor)", spread(idem["cli_floor_s"], 2)),
                 ("every re-run changed=false", idem["all_unchanged"])]
    return [
        "## B1: one migration, module vs `virsh migrate`", "",
        (f"Guest: Linux (TCG), {guest['memory_mib']} MiB RAM of which {guest.get('fill_mib', 0)} MiB filled with random "
         f"data, NFS disk, moved hv1 <-> hv2, {cfg['runs']} runs of each tool in ABBA order (module, virsh, virsh, "
         f"module, ...). virsh command: `{virsh_command(results)}` (the module's flags: {', '.join(cfg.get('flags', []))})."),
        "",
        ("Times in seconds as median (min-max). *On host*: measured on the source host around the work (the module's "
         "own `timings.total`, the virsh process). *End to end*: on the controller (the `ansible` CLI, or `ssh` + "
         "virsh). *libvirt job*: `time_elapsed` of libvirt's completed job statistics (the module's `stats`, "
         "`virsh domjobinfo --completed` on the destination for virsh)."), "",
        *table(("tool", "runs", "on host (s)", "end to end (s)", "libvirt job (s)", "downtime (ms)"), rows), "",
        "The module's fixed cost (medians, seconds; phases from the module's `timings`):", "",
        *table(("part", "seconds"), phase_rows), "",
        "Idempotent re-run (the guest already runs on the destination, nothing changes):", "",
        *table(("measured", "seconds"), idem_rows), "",
        ("The 0.3 s budget is judged on the module's own time. The `ansible` CLI alone (Python start-up, loading "
         "ansible-core and the inventory, the SSH connection, sending AnsiballZ) takes longer than that on this "
         "machine, whatever the module does."), "",
        "![B1](b1_single.png)", "",
    ]


def virsh_command(results: dict[str, Any]) -> str:
    for sample in results["benchmarks"]["B1"].get("samples", []):
        if sample.get("command"):
            return sample["command"]
    return "n/a"


def b2_section(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    cfg = results["benchmarks"]["B2"]["config"]
    guests = cfg["guests"]
    first = guests[0]
    rows = [(name, values["rounds"], spread(values["host_s"]), spread(values["cli_s"]), fmt(values["speedup"], 2, "x"),
             fmt(values["speedup_cli"], 2, "x"), spread(values["guest_s"]), spread(values["downtime_ms"], 0))
            for name, values in summary["B2"]["variants"].items()]
    kind = first.get("kind", "bootsector")
    return [
        "## B2: evacuating 8 guests, evacuate vs a sequential virsh loop", "",
        (f"{len(guests)} {kind} guests of {first.get('memory_mib', 32)} MiB ({first.get('fill_mib', 0)} MiB filled) on hv1, "
         f"to hv2 and hv3 as the module's plan places them; per-migration bandwidth cap "
         f"{cfg['bandwidth'] or 'none'} MiB/s for both; {cfg['rounds']} round(s), variants rotated per round; guests "
         f"moved back to hv1 between variants. Evacuate's `max_parallel_per_destination` is half its concurrency "
         f"(two destinations). Speedup = loop time / variant time (medians)."), "",
        *table(("variant", "rounds", "total on host (s)", "total end to end (s)", "speedup", "speedup end to end",
                "per guest (s)", "per-guest downtime (ms)"), rows), "",
        "![B2](b2_evacuate.png)", "",
    ]


def b3_section(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    cfg = results["benchmarks"]["B3"]["config"]
    guest = cfg["guest"]
    found = summary["B3"]
    rows = [(tool, f"{values['completed']}/{values['runs']}", spread(values["all_host_s"]), spread(values["job_s"]),
             fmt(values["time_over_bound"], 2, "x"), spread(values["downtime_ms"], 0), fmt(values["throttle_pct"], 0),
             values["aborted_by_policy"]) for tool, values in found["tools"].items()]
    aborted = [sample for sample in results["benchmarks"]["B3"]["samples"] if sample.get("aborted")]
    abort_rows = [(sample["run"], fmt(sample["at_abort"].get("data_remaining_mib"), 1),
                   fmt(sample["at_abort"].get("memory_iterations"), 0),
                   fmt(sample["at_abort"].get("expected_downtime_ms"), 0)) for sample in aborted]
    lines = [
        "## B3: convergence under a memory-dirtying load", "",
        (f"Linux guest, {guest['memory_mib']} MiB ({guest['fill_mib']} MiB filled), rewriting {guest['dirty_mib']} MiB "
         f"every {guest['dirty_interval']} s; bandwidth cap {cfg['bandwidth']} MiB/s, so the RAM/bandwidth lower bound is "
         f"{fmt(cfg['bound_s'], 1)} s. Plain `virsh migrate` (pre-copy, the module's flags, the cap) is aborted "
         f"(`virsh domjobabort`) after {fmt(cfg['virsh_limit_s'], 0)} s. *module*: `{cfg['module_options']}`, i.e. QEMU "
         f"throttles the guest's vCPUs (auto_converge) while the tolerated downtime stays at {cfg['max_downtime_ms']} ms "
         "and the policy aborts on its completion timeout (twice the RAM/bandwidth time). *module-no-throttle*: the same without auto_converge (the "
         "policy alone against a load pre-copy cannot beat). Post-copy, the other way out, is not available on this "
         "lab: QEMU runs unprivileged and the kernel's `vm.unprivileged_userfaultfd` is 0."), "",
        *table(("tool", "completed", "time on host until done or aborted (s)", "libvirt job (s)", "time / bound",
                "downtime (ms)",
                "final throttle (%)", "aborted by the policy"), rows), "",
    ]
    if abort_rows:
        lines += ["Plain virsh at the moment it was aborted (`virsh domjobinfo`):", "",
                  *table(("run", "data remaining (MiB)", "memory iteration", "expected downtime (ms)"), abort_rows), ""]
    return [*lines, "![B3](b3_convergence.png)", ""]


def b4_section(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    found = summary["B4"]
    cfg = results["benchmarks"]["B4"]["config"]
    ram_rows = [(row["memory_mib"], row["runs"], fmt(row["data_mib"], 0), fmt(row["job_s"]), fmt(row["bound_s"]),
                 fmt(row["over_bound"], 2, "x"), fmt(row["downtime_ms"], 0)) for row in found["ram"]]
    dirty_rows = [(row["nominal_dirty_mib_s"], f"{row['completed']}/{row['runs']}",
                   fmt(row["data_mib"], 0), fmt(row["job_s"]), fmt(row["downtime_ms"], 0)) for row in found["dirty"]]
    return [
        "## B4: migration time against RAM and dirty rate (the module)", "",
        (f"Bandwidth cap {found['bandwidth']} MiB/s, so the RAM/bandwidth line is RAM / {found['bandwidth']} s. "
         "Each guest has three quarters of its RAM less 32 MiB filled with random data. Throughput fitted over the "
         f"RAM series (data sent against job time): {fmt(found['throughput_mib_s'], 1)} MiB/s."), "",
        *table(("RAM (MiB)", "runs", "data sent (MiB)", "libvirt job (s)", "RAM/bandwidth (s)", "job / bound",
                "downtime (ms)"), ram_rows), "",
        (f"Against the dirty rate, {cfg['dirty_memory_mib']} MiB guest ({cfg['dirty_fill_mib']} MiB filled). The nominal "
         "rate is the rewritten region over the pause between passes. Under TCG the guest's copy loop is CPU-bound and "
         "cannot dirty much more than about 8-13 MiB/s (QEMU measured 8 MiB/s in B3), so the higher nominal rates are "
         "not reached: the extra data sent over the idle guest shows what the load really added."), "",
        *table(("nominal dirty rate (MiB/s)", "completed", "data sent (MiB)", "libvirt job (s)", "downtime (ms)"),
               dirty_rows), "",
        "![B4 RAM](b4_ram.png) ![B4 dirty rate](b4_dirty.png)", "",
    ]


SECTIONS = {"B1": b1_section, "B2": b2_section, "B3": b3_section, "B4": b4_section}


def render(results: dict[str, Any], summary: dict[str, Any], notes: Sequence[str] = ()) -> str:
    meta = results.get("meta", {})
    lines = [
        "# virtops.migration benchmarks", "",
        (f"Run {meta.get('started')} to {meta.get('finished')} ({fmt(meta.get('duration_s'), 0)} s), "
         f"mode {'smoke' if meta.get('smoke') else 'full'}, benchmarks {', '.join(meta.get('only', []))}, "
         f"`{meta.get('command')}`. Raw samples: [results.json](results.json); machine: [machine.json](machine.json)."), "",
        *machine_section(results),
        *targets_section(summary),
    ]
    for name, section in SECTIONS.items():
        found = results.get("benchmarks", {}).get(name)
        if found is None:
            continue
        if found.get("error"):
            lines += [f"## {name}", "", f"Failed: {found['error']}", ""]
            continue
        lines += section(results, summary)
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)
