# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmarks of virtops.migration on the lab: the modules against virsh, in the same run.

    python tests/bench/bench.py --lab vtb --out docs/benchmarks [--only B1,B3] [--runs N] [--smoke]
                                [--skip-bootstrap] [--subnet 10.81.0.0/24]

Brings the lab up, bootstraps it with the collection (tests/integration/playbooks/prepare_lab.yml),
builds the Linux guest's media, runs B1..B4 and writes into --out: results.json (every raw sample),
results.md (medians, ratios, targets), PNG plots and machine.json. The lab is left up (``make bench``
takes it down). Exit status 1 when a benchmark failed (its error is in the results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import analysis
import b1_single
import b2_evacuate
import b3_convergence
import b4_scaling
import machine
import plots
import report
from context import Context
from labaccess import BenchLab, log

BENCHMARKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "B1": b1_single.run,
    "B2": b2_evacuate.run,
    "B3": b3_convergence.run,
    "B4": b4_scaling.run,
}
GUESTS: dict[str, Callable[[Context], list[dict[str, Any]]]] = {
    "B1": b1_single.guests,
    "B2": b2_evacuate.guests,
    "B3": b3_convergence.guests,
    "B4": b4_scaling.guests,
}

NOTES = [
    ("Every guest runs under TCG (software emulation): the lab's hosts are systemd-nspawn containers on one machine "
     "and KVM is not used. Migrations here are CPU-bound, not network-bound: QEMU's migration thread, the guests' "
     "vCPUs and both libvirtds share the controller's cores."),
    ("Other engineers' labs (TCG guests too) ran on the same cores during this run: the load line in the machine table "
     "counts every QEMU process on the machine. Absolute times are therefore noisy; compare the ratios, which come "
     "from samples taken alternately in the same minutes."),
    ("Guest sizes, counts and bandwidth caps (stated in each section) were chosen so that a full run, bootstrap "
     "included, stays within about 40 minutes on 2 cores; this run's duration is at the top. The B3 policy "
     "aborts at twice the RAM/bandwidth time, the target's own bound."),
    "Downtime is libvirt's own figure (`downtime` of the completed job statistics) for both tools.",
    ("Same flags is not the same tuning: with its defaults the module's convergence policy sets the tolerated "
     "downtime to 50 ms at the start of every live migration (the first step of its ramp to 500 ms), while plain "
     "virsh leaves QEMU's default of 300 ms. A lower downtime target can mean one more pre-copy iteration (a "
     "slightly longer job) and a shorter pause."),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="vtb", help="lab name (default vtb)")
    parser.add_argument("--subnet", default=None,
                        help="lab subnet (default: VIRTOPS_LAB_SUBNET, else the existing lab's, else the topology's)")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks (B1,B2,B3,B4)")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (default per benchmark)")
    parser.add_argument("--smoke", action="store_true", help="one iteration, small guests, fewest sizes")
    parser.add_argument("--skip-bootstrap", action="store_true", help="the lab is already prepared")
    args = parser.parse_args(argv)
    args.only = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def prepare(lab: BenchLab, skip_bootstrap: bool) -> None:
    log(f"lab {lab.name} up")
    lab.up()
    if not skip_bootstrap:
        log("bootstrapping the lab with the collection (prepare_lab.yml)")
        lab.bootstrap()
    log("guest media (guest_media.yml)")
    lab.guest_media()


def write_outputs(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = analysis.analyze(results)
    results["summary"] = summary
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    (out / "machine.json").write_text(json.dumps(results.get("machine", {}), indent=1, sort_keys=True) + "\n")
    results["plots"] = plots.write_plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    (out / "results.md").write_text(report.render(results, summary, NOTES))


def run_benchmark(name: str, ctx: Context) -> dict[str, Any]:
    started = time.monotonic()
    log(f"{name} starts")
    try:
        section = BENCHMARKS[name](ctx)
    except Exception as error:  # noqa: BLE001 - recorded in the results, the next benchmark still runs
        log(f"{name} failed: {error}")
        section = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    section["duration_s"] = round(time.monotonic() - started, 1)
    log(f"{name} done in {section['duration_s']} s")
    return section


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    lab = BenchLab(args.lab, args.subnet)
    results: dict[str, Any] = {
        "meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)), "smoke": args.smoke,
                 "only": args.only, "runs": args.runs, "lab": args.lab,
                 "command": " ".join(["tests/bench/bench.py", *(argv if argv is not None else sys.argv[1:])])},
        "benchmarks": {},
    }
    prepare(lab, args.skip_bootstrap)
    results["machine"] = machine.describe(lab)
    ctx = Context(lab=lab, smoke=args.smoke, runs=args.runs)
    ctx.note_load("start")
    # Smoke: every small guest created (and booted) at once, removed at the end, to stay seconds-scale.
    upfront = [guest for name in args.only for guest in GUESTS[name](ctx)] if args.smoke else []
    try:
        if upfront:
            ctx.create_upfront(upfront)
        for name in args.only:
            results["benchmarks"][name] = run_benchmark(name, ctx)
            results["load_log"] = ctx.load_log
            results["meta"]["duration_s"] = round(time.time() - started, 1)
            results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            write_outputs(results, args.out)
    finally:
        if upfront:
            ctx.remove_upfront(upfront)
    ctx.note_load("end")
    results["load_log"] = ctx.load_log
    results["meta"]["duration_s"] = round(time.time() - started, 1)
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    write_outputs(results, args.out)
    failed = [name for name, section in results["benchmarks"].items() if section.get("error")]
    log(f"results in {args.out} ({results['meta']['duration_s']} s)" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
