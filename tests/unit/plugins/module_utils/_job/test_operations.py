"""migration_job operations against a fake running migration."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
import yaml
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    JobError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.argspec import (
    migration_job_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._job.operations import (
    JobController,
    JobRequest,
)
from ansible_collections.virtops.migration.plugins.modules import migration_job
from module_runner import run_module_main

DEST = "qemu+tls://hv2.example.com/system"


def migrating(world, flags=lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER, samples=None):
    hv1, hv2 = world.hosts["qemu:///system"], world.hosts[DEST]
    dom = hv1.add_domain("vm1")
    dom.script = lv.MigrationScript(samples=samples or [lv.sample(400_000_000, iteration=4, elapsed=12000,
                                                                  dirty_rate=25000)], outcome="never")
    dom.job = lv.FakeJob(dom, hv2, {}, flags)
    return dom


def control(world, check_mode=False, **params):
    request = JobRequest.from_params(dict({"name": "vm1"}, **params))
    return JobController(request, check_mode=check_mode, clock=world.clock, sleep=world.tick)


def test_info_reports_live_stats_and_settings(world):
    migrating(world)
    result = control(world).run()
    assert result["changed"] is False
    assert result["job"]["data_remaining"] == 400_000_000
    assert result["job"]["memory_iteration"] == 4
    assert result["settings"] == {"max_downtime": 300, "bandwidth": 8796093022207}
    assert result["postcopy"] is False
    assert (result["domain"], result["operation"]) == ("vm1", "info")
    assert world.mutations == []


def test_info_without_job(world):
    world.hosts["qemu:///system"].add_domain("vm1")
    result = control(world).run()
    assert result["job"] == {"active": False, "job_type": "none", "operation": None}


def test_tune_sets_and_reads_back(world):
    dom = migrating(world)
    result = control(world, operation="tune", max_downtime=500, bandwidth=800).run()
    assert result["changed"] is True
    assert result["settings"] == {"max_downtime": 500, "bandwidth": 800}
    assert result["diff"] == {"before": {"max_downtime": 300, "bandwidth": 8796093022207},
                              "after": {"max_downtime": 500, "bandwidth": 800}}
    assert world.mutations == [("hv1", "migrateSetMaxDowntime", ("vm1", 500)),
                               ("hv1", "migrateSetMaxSpeed", ("vm1", 800))]
    assert (dom.max_downtime, dom.max_speed) == (500, 800)


def test_tune_is_idempotent(world):
    dom = migrating(world)
    dom.max_downtime, dom.max_speed = 500, 800
    result = control(world, operation="tune", max_downtime=500, bandwidth=800).run()
    assert result["changed"] is False
    assert world.mutations == []


def test_tune_check_mode_changes_nothing(world):
    dom = migrating(world)
    result = control(world, check_mode=True, operation="tune", bandwidth=100).run()
    assert result["changed"] is True
    assert result["diff"]["after"]["bandwidth"] == 100
    assert dom.max_speed == 8796093022207
    assert world.mutations == []


def test_abort_waits_until_job_gone_and_reports_placement(world):
    dom = migrating(world)
    result = control(world, operation="abort", dest_uri=DEST).run()
    assert result["changed"] is True
    assert result["job"]["active"] is False
    assert result["last_job"]["data_remaining"] == 400_000_000
    assert result["running_on"] == {
        "source": {"present": True, "state": "running", "persistent": True},
        "destination": {"present": False, "state": None, "persistent": False},
        "hosts": ["source"],
    }
    assert dom.job.result == "aborted"
    assert world.methods() == [("hv1", "abortJob")]


def test_abort_without_job_is_a_noop(world):
    world.hosts["qemu:///system"].add_domain("vm1")
    result = control(world, operation="abort").run()
    assert (result["changed"], result["message"]) == (False, "no migration job was running")
    assert result["running_on"]["hosts"] == ["source"]
    assert world.mutations == []


def test_abort_check_mode(world):
    migrating(world)
    result = control(world, check_mode=True, operation="abort").run()
    assert result["changed"] is True
    assert world.mutations == []


def test_abort_that_never_completes_times_out(world, monkeypatch):
    dom = migrating(world)
    monkeypatch.setattr(dom.job, "abort", lambda: None)  # QEMU ignores the cancel
    with pytest.raises(JobError, match="still running 3s after the abort request"):
        control(world, operation="abort", wait_timeout=3).run()


def test_abort_refused_in_postcopy(world):
    dom = migrating(world, flags=lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_POSTCOPY)
    dom.migrateStartPostCopy(0)
    world.calls.clear()
    with pytest.raises(JobError, match="aborting now would lose the guest"):
        control(world, operation="abort").run()
    assert world.mutations == []


def test_postcopy_switch_and_idempotence(world):
    migrating(world, flags=lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_POSTCOPY)
    result = control(world, operation="postcopy").run()
    assert (result["changed"], result["postcopy"]) == (True, True)
    assert world.methods() == [("hv1", "migrateStartPostCopy")]
    again = control(world, operation="postcopy").run()
    assert again["changed"] is False
    assert len(world.mutations) == 1


def test_postcopy_result_waits_for_the_state_qemu_reports_later(world):
    dom = migrating(world, flags=lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_POSTCOPY)
    dom.postcopy_state_after_reads = 3
    result = control(world, operation="postcopy").run()
    assert (result["changed"], result["postcopy"]) == (True, True)
    assert world.methods() == [("hv1", "migrateStartPostCopy")]


def test_postcopy_state_never_shown_fails_within_wait_timeout(world):
    dom = migrating(world, flags=lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_POSTCOPY)
    dom.postcopy_state_after_reads = 10**6
    with pytest.raises(JobError, match="showed no post-copy state within 2s"):
        control(world, operation="postcopy", wait_timeout=2).run()


def test_postcopy_refused_without_flag_carries_libvirt_text(world):
    migrating(world)
    with pytest.raises(JobError) as caught:
        control(world, operation="postcopy").run()
    assert "requires migration to be started with VIR_MIGRATE_POSTCOPY" in caught.value.libvirt_error
    assert caught.value.error_code == lv.VIR_ERR_OPERATION_INVALID
    assert "post_copy: true" in caught.value.hint


def test_postcopy_without_job(world):
    world.hosts["qemu:///system"].add_domain("vm1")
    with pytest.raises(JobError, match="no migration job is running"):
        control(world, operation="postcopy").run()


@pytest.mark.parametrize("params,message", [
    ({"operation": "tune"}, "needs max_downtime and/or bandwidth"),
    ({"operation": "info", "bandwidth": 5}, "only apply to operation tune"),
    ({"operation": "tune", "bandwidth": -1}, "bandwidth must not be negative"),
    ({"operation": "tune", "max_downtime": -1}, "max_downtime must not be negative"),
    ({"uri": "qemu+tls:/hv1"}, "malformed"),
])
def test_bad_job_inputs(world, params, message):
    migrating(world)
    with pytest.raises(ValidationError, match=message):
        control(world, **params).run()
    assert world.mutations == []


def test_unknown_domain(world):
    with pytest.raises(DomainNotFound, match="no domain with matching name 'vm1' on qemu:///system"):
        control(world).run()


def test_module_main_info(world, capsys):
    migrating(world)
    code, result = run_module_main(migration_job.main, {"name": "vm1"}, capsys)
    assert code == 0
    assert result["job"]["memory_dirty_rate"] == 25000
    assert "diff" not in result


def test_module_refuses_an_unknown_operation(world, capsys):
    migrating(world)
    code, result = run_module_main(migration_job.main, {"name": "vm1", "operation": "cancel"}, capsys)
    assert code == 1
    assert "value of operation must be one of: info, abort, tune, postcopy, got: cancel" in result["msg"]
    assert world.mutations == []


def test_module_needs_name_or_uuid(world, capsys):
    migrating(world)
    code, result = run_module_main(migration_job.main, {"operation": "info"}, capsys)
    assert code == 1
    assert "one of the following is required: name, uuid" in result["msg"]
    assert world.calls == []


def test_module_main_failure(world, capsys):
    migrating(world)
    code, result = run_module_main(migration_job.main, {"name": "vm1", "operation": "postcopy"}, capsys)
    assert code == 1
    assert result["error"]["kind"] == "job"
    assert result["error"]["libvirt_error_code"] == lv.VIR_ERR_OPERATION_INVALID


def test_documented_choices_and_defaults_are_the_specs():
    documented = yaml.safe_load(migration_job.DOCUMENTATION)["options"]
    spec = migration_job_argument_spec()
    for name, option in documented.items():
        assert (option.get("default"), option.get("choices")) == (spec[name].get("default"), spec[name].get("choices"))
