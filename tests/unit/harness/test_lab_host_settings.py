"""The lab's host settings: set while a lab is up, the value found first put back when the last lab goes down."""

from __future__ import annotations

import pytest
from virtops_lab import host_settings


@pytest.fixture
def proc(tmp_path, monkeypatch):
    proc_sys = tmp_path / "proc-sys"
    (proc_sys / "vm").mkdir(parents=True)
    (proc_sys / "vm" / "unprivileged_userfaultfd").write_text("0\n")
    monkeypatch.setattr(host_settings, "PROC_SYS", proc_sys)
    monkeypatch.setattr(host_settings, "SAVED_SETTINGS", tmp_path / "state" / "host-settings.json")
    return proc_sys / "vm" / "unprivileged_userfaultfd"


def test_the_first_value_found_is_the_one_put_back(proc):
    host_settings.apply_host_settings()
    assert proc.read_text() == "1\n"
    host_settings.apply_host_settings()  # a second lab: the saved value stays the one found first
    assert host_settings.saved_settings() == {"vm/unprivileged_userfaultfd": "0"}
    host_settings.restore_host_settings()
    assert proc.read_text() == "0\n"
    assert not host_settings.SAVED_SETTINGS.exists()


def test_a_host_already_set_is_left_as_it_is(proc):
    proc.write_text("1\n")
    host_settings.apply_host_settings()
    assert host_settings.saved_settings() == {}
    host_settings.restore_host_settings()
    assert proc.read_text() == "1\n"
