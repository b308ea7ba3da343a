"""Plan files: written in check mode, read back, executed exactly, refused on drift with nothing moved."""

from __future__ import annotations

import json
import os
import stat

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate import (
    planfile,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    Placer,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.planfile import (
    CONSTRAINT_VIOLATED,
    CPU_INCOMPATIBLE,
    DESTINATION_EXCLUDED,
    DESTINATION_GONE,
    GUEST_ADDED,
    GUEST_GONE,
    GUEST_LEFT,
    MEMORY_CHANGED,
    MEMORY_SHORT,
    MODE_CHANGED,
    PlanDrift,
    parse_plan,
    read_plan_file,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
    EvacuationEnvironment,
    run_evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)

SRC = "qemu:///system"
HV2 = "qemu+tls://hv2.example.com/system"
HV3 = "qemu+tls://hv3.example.com/system"
MIB_KIB = 1024
GIB_KIB = 1048576
RUNNING, SHUTOFF = lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_SHUTOFF
ICELAKE = "<cpu mode='custom' match='exact'><model fallback='forbid'>Icelake-Server</model></cpu>"


@pytest.fixture
def hosts(world):
    """hv1 (source), hv2 and hv3, each destination with 6 GiB free."""
    world.add_host(HV3, "hv3")
    for uri in (HV2, HV3):
        world.hosts[uri].memory_stats = {"total": 8 * GIB_KIB, "free": 6 * GIB_KIB, "buffers": 0, "cached": 0}
    return world


def hv(world, name):
    return next(host for host in world.hosts.values() if host.hostname == name)


def add_guest(world, name, mib, state=RUNNING, cpu=None):
    uuid = str(lv.uuid_lib.uuid4())
    dom = hv(world, "hv1").add_domain(name, state=state, uuid=uuid, memory_kib=mib * MIB_KIB,
                                      xml=lv.domain_xml(name, uuid, mib * MIB_KIB, cpu=cpu))
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 512, total=GIB_KIB * 1024, iteration=1)])
    return dom


def domain(world, host, name):
    return next(dom for dom in hv(world, host).domains.values() if dom.name() == name)


def remove(world, host, name):
    return hv(world, host).domains.pop(domain(world, host, name).UUIDString())


def free_gib(world, name, gib):
    hv(world, name).memory_stats = {**hv(world, name).memory_stats, "free": int(gib * GIB_KIB)}


class Migrations:
    """The migrate code path on the fake world's clock, each call recorded (guest name, destination URI)."""

    def __init__(self, world):
        environment = MigrationEnvironment(clock=world.clock, wait=world.wait, fs_type_of=lambda path: None,
                                           resolves_locally=lambda host: False)
        self.calls: list[tuple[str, str, bool]] = []
        self.run = lambda request, check: run_migration(request, check, environment)

    def __call__(self, request, check_mode):
        self.calls.append((request.name, request.dest_uri, check_mode))
        return self.run(request, check_mode)

    def moved(self):
        return [(name, uri) for name, uri, check in self.calls if not check]


def evacuate(world, plan_file, check_mode=False, migrations=None, **params):
    values = {"uri": SRC, "destinations": [{"name": "hv2", "uri": HV2}, {"name": "hv3", "uri": HV3}],
              "max_parallel": 1, "memory_reserve_mib": 512, "plan_file": str(plan_file)}
    values.update(params)
    environment = EvacuationEnvironment(resolves_locally=lambda host: False,
                                        migrate_guest=migrations or Migrations(world))
    return run_evacuation(EvacuationOptions.from_params(values), check_mode, environment)


def where(world):
    """name -> the hosts it is defined on."""
    found: dict[str, list[str]] = {}
    for host in world.hosts.values():
        for dom in host.domains.values():
            found.setdefault(dom.name(), []).append(host.hostname)
    return found


@pytest.fixture
def planned(hosts, tmp_path):
    """Three guests on hv1 and their plan written in check mode; returns the plan file's path."""
    add_guest(hosts, "db1", 2048)
    add_guest(hosts, "app1", 1024)
    add_guest(hosts, "web1", 512)
    path = tmp_path / "plans" / "hv1.json"
    result = evacuate(hosts, path, check_mode=True)
    assert result["failed"] is False, result["msg"]
    hosts.calls.clear()
    return path


def assert_nothing_moved(world, migrations):
    assert migrations.moved() == []
    assert world.mutations == []
    assert all(hosts == ["hv1"] for hosts in where(world).values())


