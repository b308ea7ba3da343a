# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run every molecule scenario (`molecule test -s NAME`), a few at a time, each on its own lab.

Scenario number i gets the lab ``mol<i>`` on 10.78.<i>.0/24 (VIRTOPS_LAB_NAME and
VIRTOPS_LAB_SUBNET, which molecule/_shared/create.yml and destroy.yml read) and its own
CA directory in that lab's state, so scenarios running side by side share nothing.
Each scenario's output goes to build/molecule-logs/NAME.log; its tail is printed when
it fails. Exit status: 0 when every scenario passed.

Usage: run_molecule.py [--jobs N] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / "build" / "molecule-logs"
LOG_TAIL_LINES = 80


@dataclass(frozen=True)
class ScenarioRun:
    name: str
    lab: str
    subnet: str

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


@dataclass(frozen=True)
class Outcome:
    run: ScenarioRun
    returncode: int
    seconds: float


def all_scenarios() -> list[str]:
    return sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))


def plan(names: list[str]) -> list[ScenarioRun]:
    return [ScenarioRun(name, f"mol{index}", f"10.78.{index}.0/24") for index, name in enumerate(names, start=1)]


def scenario_env(run: ScenarioRun) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTOPS_LAB_NAME"] = run.lab
    env["VIRTOPS_LAB_SUBNET"] = run.subnet
    return env


def run_scenario(run: ScenarioRun) -> Outcome:
    started = time.monotonic()
    print(f"=== molecule scenario {run.name} (lab {run.lab}, {run.subnet}) started", flush=True)
    with open(run.log, "w") as log:
        proc = subprocess.run(["molecule", "test", "-s", run.name], stdout=log, stderr=subprocess.STDOUT,
                              env=scenario_env(run), cwd=REPO, check=False)
    outcome = Outcome(run, proc.returncode, time.monotonic() - started)
    verdict = "passed" if outcome.returncode == 0 else f"FAILED (rc {outcome.returncode})"
    print(f"=== molecule scenario {run.name} {verdict} in {outcome.seconds / 60:.1f} min; log {run.log}", flush=True)
    return outcome


def print_failure(outcome: Outcome) -> None:
    lines = outcome.run.log.read_text(errors="replace").splitlines()
    print(f"--- last {LOG_TAIL_LINES} lines of {outcome.run.log}")
    print("\n".join(lines[-LOG_TAIL_LINES:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run at the same time")
    parser.add_argument("scenarios", nargs="*", help="default: every scenario under molecule/")
    args = parser.parse_args(argv)
    known = all_scenarios()
    unknown = sorted(set(args.scenarios) - set(known))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {known}")
    runs = plan(args.scenarios or known)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(run_scenario, runs))
    failed = [outcome for outcome in outcomes if outcome.returncode != 0]
    for outcome in failed:
        print_failure(outcome)
    print(f"molecule: {len(outcomes) - len(failed)} of {len(outcomes)} scenarios passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
