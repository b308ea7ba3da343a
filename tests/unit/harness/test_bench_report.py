# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the benchmark harness (tests/bench): statistics, targets, parsing, markdown."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import analysis
import b1_single
import b2_evacuate
import labaccess
import migrations
import report
import stats

# ---------------------------------------------------------------------------- statistics


def test_summary_ignores_missing_and_boolean_values():
    found = stats.summarize([3, None, 1, True, 2.0, "x"])
    assert found.as_dict() == {"count": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert stats.summarize([]).median is None
    assert stats.median([4, 1, 3, 2]) == 2.5


def test_ratio_refuses_missing_or_non_positive_denominators():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, 0) is None
    assert stats.ratio(1.0, None) is None


def test_median_of_filters_samples_by_their_fields():
    samples = [{"tool": "module", "t": 4}, {"tool": "virsh", "t": 1}, {"tool": "module", "t": 2}]
    assert stats.median_of(samples, "t", tool="module") == 3
    assert stats.field(samples, "t", tool="virsh") == [1]


# ---------------------------------------------------------------------------- B1


def b1_section(module_host: float, virsh_host: float, rerun_s: float, changed: bool = False) -> dict:
    samples = []
    for run in range(3):
        samples.append({"tool": "module", "ok": True, "run": run, "host_s": module_host, "cli_s": module_host + 3,
                        "job_s": 2.0, "downtime_ms": 40,
                        "phases": {"validate": 0.01, "connect": 0.1, "lookup": 0.01, "reconcile": 0.0,
                                   "preflight": 0.09, "migrate": 2.2, "verify": 0.01, "total": module_host}})
        samples.append({"tool": "virsh", "ok": True, "run": run, "host_s": virsh_host, "cli_s": virsh_host + 0.3,
                        "job_s": 2.0, "downtime_ms": 50})
    samples.append({"tool": "virsh", "ok": False, "run": 4, "host_s": 100.0, "job_s": None})
    idempotent = [{"via": "ansible", "changed": changed, "module_s": rerun_s, "cli_s": 3.0},
                  {"via": "ansiballz", "changed": changed, "process_s": 0.5, "module_s": rerun_s}]
    return {"config": {}, "samples": samples, "idempotent": idempotent, "cli_floor": [{"cli_s": 2.5}]}


def test_b1_ratio_fixed_cost_and_targets_met():
    summary = analysis.summarize_b1(b1_section(module_host=2.4, virsh_host=2.3, rerun_s=0.12))
    assert summary["ratios"]["host_s"] == pytest.approx(2.4 / 2.3)
    assert summary["tools"]["virsh"]["host_s"]["count"] == 3, "a failed sample must not count"
    fixed = summary["fixed_cost"]
    assert fixed["module_total_minus_job_s"] == pytest.approx(0.4)
    assert fixed["module_before_migration_s"] == pytest.approx(0.21)
    assert fixed["module_monitoring_s"] == pytest.approx(0.2)
    ratio_target, rerun_target = analysis.targets_b1(summary)
    assert ratio_target["met"] is True and ratio_target["value"] == "1.043"
    assert rerun_target["met"] is True
    assert "2.50 s" in rerun_target["why"], "the CLI floor belongs in the explanation"


def test_b1_targets_not_met_with_reasons():
    summary = analysis.summarize_b1(b1_section(module_host=3.0, virsh_host=2.0, rerun_s=0.45, changed=True))
    ratio_target, rerun_target = analysis.targets_b1(summary)
    assert ratio_target["met"] is False and "1.500x" in ratio_target["why"]
    assert rerun_target["met"] is False and "NOT every re-run" in rerun_target["why"]


def test_abba_order_gives_each_tool_both_positions():
    assert b1_single.tool_order(3) == ["module", "virsh", "virsh", "module", "module", "virsh"]


# ---------------------------------------------------------------------------- B2


def b2_sample(tool: str, level: int, host_s: float, downtime: float) -> dict:
    guests = [{"name": f"g{i}", "seconds": 1.0, "downtime_ms": downtime, "ok": True} for i in range(2)]
    return {"tool": tool, "concurrency": level, "host_s": host_s, "cli_s": host_s + 3, "ok": True, "guests": guests}