def refused(world, path, **params):
    migrations = Migrations(world)
    with pytest.raises(PlanDrift) as caught:
        evacuate(world, path, migrations=migrations, **params)
    assert_nothing_moved(world, migrations)
    return caught.value


def kinds(error):
    return {(drift["kind"], drift["subject"]) for drift in error.details["drift"]}


# ---------------------------------------------------------------------------
# Writing and reading


def test_check_mode_writes_the_plan_and_returns_it(planned, hosts):
    mode = stat.S_IMODE(os.stat(planned).st_mode)
    assert mode == 0o640
    document = json.loads(planned.read_text())
    assert document["schema_version"] == 1 and document["kind"] == "evacuation"
    assert document["source"] == {"name": "hv1", "uri": SRC, "host_uuid": hv(hosts, "hv1").host_uuid}
    assert document["run_id"] and document["created"].endswith("Z")
    assert document["options"]["destinations"] == [{"name": "hv2", "uri": HV2}, {"name": "hv3", "uri": HV3}]
    assert document["options"]["memory_reserve_mib"] == 512
    assert [guest["name"] for guest in document["guests"]] == ["db1", "app1", "web1"]
    db1 = document["guests"][0]
    assert db1["memory_kib"] == 2048 * MIB_KIB and db1["mode"] == "live" and db1["destination"] == "hv2"
    assert "most memory left after placement" in db1["reason"]
    hv2 = next(dest for dest in document["destinations"] if dest["name"] == "hv2")
    assert hv2["usable_mib"] == 6 * 1024 - 512 and hv2["left_after_mib"] == hv2["usable_mib"] - hv2["planned_mib"]
    assert document["cannot_move"] == [] and document["left"] == []
    assert all(hosts == ["hv1"] for hosts in where(hosts).values())


def test_written_plan_round_trips(planned):
    plan = read_plan_file(str(planned))
    document = json.loads(planned.read_text())
    assert plan.source_name == "hv1" and plan.source_uri == SRC and plan.run_id == document["run_id"]
    assert plan.destinations == ("hv2", "hv3")
    assert [(guest.name, guest.uuid, guest.memory_kib, guest.mode, guest.destination) for guest in plan.guests] == \
        [(entry["name"], entry["uuid"], entry["memory_kib"], entry["mode"], entry["destination"])
         for entry in document["guests"]]
    assert plan.document == document


def test_the_result_names_the_plan_file(hosts, tmp_path):
    add_guest(hosts, "web1", 512)
    result = evacuate(hosts, tmp_path / "plan.json", check_mode=True)
    assert result["plan_file"] == str(tmp_path / "plan.json")
    assert result["plan_document"]["guests"][0]["name"] == "web1"


def test_unplaceable_and_left_guests_are_in_the_plan_with_why(hosts, tmp_path):
    add_guest(hosts, "huge", 64 * 1024)
    add_guest(hosts, "off1", 512, state=SHUTOFF)
    path = tmp_path / "plan.json"
    evacuate(hosts, path, check_mode=True, stopped_guests="leave")
    document = json.loads(path.read_text())
    assert document["cannot_move"][0]["name"] == "huge"
    assert "fits nowhere" in document["cannot_move"][0]["reason"] and "MiB" in document["cannot_move"][0]["reason"]
    assert document["left"][0]["name"] == "off1" and "stopped_guests: leave" in document["left"][0]["reason"]


def test_plan_file_that_cannot_be_written_is_a_clear_error(hosts, tmp_path):
    add_guest(hosts, "web1", 512)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError, match="cannot write the plan file"):
        evacuate(hosts, tmp_path / "file" / "plan.json", check_mode=True)


@pytest.mark.parametrize("change, message", [
    (lambda doc: doc.update(schema_version=2), "schema_version 2 is not supported"),
    (lambda doc: doc.pop("schema_version"), "schema_version None is not supported"),
    (lambda doc: doc.update(kind="restore"), "kind 'restore' is not a plan this module runs"),
    (lambda doc: doc.pop("guests"), "malformed: guests is missing or not a list"),
    (lambda doc: doc["guests"][0].pop("memory_kib"), r"malformed: guests\[0\] has no valid memory_kib"),
    (lambda doc: doc["guests"][1].update(mode="teleport"), r"guests\[1\] has no valid mode"),
    (lambda doc: doc["guests"].append(dict(doc["guests"][0])), "is listed twice"),
    (lambda doc: doc["source"].pop("uri"), "source.uri is missing"),
])
def test_a_bad_plan_is_refused_before_anything_is_touched(planned, hosts, change, message):
    document = json.loads(planned.read_text())
    change(document)
    planned.write_text(json.dumps(document))
    migrations = Migrations(hosts)
    with pytest.raises(ValidationError, match=message) as caught:
        evacuate(hosts, planned, migrations=migrations)
    assert caught.value.operation == "read plan file" and str(planned) in str(caught.value)
    assert_nothing_moved(hosts, migrations)
    assert migrations.calls == []


