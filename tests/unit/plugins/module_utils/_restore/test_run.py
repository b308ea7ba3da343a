"""The restore end to end against the fake libvirt: guests home, already home, origin lost or full, resumed, check mode."""

from __future__ import annotations

import json
import os

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    CancelRequested,
    MigrationError,
    MigrationInProgress,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.run_lock import (
    evacuation_lock,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    GuestMetadata,
    Origin,
    read_guest_metadata,
    write_guest_metadata,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.discovery import (
    HOME,
    LOST,
    origin_verdict,
    same_host_name,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.options import (
    RestoreOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._restore.run import (
    RestoreEnvironment,
    run_restore,
)

SRC = "qemu:///system"
HV1 = "qemu+tls://hv1.example.com/system"
HV2 = "qemu+tls://hv2.example.com/system"
HV3 = "qemu+tls://hv3.example.com/system"
MIB_KIB = 1024
RUNNING, SHUTOFF = lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_SHUTOFF


@pytest.fixture
def hosts(world):
    """hv1 (the restored host, also reachable as HV1), hv2 and hv3; hv1 has 6 GiB available."""
    world.add_host(HV3, "hv3")
    world.hosts[HV1] = world.hosts[SRC]
    world.hosts[SRC].memory_stats = {"total": 8388608, "free": 6 * 1048576, "buffers": 0, "cached": 0}
    return world


def hv(world, name):
    return next(host for host in world.hosts.values() if host.hostname == name)


def add_guest(world, host_name, name, mib, origin="hv1", origin_uuid=None, state=RUNNING):
    """A guest on ``host_name`` whose origin (None: none) is recorded in its metadata, as the evacuation does."""
    host = hv(world, host_name)
    uuid = str(lv.uuid_lib.uuid4())
    dom = host.add_domain(name, state=state, uuid=uuid, memory_kib=mib * MIB_KIB,
                          xml=lv.domain_xml(name, uuid, mib * MIB_KIB))
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=100, total=1000)])
    if origin is not None:
        recorded = origin_uuid or hv(world, "hv1").host_uuid
        write_guest_metadata(dom, GuestMetadata(origin=Origin(origin, recorded, "run-1")), persistent=True)
    world.calls.clear()
    return dom


def where(world, name):
    return sorted(host.hostname for host in set(world.hosts.values())
                  for dom in host.domains.values() if dom.name() == name)


def origin_of(world, name):
    host = next(host for host in set(world.hosts.values()) for dom in host.domains.values() if dom.name() == name)
    dom = next(dom for dom in host.domains.values() if dom.name() == name)
    return read_guest_metadata(dom).origin


def restore(world, check_mode=False, migrate_guest=None, **params):
    values = {"uri": SRC, "dest_uri": HV1, "search": [{"name": "hv2", "uri": HV2}, {"name": "hv3", "uri": HV3}],
              "memory_reserve_mib": 512}
    values.update(params)
    environment = MigrationEnvironment(clock=world.clock, wait=world.wait, fs_type_of=lambda path: None,
                                       resolves_locally=lambda host: False)
    migrate = migrate_guest or (lambda request, check: run_migration(request, check, environment))
    env = RestoreEnvironment(resolves_locally=lambda host: False, clock=world.clock, migrate_guest=migrate)
    return run_restore(RestoreOptions.from_params(values), check_mode, env)


def rows(result):
    return {row["name"]: row for row in result["vms"]}


# ---------------------------------------------------------------------------
# Origin matching, on values


@pytest.mark.parametrize(("recorded", "name", "same"), [
    ("hv1", "hv1", True), ("HV1", "hv1", True), ("hv1", "hv1.example.com", True),
    ("hv1.example.com", "hv1", True), ("hv1.a.example", "hv1.b.example", False), ("hv2", "hv1", False),
])
def test_host_names_match_by_short_name_but_not_across_full_names(recorded, name, same):
    assert same_host_name(recorded, name) is same


