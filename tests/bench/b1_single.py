# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""B1: one migration, the module vs ``virsh migrate`` with the same flags, same guest, alternating.

The guest moves hv1 -> hv2 -> hv1 ...; the tools alternate in an ABBA pattern (module, virsh,
virsh, module, ...) so each tool gets both directions. Afterwards the module is re-run for a
guest already where it should be (nothing to change): timed through the ``ansible`` CLI, inside
the module (``timings.total``), and as the module process alone (the kept AnsiballZ wrapper run
with the host's python3, no controller involved).
"""

from __future__ import annotations

from typing import Any

from context import Context
from labaccess import log
from migrations import planned_flags, run_module, run_virsh

HOSTS = ("hv1", "hv2")
GUEST = "bench-b1"


def config(ctx: Context) -> dict[str, Any]:
    if ctx.smoke:
        return {"guest": {"name": GUEST, "host": HOSTS[0], "kind": "linux", "memory_mib": 128, "fill_mib": 0},
                "runs": 1, "idempotent_runs": 1, "warmup": False}
    runs = ctx.runs or 5
    return {"guest": {"name": GUEST, "host": HOSTS[0], "kind": "linux", "memory_mib": 512, "fill_mib": 256},
            "runs": runs, "idempotent_runs": runs, "warmup": True}


def guests(ctx: Context) -> list[dict[str, Any]]:
    return [config(ctx)["guest"]]


def tool_order(runs: int) -> list[str]:
    """ABBA: module, virsh, virsh, module, module, virsh, ... (``runs`` of each)."""
    order: list[str] = []
    for index in range(runs):
        order += ["module", "virsh"] if index % 2 == 0 else ["virsh", "module"]
    return order


def other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def run(ctx: Context) -> dict[str, Any]:
    cfg = config(ctx)
    guest = cfg["guest"]
    section: dict[str, Any] = {"config": cfg, "samples": [], "idempotent": [], "cli_floor": []}
    with ctx.guests([guest]):
        flags = planned_flags(ctx.lab, GUEST, HOSTS[0], HOSTS[1])
        section["config"]["flags"] = flags
        here = HOSTS[0]
        if cfg["warmup"]:
            warm = run_virsh(ctx.lab, GUEST, here, other(here), flags)
            section["warmup"] = warm
            here = other(here) if warm["ok"] else here
        for index, tool in enumerate(tool_order(cfg["runs"])):
            ctx.note_load(f"B1 {tool} {index}")
            if tool == "module":
                sample = run_module(ctx.lab, GUEST, here, other(here))
            else:
                sample = run_virsh(ctx.lab, GUEST, here, other(here), flags)
            sample["run"] = index // 2
            section["samples"].append(sample)
            log(f"B1 {tool} {here}->{other(here)}: ok={sample['ok']} host {sample['host_s']} s "
                f"job {sample['job_s']} s downtime {sample['downtime_ms']} ms")
            if not sample["ok"]:
                raise RuntimeError(f"B1 {tool} migration failed: {sample['msg']}")
            here = other(here)
        section["idempotent"], section["cli_floor"] = idempotent_reruns(ctx, here, cfg["idempotent_runs"])
    return section


def idempotent_reruns(ctx: Context, here: str, runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The module asked to move the guest where it already runs: CLI, in-module and process times."""
    source = other(here)
    args = {"name": GUEST, "dest_uri": ctx.lab.dest_uri(here)}
    reruns: list[dict[str, Any]] = []
    ctx.lab.clear_ansiballz(source)
    for index in range(runs):
        cli_s, result = ctx.lab.module(source, "migrate", args, keep_remote_files=index == 0)
        sample = {"run": index, "via": "ansible", "changed": result.get("changed"), "failed": bool(result.get("failed")),
                  "cli_s": round(cli_s, 3), "module_s": (result.get("timings") or {}).get("total"),
                  "phases": result.get("timings") or {}}
        reruns.append(sample)
    wrapper = ctx.lab.latest_ansiballz(source, "migrate")
    if wrapper:
        for index in range(runs):
            process_s, result = ctx.lab.run_ansiballz(source, wrapper)
            reruns.append({"run": index, "via": "ansiballz", "changed": result.get("changed"),
                           "failed": bool(result.get("failed")), "process_s": process_s,
                           "module_s": (result.get("timings") or {}).get("total")})
    ctx.lab.clear_ansiballz(source)
    floor: list[dict[str, Any]] = []
    for index in range(min(runs, 3)):
        cli_s, result = ping(ctx, source)
        floor.append({"run": index, "cli_s": round(cli_s, 3), "ok": result.get("ping") == "pong"})
    log("B1 idempotent re-runs: " + ", ".join(f"{r.get('module_s')}" for r in reruns))
    return reruns, floor


def ping(ctx: Context, host: str) -> tuple[float, dict[str, Any]]:
    return ctx.lab.adhoc(host, "ansible.builtin.ping", {})