def test_not_json_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValidationError, match="not JSON"):
        parse_plan("{", "plan.json")
    with pytest.raises(ValidationError, match="not a plan: the top level is not a JSON object"):
        parse_plan("[]", "plan.json")
    with pytest.raises(ValidationError, match="cannot read it"):
        read_plan_file(str(tmp_path / "absent.json"))


def test_a_plan_for_another_source_uri_is_refused(planned, hosts):
    document = json.loads(planned.read_text())
    document["source"]["uri"] = "qemu+tls://hv9.example.com/system"
    planned.write_text(json.dumps(document))
    with pytest.raises(ValidationError, match="the plan is for another source host: its source URI is"):
        evacuate(hosts, planned)


@pytest.mark.parametrize("key, value, message", [
    ("name", "hv9", "its source host is hv9, this run's is hv1"),
    ("host_uuid", "00000000-0000-0000-0000-000000000009", "its source host UUID is 00000000"),
])
def test_a_plan_for_another_source_host_is_refused_with_nothing_moved(planned, hosts, key, value, message):
    document = json.loads(planned.read_text())
    document["source"][key] = value
    planned.write_text(json.dumps(document))
    migrations = Migrations(hosts)
    with pytest.raises(ValidationError, match=message):
        evacuate(hosts, planned, migrations=migrations)
    assert_nothing_moved(hosts, migrations)


# ---------------------------------------------------------------------------
# Executing a plan


def test_the_plan_is_executed(planned, hosts):
    document = json.loads(planned.read_text())
    result = evacuate(hosts, planned)
    assert result["failed"] is False and result["changed"] is True
    assert result["plan_file"] == str(planned) and result["plan_document"] == document
    assert {name: hosts_[0] for name, hosts_ in where(hosts).items()} == \
        {guest["name"]: guest["destination"] for guest in document["guests"]}


def test_the_plan_is_executed_exactly_where_a_fresh_placement_would_differ(planned, hosts):
    """hv3 now has far more room (a fresh placement would send everything there): the plan's hosts and order win."""
    document = json.loads(planned.read_text())
    free_gib(hosts, "hv3", 40)
    hosts.hosts[HV3].memory_stats["total"] = 64 * GIB_KIB
    migrations = Migrations(hosts)
    fresh = evacuate(hosts, planned.with_name("fresh.json"), check_mode=True)
    assert {row["name"]: row["to"] for row in fresh["vms"]} == {"db1": "hv3", "app1": "hv3", "web1": "hv3"}
    result = evacuate(hosts, planned, migrations=migrations)
    assert result["failed"] is False
    uris = {"hv2": HV2, "hv3": HV3}
    assert migrations.moved() == [(guest["name"], uris[guest["destination"]]) for guest in document["guests"]]
    assert {guest["destination"] for guest in document["guests"]} == {"hv2", "hv3"}
    assert all("from the plan" in row["reason"] for row in result["plan"])


def test_a_plan_run_again_changes_nothing(planned, hosts):
    evacuate(hosts, planned)
    hosts.calls.clear()
    migrations = Migrations(hosts)
    again = evacuate(hosts, planned, migrations=migrations)
    assert again["failed"] is False and again["changed"] is False
    assert {row["name"]: row["result"] for row in again["vms"]} == dict.fromkeys(("db1", "app1", "web1"), "unchanged")
    assert "already on hv" in again["vms"][0]["message"]
    assert migrations.calls == [] and hosts.mutations == []


def test_a_plan_interrupted_half_way_is_finished(planned, hosts):
    """A guest the plan already moved is unchanged, the others move as planned."""
    document = json.loads(planned.read_text())
    first = document["guests"][0]
    remove(hosts, "hv1", first["name"])
    target = hv(hosts, first["destination"])
    target.add_domain(first["name"], uuid=first["uuid"], memory_kib=first["memory_kib"])
    result = evacuate(hosts, planned)
    assert result["failed"] is False
    results = {row["name"]: row["result"] for row in result["vms"]}
    assert results[first["name"]] == "unchanged"
    assert sorted(results.values()) == ["migrated", "migrated", "unchanged"]


