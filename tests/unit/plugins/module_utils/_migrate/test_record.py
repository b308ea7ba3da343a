"""The migrate module's audit record: one per run that changed something or failed trying."""

from __future__ import annotations

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    read_audit,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationFailed,
    MigrationInProgress,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.record import (
    run_recorded,
)
from builders import migrate_request


def trail_in(tmp_path):
    return AuditTrail(str(tmp_path / "audit.jsonl"), "R1", clock=iter([100.0, 103.5, 200.0, 201.0]).__next__)


def moved(request, check_mode):
    return {"changed": True, "actions": ["migrate"], "domain": "vm1", "uuid": "u-1", "explanation": "live",
            "stats": {"downtime": 14}, "warnings": []}


def test_a_migration_is_recorded_with_flags_downtime_and_times(tmp_path):
    request = migrate_request(uri="qemu+ssh://root:secret@hv1/system", post_copy=True, bandwidth=50)
    result = run_recorded(request, False, trail_in(tmp_path), moved)
    assert (result["run_id"], result["audit_log"]) == ("R1", str(tmp_path / "audit.jsonl"))
    (record,) = read_audit(str(tmp_path / "audit.jsonl"))
    assert record["result"] == "migrated"
    assert record["downtime_ms"] == 14
    assert record["duration_s"] == 3.5
    assert record["started_at"] == "1970-01-01T00:01:40.000Z"
    assert record["source"] == "qemu+ssh://hv1/system"
    assert record["flags"] == ["live", "persistent", "undefine_source", "p2p", "post_copy", "bandwidth"]


def test_only_definitions_changed_is_finished(tmp_path):
    def defined(request, check_mode):
        return {**moved(request, check_mode), "actions": ["define_on_destination"]}

    run_recorded(migrate_request(), False, trail_in(tmp_path), defined)
    assert read_audit(str(tmp_path / "audit.jsonl"))[0]["result"] == "finished"


@pytest.mark.parametrize("check_mode,changed", [(True, True), (False, False)])
def test_check_mode_and_unchanged_runs_write_nothing(tmp_path, check_mode, changed):
    def run(request, check):
        return {"changed": changed, "actions": [], "domain": "vm1", "uuid": "u-1"}

    result = run_recorded(migrate_request(), check_mode, trail_in(tmp_path), run)
    assert result["audit_log"] is None
    assert not (tmp_path / "audit.jsonl").exists()


def test_a_failed_migration_is_recorded_and_the_error_carries_the_run(tmp_path):
    def fails(request, check_mode):
        raise MigrationFailed("migrate", "the job was aborted", domain="vm1")

    with pytest.raises(MigrationFailed) as caught:
        run_recorded(migrate_request(), False, trail_in(tmp_path), fails)
    assert caught.value.details["run_id"] == "R1"
    assert caught.value.details["audit_log"] == str(tmp_path / "audit.jsonl")
    (record,) = read_audit(str(tmp_path / "audit.jsonl"))
    assert (record["result"], record["guest_name"]) == ("failed", "vm1")
    assert "aborted" in record["message"]


@pytest.mark.parametrize("error", [ValidationError("validate options", "bad"),
                                   MigrationInProgress("lock the domain", "busy")])
def test_refusals_before_trying_write_nothing(tmp_path, error):
    def refused(request, check_mode):
        raise error

    with pytest.raises(type(error)) as caught:
        run_recorded(migrate_request(), False, trail_in(tmp_path), refused)
    assert caught.value.details["audit_log"] is None
    assert not (tmp_path / "audit.jsonl").exists()


def test_a_log_that_cannot_be_written_is_a_warning(tmp_path):
    (tmp_path / "file").write_text("")
    trail = AuditTrail(str(tmp_path / "file" / "audit.jsonl"), "R1")
    result = run_recorded(migrate_request(), False, trail, moved)
    assert result["changed"] is True and result["audit_log"] is None
    assert result["warnings"][0].startswith(f"audit log {tmp_path}/file/audit.jsonl")
