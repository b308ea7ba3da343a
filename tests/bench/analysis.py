# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""From raw samples to medians, ratios and the issue's targets, met or not and why (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from stats import field, median, median_of, ratio, summarize

B1_RATIO_TARGET = 1.10
IDEMPOTENT_TARGET_S = 0.3
B2_SPEEDUP_TARGET = 3.0
B2_TARGET_CONCURRENCY = 4
DOWNTIME_TOLERANCE = 1.10  # "no worse downtime": within 10 % of the loop's median
B3_BOUND_FACTOR = 2.0
B3_TARGET = "B3 convergence under a dirtying load"
B3_WANTED = f"module completes within {B3_BOUND_FACTOR:g}x RAM/bandwidth, downtime <= max, virsh does not"
PHASES = ("validate", "connect", "lookup", "reconcile", "preflight", "migrate", "verify")


def target(name: str, wanted: str, value: str, met: bool | None, why: str) -> dict[str, Any]:
    return {"target": name, "wanted": wanted, "value": value, "met": met, "why": why}


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


# ---------------------------------------------------------------------------- B1


def summarize_b1(section: dict[str, Any]) -> dict[str, Any]:
    samples = [sample for sample in section.get("samples", []) if sample.get("ok")]
    tools = {tool: {key: summarize(field(samples, key, tool=tool)).as_dict()
                    for key in ("cli_s", "host_s", "job_s", "downtime_ms", "data_mib")} for tool in ("module", "virsh")}
    ratios = {key: ratio(median_of(samples, key, tool="module"), median_of(samples, key, tool="virsh"))
              for key in ("host_s", "cli_s", "job_s")}
    modules = [sample for sample in samples if sample["tool"] == "module"]
    virshes = [sample for sample in samples if sample["tool"] == "virsh"]
    phases = {phase: median((sample.get("phases") or {}).get(phase) for sample in modules) for phase in PHASES}
    fixed = {
        "module_total_minus_job_s": median(overhead(sample) for sample in modules),
        "virsh_process_minus_job_s": median(overhead(sample) for sample in virshes),
        "module_monitoring_s": median(monitoring(sample) for sample in modules),
        "module_before_migration_s": median(before_migration(sample) for sample in modules),
        "phases_s": phases,
    }
    reruns = section.get("idempotent", [])
    via_ansible = [run for run in reruns if run.get("via") == "ansible"]
    via_wrapper = [run for run in reruns if run.get("via") == "ansiballz"]
    idempotent = {
        "runs": len(via_ansible),
        "all_unchanged": bool(reruns) and all(run.get("changed") is False and not run.get("failed") for run in reruns),
        "module_s": summarize(field(via_ansible, "module_s")).as_dict(),
        "cli_s": summarize(field(via_ansible, "cli_s")).as_dict(),
        "process_s": summarize(field(via_wrapper, "process_s")).as_dict(),
        "cli_floor_s": summarize(field(section.get("cli_floor", []), "cli_s")).as_dict(),
    }
    return {"tools": tools, "ratios": ratios, "fixed_cost": fixed, "idempotent": idempotent}


def overhead(sample: dict[str, Any]) -> float | None:
    if sample.get("host_s") is None or sample.get("job_s") is None:
        return None
    return sample["host_s"] - sample["job_s"]


def monitoring(sample: dict[str, Any]) -> float | None:
    migrate = (sample.get("phases") or {}).get("migrate")
    return None if migrate is None or sample.get("job_s") is None else migrate - sample["job_s"]


def before_migration(sample: dict[str, Any]) -> float | None:
    phases = sample.get("phases") or {}
    parts = [phases.get(phase) for phase in ("validate", "connect", "lookup", "reconcile", "preflight")]
    return None if any(part is None for part in parts) else sum(parts)