def test_no_guest_is_placed_again_when_a_planned_destination_is_lost_during_the_run(planned, hosts):
    document = json.loads(planned.read_text())
    lost = document["guests"][0]["destination"]
    migrations = Migrations(hosts)

    def lose_then_migrate(request, check_mode):
        hv(hosts, lost).reachable = False
        return migrations(request, check_mode)

    result = evacuate(hosts, planned, migrations=lose_then_migrate)
    rows = {row["name"]: row for row in result["vms"]}
    for guest in document["guests"]:
        assert rows[guest["name"]]["to"] == guest["destination"]
        assert rows[guest["name"]]["re_placed_from"] == []
    assert result["failed"] is True


# ---------------------------------------------------------------------------
# Drift: each kind refused, nothing moved


def test_a_guest_added_is_drift(planned, hosts):
    add_guest(hosts, "new1", 256)
    error = refused(hosts, planned)
    assert kinds(error) == {(GUEST_ADDED, "new1")}
    assert "new1: 256 MiB, live: on the source and not in the plan" in str(error)
    assert "plan again" in str(error) and error.kind == "plan_drift"


def test_a_guest_gone_is_drift(planned, hosts):
    remove(hosts, "hv1", "app1")
    error = refused(hosts, planned)
    assert kinds(error) == {(GUEST_GONE, "app1")}
    assert "no longer on the source" in str(error)


def test_a_guest_stopped_and_now_left_is_drift(planned, hosts):
    domain(hosts, "hv1", "web1")._state = SHUTOFF
    error = refused(hosts, planned, stopped_guests="leave")
    assert kinds(error) == {(GUEST_LEFT, "web1")}


def test_a_guest_whose_memory_changed_is_drift(planned, hosts):
    dom = domain(hosts, "hv1", "app1")
    dom.memory_kib = 1536 * MIB_KIB
    dom.xml = dom.inactive_xml = lv.domain_xml("app1", dom.UUIDString(), 1536 * MIB_KIB)
    error = refused(hosts, planned)
    assert kinds(error) == {(MEMORY_CHANGED, "app1")}
    assert "memory 1024 MiB in the plan, 1536 MiB now" in str(error)


def test_a_guest_whose_mode_changed_is_drift(planned, hosts):
    domain(hosts, "hv1", "web1")._state = SHUTOFF
    error = refused(hosts, planned)
    assert kinds(error) == {(MODE_CHANGED, "web1")}
    assert "mode live in the plan, offline now" in str(error)


def test_a_destination_no_longer_given_is_drift(planned, hosts):
    document = json.loads(planned.read_text())
    dropped = document["guests"][0]["destination"]
    kept = [{"name": name, "uri": uri} for name, uri in (("hv2", HV2), ("hv3", HV3)) if name != dropped]
    error = refused(hosts, planned, destinations=kept)
    assert (DESTINATION_GONE, dropped) in kinds(error)
    assert "no longer a destination of this run" in str(error)


def test_a_destination_newly_in_maintenance_is_drift(planned, hosts):
    error = refused(hosts, planned, maintenance_hosts=["hv2"])
    assert kinds(error) and all(kind == DESTINATION_EXCLUDED and subject == "hv2" for kind, subject in kinds(error))
    assert "maintenance (maintenance_hosts)" in str(error)


def test_a_destination_now_unreachable_is_drift(planned, hosts):
    hv(hosts, "hv3").reachable = False
    error = refused(hosts, planned)
    assert kinds(error) and all(kind == DESTINATION_EXCLUDED and subject == "hv3" for kind, subject in kinds(error))
    assert "unreachable" in str(error)


def test_a_destination_with_too_little_memory_now_is_drift(planned, hosts):
    document = json.loads(planned.read_text())
    db1 = document["guests"][0]
    free_gib(hosts, db1["destination"], 2)  # 2048 - 512 reserve: db1 (2048 MiB) no longer fits
    error = refused(hosts, planned)
    assert (MEMORY_SHORT, db1["destination"]) in kinds(error)
    assert "cannot take db1 now: 1536 MiB left" in str(error)


