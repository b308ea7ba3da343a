"""The migrate module: argument spec, import without libvirt, main() results."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from ansible_collections.virtops.migration.plugins.modules import migrate
from builders import environment_of
from module_runner import run_module_main

DEST = "qemu+tls://hv2.example.com/system"


def run_main(args, capsys, check_mode=False, diff=False):
    return run_module_main(migrate.main, args, capsys, check_mode, diff)


@pytest.fixture
def fast(monkeypatch, world):
    """Run the module's migrations with the fake world's clock and no DNS."""
    environment = environment_of(world, fs_type_of=lambda path: None)

    def run(request, check_mode=False, given=None):
        merged = environment if given is None else replace(
            environment, progress_path=given.progress_path, progress_interval=given.progress_interval)
        return run_migration(request, check_mode, merged)

    monkeypatch.setattr(migrate, "run_migration", run)
    return world


def test_module_imports_without_libvirt():
    code = (
        "import sys; sys.path.insert(0, 'build/collections'); sys.modules['libvirt'] = None\n"
        "from ansible_collections.virtops.migration.plugins.modules import migrate, migration_job\n"
        "from ansible_collections.virtops.migration.plugins.module_utils._libvirt import dependency as d\n"
        "print(d.HAS_LIBVIRT, 'libvirt' in d.LIBVIRT_IMPORT_ERROR.strip().splitlines()[-1])\n"
    )
    repo = Path(__file__).resolve().parents[4]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo).stdout
    assert out.strip() == "False True"


def test_missing_libvirt_fails_before_any_work(monkeypatch, capsys, world):
    hv1 = world.hosts["qemu:///system"]
    hv1.add_domain("vm1")
    monkeypatch.setattr(migrate, "HAS_LIBVIRT", False)
    monkeypatch.setattr(migrate, "LIBVIRT_IMPORT_ERROR", "Traceback: ImportError: No module named libvirt")
    code, result = run_main({"name": "vm1", "dest_uri": DEST}, capsys)
    assert code == 1
    assert "Failed to import the required Python library (libvirt-python" in result["msg"]
    assert world.calls == []


def test_main_migrates_and_reports(capsys, fast):
    hv1 = fast.hosts["qemu:///system"]
    dom = hv1.add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(100)])
    code, result = run_main({"name": "vm1", "dest_uri": DEST}, capsys, diff=True)
    assert code == 0
    assert result["changed"] is True
    assert result["flags_value"] == 27
    assert result["diff"] == {
        "before": {"source": {"present": True, "state": "running", "persistent": True},
                   "destination": {"present": False, "state": None, "persistent": False}},
        "after": {"source": {"present": False, "state": None, "persistent": False},
                  "destination": {"present": True, "state": "running", "persistent": True}},
    }


def test_main_appends_one_audit_record_and_returns_the_run_id(capsys, fast, tmp_path):
    dom = fast.hosts["qemu:///system"].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(100)])
    log = tmp_path / "audit" / "audit.jsonl"
    progress = tmp_path / "run" / "progress.json"
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "audit_log": str(log), "auto_converge": True,
                             "bandwidth": 100, "progress_path": str(progress)}, capsys)
    assert code == 0
    assert result["audit_log"] == str(log)
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["action"], record["result"], record["run_id"]) == ("migrate", "migrated", result["run_id"])
    assert (record["guest_name"], record["guest_uuid"]) == ("vm1", result["uuid"])
    assert record["flags"] == ["live", "persistent", "undefine_source", "p2p", "auto_converge", "bandwidth"]
    assert record["destination"] == DEST
    snapshot = json.loads(progress.read_text())
    assert (snapshot["finished"], snapshot["line"]) == (True, "vm1: " + result["explanation"])
    code, again = run_main({"name": "vm1", "dest_uri": DEST, "audit_log": str(log)}, capsys)
    assert (code, again["changed"], again["audit_log"]) == (0, False, None)
    assert len(log.read_text().splitlines()) == 1  # an unchanged run writes nothing


def test_main_with_the_audit_log_off_writes_none(capsys, fast, private_audit_log):
    dom = fast.hosts["qemu:///system"].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(100)])
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "audit_log": ""}, capsys)
    assert (code, result["changed"], result["audit_log"]) == (0, True, None)
    assert result["run_id"]
    assert not private_audit_log.exists()


def test_main_writes_the_default_audit_log(capsys, fast, private_audit_log):
    dom = fast.hosts["qemu:///system"].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(100)])
    code, result = run_main({"name": "vm1", "dest_uri": DEST}, capsys)
    assert (code, result["audit_log"]) == (0, str(private_audit_log))
    assert json.loads(private_audit_log.read_text())["run_id"] == result["run_id"]


def test_main_refuses_a_progress_interval_that_is_not_positive(capsys, fast):
    fast.hosts["qemu:///system"].add_domain("vm1")
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "progress_interval": 0}, capsys)
    assert code == 1
    assert "progress_interval must be positive" in result["msg"]
    assert fast.mutations == []


def test_main_check_mode(capsys, fast):
    fast.hosts["qemu:///system"].add_domain("vm1")
    code, result = run_main({"name": "vm1", "dest_uri": DEST}, capsys, check_mode=True)
    assert (code, result["changed"], result["check_mode"]) == (0, True, True)
    assert fast.mutations == []


def test_main_fails_with_error_details(capsys, fast):
    fast.hosts["qemu:///system"].add_domain("vm1")
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "tunnelled": True, "tls": True}, capsys)
    assert code == 1
    assert result["failed"] is True
    assert result["error"]["kind"] == "validation"
    assert result["error"]["dest_uri"] == DEST
    assert result["msg"].startswith("validate options failed (domain 'vm1', source qemu:///system, "
                                    "destination qemu+tls://hv2.example.com/system): tls and tunnelled")
    assert fast.mutations == []
    assert result["run_id"] and result["audit_log"] is None


@pytest.mark.parametrize("args,message", [
    ({"name": "vm1", "dest_uri": DEST, "copy_storage": "both"}, "value of copy_storage must be one of"),
    ({"name": "vm1", "dest_uri": DEST, "convergence": {"on_timeout": "retry"}}, "on_timeout must be one of"),
    ({"name": "vm1", "dest_uri": DEST, "compression": ["lz4"]}, "compression must be one or more of"),
    ({"name": "vm1", "dest_uri": DEST, "compression": ["xbzrle", "lz4"]}, "compression must be one or more of"),
    ({"name": "vm1", "dest_uri": DEST, "preflight_skip": ["dest_reachable"]}, "preflight_skip must be one or more of"),
    ({"name": "vm1", "dest_uri": DEST, "on_paused_source": "ignore"}, "value of on_paused_source must be one of"),
    ({"dest_uri": DEST}, "one of the following is required: name, uuid"),
    ({"name": "vm1"}, "missing required arguments: dest_uri"),
])
def test_argument_spec_refuses(capsys, fast, args, message):
    code, result = run_main(args, capsys)
    assert code == 1
    assert message in result["msg"]
    assert fast.calls == []


def _deprecation_messages(result):
    """Deprecation texts; ansible-core 2.19 nests them in an event."""
    return [entry.get("event", entry).get("msg", "") for entry in result.get("deprecations", [])]


def test_main_warnings_go_through_module_warn(capsys, fast):
    """A ``warnings`` key handed to exit_json is deprecated in ansible-core 2.19 (seen on the lab)."""
    disks = "<disk type='file' device='disk'><source file='/vm/vm1.img'/><target dev='vda'/></disk>"
    uuid = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"
    fast.hosts["qemu:///system"].add_domain("vm1", xml=lv.domain_xml("vm1", uuid, disks=disks), uuid=uuid)
    code, result = run_main({"name": "vm1", "dest_uri": DEST}, capsys, check_mode=True)
    assert code == 0
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert warnings == [("preflight storage: vda: cannot tell whether /vm/vm1.img is shared from here; "
                         "libvirt refuses the migration if they are not shared")]
    assert not any("warnings" in message for message in _deprecation_messages(result))


def test_main_failure_warnings_go_through_module_warn(capsys, fast):
    fast.hosts["qemu:///system"].add_domain("vm1")
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "tunnelled": True, "tls": True}, capsys)
    assert code == 1
    assert not any("warnings" in message for message in _deprecation_messages(result))


def test_main_ends_the_progress_file_even_when_nothing_migrates_or_it_fails(capsys, fast, tmp_path):
    progress = tmp_path / "progress.json"
    fast.hosts[DEST].add_domain("vm1")
    code, result = run_main({"name": "vm1", "dest_uri": DEST, "progress_path": str(progress)}, capsys)
    assert (code, result["changed"]) == (0, False)
    snapshot = json.loads(progress.read_text())
    assert snapshot["finished"] is True and snapshot["line"].startswith("vm1: ")
    code, result = run_main({"name": "nosuch", "dest_uri": DEST, "progress_path": str(progress)}, capsys)
    assert code == 1
    snapshot = json.loads(progress.read_text())
    assert snapshot["finished"] is True and snapshot["line"].startswith("failed: ")


def test_main_in_check_mode_writes_no_progress_file(capsys, fast, tmp_path):
    fast.hosts["qemu:///system"].add_domain("vm1")
    progress = tmp_path / "progress.json"
    code, _result = run_main({"name": "vm1", "dest_uri": DEST, "progress_path": str(progress)}, capsys,
                             check_mode=True)
    assert code == 0 and not progress.exists()