def test_b2_speedup_and_downtime_rule():
    section = {"samples": [b2_sample("virsh-loop", 1, 40.0, 100), b2_sample("evacuate", 4, 10.0, 105),
                           b2_sample("evacuate", 2, 20.0, 300)]}
    summary = analysis.summarize_b2(section)
    assert summary["variants"]["evacuate x4"]["speedup"] == pytest.approx(4.0)
    assert summary["variants"]["evacuate x2"]["speedup"] == pytest.approx(2.0)
    (found,) = analysis.targets_b2(summary, cores=2)
    assert found["met"] is True, found["why"]
    slower = analysis.summarize_b2({"samples": [b2_sample("virsh-loop", 1, 40.0, 100), b2_sample("evacuate", 4, 20.0, 100)]})
    (found,) = analysis.targets_b2(slower, cores=2)
    assert found["met"] is False and "2 CPU cores" in found["why"]
    worse = analysis.summarize_b2({"samples": [b2_sample("virsh-loop", 1, 40.0, 100), b2_sample("evacuate", 4, 10.0, 120)]})
    (found,) = analysis.targets_b2(worse, cores=2)
    assert found["met"] is False and "worse" in found["why"]


def test_b2_variants_rotate_per_round():
    assert b2_evacuate.variants([1, 4], 0) == [("virsh-loop", 1), ("evacuate", 1), ("evacuate", 4)]
    assert b2_evacuate.variants([1, 4], 1) == [("evacuate", 1), ("evacuate", 4), ("virsh-loop", 1)]


def test_b2_loop_output_parsed_per_guest():
    stdout = "BENCH-GUEST a hv2 10.5 12.0 0\nnoise\nBENCH-GUEST b hv3 12.0 12.25 1\n"
    assert b2_evacuate.parse_loop(stdout) == [
        {"name": "a", "to": "hv2", "seconds": 1.5, "ok": True},
        {"name": "b", "to": "hv3", "seconds": 0.25, "ok": False},
    ]


# ---------------------------------------------------------------------------- B3 and B4


def b3_sample(tool: str, completed: bool, host_s: float, downtime: float | None, throttle: int | None = None) -> dict:
    actions = [] if completed else [{"action": "abort"}]
    return {"tool": tool, "completed": completed, "ok": completed, "host_s": host_s, "job_s": host_s,
            "downtime_ms": downtime, "policy_actions": actions, "stats": {"auto_converge_throttle": throttle}}


def test_b3_target_needs_all_four_conditions():
    config = {"bound_s": 16.0, "max_downtime_ms": 300}
    good = {"config": config, "samples": [b3_sample("virsh", False, 48, None), b3_sample("module", True, 30, 200, 80),
                                          b3_sample("module-no-throttle", False, 25, None)]}
    summary = analysis.summarize_b3(good)
    assert summary["tools"]["module-no-throttle"]["aborted_by_policy"] == 1
    (found,) = analysis.targets_b3(summary)
    assert found["met"] is True, found["why"]
    assert "throttled the guest to 80 %" in found["why"]
    too_slow = {"config": config, "samples": [b3_sample("virsh", False, 48, None), b3_sample("module", True, 33, 200)]}
    assert analysis.targets_b3(analysis.summarize_b3(too_slow))[0]["met"] is False
    too_long_down = {"config": config, "samples": [b3_sample("virsh", False, 48, None), b3_sample("module", True, 20, 301)]}
    assert analysis.targets_b3(analysis.summarize_b3(too_long_down))[0]["met"] is False
    none_done = {"config": config, "samples": [b3_sample("virsh", False, 48, None), b3_sample("module", False, 32, None)]}
    (found,) = analysis.targets_b3(analysis.summarize_b3(none_done))
    assert found["met"] is False and found["value"] == "module completed 0/1"
    assert "aborted 1/1 at 32.0 s" in found["why"]
    virsh_done = {"config": config, "samples": [b3_sample("virsh", True, 40, 280), b3_sample("module", True, 20, 200)]}
    assert analysis.targets_b3(analysis.summarize_b3(virsh_done))[0]["met"] is False


def test_b4_bound_ratio_and_fitted_throughput():
    section = {
        "config": {"bandwidth": 64, "sizes_mib": [128, 256], "dirty_points": [{"dirty_mib": 8, "dirty_interval": 0.5}]},
        "ram_samples": [{"memory_mib": 128, "ok": True, "job_s": 2.0, "data_mib": 100.0},
                        {"memory_mib": 256, "ok": True, "job_s": 4.0, "data_mib": 228.0}],
        "dirty_samples": [{"nominal_dirty_mib_s": 16.0, "ok": False, "job_s": None}],
    }
    summary = analysis.summarize_b4(section)
    assert summary["ram"][0]["bound_s"] == 2.0 and summary["ram"][1]["over_bound"] == pytest.approx(1.0)
    assert summary["throughput_mib_s"] == pytest.approx(64.0)
    assert summary["dirty"][0]["completed"] == 0 and summary["dirty"][0]["runs"] == 1


