"""The restore module's main(): argument spec, check and diff mode, the failure shape."""

from __future__ import annotations

import functools

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    GuestMetadata,
    Origin,
    write_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore import (
    run as _restore,
)
from ansible_collections.virtops.migration.plugins.modules import restore
from module_runner import run_module_main

SRC = "qemu:///system"
HV1 = "qemu+tls://hv1.example.com/system"
HV2 = "qemu+tls://hv2.example.com/system"
ARGS = {"dest_uri": HV1, "search": [HV2]}


@pytest.fixture
def module_world(monkeypatch, world):
    """hv1 (restored, also reachable as HV1) and hv2 holding web1, evacuated from hv1."""
    world.hosts[HV1] = world.hosts[SRC]
    hv1, hv2 = world.hosts[SRC], world.hosts[HV2]
    dom = hv2.add_domain("web1", memory_kib=524288)
    write_guest_metadata(dom, GuestMetadata(origin=Origin(hv1.hostname, hv1.host_uuid)), persistent=True)
    environment = MigrationEnvironment(clock=world.clock, wait=world.wait, fs_type_of=lambda path: None,
                                       resolves_locally=lambda host: False)
    module_environment = functools.partial(
        _restore.RestoreEnvironment, resolves_locally=lambda host: False, clock=world.clock,
        migrate_guest=lambda request, check: run_migration(request, check, environment))
    monkeypatch.setattr(_restore, "RestoreEnvironment", module_environment)
    world.calls.clear()
    return world


def test_check_mode_with_diff_shows_the_move_and_changes_nothing(module_world, capsys):
    code, result = run_module_main(restore.main, ARGS, capsys, check_mode=True, diff=True)
    assert code == 0 and result["changed"] is True
    assert result["diff"] == {"before": {"web1": "hv2.example.com"}, "after": {"web1": "hv1"}}
    assert result["vms"][0]["result"] == "planned" and module_world.mutations == []


def test_a_run_brings_the_guest_home_and_a_second_changes_nothing(module_world, capsys):
    code, result = run_module_main(restore.main, ARGS, capsys)
    assert code == 0 and result["changed"] is True and result["vms"][0]["result"] == "migrated"
    assert [dom.name() for dom in module_world.hosts[SRC].domains.values()] == ["web1"]
    code, again = run_module_main(restore.main, ARGS, capsys)
    assert code == 0 and again["changed"] is False


def test_a_restored_host_in_maintenance_fails_with_the_error(module_world, capsys):
    code, result = run_module_main(restore.main, {**ARGS, "maintenance_hosts": ["hv1"]}, capsys)
    assert code == 1 and result["error"]["kind"] == "validation"
    assert "still in maintenance" in result["msg"] and module_world.mutations == []


def test_search_is_required(capsys):
    code, result = run_module_main(restore.main, {"dest_uri": HV1}, capsys)
    assert code == 1 and "search" in result["msg"]


def test_a_guest_that_does_not_fit_fails_the_module_with_the_report(module_world, capsys):
    module_world.hosts[SRC].memory_stats = {"total": 1048576, "free": 262144, "buffers": 0, "cached": 0}
    code, result = run_module_main(restore.main, ARGS, capsys)
    assert code == 1 and result["vms"][0]["result"] == "unplaceable"
    assert "report_lines" in result and lv.VIR_DOMAIN_RUNNING == module_world.hosts[HV2].domains[
        result["vms"][0]["uuid"]].state()[0]


def test_a_standing_cancel_request_fails_the_module_naming_it(module_world, capsys, tmp_path):
    cancel = tmp_path / "cancel"
    cancel.write_text("maintenance window closed\n")
    code, result = run_module_main(restore.main, {**ARGS, "cancel_path": str(cancel)}, capsys)
    assert code == 1 and result["error"]["kind"] == "cancelled" and result["changed"] is False
    assert f"a cancel request stands: {cancel}, written " in result["msg"]
    assert "maintenance window closed" in result["msg"] and module_world.mutations == []