def test_origin_verdict_table():
    assert origin_verdict(None, "hv1", "u1") is None
    assert origin_verdict(Origin("hv2", "u2"), "hv1", "u1") is None
    assert origin_verdict(Origin("hv1"), "hv1", "u1") == HOME
    assert origin_verdict(Origin("hv1", "U1"), "hv1", "u1") == HOME
    assert origin_verdict(Origin("hv1", "u0"), "hv1", "u1") == LOST


# ---------------------------------------------------------------------------
# The restore


def test_guests_come_home_and_their_origin_is_cleared(hosts, tmp_path):
    add_guest(hosts, "hv2", "web1", 512)
    add_guest(hosts, "hv3", "db1", 2048)
    add_guest(hosts, "hv2", "other", 512, origin="hv3")
    add_guest(hosts, "hv2", "plain", 512, origin=None)
    audit = tmp_path / "audit.jsonl"
    result = restore(hosts, audit_log=str(audit), report_path=str(tmp_path / "report.txt"), report_format="text")
    assert result["failed"] is False and result["changed"] is True
    assert {name: row["result"] for name, row in rows(result).items()} == {"web1": "migrated", "db1": "migrated"}
    assert (rows(result)["db1"]["from"], rows(result)["db1"]["to"]) == ("hv3", "hv1")
    for name in ("web1", "db1"):
        assert where(hosts, name) == ["hv1"]
        assert origin_of(hosts, name) is None
    assert where(hosts, "other") == ["hv2"] and where(hosts, "plain") == ["hv2"]
    assert result["placement"] == {"before": {"db1": "hv3", "web1": "hv2"}, "after": {"db1": "hv1", "web1": "hv1"}}
    assert [item["name"] for item in result["plan"]] == ["db1", "web1"]
    assert result["destinations"][0]["name"] == "hv1" and result["destinations"][0]["planned"] == ["db1", "web1"]
    assert result["host"]["name"] == "hv1" and result["host"]["dest_uri"] == HV1
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["action"], r["guest_name"], r["result"]) for r in records[:2]] == [
        ("restore", "db1", "migrated"), ("restore", "web1", "migrated")]
    assert (records[0]["source"], records[0]["destination"]) == ("hv3", "hv1")  # host names, as the evacuation writes them
    assert "live" in records[0]["flags"] and records[0]["started_at"] <= records[0]["finished_at"]
    assert records[-1]["guest_name"] is None and records[-1]["result"] == "succeeded"
    assert {r["run_id"] for r in records} == {result["run_id"]}
    text = (tmp_path / "report.txt").read_text()
    assert text.startswith("Restore of hv1 (qemu:///system)")

    again = restore(hosts)
    assert again["changed"] is False and again["vms"] == []
    assert again["msg"] == "nothing to restore: no guest of hv1 was found on the search hosts"


def test_a_guest_already_home_only_has_its_record_cleared(hosts):
    add_guest(hosts, "hv1", "web1", 512)
    result = restore(hosts)
    row = rows(result)["web1"]
    assert (row["result"], row["from"], row["to"], row["changed"]) == ("unchanged", "hv1", "hv1", True)
    assert origin_of(hosts, "web1") is None
    assert [method for _host, method in hosts.methods()] == ["setMetadata"]
    assert restore(hosts)["changed"] is False


def test_a_guest_whose_origin_host_is_gone_stays_and_says_why(hosts):
    add_guest(hosts, "hv2", "web1", 512, origin_uuid="00000000-0000-0000-0000-0000000000aa")
    result = restore(hosts)
    row = rows(result)["web1"]
    assert row["result"] == "left" and row["to"] is None
    assert "00000000-0000-0000-0000-0000000000aa" in row["message"] and hv(hosts, "hv1").host_uuid in row["message"]
    assert where(hosts, "web1") == ["hv2"] and origin_of(hosts, "web1") is not None
    assert result["failed"] is False and hosts.mutations == []