def test_a_destination_that_can_no_longer_run_the_cpu_is_drift(hosts, tmp_path):
    add_guest(hosts, "ice1", 512, cpu=ICELAKE)
    path = tmp_path / "plan.json"
    evacuate(hosts, path, check_mode=True)
    destination = json.loads(path.read_text())["guests"][0]["destination"]
    hv(hosts, destination).incompatible_cpu_models = {"Icelake-Server"}
    hosts.calls.clear()
    error = refused(hosts, path)
    assert kinds(error) == {(CPU_INCOMPATIBLE, destination)}


def test_a_constraint_now_violated_is_drift(planned, hosts, monkeypatch):
    """Placer.problem is the single answer: what it refuses that is neither exclusion, CPU nor memory is a constraint."""
    answer = Placer.problem

    def problem(self, guest, load):
        if guest.name == "app1":
            return "anti-affinity group db (hard): db1 is planned there"
        return answer(self, guest, load)

    monkeypatch.setattr(Placer, "problem", problem)
    error = refused(hosts, planned)
    assert {kind for kind, _subject in kinds(error)} == {CONSTRAINT_VIOLATED}
    assert "anti-affinity group db (hard)" in str(error)


def test_every_drift_is_named_at_once(planned, hosts):
    add_guest(hosts, "new1", 256)
    remove(hosts, "hv1", "web1")
    dom = domain(hosts, "hv1", "app1")
    dom._state = SHUTOFF
    error = refused(hosts, planned)
    assert kinds(error) == {(GUEST_ADDED, "new1"), (GUEST_GONE, "web1"), (MODE_CHANGED, "app1")}
    assert "3 difference(s)" in str(error) and "(1)" in str(error) and "(3)" in str(error)


def test_replay_books_each_planned_guest_so_the_memory_check_counts_the_ones_before(planned, hosts):
    """Two guests planned on one destination: after it shrinks, the second no longer fits beside the first."""
    document = json.loads(planned.read_text())
    by_destination: dict[str, list[dict]] = {}
    for guest in document["guests"]:
        by_destination.setdefault(guest["destination"], []).append(guest)
    shared, guests = next((name, items) for name, items in by_destination.items() if len(items) >= 2)
    needed = sum(guest["memory_kib"] for guest in guests) // MIB_KIB
    free_gib(hosts, shared, (needed + 512 - 1) / 1024)  # room for all but one MiB
    error = refused(hosts, planned)
    assert kinds(error) == {(MEMORY_SHORT, shared)}
    assert guests[-1]["name"] in str(error)


def test_drift_is_pure_over_the_plan_and_a_discovery(planned):
    """replay() takes values only: a plan and a discovery made here, no libvirt."""
    from ansible_collections.virtops.migration.plugins.module_utils._evacuate.discovery import (
        Discovery,
    )
    from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
        DestinationCapacity,
        GuestToMove,
    )

    plan = read_plan_file(str(planned))
    guests = [GuestToMove(g.name, g.uuid, "running", True, g.memory_kib) for g in plan.guests]
    destinations = [DestinationCapacity("hv2", HV2, 6 * GIB_KIB, 512 * MIB_KIB),
                    DestinationCapacity("hv3", HV3, 6 * GIB_KIB, 512 * MIB_KIB)]
    discovery = Discovery("hv1", guests, [], [], destinations, {}, {})
    replayed = planfile.replay(plan, discovery)
    assert replayed.drifts == ()
    assert [(item.guest.name, item.destination) for item in replayed.placement.assignments] == \
        [(guest.name, guest.destination) for guest in plan.guests]


@pytest.mark.parametrize("policy", ["skip", "shutdown"])
def test_a_pinned_guest_stays_when_the_plan_is_executed(hosts, tmp_path, policy):
    add_guest(hosts, "db1", 2048)
    add_guest(hosts, "pin1", 512)
    constraints = {"pinned": [{"guest": "pin1", "policy": policy}]}
    path = tmp_path / "hv1.json"
    plan = evacuate(hosts, path, check_mode=True, constraints=constraints)
    assert plan["failed"] is False, plan["msg"]
    result = evacuate(hosts, path, constraints=constraints)
    assert result["failed"] is False, result["msg"]
    rows = {row["name"]: row for row in result["vms"]}
    assert rows["pin1"]["result"] == "left" and rows["db1"]["result"] == "migrated", rows
    stays = next(entry for entry in result["plan"] if entry["name"] == "pin1")
    assert stays["action"] == "stay" and stays["why"] == {"pin_policy": policy}, stays
    assert where(hosts)["pin1"] == ["hv1"]
