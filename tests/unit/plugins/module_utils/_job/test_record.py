"""The migration_job module's audit records: abort, postcopy and tune that changed something or failed trying."""

from __future__ import annotations

import json

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    AuditTrail,
    read_audit,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    JobError,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.operations import (
    JobRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.record import (
    run_recorded_job,
)
from ansible_collections.virtops.migration.plugins.modules import migration_job
from module_runner import run_module_main

DEST = "qemu+tls://hv2.example.com/system"


def trail_in(tmp_path):
    return AuditTrail(str(tmp_path / "audit.jsonl"), "R1")


def request(**params):
    return JobRequest.from_params(dict({"name": "vm1", "dest_uri": DEST}, **params))


def test_a_tune_is_recorded_with_the_names_of_what_it_set(tmp_path):
    def tuned():
        return {"changed": True, "operation": "tune", "domain": "vm1", "uuid": "u-1"}

    result = run_recorded_job(request(operation="tune", bandwidth=100), False, trail_in(tmp_path), tuned)
    assert (result["run_id"], result["audit_log"]) == ("R1", str(tmp_path / "audit.jsonl"))
    (record,) = read_audit(str(tmp_path / "audit.jsonl"))
    assert (record["action"], record["result"], record["flags"], record["guest_uuid"]) == (
        "tune", "succeeded", ["bandwidth"], "u-1")


@pytest.mark.parametrize("operation,changed,check_mode", [("info", False, False), ("abort", False, False),
                                                          ("abort", True, True)])
def test_info_unchanged_and_check_mode_write_nothing(tmp_path, operation, changed, check_mode):
    result = run_recorded_job(request(operation=operation), check_mode, trail_in(tmp_path),
                              lambda: {"changed": changed})
    assert result["audit_log"] is None and not (tmp_path / "audit.jsonl").exists()


def test_a_failed_postcopy_is_recorded(tmp_path):
    def refused():
        raise JobError("switch to post-copy", "libvirt refused the operation", domain="vm1")

    with pytest.raises(JobError) as caught:
        run_recorded_job(request(operation="postcopy"), False, trail_in(tmp_path), refused)
    assert caught.value.details["run_id"] == "R1"
    (record,) = read_audit(str(tmp_path / "audit.jsonl"))
    assert (record["action"], record["result"], record["guest_name"]) == ("postcopy", "failed", "vm1")


def test_module_abort_is_audited(world, capsys, tmp_path):
    hv1, hv2 = world.hosts["qemu:///system"], world.hosts[DEST]
    dom = hv1.add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(400_000_000)], outcome="never")
    dom.job = lv.FakeJob(dom, hv2, {}, lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER)
    log = tmp_path / "audit.jsonl"
    code, result = run_module_main(migration_job.main, {"name": "vm1", "operation": "abort", "audit_log": str(log),
                                                        "wait_timeout": 0.5}, capsys)
    assert (code, result["changed"], result["audit_log"]) == (0, True, str(log))
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["action"], record["run_id"], record["guest_name"]) == ("abort", result["run_id"], "vm1")