def targets_b1(summary: dict[str, Any]) -> list[dict[str, Any]]:
    host_ratio = summary["ratios"]["host_s"]
    cli_ratio = summary["ratios"]["cli_s"]
    fixed = summary["fixed_cost"]
    job = summary["tools"]["virsh"]["job_s"]["median"]
    if host_ratio is None:
        ratio_met, why = None, "no successful pair of samples"
    else:
        ratio_met = host_ratio <= B1_RATIO_TARGET
        tools = summary["tools"]
        why = (f"on the source host the module takes {fmt(host_ratio, 3)}x virsh's time; it spends "
               f"{fmt(fixed['module_before_migration_s'], 3)} s before the migration (connect "
               f"{fmt(fixed['phases_s']['connect'], 3)} s, preflight {fmt(fixed['phases_s']['preflight'], 3)} s) and "
               f"{fmt(fixed['module_monitoring_s'], 3)} s watching the job, in all "
               f"{fmt(fixed['module_total_minus_job_s'], 3)} s over libvirt's job where the virsh process spends "
               f"{fmt(fixed['virsh_process_minus_job_s'], 3)} s; the rest is libvirt's job itself, "
               f"{fmt(summary['ratios']['job_s'], 2)}x as long under the module (median {fmt(tools['module']['job_s']['median'], 2)} s "
               f"vs {fmt(job, 2)} s for the same {fmt(tools['virsh']['data_mib']['median'], 0)} MiB sent; virsh's own jobs "
               f"spread {fmt(tools['virsh']['job_s']['min'], 2)}-{fmt(tools['virsh']['job_s']['max'], 2)} s). "
               f"End to end through the ansible CLI the ratio is {fmt(cli_ratio, 2)}x (CLI start-up, see the re-run)")
    idem = summary["idempotent"]
    module_s = idem["module_s"]["median"]
    if module_s is None:
        idem_met, idem_why = None, "no re-run measured"
    else:
        idem_met = module_s < IDEMPOTENT_TARGET_S and idem["all_unchanged"]
        idem_why = (f"inside the module {fmt(module_s, 3)} s (connect to both libvirtds and look the guest up); "
                    f"the module process alone on the host {fmt(idem['process_s']['median'], 3)} s (Python start, "
                    f"AnsiballZ unpacking, imports); through the ansible CLI {fmt(idem['cli_s']['median'], 2)} s, while "
                    f"an ansible.builtin.ping through the same CLI takes {fmt(idem['cli_floor_s']['median'], 2)} s"
                    + ("" if idem["all_unchanged"] else "; NOT every re-run reported changed=false"))
    return [
        target("B1 ratio (median time on the source host, module / virsh)", f"<= {B1_RATIO_TARGET}",
               fmt(host_ratio, 3), ratio_met, why),
        target("B1 idempotent re-run, module time", f"< {IDEMPOTENT_TARGET_S} s", fmt(module_s, 3, " s"), idem_met,
               idem_why),
    ]


# ---------------------------------------------------------------------------- B2


def variant_name(sample: dict[str, Any]) -> str:
    return "virsh loop" if sample["tool"] == "virsh-loop" else f"evacuate x{sample['concurrency']}"


def summarize_b2(section: dict[str, Any]) -> dict[str, Any]:
    samples = [sample for sample in section.get("samples", []) if sample.get("ok")]
    names: list[str] = []
    for sample in section.get("samples", []):
        if variant_name(sample) not in names:
            names.append(variant_name(sample))
    variants: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [sample for sample in samples if variant_name(sample) == name]
        downtimes = [guest.get("downtime_ms") for sample in mine for guest in sample["guests"]]
        variants[name] = {
            "rounds": len(mine),
            "host_s": summarize(field(mine, "host_s")).as_dict(),
            "cli_s": summarize(field(mine, "cli_s")).as_dict(),
            "downtime_ms": summarize(downtimes).as_dict(),
            "guest_s": summarize(guest.get("seconds") for sample in mine for guest in sample["guests"]).as_dict(),
        }
    loop = variants.get("virsh loop", {})
    for values in variants.values():
        values["speedup"] = ratio((loop.get("host_s") or {}).get("median"), values["host_s"]["median"])
        values["speedup_cli"] = ratio((loop.get("cli_s") or {}).get("median"), values["cli_s"]["median"])
    return {"variants": variants}


