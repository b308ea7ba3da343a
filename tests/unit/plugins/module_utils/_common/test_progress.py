"""The shared progress writer: the line operators read, the expected end, the snapshot."""

from __future__ import annotations

import json

from ansible_collections.virtops.migration.plugins.module_utils._common.progress import (
    MIGRATING,
    Progress,
    ProgressWriter,
    expected_seconds_left,
    progress_line,
    publish_waiting,
    transfer_figures,
)

MIB = 1048576


def test_progress_line_format():
    vms = [{"name": "db1", "destination": "hv2", "state": "migrating", "percent": 45, "data_total": 1073741824,
            "data_remaining": 590558003},
           {"name": "web1", "destination": "hv3", "state": "migrated", "percent": 100, "data_total": None,
            "data_remaining": None},
           {"name": "web2", "destination": "hv3", "state": "queued", "percent": None, "data_total": None,
            "data_remaining": None}]
    line = progress_line(vms, {"migrating": 1, "migrated": 1, "queued": 1}, 75.3, False,
                         done_states=("migrated",), problem_states=("failed",))
    assert line == "[01:15] 1/3 done, 0 failed | db1 -> hv2 45% (460/1024 MiB) | 1 queued"


def test_progress_line_with_rate_and_expected_end():
    entry = {"name": "db1", "destination": "hv2", "state": "migrating", "percent": 50, "data_total": 1024 * MIB,
             "data_remaining": 512 * MIB, "rate_bps": 100 * MIB, "dirty_rate_bps": 10 * MIB, "seconds_left": 5.7,
             "expected_end": 1_796_000_005.7}
    line = progress_line([entry], {"migrating": 1}, 12, False)
    assert line == "[00:12] 0/1 done, 0 failed | db1 -> hv2 50% (512/1024 MiB, 100.0 MiB/s, ends ~00:53:25 UTC)"


def test_progress_line_of_a_guest_that_does_not_converge():
    entry = {"name": "db1", "destination": "hv2", "state": "migrating", "percent": 10, "data_total": 1024 * MIB,
             "data_remaining": 900 * MIB, "rate_bps": 10 * MIB, "dirty_rate_bps": 30 * MIB, "expected_end": None}
    line = progress_line([entry], {"migrating": 1}, 3, False)
    assert "10.0 MiB/s, dirtying 30.0 MiB/s: not converging" in line


def test_expected_seconds_left():
    assert expected_seconds_left(1000, 300, 100) == 5.0
    assert expected_seconds_left(1000, 100, 100) is None
    assert expected_seconds_left(1000, 100, 200) is None
    assert expected_seconds_left(1000, 0, None) is None
    assert expected_seconds_left(None, 100, 0) is None
    assert expected_seconds_left(1000, 100, None) == 10.0


def test_transfer_figures_from_job_statistics():
    stats = {"data_total": 1000, "data_processed": 600, "data_remaining": 400, "memory_bps": 150,
             "disk_bps": 50, "memory_dirty_rate_bytes": 100, "memory_iteration": 2}
    figures = transfer_figures(stats, now=1000.0)
    assert figures["percent"] == 60
    assert figures["rate_bps"] == 200
    assert figures["seconds_left"] == 4.0
    assert figures["expected_end"] == 1004.0
    assert figures["memory_iteration"] == 2
    assert "percent" not in transfer_figures({"data_remaining": 5}, now=0)


def test_progress_counts_with_the_run_vocabulary_and_carries_extra_keys():
    clock = iter([100.0, 101.0, 102.0, 103.0, 104.0, 105.0]).__next__
    progress = Progress("hv1", "qemu:///system", clock=clock, done_states=("migrated",),
                        problem_states=("failed",), extra={"run_id": "R1"})
    progress.add("vm1", "u1", "hv2", "queued")
    progress.update("u1", state=MIGRATING)
    progress.record_job("u1", {"data_total": 100, "data_remaining": 50, "memory_bps": 10})
    snapshot = progress.snapshot()
    assert snapshot["run_id"] == "R1"
    assert snapshot["vms"][0]["percent"] == 50
    assert snapshot["vms"][0]["expected_end"] == 107.0
    progress.update("u1", state="migrated", percent=100)
    progress.finish()
    assert progress.snapshot()["line"] == "[00:04] 1/1 done, 0 failed | finished"


def test_writer_publishes_to_the_file_and_the_callback(tmp_path):
    progress = Progress("hv1", "qemu:///system")
    progress.add("vm1", "u1", "hv2", "queued")
    seen = []
    path = tmp_path / "p" / "progress.json"
    writer = ProgressWriter(progress, str(path), 0.01, "qemu:///system", connect=None, on_snapshot=seen.append)
    writer.start()
    progress.finish()
    assert writer.stop() == []
    assert json.loads(path.read_text())["finished"] is True
    assert seen[0]["finished"] is False


def test_waiting_is_published(tmp_path):
    seen = []
    assert publish_waiting("waiting: x", "qemu:///system", str(tmp_path / "w.json"), seen.append) is None
    assert seen[0]["line"] == "waiting: x"
    blocker = tmp_path / "file"
    blocker.write_text("")
    warning = publish_waiting("waiting", "qemu:///system", str(blocker / "w.json"), None)
    assert warning.startswith("progress: cannot write")
