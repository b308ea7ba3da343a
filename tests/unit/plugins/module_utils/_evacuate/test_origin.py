"""Each evacuated guest's origin, recorded in its own metadata before it moves, over the fake libvirt."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.origin import (
    migrate_recording_origin,
    origin_to_record,
    record_origin,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
    EvacuationEnvironment,
    run_evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    KEY,
    NAMESPACE,
    GuestMetadata,
    Origin,
    read_guest_metadata,
    write_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)

SRC = "qemu:///system"
HV2 = "qemu+tls://hv2.example.com/system"
HV1_UUID = "0b5c3c6e-8d55-4a43-9d8e-3c1f1f0a7e21"
EARLIER = Origin(host="hv0", host_uuid="7d0c2a57-5a39-4d4b-9d55-1b0f7c0c3f10", run_id="20261130T090000Z-0a0b0c0d",
                 time="2026-11-30T09:00:00.000Z")


@pytest.fixture
def hosts(world):
    world.hosts[SRC].host_uuid = HV1_UUID
    world.hosts[HV2].memory_stats = {"total": 8388608, "free": 6 * 1048576, "buffers": 0, "cached": 0}
    return world


def add_guest(world, name, state=lv.VIR_DOMAIN_RUNNING, **kwargs):
    dom = world.hosts[SRC].add_domain(name, state=state, memory_kib=512 * 1024, **kwargs)
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=1000)])
    return dom


def evacuate(world, check_mode=False, **params):
    values = {"uri": SRC, "destinations": [{"name": "hv2", "uri": HV2}], "memory_reserve_mib": 512}
    values.update(params)
    migration = MigrationEnvironment(clock=world.clock, wait=world.wait, fs_type_of=lambda path: None,
                                     resolves_locally=lambda host: False)
    environment = EvacuationEnvironment(resolves_locally=lambda host: False,
                                        migrate_guest=lambda request, check: run_migration(request, check, migration))
    return run_evacuation(EvacuationOptions.from_params(values), check_mode, environment)


def on_hv2(world, dom):
    return world.hosts[HV2].domains[dom.UUIDString()]


def metadata_writes(world):
    return [args for _host, method, args in world.calls if method == "setMetadata"]


# ---------------------------------------------------------------------------
# The decision


def test_no_origin_yet_records_this_host():
    leaving = Origin("hv1", HV1_UUID, None, "2026-12-01T14:00:00.000Z")
    assert origin_to_record(None, leaving) == leaving


def test_an_earlier_origin_is_kept():
    assert origin_to_record(EARLIER, Origin("hv1", HV1_UUID)) is None
    assert origin_to_record(Origin("hv1", HV1_UUID, "older-run"), Origin("hv1", HV1_UUID, "this-run")) is None


# ---------------------------------------------------------------------------
# The evacuation


def test_a_running_guest_carries_its_origin_live_and_in_its_definition(hosts):
    dom = add_guest(hosts, "vm1")
    result = evacuate(hosts)
    assert {row["name"]: row["result"] for row in result["vms"]} == {"vm1": "migrated"}
    moved = on_hv2(hosts, dom)
    for config in (False, True):
        origin = read_guest_metadata(moved, config=config).origin
        assert (origin.host, origin.host_uuid, origin.run_id) == ("hv1", HV1_UUID, None)
        assert origin.time.endswith("Z")
    assert metadata_writes(hosts)[0][-1] == lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG


def test_the_origin_is_written_before_the_migration_starts(hosts):
    add_guest(hosts, "vm1")
    evacuate(hosts)
    methods = [method for _host, method, _args in hosts.mutations]
    assert methods.index("setMetadata") < methods.index("migrateToURI3")


def test_a_stopped_guest_carries_its_origin_in_its_definition(hosts):
    dom = add_guest(hosts, "vm1", state=lv.VIR_DOMAIN_SHUTOFF)
    result = evacuate(hosts)
    assert {row["name"]: row["result"] for row in result["vms"]} == {"vm1": "migrated"}
    assert metadata_writes(hosts)[0][-1] == lv.VIR_DOMAIN_AFFECT_CONFIG
    assert read_guest_metadata(on_hv2(hosts, dom)).origin.host == "hv1"


def test_constraints_the_guest_holds_are_kept_beside_its_origin(hosts):
    dom = add_guest(hosts, "vm1")
    write_guest_metadata(dom, GuestMetadata(priority=7, require_labels=()), persistent=True)
    evacuate(hosts)
    meta = read_guest_metadata(on_hv2(hosts, dom))
    assert meta.priority == 7 and meta.origin.host == "hv1"


def test_check_mode_records_nothing(hosts):
    dom = add_guest(hosts, "vm1")
    evacuate(hosts, check_mode=True)
    assert hosts.mutations == []
    assert read_guest_metadata(dom) == GuestMetadata()


def test_an_earlier_origin_travels_on_unchanged(hosts):
    dom = add_guest(hosts, "vm1")
    write_guest_metadata(dom, GuestMetadata(origin=EARLIER), persistent=True)
    writes = len(metadata_writes(hosts))
    evacuate(hosts)
    assert len(metadata_writes(hosts)) == writes
    moved = on_hv2(hosts, dom)
    assert read_guest_metadata(moved).origin == EARLIER
    assert read_guest_metadata(moved, config=True).origin == EARLIER


def test_a_record_that_cannot_be_written_is_a_warning_and_the_guest_still_moves(hosts):
    dom = add_guest(hosts, "vm1")
    dom.fail_on["setMetadata"] = lv.libvirtError("Requested operation is not valid: metadata is locked",
                                                 lv.VIR_ERR_OPERATION_INVALID)
    result = evacuate(hosts)
    assert {row["name"]: row["result"] for row in result["vms"]} == {"vm1": "migrated"}
    warning = next(text for text in result["warnings"] if "origin was not recorded" in text)
    assert warning.startswith("vm1: ") and "metadata is locked" in warning
    assert read_guest_metadata(on_hv2(hosts, dom)).origin is None


# ---------------------------------------------------------------------------
# The pieces


def test_record_origin_names_an_unreadable_element_and_changes_nothing(hosts):
    dom = add_guest(hosts, "vm1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<guest><pin policy='sometimes'/></guest>", KEY, NAMESPACE,
                    lv.VIR_DOMAIN_AFFECT_LIVE)
    writes = len(metadata_writes(hosts))
    warning = record_origin(SRC, dom.UUIDString())
    assert "pin policy 'sometimes'" in warning and "origin was not recorded" in warning
    assert len(metadata_writes(hosts)) == writes


def test_record_origin_of_a_guest_no_longer_on_the_source_does_nothing(hosts):
    assert record_origin(SRC, "5f3c0b8e-0000-4000-8000-0000000000ff") is None
    assert hosts.mutations == []


def test_record_origin_keeps_the_run_id_and_the_time(hosts):
    dom = add_guest(hosts, "vm1")
    assert record_origin(SRC, dom.UUIDString(), run_id="20261201T140000Z-1a2b3c4d", clock=lambda: 1764597600.25) is None
    assert read_guest_metadata(dom).origin == Origin("hv1", HV1_UUID, "20261201T140000Z-1a2b3c4d",
                                                     "2025-12-01T14:00:00.250Z")


def test_record_origin_when_the_source_cannot_be_opened(hosts):
    hosts.hosts[SRC].reachable = False
    assert "origin was not recorded" in record_origin(SRC, "5f3c0b8e-0000-4000-8000-0000000000ff")


class Request:
    uri = SRC
    uuid = "5f3c0b8e-0000-4000-8000-0000000000aa"


def test_migrate_recording_origin_records_first_then_migrates():
    calls = []

    def record(uri, uuid, run_id):
        calls.append(("record", uri, uuid, run_id))

    def migrate(request, check_mode):
        calls.append(("migrate", check_mode))
        return {"changed": True, "warnings": ["w1"]}

    result = migrate_recording_origin(migrate, Request(), False, run_id="r1", record=record)
    assert calls == [("record", SRC, Request.uuid, "r1"), ("migrate", False)]
    assert result == {"changed": True, "warnings": ["w1"]}


def test_migrate_recording_origin_adds_the_warning_and_skips_check_mode():
    result = migrate_recording_origin(lambda request, check: {"changed": True}, Request(), False,
                                      record=lambda uri, uuid, run_id: "not recorded")
    assert result["warnings"] == ["not recorded"]

    def never(*args):
        raise AssertionError("check mode records nothing")

    assert migrate_recording_origin(lambda request, check: {"changed": False}, Request(), True,
                                    record=never) == {"changed": False}
