"""The audit log: one JSON line per record, scrubbed, appended safely, never raising."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat
import threading

from ansible_collections.virtops.migration.plugins.module_utils._common import audit
from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditRecord,
    append_audit,
    flag_names,
    iso_utc,
    new_run_id,
    public_uri,
    read_audit,
    scrub_text,
)


def record(**changes):
    values = {
        "action": "migrate", "run_id": "20261201T143901Z-1a2b3c4d", "guest_name": "vm1",
        "guest_uuid": "c7a5fdbd-cdaf-9455-926a-d65c16db1809", "source": "qemu:///system",
        "destination": "qemu+tls://hv2.example.com/system", "flags": ("live", "persistent"),
        "result": "migrated", "started_at": "2026-12-01T14:39:01.000Z",
        "finished_at": "2026-12-01T14:39:03.500Z", "duration_s": 2.5, "downtime_ms": 12, "message": None,
    }
    values.update(changes)
    return AuditRecord(**values)


def test_run_id_sorts_by_time_and_fits_a_file_name():
    first = new_run_id(clock=lambda: 1_796_000_000)
    later = new_run_id(clock=lambda: 1_796_000_001)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", first)
    assert first < later
    assert new_run_id() != new_run_id()


def test_iso_utc_has_milliseconds():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1.2345) == "1970-01-01T00:00:01.234Z" or iso_utc(1.2345) == "1970-01-01T00:00:01.235Z"
    assert iso_utc(1.9999) == "1970-01-01T00:00:02.000Z"


def test_public_uri_drops_user_information_and_query():
    assert public_uri("qemu+ssh://admin:s3cret@hv2.example.com:2222/system?keyfile=/k") == \
        "qemu+ssh://hv2.example.com:2222/system"
    assert public_uri("qemu+tls://hv2/system") == "qemu+tls://hv2/system"
    assert public_uri("qemu:///system") == "qemu:///system"
    assert public_uri("qemu+tcp://[fe80::1]/system") == "qemu+tcp://[fe80::1]/system"
    assert public_uri(None) is None
    assert public_uri("hv2") == "hv2"


def test_scrub_text_removes_user_information_inside_messages():
    text = "cannot connect to qemu+ssh://root:pw@hv2/system: refused"
    assert scrub_text(text) == "cannot connect to qemu+ssh://hv2/system: refused"


def test_flag_names_keep_names_only():
    assert flag_names(["live", "bandwidth=100", "tls", "live", "tune:downtime=5", "a b"]) == \
        ("live", "bandwidth", "tls", "tune", "ab")
    assert flag_names(None) == ()


def test_append_writes_one_line_with_the_user_and_the_host(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "alice")
    path = tmp_path / "log" / "audit.jsonl"
    assert append_audit(str(path), record(), clock=lambda: 0.5) is None
    assert append_audit(str(path), record(result="failed", message="boom")) is None
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["time"] == "1970-01-01T00:00:00.500Z"
    assert first["sudo_user"] == "alice"
    assert first["user"]
    assert first["host"]
    assert first["version"] == 1
    assert first["flags"] == ["live", "persistent"]
    assert first["downtime_ms"] == 12
    assert first["duration_s"] == 2.5
    assert [entry["result"] for entry in read_audit(str(path))] == ["migrated", "failed"]


def test_file_and_directory_modes(tmp_path):
    old = os.umask(0o077)
    try:
        path = tmp_path / "new" / "audit.jsonl"
        assert append_audit(str(path), record()) is None
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o600)
    assert append_audit(str(path), record()) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_secret_reaches_the_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    append_audit(str(path), record(source="qemu+ssh://root:hunter2@hv1/system",
                                   destination="qemu+tcp://u:hunter2@hv2/system?auth=x",
                                   flags=("password=hunter2",), message="qemu+ssh://root:hunter2@hv1 refused"))
    text = path.read_text()
    assert "hunter2" not in text
    assert "root" not in json.loads(text)["source"]


def test_disabled_log_writes_nothing(tmp_path):
    assert append_audit(None, record()) is None
    assert append_audit("", record()) is None
    assert list(tmp_path.iterdir()) == []


def test_a_failure_is_a_warning_never_an_exception(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    warning = append_audit(str(blocker / "audit.jsonl"), record())
    assert warning.startswith(f"audit log {blocker}/audit.jsonl: the migrate record of vm1")
    assert "was not written" in warning


def test_an_unexpected_error_is_a_warning_too(tmp_path, monkeypatch):
    def explode(*args):
        raise RuntimeError("qemu+ssh://root:pw@hv2 broke")

    monkeypatch.setattr(audit, "audit_line", explode)
    warning = append_audit(str(tmp_path / "audit.jsonl"), record())
    assert "RuntimeError" in warning
    assert "pw@" not in warning


def test_threads_never_interleave(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    long_message = "x" * 20000

    def worker(index):
        for count in range(20):
            append_audit(path, record(guest_name=f"vm{index}-{count}", message=long_message))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 120
    assert all(json.loads(line)["message"] == long_message for line in lines)


def _process_worker(path, index):
    for count in range(20):
        append_audit(path, record(guest_name=f"p{index}-{count}", message="y" * 70000))


def test_processes_never_interleave(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_process_worker, args=(path, index)) for index in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 80
    assert {json.loads(line)["guest_name"] for line in lines} == {f"p{i}-{c}" for i in range(4) for c in range(20)}


def test_option_flags_are_names_only():
    options = {"live": True, "persistent": True, "undefine_source": False, "tls": True, "post_copy": True,
               "copy_storage": "all", "bandwidth": 100, "migrate_uri": "tcp://10.0.0.2", "compression": [],
               "xml": None}
    assert audit.option_flags(options) == ("live", "persistent", "tls", "post_copy", "copy_storage", "bandwidth",
                                           "migrate_uri")
    assert audit.option_flags({"live": False, "persistent": True}) == ("persistent", "offline")


def test_audit_log_option_and_what_counts_as_tried():
    assert audit.audit_log_argument_spec() == {"audit_log": {"type": "path", "default": audit.DEFAULT_AUDIT_LOG}}
    assert not audit.was_tried("validation")
    assert not audit.was_tried("in_progress")
    assert audit.was_tried("migration")
    assert audit.was_tried("preflight")


def test_trail_times_a_record_and_appends_it(tmp_path):
    moments = iter([10.0, 12.5, 13.0]).__next__
    trail = audit.AuditTrail(str(tmp_path / "a.jsonl"), "R1", clock=moments)
    started = trail.clock()
    made = trail.record("evacuate", started, "migrated", guest_name="vm1", flags=("live",), downtime_ms=9)
    assert (made.started_at, made.finished_at, made.duration_s) == ("1970-01-01T00:00:10.000Z",
                                                                    "1970-01-01T00:00:12.500Z", 2.5)
    assert trail.append(made) is None
    assert read_audit(str(tmp_path / "a.jsonl"))[0]["run_id"] == "R1"
    assert audit.AuditTrail("", "R2").written_to is None
    assert audit.downtime_of({"stats": {"downtime": 12}}) == 12
    assert audit.downtime_of({}) is None


def test_move_trail_records_started_moves_only(tmp_path):
    moments = iter([1.0, 2.0, 5.0, 6.0, 7.0]).__next__
    path = tmp_path / "a.jsonl"
    moves = audit.MoveTrail(audit.AuditTrail(str(path), "R1", clock=moments), "evacuate")
    moves.started("u1")
    assert moves.finished("u1", "migrated", guest_name="vm1", source="hv1", destination="hv2") is None
    assert moves.finished("u2", "not_started", guest_name="vm2") is None  # never started: no record
    (record,) = read_audit(str(path))
    assert (record["guest_uuid"], record["started_at"], record["finished_at"]) == (
        "u1", "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z")