def targets_b2(summary: dict[str, Any], cores: int | None) -> list[dict[str, Any]]:
    variants = summary["variants"]
    wanted = f"evacuate x{B2_TARGET_CONCURRENCY}"
    if wanted not in variants or "virsh loop" not in variants:
        return [target(f"B2 speedup at concurrency {B2_TARGET_CONCURRENCY}", f">= {B2_SPEEDUP_TARGET}x, downtime no worse",
                       "n/a", None, "not measured in this run")]
    mine, loop = variants[wanted], variants["virsh loop"]
    speedup = mine["speedup"]
    ours, theirs = mine["downtime_ms"]["median"], loop["downtime_ms"]["median"]
    downtime_ok = ours is not None and theirs is not None and ours <= theirs * DOWNTIME_TOLERANCE
    met = speedup is not None and speedup >= B2_SPEEDUP_TARGET and downtime_ok
    why = (f"{fmt(speedup, 2)}x faster than the loop (host time; {fmt(mine['speedup_cli'], 2)}x end to end); "
           f"median per-guest downtime {fmt(ours, 0)} ms vs {fmt(theirs, 0)} ms for the loop "
           f"({'no worse' if downtime_ok else 'worse'}, tolerance {int((DOWNTIME_TOLERANCE - 1) * 100)} %)")
    if speedup is not None and speedup < B2_SPEEDUP_TARGET:
        why += (f"; {B2_TARGET_CONCURRENCY} concurrent TCG migrations share {cores or '?'} CPU cores with the guests "
                "and the other labs, so a migration gets slower as more run at once")
    return [target(f"B2 speedup at concurrency {B2_TARGET_CONCURRENCY} vs the sequential virsh loop",
                   f">= {B2_SPEEDUP_TARGET}x, downtime no worse", fmt(speedup, 2, "x"), met, why)]


# ---------------------------------------------------------------------------- B3


def summarize_b3(section: dict[str, Any]) -> dict[str, Any]:
    cfg = section.get("config", {})
    bound = cfg.get("bound_s")
    tools = {}
    for tool in ("virsh", "module", "module-no-throttle"):
        mine = [sample for sample in section.get("samples", []) if sample.get("tool") == tool]
        if not mine and tool != "module":
            continue
        done = [sample for sample in mine if sample.get("completed")]
        host = summarize(field(done, "host_s")).as_dict()
        tools[tool] = {
            "runs": len(mine), "completed": len(done),
            "host_s": host,
            "all_host_s": summarize(field(mine, "host_s")).as_dict(),
            "job_s": summarize(field(done, "job_s")).as_dict(),
            "downtime_ms": summarize(field(done, "downtime_ms")).as_dict(),
            "time_over_bound": ratio(host["median"], bound),
            "worst_time_over_bound": ratio(host["max"], bound),
            "throttle_pct": median((sample.get("stats") or {}).get("auto_converge_throttle") for sample in done),
            "aborted_by_policy": sum(1 for sample in mine if any(action.get("action") == "abort"
                                                                 for action in sample.get("policy_actions") or [])),
        }
    return {"bound_s": bound, "max_downtime_ms": cfg.get("max_downtime_ms"), "tools": tools}


