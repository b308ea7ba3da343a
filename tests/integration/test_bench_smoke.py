# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark harness (tests/bench/bench.py) in smoke mode on the session's lab, so it cannot rot.

One iteration of every benchmark with small guests, into build/bench-smoke. Only the shape of the
results is checked, never a timing (performance belongs to ``make bench``). The harness removes its
guests itself; this test checks that, and removes any it left whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import migrate_support as lab
import pytest

BENCH = lab.REPO / "tests" / "bench" / "bench.py"
OUT = lab.REPO / "build" / "bench-smoke"
BENCHMARKS = ("B1", "B2", "B3", "B4")
PLOTS = ("b1_single.png", "b2_evacuate.png", "b3_convergence.png", "b4_ram.png", "b4_dirty.png")
# Every guest the smoke run can create (tests/bench/b*.py in --smoke mode).
BENCH_GUESTS = [{"name": name} for name in ("bench-b1", "bench-b2-0", "bench-b2-1", "bench-b3", "bench-b4-ram128",
                                            "bench-b4-dirty16")]


@pytest.fixture(scope="module")
def smoke_run(prepared_lab):
    """Run the harness once; remove every bench guest afterwards, even when it failed half-way."""
    for path in OUT.glob("*"):
        path.unlink()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--skip-bootstrap", "--lab", prepared_lab.name,
                               "--out", str(OUT)], capture_output=True, text=True, cwd=lab.REPO, env=env,
                              timeout=600, check=False)
        yield proc
    finally:
        if leftover_guests():
            lab.remove_guests(BENCH_GUESTS)


def leftover_guests() -> dict[str, list[str]]:
    """The bench guests still defined or running, per hypervisor."""
    found = {}
    for host in ("hv1", "hv2", "hv3"):
        names = [name for name in lab.ssh(host, "virsh -q list --all --name").stdout.split() if name.startswith("bench-")]
        if names:
            found[host] = names
    return found


def test_smoke_run_writes_well_formed_results(smoke_run):
    assert smoke_run.returncode == 0, smoke_run.stdout[-4000:] + smoke_run.stderr[-4000:]
    results = json.loads((OUT / "results.json").read_text())
    assert results["meta"]["smoke"] is True
    assert results["machine"]["controller"]["cores"] >= 1
    assert all(results["machine"]["hosts"][host]["libvirt"] for host in ("hv1", "hv2", "hv3"))
    benchmarks = results["benchmarks"]
    assert sorted(benchmarks) == list(BENCHMARKS)
    for name in BENCHMARKS:
        assert "error" not in benchmarks[name], f"{name}: {benchmarks[name].get('error')}"

    b1 = benchmarks["B1"]
    assert {sample["tool"] for sample in b1["samples"]} == {"module", "virsh"}
    assert all(sample["ok"] and sample["job_s"] is not None for sample in b1["samples"])
    assert b1["idempotent"] and all(run["changed"] is False for run in b1["idempotent"])
    assert {sample["tool"] for sample in benchmarks["B2"]["samples"]} == {"virsh-loop", "evacuate"}
    assert all(len(sample["guests"]) == 2 for sample in benchmarks["B2"]["samples"])
    assert {sample["tool"] for sample in benchmarks["B3"]["samples"]} == {"virsh", "module"}
    assert benchmarks["B4"]["ram_samples"] and benchmarks["B4"]["dirty_samples"]

    summary = results["summary"]
    assert {name for name in BENCHMARKS if name in summary} == set(BENCHMARKS)
    assert len(summary["targets"]) == 4
    assert all(target["met"] in (True, False) and target["why"] for target in summary["targets"])
    for plot in PLOTS:
        assert (OUT / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{plot} is not a PNG"
    markdown = (OUT / "results.md").read_text()
    for heading in ("## Machine", "## Targets", *(f"## {name}:" for name in BENCHMARKS)):
        assert heading in markdown


def test_smoke_run_left_no_guest(smoke_run):
    assert leftover_guests() == {}, "the harness left guests behind"
