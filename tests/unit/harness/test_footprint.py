# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of tests/bench/footprint.py: timing a process, reading importtime, the report."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import footprint

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       300 |        300 |   _io
import time:     20000 |     200000 | ansible.module_utils.basic
import time:      1000 |      30000 |     libvirtmod
import time:      5000 |      35000 |   libvirt
import time:      2000 |      37000 | ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency
import time:      8000 |       8000 |   ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection
import time:      1000 |       9000 | ansible_collections.virtops.migration.plugins.module_utils._libvirt.argspec
import time:      4000 |       4000 | zipfile
libvirt: QEMU Driver error : Domain not found: no domain with matching name 'fp1'
"""


def test_timed_process_reports_wall_user_and_system_seconds_of_the_whole_command():
    proc = subprocess.run(["bash", "-c", footprint.timed_process("sleep 0.2")], capture_output=True, text=True,
                          check=True)
    wall, user, system = (float(value) for value in footprint.PROCESS_TIME.search(proc.stderr).groups())
    assert 0.2 <= wall < 5 and user >= 0 and system >= 0


def test_import_split_sorts_top_level_imports_by_owner_and_keeps_each_collection_file_own_time():
    split = footprint.import_split(IMPORTTIME)
    groups = split["groups"]
    assert groups["ansible-core"] == 0.2
    assert groups["libvirt bindings"] == 0.035
    assert round(groups["collection (without libvirt)"], 6) == round(0.037 + 0.009 - 0.035, 6)
    assert groups["other (stdlib)"] == 0.004
    assert split["own"] == {"module_utils._libvirt.dependency": 0.002, "module_utils._libvirt.connection": 0.008,
                            "module_utils._libvirt.argspec": 0.001}


def test_the_reproduce_command_names_only_settings_that_differ_from_make_footprint():
    def options(**given):
        values = {"lab": "vtl", "before": footprint.DEFAULT_BEFORE, "runs": 9, **given}
        return argparse.Namespace(**values)
    assert footprint.reproduce_command(options(), []) == "make footprint"
    assert footprint.reproduce_command(options(runs=15), []) == "make footprint FOOTPRINT_RUNS=15"
    assert footprint.reproduce_command(options(lab=None), ["--json", "x y"]) == \
        "python tests/bench/footprint.py --json 'x y'"


def summary(walls: list[float], cpus: list[float], total: float | None) -> dict:
    samples = [{"process_s": wall, "cpu_s": cpu, "timings": {"total": total} if total is not None else {}}
               for wall, cpu in zip(walls, cpus)]
    found = footprint.process_summary(samples)
    found["imports"] = {"runs": 3, "groups": {"ansible-core": 0.2}, "own": {"module_utils._libvirt.connection": 0.008}}
    return found


def test_the_report_holds_the_payload_table_the_medians_their_ratio_and_the_floor():
    payload = {"files": 2, "lines": 100, "collection_files": 5, "collection_lines": 150, "zip_entries": 60,
               "wrapper_bytes": 204800, "paths": {"_libvirt/connection.py": 60, "_common/errors.py": 40}}
    smaller = {**payload, "lines": 50}
    document = {
        "measured_at": "2026-12-01 09:00 UTC", "git_head": "abc1234", "command": "make footprint",
        "trees": [{"label": "before", "description": "commit 0ac4fb6"}, {"label": "after", "description": "working tree"}],
        "payload": {"before": dict.fromkeys(footprint.MODULES, payload),
                    "after": dict.fromkeys(footprint.MODULES, smaller)},
        "dest_uri": "qemu+tls://hv3.vtl.virtops.test/system",
        "process": {"before": summary([0.4, 0.5, 0.6], [0.38, 0.4, 0.42], 0.03),
                    "after": summary([0.3, 0.35, 0.4], [0.3, 0.32, 0.34], 0.03),
                    footprint.FLOOR: summary([0.2, 0.22, 0.24], [0.2, 0.21, 0.22], None)},
    }
    text = footprint.markdown(document)
    assert "| migrate | 2 | 2 | 100 | 50 | 0.5 |" in text
    assert "| before | 0.500 | 0.400 | 0.600 | 0.400 | 0.03 |" in text
    assert "| after | 0.350 | 0.300 | 0.400 | 0.320 | 0.03 |" in text
    assert "| floor: ansible.builtin.ping | 0.220 | 0.200 | 0.240 | 0.210 | - |" in text
    assert "Ratio after / before of the median wall time: **0.7**; of the median CPU time: **0.8**." in text
    assert "| module_utils._libvirt.connection | 0.0080 |" in text
