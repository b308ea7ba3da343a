"""The guest_placement module: set, clear, check mode, diff, idempotence and refusals, over the fake libvirt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fake_libvirt as lv
import pytest
import yaml
from ansible_collections.virtops.migration.plugins.module_utils._guestmeta.argspec import (
    guest_placement_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._guestmeta.operations import (
    PlacementRequest,
    desired_metadata,
    request_problems,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    KEY,
    NAMESPACE,
    GuestMetadata,
    Origin,
    read_guest_metadata,
    write_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.modules import guest_placement
from module_runner import run_module_main

ORIGIN = Origin(host="hv0", host_uuid="0b5c3c6e-8d55-4a43-9d8e-3c1f1f0a7e21", run_id="run-1",
                time="2026-12-01T14:00:00Z")


def run_main(args, capsys, check_mode=False, diff=False):
    return run_module_main(guest_placement.main, args, capsys, check_mode, diff)


@pytest.fixture
def hv1(world):
    return world.hosts["qemu:///system"]


def set_metadata_calls(world):
    return [call for call in world.calls if call[1] == "setMetadata"]


# ---------------------------------------------------------------------------
# The decision over values


def test_present_replaces_the_given_fields_and_keeps_the_rest():
    before = GuestMetadata(anti_affinity=(("db", "hard"),), priority=5, pin_policy="skip", origin=ORIGIN)
    request = PlacementRequest(name="vm1", affinity=("web",), pin_policy="none")
    after = desired_metadata(before, request)
    assert after == GuestMetadata(anti_affinity=(("db", "hard"),), affinity=("web",), priority=5, origin=ORIGIN)


def test_empty_lists_clear_their_field():
    before = GuestMetadata(anti_affinity=(("db", "hard"),), require_labels=(("rack", "r1"),))
    after = desired_metadata(before, PlacementRequest(name="vm1", anti_affinity=(), require_labels=()))
    assert after == GuestMetadata()


def test_absent_keeps_the_origin_unless_asked():
    before = GuestMetadata(affinity=("web",), priority=3, origin=ORIGIN)
    assert desired_metadata(before, PlacementRequest(name="vm1", state="absent")) == GuestMetadata(origin=ORIGIN)
    cleared = desired_metadata(before, PlacementRequest(name="vm1", state="absent", clear_origin=True))
    assert cleared == GuestMetadata()
    only_origin = desired_metadata(before, PlacementRequest(name="vm1", clear_origin=True))
    assert only_origin == GuestMetadata(affinity=("web",), priority=3)


def test_children_this_version_does_not_know_stay_unless_the_whole_element_goes():
    before = GuestMetadata(priority=3, origin=ORIGIN, unknown=("<maintenance-window start=\"02:00\" />",))
    kept = desired_metadata(before, PlacementRequest(name="vm1", state="absent"))
    assert kept == GuestMetadata(origin=ORIGIN, unknown=before.unknown)
    assert desired_metadata(before, PlacementRequest(name="vm1", priority=4)).unknown == before.unknown
    assert desired_metadata(before, PlacementRequest(name="vm1", state="absent", clear_origin=True)) == GuestMetadata()


def test_request_from_params_normalizes_labels_and_groups():
    params = {"name": "vm1", "state": "present", "uri": "qemu:///system", "anti_affinity": [{"group": "db", "mode": None}],
              "affinity": ["web"], "require_labels": {"rack": 1, "ssd": True}, "pin_policy": None,
              "priority": None, "clear_origin": False, "uuid": None}
    request = PlacementRequest.from_params(params)
    assert request.anti_affinity == (("db", "hard"),)
    assert request.require_labels == (("rack", "1"), ("ssd", "true"))
    assert request.given() == ["anti_affinity", "affinity", "require_labels"]


def test_request_problems():
    assert request_problems(PlacementRequest(name="vm1", priority=1)) == []
    assert request_problems(PlacementRequest(name="vm1", state="absent", priority=1)) == [
        "state=absent removes every constraint; it takes none of priority"]
    assert "both modes" in request_problems(PlacementRequest(name="vm1",
                                                             anti_affinity=(("db", "hard"), ("db", "soft"))))[0]


def test_argument_spec_matches_documentation():
    documented = yaml.safe_load(guest_placement.DOCUMENTATION)["options"]
    spec = guest_placement_argument_spec()
    assert set(spec) == set(documented) | {"uri"}
    for option, entry in spec.items():
        if option in documented:
            assert entry.get("choices") == documented[option].get("choices"), option
            assert entry.get("default") == documented[option].get("default"), option
            assert entry["type"] == documented[option]["type"], option


# ---------------------------------------------------------------------------
# The module


def test_module_imports_without_libvirt():
    code = (
        "import sys; sys.path.insert(0, 'build/collections'); sys.modules['libvirt'] = None\n"
        "from ansible_collections.virtops.migration.plugins.modules import guest_placement\n"
        "print(guest_placement.HAS_LIBVIRT)\n"
    )
    repo = Path(__file__).resolve().parents[4]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert out.strip() == "False"


def test_sets_constraints_on_a_running_guest_live_and_config(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    code, result = run_main({"name": "db1", "anti_affinity": [{"group": "db"}], "affinity": ["web"],
                             "pin_policy": "skip", "priority": 10, "require_labels": {"rack": "r1"}}, capsys, diff=True)
    assert code == 0 and result["changed"] is True
    assert result["written_to"] == ["live", "config"]
    assert result["metadata"] == {"anti_affinity": [{"group": "db", "mode": "hard"}], "affinity": ["web"],
                                  "pin_policy": "skip", "priority": 10, "require_labels": {"rack": "r1"},
                                  "origin": None}
    assert result["diff"]["before"] == ""
    assert '<anti-affinity group="db" mode="hard" />' in result["diff"]["after"]
    wanted = GuestMetadata(anti_affinity=(("db", "hard"),), affinity=("web",), pin_policy="skip", priority=10,
                           require_labels=(("rack", "r1"),))
    assert read_guest_metadata(dom) == wanted
    assert read_guest_metadata(dom, config=True) == wanted
    assert f'xmlns:{KEY}="{NAMESPACE}"' in dom.XMLDesc()


def test_second_run_changes_nothing(world, hv1, capsys):
    hv1.add_domain("db1")
    args = {"name": "db1", "anti_affinity": [{"group": "db", "mode": "soft"}], "priority": 1}
    run_main(args, capsys)
    calls = len(world.calls)
    code, result = run_main(args, capsys, diff=True)
    assert code == 0 and result["changed"] is False and result["written_to"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert world.calls[calls:] == []


def test_check_mode_reports_and_writes_nothing(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    code, result = run_main({"name": "db1", "pin_policy": "block"}, capsys, check_mode=True, diff=True)
    assert code == 0 and result["changed"] is True
    assert result["metadata"]["pin_policy"] == "block"
    assert '<pin policy="block" />' in result["diff"]["after"]
    assert world.mutations == []
    assert read_guest_metadata(dom) == GuestMetadata()


def test_no_diff_without_diff_mode(world, hv1, capsys):
    hv1.add_domain("db1")
    _code, result = run_main({"name": "db1", "priority": 2}, capsys)
    assert "diff" not in result


def test_stopped_guest_is_written_to_its_definition_only(world, hv1, capsys):
    dom = hv1.add_domain("db1", state=lv.VIR_DOMAIN_SHUTOFF)
    code, result = run_main({"name": "db1", "priority": 2}, capsys)
    assert code == 0 and result["written_to"] == ["config"]
    assert set_metadata_calls(world)[-1][2][-1] == lv.VIR_DOMAIN_AFFECT_CONFIG
    assert read_guest_metadata(dom).priority == 2


def test_transient_guest_is_written_live_only(world, hv1, capsys):
    hv1.add_domain("db1", persistent=False)
    code, result = run_main({"name": "db1", "priority": 2}, capsys)
    assert code == 0 and result["written_to"] == ["live"]
    assert set_metadata_calls(world)[-1][2][-1] == lv.VIR_DOMAIN_AFFECT_LIVE


def test_a_config_that_differs_from_the_live_element_is_brought_in_line(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<guest><priority value='2'/></guest>", KEY, NAMESPACE,
                    lv.VIR_DOMAIN_AFFECT_LIVE)
    code, result = run_main({"name": "db1", "priority": 2}, capsys)
    assert code == 0 and result["changed"] is True
    assert read_guest_metadata(dom, config=True).priority == 2


def test_by_uuid(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    code, result = run_main({"uuid": dom.UUIDString().upper(), "affinity": ["web"]}, capsys)
    assert code == 0 and result["domain"] == "db1" and result["uuid"] == dom.UUIDString()


def test_origin_is_kept_by_every_change_but_clear_origin(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    write_guest_metadata(dom, GuestMetadata(priority=1, origin=ORIGIN), persistent=True)
    run_main({"name": "db1", "priority": 5, "affinity": ["web"]}, capsys)
    assert read_guest_metadata(dom).origin == ORIGIN
    _code, result = run_main({"name": "db1", "state": "absent"}, capsys)
    assert result["changed"] is True and result["metadata"]["origin"]["host"] == "hv0"
    assert read_guest_metadata(dom) == GuestMetadata(origin=ORIGIN)
    _code, result = run_main({"name": "db1", "state": "absent", "clear_origin": True}, capsys, diff=True)
    assert result["changed"] is True and result["diff"]["after"] == ""
    with pytest.raises(lv.libvirtError):
        dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, 0)
    _code, result = run_main({"name": "db1", "state": "absent", "clear_origin": True}, capsys)
    assert result["changed"] is False


def test_constraint_options_with_state_absent_are_refused_before_connecting(world, hv1, capsys):
    hv1.add_domain("db1")
    code, result = run_main({"name": "db1", "state": "absent", "priority": 3, "affinity": ["a"]}, capsys)
    assert code == 1
    assert result["error"]["kind"] == "validation"
    assert "it takes none of affinity, priority" in result["msg"]
    assert world.calls == []


@pytest.mark.parametrize("args, needle", [
    ({"anti_affinity": [{"group": "db", "mode": "hard"}, {"group": "db", "mode": "soft"}]}, "both modes"),
    ({"affinity": [""]}, "affinity group '' is not a non-empty name"),
    ({"require_labels": {" rack": "r1"}}, "required label ' rack' has leading or trailing blanks"),
])
def test_bad_values_are_refused_naming_the_value(world, hv1, capsys, args, needle):
    hv1.add_domain("db1")
    code, result = run_main(dict({"name": "db1"}, **args), capsys)
    assert code == 1 and needle in result["msg"] and "domain 'db1'" in result["msg"]
    assert world.mutations == []


def test_bad_choice_is_refused_by_the_spec(world, hv1, capsys):
    code, result = run_main({"name": "db1", "pin_policy": "forever"}, capsys)
    assert code == 1 and "pin_policy" in result["msg"]


def test_missing_guest(world, capsys):
    code, result = run_main({"name": "ghost", "priority": 1}, capsys)
    assert code == 1 and result["error"]["kind"] == "not_found"
    assert "no domain with matching name 'ghost'" in result["msg"]


def test_an_unreadable_element_is_refused_and_can_be_removed_whole(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<guest><pin policy='forever'/></guest>", KEY, NAMESPACE,
                    lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG)
    code, result = run_main({"name": "db1", "priority": 1}, capsys)
    assert code == 1 and result["error"]["kind"] == "validation"
    assert "pin policy 'forever'" in result["msg"] and "clear_origin=true" in result["msg"]
    mutations = len(world.mutations)
    code, result = run_main({"name": "db1", "state": "absent", "clear_origin": True}, capsys, diff=True)
    assert code == 0 and result["changed"] is True
    assert "forever" in result["diff"]["before"]
    assert len(world.mutations) == mutations + 1
    assert read_guest_metadata(dom) == GuestMetadata()


def test_libvirt_refusing_the_write_fails_with_its_text(world, hv1, capsys):
    dom = hv1.add_domain("db1")
    dom.fail_on["setMetadata"] = lv.libvirtError("Requested operation is not valid: domain is being migrated",
                                                 lv.VIR_ERR_OPERATION_INVALID)
    code, result = run_main({"name": "db1", "priority": 1}, capsys)
    assert code == 1
    assert result["error"]["libvirt_error"] == "Requested operation is not valid: domain is being migrated"
    assert result["error"]["source_uri"] == "qemu:///system"
