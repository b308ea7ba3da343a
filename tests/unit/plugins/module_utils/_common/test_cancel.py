"""The operator's cancel request: reading the file, the refusal, the running run's watch (no libvirt)."""

from __future__ import annotations

import os

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelRequest,
    CancelWatch,
    cancel_refusal,
    read_cancel_request,
    refuse_if_requested,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    CancelRequested,
)

WRITTEN = 1796219941.0  # 2026-12-02T13:59:01Z


def request_file(tmp_path, text="cancel requested at 2026-12-02T13:59:01Z from ctl1\n"):
    path = tmp_path / "cancel"
    path.write_text(text)
    os.utime(path, (WRITTEN, WRITTEN))
    return str(path)


def test_no_file_no_path_and_an_empty_path_are_no_request(tmp_path):
    assert read_cancel_request(str(tmp_path / "cancel")) is None
    assert read_cancel_request("") is None and read_cancel_request(None) is None


def test_a_request_holds_its_file_time_and_text(tmp_path):
    path = request_file(tmp_path)
    assert read_cancel_request(path) == CancelRequest(path, WRITTEN, "cancel requested at 2026-12-02T13:59:01Z from ctl1")
    assert read_cancel_request(path).describe() == f"{path}, written 2026-12-02T13:59:01.000Z"


def test_an_empty_file_is_a_request(tmp_path):
    path = request_file(tmp_path, "")
    assert read_cancel_request(path).text == ""


def test_the_refusal_names_the_file_when_it_was_written_and_the_next_step(tmp_path):
    path = request_file(tmp_path)
    with pytest.raises(CancelRequested) as caught:
        refuse_if_requested(path, "evacuate", "qemu:///system")
    error = caught.value
    assert error.kind == "cancelled" and error.source_uri == "qemu:///system"
    assert str(error).startswith("evacuate failed (source qemu:///system): a cancel request stands: "
                                 f"{path}, written 2026-12-02T13:59:01.000Z")
    assert "from ctl1" in error.message and "nothing was started or changed" in error.message
    assert error.hint == f"when the run may go ahead, withdraw the request (remove {path}) and run again"
    assert error.to_result()["error"]["kind"] == "cancelled"


def test_no_request_no_refusal(tmp_path):
    refuse_if_requested(str(tmp_path / "cancel"), "restore", "qemu:///system")
    refuse_if_requested("", "restore", "qemu:///system")


def test_a_refusal_without_text_quotes_nothing():
    error = cancel_refusal(CancelRequest("/x/cancel", WRITTEN, ""), "restore", "qemu:///system")
    assert '("' not in error.message


def test_the_watch_stays_cancelled_once_it_saw_a_request(tmp_path):
    path = tmp_path / "cancel"
    watch = CancelWatch(str(path))
    assert watch() is None and watch.request is None
    request_file(tmp_path)
    assert watch() == str(path) and watch.request.written_at == WRITTEN
    path.unlink()
    assert watch() == str(path)


def test_a_watch_without_a_path_never_reads():
    reads = []
    watch = CancelWatch("", read=reads.append)
    assert watch() is None and reads == []
