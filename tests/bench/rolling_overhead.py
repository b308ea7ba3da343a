# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rolling maintenance's own overhead: a roll of hv1..hv3 against three evacuate + restore runs.

    python tests/bench/rolling_overhead.py --lab vtb --out docs/benchmarks [--rounds 2] [--skip-bootstrap]

Both variants do the same migrations: every guest of each hypervisor leaves it and comes back, one
host after the other, with the same settings (max_parallel 2, one at a time into a destination). The
roll (virtops.migration.rolling_maintenance, with a maintenance tasks file that does nothing and no
reboot) adds its preflight (each host's evacuation planned in check mode), its records, its health
gates (libvirt over TLS from the other hosts, the nfs_client role's storage checks) and the saved
pinned guests (none here). The baseline is what an operator runs by hand for the same result: the
evacuate runbook, then the restore runbook (which clears the mark), host by host. The variants
alternate (roll first in even rounds, baseline first in odd ones); the ratio is roll / baseline of
the medians, from the same run. Six Linux guests (two per hypervisor, 128 MiB). Writes
``rolling.json`` and ``rolling.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labaccess import BenchLab, log

HOSTS = ("hv1", "hv2", "hv3")
PREFIX = "bench-roll-"
GUESTS = [{"name": f"{PREFIX}{host}-{index}", "host": host, "kind": "linux", "memory_mib": 128}
          for host in HOSTS for index in (1, 2)]
SETTINGS = {"max_parallel": 2, "max_parallel_per_destination": 1}
NO_OP_MAINTENANCE = """---
- name: Nothing to maintain (the benchmark measures the roll itself)
  ansible.builtin.debug:
    msg: maintenance of {{ inventory_hostname }}
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="vtb")
    parser.add_argument("--subnet", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-bootstrap", action="store_true")
    return parser.parse_args(argv)


def roll_vars(tasks_file: str) -> dict[str, Any]:
    return {"rolling_maintenance_tasks_file": tasks_file, "rolling_maintenance_reboot": "never",
            "rolling_maintenance_include": [f"{PREFIX}*"], "rolling_maintenance_restart": True,
            **{f"rolling_maintenance_{key}": value for key, value in SETTINGS.items()}}


def timed_playbook(lab: BenchLab, name: str, extra: dict[str, Any]) -> float:
    started = time.monotonic()
    run = lab.client.playbook_text(name, extra, timeout=3600)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(f"{name} {extra} failed:\n{run.stdout[-4000:]}")
    return round(seconds, 3)


def run_roll(lab: BenchLab, tasks_file: str) -> dict[str, Any]:
    seconds = timed_playbook(lab, "virtops.migration.rolling_maintenance", roll_vars(tasks_file))
    return {"variant": "roll", "seconds": seconds}


def run_separate(lab: BenchLab) -> dict[str, Any]:
    per_host = {}
    for host in HOSTS:
        evacuate = timed_playbook(lab, "virtops.migration.evacuate", {
            "virtops_evacuate_host": host, "virtops_evacuate_include": [f"{PREFIX}*"],
            **{f"virtops_evacuate_{key}": value for key, value in SETTINGS.items()}})
        restore = timed_playbook(lab, "virtops.migration.restore", {
            "virtops_restore_host": host, "virtops_restore_clear_maintenance": True,
            **{f"virtops_restore_{key}": value for key, value in SETTINGS.items()}})
        per_host[host] = {"evacuate": evacuate, "restore": restore}
    total = round(sum(step for steps in per_host.values() for step in steps.values()), 3)
    return {"variant": "evacuate + restore", "seconds": total, "per_host": per_host}


def every_guest_home(lab: BenchLab) -> None:
    for guest in GUESTS:
        if guest["name"] not in lab.running_guests(guest["host"]):
            raise RuntimeError(f"{guest['name']} is not back on {guest['host']}")


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    medians = {variant: statistics.median(s["seconds"] for s in samples if s["variant"] == variant)
               for variant in ("roll", "evacuate + restore")}
    return {"median_s": medians, "ratio": round(medians["roll"] / medians["evacuate + restore"], 3)}


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lines = [
        "# Rolling maintenance: the roll's own overhead",
        "",
        (f"Run {result['started']} on the lab `{result['lab']}` ({result['rounds']} rounds, variants alternating), "
         "reproduce with `.venv/bin/python tests/bench/rolling_overhead.py --lab vtb --subnet 10.81.0.0/24 "
         f"--rounds {result['rounds']} --out docs/benchmarks`."),
        "",
        "Six Linux guests (128 MiB, two per hypervisor). Both variants move every guest of hv1, hv2 and hv3 out and",
        "back, one host after the other, max_parallel 2, one migration at a time into a destination. The roll",
        "(`virtops.migration.rolling_maintenance`, a maintenance tasks file that does nothing, no reboot) adds its",
        "preflight (each host's evacuation planned in check mode), its step records, its health gates (libvirt",
        "over TLS from the two other hosts, the `nfs_client` role's storage checks) and the pinned-guest steps;",
        "the baseline is the `evacuate` runbook then the `restore` runbook, host by host, as an operator runs them.",
        "",
        "| variant | samples (s) | median (s) |",
        "|---|---|---|",
    ]
    for variant, median in summary["median_s"].items():
        samples = ", ".join(f"{s['seconds']:.1f}" for s in result["samples"] if s["variant"] == variant)
        lines.append(f"| {variant} | {samples} | {median:.1f} |")
    lines += ["", f"**Roll / baseline: {summary['ratio']:.3f}** (medians of the same run).", ""]
    lines += ["Per host in the baseline (evacuate s / restore s):", ""]
    for sample in result["samples"]:
        if sample["variant"] != "roll":
            lines.append("- round " + str(sample["round"]) + ": " + "; ".join(
                f"{host} {steps['evacuate']:.1f} / {steps['restore']:.1f}" for host, steps in sample["per_host"].items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lab = BenchLab(args.lab, args.subnet)
    lab.up()
    if not args.skip_bootstrap:
        lab.bootstrap()
    lab.guest_media()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tasks_file = str(Path(scratch) / "maintenance.yml")
        Path(tasks_file).write_text(NO_OP_MAINTENANCE)
        lab.create_guests(GUESTS)
        lab.wait_booted(GUESTS, 300)
        try:
            for round_index in range(args.rounds):
                order = (run_roll, run_separate) if round_index % 2 == 0 else (run_separate, run_roll)
                for variant in order:
                    sample = variant(lab, tasks_file) if variant is run_roll else variant(lab)
                    sample["round"] = round_index
                    every_guest_home(lab)
                    samples.append(sample)
                    log(f"rolling overhead: round {round_index} {sample['variant']}: {sample['seconds']} s")
        finally:
            lab.remove_guests(GUESTS)
    result = {"lab": args.lab, "started": started, "rounds": args.rounds, "samples": samples,
              "summary": summarize(samples)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rolling.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "rolling.md").write_text(markdown(result))
    log(f"rolling overhead: roll / evacuate + restore = {result['summary']['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