def targets_b3(summary: dict[str, Any]) -> list[dict[str, Any]]:
    module, virsh = summary["tools"]["module"], summary["tools"].get("virsh", {"runs": 0, "completed": 0})
    bound, limit = summary["bound_s"], summary["max_downtime_ms"]
    if not module["runs"]:
        return [target("B3 convergence", "module completes within 2x RAM/bandwidth", "n/a", None, "not measured")]
    completes = module["completed"] == module["runs"]
    worst = module["worst_time_over_bound"]
    in_time = worst is not None and worst <= B3_BOUND_FACTOR
    downtime = module["downtime_ms"]["max"]
    in_downtime = downtime is not None and limit is not None and downtime <= limit
    virsh_fails = virsh["runs"] > 0 and virsh["completed"] == 0
    met = completes and in_time and in_downtime and virsh_fails
    if not module["completed"]:
        why = (f"no module run completed: the policy aborted {module['aborted_by_policy']}/{module['runs']} at "
               f"{fmt(module['all_host_s']['median'], 1)} s (its completion timeout), the guest kept running on the "
               f"source; QEMU's throttling (auto_converge) did not make pre-copy converge within "
               f"{B3_BOUND_FACTOR:g}x the {fmt(bound, 1)} s bound. Plain virsh completed {virsh['completed']}/"
               f"{virsh['runs']} within its bound")
        return [target(B3_TARGET, B3_WANTED, f"module completed 0/{module['runs']}", False, why)]
    why = (f"module completed {module['completed']}/{module['runs']} (QEMU throttled the guest to "
           f"{fmt(module['throttle_pct'], 0)} % at the end, median), worst "
           f"{fmt(worst, 2)}x the {fmt(bound, 1)} s RAM/bandwidth bound, worst downtime {fmt(downtime, 0)} ms vs the "
           f"{limit} ms set; plain virsh completed {virsh['completed']}/{virsh['runs']} within its bound")
    return [target(B3_TARGET, B3_WANTED, f"{fmt(worst, 2)}x, {fmt(downtime, 0)} ms", met, why)]


# ---------------------------------------------------------------------------- B4


def summarize_b4(section: dict[str, Any]) -> dict[str, Any]:
    cfg = section.get("config", {})
    bandwidth = cfg.get("bandwidth")
    ram = []
    for size in cfg.get("sizes_mib", []):
        mine = [sample for sample in section.get("ram_samples", []) if sample.get("memory_mib") == size and sample.get("ok")]
        job = median(field(mine, "job_s"))
        bound = size / bandwidth if bandwidth else None
        ram.append({"memory_mib": size, "runs": len(mine), "job_s": job, "bound_s": bound,
                    "over_bound": ratio(job, bound), "data_mib": median(field(mine, "data_mib")),
                    "downtime_ms": median(field(mine, "downtime_ms"))})
    dirty = []
    for point in cfg.get("dirty_points", []):
        nominal = round(point["dirty_mib"] / point["dirty_interval"], 1)
        mine = [sample for sample in section.get("dirty_samples", []) if sample.get("nominal_dirty_mib_s") == nominal]
        done = [sample for sample in mine if sample.get("ok")]
        dirty.append({"nominal_dirty_mib_s": nominal, "runs": len(mine), "completed": len(done),
                      "job_s": median(field(done, "job_s")), "data_mib": median(field(done, "data_mib")),
                      "downtime_ms": median(field(done, "downtime_ms")),
                      "measured_dirty_mib_s": median(field(done, "measured_dirty_mib_s"))})
    return {"bandwidth": bandwidth, "ram": ram, "dirty": dirty, "throughput_mib_s": throughput(section)}


def throughput(section: dict[str, Any]) -> float | None:
    """Least-squares slope of data sent against job time over the RAM series (MiB/s actually achieved)."""
    points = [(sample["job_s"], sample["data_mib"]) for sample in section.get("ram_samples", [])
              if sample.get("ok") and sample.get("job_s") and sample.get("data_mib") is not None]
    if len(points) < 2:
        return None
    times = [seconds for seconds, _mib in points]
    mean_t = sum(times) / len(points)
    mean_d = sum(mib for _seconds, mib in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return None
    return sum((t - mean_t) * (d - mean_d) for t, d in points) / spread


# ---------------------------------------------------------------------------- all


def analyze(results: dict[str, Any]) -> dict[str, Any]:
    """Summaries and targets of every benchmark present in ``results``."""
    benchmarks = results.get("benchmarks", {})
    cores = (results.get("machine") or {}).get("controller", {}).get("cores")
    summary: dict[str, Any] = {"targets": []}
    handlers = {
        "B1": (summarize_b1, targets_b1),
        "B2": (summarize_b2, lambda found: targets_b2(found, cores)),
        "B3": (summarize_b3, targets_b3),
        "B4": (summarize_b4, lambda found: []),
    }
    for name, (summarize_section, targets_of) in handlers.items():
        section = benchmarks.get(name)
        if not section or section.get("error"):
            continue
        found = summarize_section(section)
        summary[name] = found
        summary["targets"] += targets_of(found)
    return summary
