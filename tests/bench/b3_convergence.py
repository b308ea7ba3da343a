# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""B3: a guest dirtying memory faster than the bandwidth cap lets pre-copy finish.

Plain ``virsh migrate`` (live, the module's flags, the same cap) is given a wall-time bound and
aborted with ``virsh domjobabort`` when it runs past it; the module runs with QEMU's throttling
(auto_converge) under its convergence policy (``module_options``), and once with the policy alone
(``no_throttle_options``) to show how it bounds a migration that cannot converge. Each run moves the guest from where it is to the
other host; the tools alternate.
"""

from __future__ import annotations

from typing import Any

from context import Context
from labaccess import log
from migrations import planned_flags, run_module, run_virsh_bounded

HOSTS = ("hv1", "hv2")
GUEST = "bench-b3"


def module_options(bandwidth: int, max_downtime: int, throttle: bool = True) -> dict[str, Any]:
    """The module's options for a guest that cannot converge in pre-copy.

    QEMU throttles the guest's vCPUs (auto_converge, 90 % then 99 %: a guest dirtying faster than
    the link only converges when nearly stopped) until its dirty rate falls
    under the cap; the tolerated downtime stays at ``max_downtime`` (no ramp); the policy aborts once
    the migration has run twice the time to send its RAM at the cap (the target's bound; the guest
    keeps running on the source). Post-copy would be the other way out, but QEMU cannot use it on this lab
    (it runs unprivileged and the kernel's vm.unprivileged_userfaultfd is 0).
    ``throttle=False`` leaves the policy alone against the load.
    """
    options: dict[str, Any] = {
        "bandwidth": bandwidth,
        "max_downtime": max_downtime,
        "convergence": {"downtime_steps": 0, "on_timeout": "abort", "poll_interval": 0.5,
                        "completion_timeout_per_gib": round(2 * 1024 / bandwidth, 1)},
    }
    if throttle:
        options.update(auto_converge=True, auto_converge_initial=90, auto_converge_increment=9)
    return options


def config(ctx: Context) -> dict[str, Any]:
    if ctx.smoke:
        guest = {"name": GUEST, "host": HOSTS[0], "kind": "linux", "memory_mib": 128, "fill_mib": 0,
                 "dirty_mib": 16, "dirty_interval": 0.05}
        bandwidth, runs, variants = 32, 1, ("virsh", "module")
    else:
        guest = {"name": GUEST, "host": HOSTS[0], "kind": "linux", "memory_mib": 192, "fill_mib": 32,
                 "dirty_mib": 32, "dirty_interval": 0.05}
        bandwidth, runs, variants = 8, ctx.runs or 2, ("virsh", "module", "module-no-throttle")
    bound_s = guest["memory_mib"] / bandwidth
    max_downtime = 300
    return {"guest": guest, "bandwidth": bandwidth, "bound_s": bound_s, "virsh_limit_s": 2.5 * bound_s if not ctx.smoke
            else 1.25 * bound_s, "max_downtime_ms": max_downtime, "runs": runs,
            "variants": variants, "module_options": module_options(bandwidth, max_downtime),
            "no_throttle_options": module_options(bandwidth, max_downtime, throttle=False)}


def guests(ctx: Context) -> list[dict[str, Any]]:
    return [config(ctx)["guest"]]


def other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def run(ctx: Context) -> dict[str, Any]:
    cfg = config(ctx)
    section: dict[str, Any] = {"config": cfg, "samples": []}
    with ctx.guests([cfg["guest"]]):
        flags = [flag for flag in planned_flags(ctx.lab, GUEST, HOSTS[0], HOSTS[1]) if flag != "VIR_MIGRATE_POSTCOPY"]
        section["config"]["virsh_flags"] = flags
        for index in range(cfg["runs"]):
            order = cfg["variants"] if index % 2 == 0 else tuple(reversed(cfg["variants"]))
            for tool in order:
                if tool == "module-no-throttle" and index > 0:
                    continue  # once is enough to show the policy bounding a migration that cannot converge
                here = ctx.lab.where(GUEST, HOSTS)
                if here is None:
                    raise RuntimeError(f"{GUEST} runs on neither {HOSTS}")
                ctx.note_load(f"B3 {tool} {index}")
                if tool == "virsh":
                    sample = run_virsh_bounded(ctx.lab, GUEST, here, other(here), flags, cfg["bandwidth"],
                                               cfg["virsh_limit_s"])
                else:
                    options = cfg["module_options"] if tool == "module" else cfg["no_throttle_options"]
                    sample = run_module(ctx.lab, GUEST, here, other(here), options, timeout=cfg["virsh_limit_s"] + 180)
                    sample["tool"] = tool
                sample["run"] = index
                sample["completed"] = bool(sample["ok"])
                section["samples"].append(sample)
                log(f"B3 {tool}: completed={sample['completed']} host {sample['host_s']} s "
                    f"downtime {sample['downtime_ms']} ms {sample.get('msg') or ''}")
    return section
