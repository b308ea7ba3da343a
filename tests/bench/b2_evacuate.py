# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""B2: emptying hv1 of its guests, the evacuate module at several concurrencies vs a sequential virsh loop.

The loop is what an operator scripts by hand: ``for vm in ...; do virsh migrate ...; done`` on the
source, to the same destinations the module's plan chose (its check-mode plan), with the same flags and
the same per-migration bandwidth cap. Between two variants every guest is moved back to hv1 (in
parallel, untimed). Variants rotate from one round to the next.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from context import Context
from labaccess import log
from migrations import DEFAULT_MODULE_FLAGS, seconds, virsh_options

SOURCE = "hv1"
DESTS = ("hv2", "hv3")
PREFIX = "bench-b2-"
BENCH_GUEST = "BENCH-GUEST"


def config(ctx: Context) -> dict[str, Any]:
    if ctx.smoke:
        guests = [{"name": f"{PREFIX}{i}", "host": SOURCE} for i in range(2)]
        return {"guests": guests, "concurrency": [4], "rounds": 1, "bandwidth": None}
    guests = [{"name": f"{PREFIX}{i}", "host": SOURCE, "kind": "linux", "memory_mib": 256, "fill_mib": 96}
              for i in range(8)]
    return {"guests": guests, "concurrency": [1, 2, 4], "rounds": ctx.runs or 2, "bandwidth": 32}


def guests(ctx: Context) -> list[dict[str, Any]]:
    return config(ctx)["guests"]


def variants(concurrency: list[int], round_index: int) -> list[tuple[str, int]]:
    """(tool, concurrency) of one round, rotated by the round number."""
    every = [("virsh-loop", 1)] + [("evacuate", level) for level in concurrency]
    shift = round_index % len(every)
    return every[shift:] + every[:shift]


def destinations(ctx: Context) -> list[dict[str, str]]:
    return [{"name": host, "uri": ctx.lab.dest_uri(host)} for host in DESTS]


def evacuate_args(ctx: Context, level: int, bandwidth: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"destinations": destinations(ctx), "include": [f"{PREFIX}*"], "max_parallel": level,
                            "max_parallel_per_destination": max(1, math.ceil(level / len(DESTS)))}
    if bandwidth:
        args["bandwidth"] = bandwidth
    return args


def plan(ctx: Context, bandwidth: int | None) -> tuple[dict[str, str], list[str]]:
    """The module's placement (check mode) and the flags it plans, for the virsh loop to follow."""
    result = ctx.lab.client.module(SOURCE, "evacuate", evacuate_args(ctx, 2, bandwidth), check=True)
    if result.get("failed"):
        raise RuntimeError(f"evacuate check mode failed: {result.get('msg')}")
    placement = {entry["name"]: entry["destination"] for entry in result["plan"]}
    flags = next((vm["details"].get("flags") for vm in result.get("vms", [])
                  if isinstance(vm.get("details"), dict) and vm["details"].get("flags")), None)
    return placement, list(flags or DEFAULT_MODULE_FLAGS)


def loop_script(ctx: Context, placement: dict[str, str], flags: list[str], bandwidth: int | None) -> str:
    """The hand-written loop, timing each guest on the host."""
    lines = []
    options = " ".join(virsh_options(flags)) + (f" --bandwidth {bandwidth}" if bandwidth else "")
    for name, dest in placement.items():
        uri = shlex.quote(ctx.lab.dest_uri(dest))
        lines.append(f"s=$(date +%s.%N); virsh migrate {options} {name} {uri}; rc=$?; "
                     f"echo \"{BENCH_GUEST} {name} {dest} $s $(date +%s.%N) $rc\"")
    return "; ".join(lines)


def parse_loop(stdout: str) -> list[dict[str, Any]]:
    guests = []
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 6 and words[0] == BENCH_GUEST:
            guests.append({"name": words[1], "to": words[2], "seconds": round(float(words[4]) - float(words[3]), 3),
                           "ok": words[5] == "0"})
    return guests


def run_loop(ctx: Context, placement: dict[str, str], flags: list[str], bandwidth: int | None) -> dict[str, Any]:
    run = ctx.lab.run_timed(SOURCE, loop_script(ctx, placement, flags, bandwidth), timeout=1800)
    guests = parse_loop(run.stdout)
    for guest in guests:
        job = ctx.lab.completed_job(guest["to"], guest["name"]) if guest["ok"] else {}
        guest["downtime_ms"] = job.get("downtime_ms")
        guest["job_s"] = seconds(job.get("time_elapsed_ms"))
    return {"tool": "virsh-loop", "concurrency": 1, "cli_s": round(run.wall_s, 3), "host_s": run.host_s,
            "ok": run.rc == 0 and len(guests) == len(placement) and all(g["ok"] for g in guests), "guests": guests}


def run_evacuate(ctx: Context, level: int, bandwidth: int | None) -> dict[str, Any]:
    cli_s, result = ctx.lab.module(SOURCE, "evacuate", evacuate_args(ctx, level, bandwidth))
    guests = [{"name": vm["name"], "to": vm.get("to"), "seconds": vm.get("seconds"), "downtime_ms": vm.get("downtime_ms"),
               "job_s": seconds(((vm.get("details") or {}).get("stats") or {}).get("time_elapsed")),
               "ok": vm.get("result") == "migrated"} for vm in result.get("vms", [])]
    return {"tool": "evacuate", "concurrency": level, "cli_s": round(cli_s, 3),
            "host_s": (result.get("summary") or {}).get("seconds"),
            "ok": not result.get("failed") and bool(guests) and all(g["ok"] for g in guests), "guests": guests,
            "msg": result.get("msg") if result.get("failed") else None}


def move_back(ctx: Context, names: list[str]) -> None:
    """Every guest back to hv1, in parallel, untimed."""
    uri = shlex.quote(ctx.lab.dest_uri(SOURCE))
    for host in DESTS:
        here = [name for name in ctx.lab.running_guests(host) if name in names]
        if not here:
            continue
        script = " ".join(f"virsh migrate --live --p2p --persistent --undefinesource {name} {uri} &" for name in here)
        proc = ctx.lab.ssh(host, script + " wait", timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"moving guests back from {host} failed: {proc.stderr}")
    missing = [name for name in names if name not in ctx.lab.running_guests(SOURCE)]
    if missing:
        raise RuntimeError(f"guests not back on {SOURCE}: {missing}")


def run(ctx: Context) -> dict[str, Any]:
    cfg = config(ctx)
    names = [guest["name"] for guest in cfg["guests"]]
    section: dict[str, Any] = {"config": cfg, "samples": []}
    with ctx.guests(cfg["guests"], boot_timeout=240):
        placement, flags = plan(ctx, cfg["bandwidth"])
        section["config"].update(placement=placement, flags=flags)
        for round_index in range(cfg["rounds"]):
            for tool, level in variants(cfg["concurrency"], round_index):
                ctx.note_load(f"B2 {tool} {level}")
                if tool == "virsh-loop":
                    sample = run_loop(ctx, placement, flags, cfg["bandwidth"])
                else:
                    sample = run_evacuate(ctx, level, cfg["bandwidth"])
                sample["round"] = round_index
                section["samples"].append(sample)
                log(f"B2 {tool} x{level}: ok={sample['ok']} host {sample['host_s']} s cli {sample['cli_s']} s")
                move_back(ctx, names)
                if not sample["ok"]:
                    raise RuntimeError(f"B2 {tool} x{level} did not empty {SOURCE}: {sample.get('msg')}")
    return section