def test_a_guest_that_does_not_fit_stays_with_the_numbers(hosts):
    add_guest(hosts, "hv2", "big", 8192)
    add_guest(hosts, "hv3", "small", 512)
    result = restore(hosts)
    big = rows(result)["big"]
    assert big["result"] == "unplaceable" and big["from"] == "hv2"
    assert "5632 MiB left (available 6144 MiB - reserve 512 MiB" in big["message"] and "needs 8192 MiB" in big["message"]
    assert rows(result)["small"]["result"] == "migrated"
    assert where(hosts, "big") == ["hv2"] and origin_of(hosts, "big") is not None
    assert result["failed"] is True and "big" in result["msg"]


def test_an_interrupted_restore_resumes(hosts):
    add_guest(hosts, "hv2", "web1", 512)
    add_guest(hosts, "hv3", "db1", 1024)
    environment = MigrationEnvironment(clock=hosts.clock, wait=hosts.wait, fs_type_of=lambda path: None,
                                       resolves_locally=lambda host: False)

    def interrupted(request, check):
        if request.name == "db1":
            raise MigrationError("migrate", "the run was interrupted", domain="db1")
        return run_migration(request, check, environment)

    first = restore(hosts, migrate_guest=interrupted)
    assert rows(first)["db1"]["result"] == "failed" and rows(first)["web1"]["result"] == "migrated"
    assert where(hosts, "db1") == ["hv3"] and origin_of(hosts, "db1") is not None
    second = restore(hosts)
    assert list(rows(second)) == ["db1"] and rows(second)["db1"]["result"] == "migrated"
    assert where(hosts, "db1") == ["hv1"] and origin_of(hosts, "db1") is None


def test_a_move_caught_half_way_is_finished_at_home(hosts):
    """The guest runs home but the search host still holds its definition (interrupted before the undefine)."""
    dom = add_guest(hosts, "hv2", "web1", 512)
    home = hv(hosts, "hv1").add_domain("web1", uuid=dom.UUIDString(), memory_kib=512 * MIB_KIB, xml=dom.xml)
    home.inactive_xml = dom.xml
    dom._state, dom._reason = SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_MIGRATED
    result = restore(hosts)
    row = rows(result)["web1"]
    assert row["result"] == "finished" and "already present on hv1" in row["reason"]
    assert where(hosts, "web1") == ["hv1"] and origin_of(hosts, "web1") is None


def test_check_mode_reports_what_would_move_and_changes_nothing(hosts):
    add_guest(hosts, "hv2", "web1", 512)
    add_guest(hosts, "hv1", "home1", 512)
    result = restore(hosts, check_mode=True)
    assert rows(result)["web1"]["result"] == "planned" and rows(result)["home1"]["result"] == "unchanged"
    assert result["changed"] is True and result["check_mode"] is True
    assert result["placement"]["after"] == {"web1": "hv1", "home1": "hv1"}
    assert hosts.mutations == []
    assert where(hosts, "web1") == ["hv2"] and origin_of(hosts, "home1") is not None


def test_a_host_still_in_maintenance_is_refused_before_anything_moves(hosts):
    add_guest(hosts, "hv2", "web1", 512)
    with pytest.raises(ValidationError, match="hv1 is still in maintenance"):
        restore(hosts, maintenance_hosts=["hv1.example.com"])
    assert hosts.mutations == []


def test_a_restore_waits_for_an_evacuation_of_the_same_host(hosts):
    add_guest(hosts, "hv2", "web1", 512)
    with evacuation_lock(SRC, 0), pytest.raises(MigrationInProgress):
        restore(hosts, lock_timeout=0)
    assert hosts.mutations == []


def test_bad_options_are_refused_together():
    options = RestoreOptions.from_params({"uri": SRC, "search": [], "max_parallel": 0})
    with pytest.raises(ValidationError) as caught:
        run_restore(options, environment=RestoreEnvironment(resolves_locally=lambda host: False))
    message = str(caught.value)
    assert "search is empty" in message and "dest_uri is not given" in message and "max_parallel" in message


