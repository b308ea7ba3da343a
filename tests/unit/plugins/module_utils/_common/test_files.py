"""Files written whole, and one run's file kept beside the others."""

from __future__ import annotations

import os

from ansible_collections.virtops.migration.plugins.module_utils._common.files import (
    run_file_path,
    write_atomic,
    write_kept,
)


def test_run_file_path(tmp_path):
    assert run_file_path("/var/log/virtops/evacuate-hv1.txt", "R1", "evacuate-hv1", ".txt") == \
        "/var/log/virtops/evacuate-hv1-R1.txt"
    assert run_file_path("/var/log/virtops/", "R1", "evacuate-hv1", ".txt") == "/var/log/virtops/evacuate-hv1-R1.txt"
    assert run_file_path(str(tmp_path), "R1", "evacuate-hv1", ".json") == str(tmp_path / "evacuate-hv1-R1.json")


def test_each_run_keeps_its_file_and_the_path_names_the_latest(tmp_path):
    path = tmp_path / "report.txt"
    first = write_kept(str(path), "one\n", "R1", "evacuate-hv1", ".txt")
    second = write_kept(str(path), "two\n", "R2", "evacuate-hv1", ".txt")
    assert (first, second) == (str(tmp_path / "report-R1.txt"), str(tmp_path / "report-R2.txt"))
    assert (tmp_path / "report-R1.txt").read_text() == "one\n"
    assert path.read_text() == "two\n" and os.path.islink(path)
    assert oct((tmp_path / "report-R2.txt").stat().st_mode & 0o777) == "0o640"


def test_a_report_written_before_runs_were_kept_is_kept_too(tmp_path):
    path = tmp_path / "report.txt"
    write_atomic(str(path), "old\n")
    write_kept(str(path), "new\n", "R1", "evacuate-hv1", ".txt")
    kept = [name for name in os.listdir(tmp_path) if name.startswith("report-before-")]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_text() == "old\n"
    assert path.read_text() == "new\n"


def test_a_directory_gets_one_file_per_run_and_no_link(tmp_path):
    written = write_kept(str(tmp_path), "x\n", "R1", "evacuate-hv1", ".json")
    assert written == str(tmp_path / "evacuate-hv1-R1.json")
    assert os.listdir(tmp_path) == ["evacuate-hv1-R1.json"]