# ---------------------------------------------------------------------------- parsing and flags


def test_host_timing_and_virsh_fields():
    assert labaccess.parse_host_timing("out\nBENCH-TIMING 10.25 12.75 3\n") == (2.5, 3)
    assert labaccess.parse_host_timing("nothing") == (None, None)
    fields = labaccess.parse_virsh_fields("Job type:         Completed\nTotal downtime:   45 ms\n\n")
    assert fields == {"Job type": "Completed", "Total downtime": "45 ms"}
    assert labaccess.virsh_number("128.000 MiB") == 128.0
    assert labaccess.virsh_number("") is None


def test_job_at_abort_reads_the_printed_jobinfo():
    stdout = ("BENCH-JOBINFO-START\nJob type: Unbounded\nData remaining:   30.500 MiB\nIteration:  7\n"
              "Expected downtime: 2000 ms\nBENCH-JOBINFO-END\nBENCH-ABORTED\n")
    found = migrations.job_at_abort(stdout)
    assert found["data_remaining_mib"] == 30.5 and found["memory_iterations"] == 7
    assert found["expected_downtime_ms"] == 2000
    assert migrations.job_at_abort("no abort") == {}


def test_virsh_gets_the_modules_flags_or_refuses():
    command = migrations.virsh_migrate_command("vm 1", "qemu+tls://hv2/system", migrations.DEFAULT_MODULE_FLAGS, 16)
    assert command == "virsh migrate --live --p2p --persistent --undefinesource --bandwidth 16 'vm 1' qemu+tls://hv2/system"
    with pytest.raises(ValueError, match="VIR_MIGRATE_SOMETHING_NEW"):
        migrations.virsh_options(["VIR_MIGRATE_LIVE", "VIR_MIGRATE_SOMETHING_NEW"])


# ---------------------------------------------------------------------------- markdown


def test_table_escapes_pipes_and_newlines():
    assert report.table(("a", "b"), [("x|y", "1\n2")]) == ["| a | b |", "|---|---|", "| x\\|y | 1 2 |"]


def test_render_has_every_section_and_verdict():
    results = {
        "meta": {"started": "s", "finished": "f", "duration_s": 60, "smoke": True, "only": ["B1", "B2", "B3", "B4"],
                 "command": "bench"},
        "machine": {"controller": {"cores": 2, "cpu_model": "cpu", "memory_mib": 1024, "kernel": "k",
                                   "accelerator": "TCG"},
                    "hosts": {"hv1": {"libvirt": "9.0.0", "qemu": "7.2.0", "os": "Debian"}}},
        "load_log": [{"load1": 1.5, "qemu_processes": 3}],
        "benchmarks": {
            "B1": dict(b1_section(2.4, 2.3, 0.1), config={"guest": {"memory_mib": 128}, "runs": 3, "flags": ["F"]}),
            "B2": {"config": {"guests": [{"name": "g0"}], "rounds": 1, "bandwidth": None},
                   "samples": [b2_sample("virsh-loop", 1, 4.0, 10), b2_sample("evacuate", 4, 1.0, 10)]},
            "B3": {"config": {"guest": {"memory_mib": 128, "fill_mib": 0, "dirty_mib": 16, "dirty_interval": 0.05},
                              "bandwidth": 16, "bound_s": 8.0, "virsh_limit_s": 10, "max_downtime_ms": 300,
                              "module_options": {}},
                   "samples": [dict(b3_sample("virsh", False, 10, None), aborted=True, run=0,
                                    at_abort={"data_remaining_mib": 16.0}),
                               b3_sample("module", True, 12, 150, 60)]},
            "B4": {"config": {"bandwidth": 64, "sizes_mib": [128], "dirty_points": [], "dirty_memory_mib": 128,
                              "dirty_fill_mib": 0},
                   "ram_samples": [{"memory_mib": 128, "ok": True, "job_s": 2.0, "data_mib": 100.0}],
                   "dirty_samples": []},
        },
    }
    summary = analysis.analyze(results)
    text = report.render(results, summary, ["a note"])
    for heading in ("## Machine", "## Targets", "## B1", "## B2", "## B3", "## B4", "## Notes"):
        assert heading in text
    assert "| B1 ratio" in text and "| met |" in text
    assert "![B4 RAM](b4_ram.png)" in text
    assert "TCG" in text and "libvirt 9.0.0, QEMU 7.2.0" in text


def test_render_reports_a_failed_benchmark():
    results = {"meta": {}, "benchmarks": {"B3": {"error": "RuntimeError: boom"}}}
    text = report.render(results, analysis.analyze(results))
    assert "## B3" in text and "Failed: RuntimeError: boom" in text