def test_a_hard_anti_affinity_with_a_guest_at_home_is_refused_before_anything_moves(hosts):
    dom = add_guest(hosts, "hv2", "db2", 512)
    write_guest_metadata(dom, GuestMetadata(anti_affinity=(("db", "hard"),), origin=read_guest_metadata(dom).origin),
                         persistent=True)
    resident = hv(hosts, "hv1").add_domain("db1", memory_kib=512 * MIB_KIB)
    write_guest_metadata(resident, GuestMetadata(anti_affinity=(("db", "hard"),)), persistent=True)
    hosts.calls.clear()
    with pytest.raises(ValidationError, match="db"):
        restore(hosts)
    assert hosts.mutations == [] and where(hosts, "db2") == ["hv2"]


def labelled_guest(world, name):
    """A guest from hv1 that requires the label rack=r1 of its destination."""
    dom = add_guest(world, "hv2", name, 512)
    meta = read_guest_metadata(dom)
    write_guest_metadata(dom, GuestMetadata(require_labels=(("rack", "r1"),), origin=meta.origin), persistent=True)
    world.calls.clear()
    return dom


def test_a_guest_requiring_a_label_comes_home_when_the_restored_host_carries_it(hosts):
    labelled_guest(hosts, "db1")
    result = restore(hosts, labels={"rack": "r1"})
    assert rows(result)["db1"]["result"] == "migrated" and where(hosts, "db1") == ["hv1"]


def test_a_guest_requiring_a_label_the_restored_host_lacks_stays(hosts):
    labelled_guest(hosts, "db1")
    with pytest.raises(MigrationError) as refused:
        restore(hosts, labels={"rack": "r2"})
    assert "db1" in str(refused.value) and "rack" in str(refused.value)
    assert where(hosts, "db1") == ["hv2"] and hosts.mutations == []


# ---------------------------------------------------------------------------
# The operator's cancel request


def write_cancel(path):
    path.write_text("cancel requested from ctl1\n")
    os.utime(path, (1796219941.0, 1796219941.0))


def test_a_standing_cancel_request_refuses_the_restore_before_anything_changes(hosts, tmp_path):
    add_guest(hosts, "hv2", "web1", 512)
    cancel = tmp_path / "cancel"
    write_cancel(cancel)
    for check_mode in (True, False):
        with pytest.raises(CancelRequested) as caught:
            restore(hosts, check_mode=check_mode, cancel_path=str(cancel))
        assert str(caught.value).startswith(f"restore failed (source {SRC}): a cancel request stands: {cancel}, "
                                            "written 2026-12-02T13:59:01.000Z")
        assert caught.value.to_result()["error"]["kind"] == "cancelled"
    assert hosts.calls == [] and where(hosts, "web1") == ["hv2"] and origin_of(hosts, "web1") is not None


def test_a_cancel_during_the_restore_starts_no_more_and_keeps_the_origins(hosts, tmp_path):
    add_guest(hosts, "hv2", "web1", 512)
    add_guest(hosts, "hv3", "db1", 2048)
    cancel = tmp_path / "cancel"
    environment = MigrationEnvironment(clock=hosts.clock, wait=hosts.wait, fs_type_of=lambda path: None,
                                       resolves_locally=lambda host: False)

    def migrate(request, check):
        result = run_migration(request, check, environment)
        write_cancel(cancel)
        return result

    result = restore(hosts, migrate_guest=migrate, max_parallel=1, cancel_path=str(cancel))
    assert result["cancelled"] is True and result["failed"] is True
    assert {name: row["result"] for name, row in rows(result).items()} == {"db1": "migrated", "web1": "cancelled"}
    assert rows(result)["web1"]["message"] == f"not started: cancelled by the operator ({cancel})"
    assert result["msg"].startswith(f"cancelled by the operator ({cancel}, written 2026-12-02T13:59:01.000Z)")
    assert result["msg"].endswith(": 1 moved, 0 aborted, 1 not started")
    assert where(hosts, "web1") == ["hv2"] and origin_of(hosts, "web1") is not None
    assert where(hosts, "db1") == ["hv1"] and origin_of(hosts, "db1") is None
