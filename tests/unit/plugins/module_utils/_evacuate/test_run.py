"""The evacuation end to end against the fake libvirt: placement, concurrency, failures, re-runs, report."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass, replace

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common import (
    audit,
)
from ansible_collections.virtops.migration.plugins.module_utils._common import (
    errors as _errors,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate import (
    run as _evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.argspec import (
    evacuate_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    EvacuationOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.report import (
    cancelled_message,
    guest_row,
    render_table,
    render_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.run import (
    EvacuationEnvironment,
    run_evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.argspec import (
    migrate_argument_spec,
    migration_tuning_argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    CANCEL_DURING_POSTCOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
    run_migration,
)
from ansible_collections.virtops.migration.plugins.modules import evacuate
from module_runner import run_module_main

SRC = "qemu:///system"
HV2 = "qemu+tls://hv2.example.com/system"
HV3 = "qemu+tls://hv3.example.com/system"
MIB_KIB = 1024
GIB = 1073741824
RUNNING, PAUSED, SHUTOFF = lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_SHUTOFF


@pytest.fixture
def hosts(world):
    """hv1 (source), hv2 and hv3, each destination with 6 GiB available."""
    world.add_host(HV3, "hv3")
    for uri in (HV2, HV3):
        world.hosts[uri].memory_stats = {"total": 8388608, "free": 6 * 1048576, "buffers": 0, "cached": 0}
    return world


def hv(world, name):
    return next(host for host in world.hosts.values() if host.hostname == name)


def script(ticks=3, total=GIB):
    return lv.MigrationScript(samples=[lv.sample(remaining=total * (ticks - i) // (ticks + 1), total=total,
                                                 iteration=i + 1) for i in range(ticks)])


def add_guest(world, name, mib, state=RUNNING, cpu=None, ticks=3, **kwargs):
    host = hv(world, "hv1")
    uuid = kwargs.pop("uuid", None) or lv.uuid_lib.uuid4().__str__()
    xml = lv.domain_xml(name, uuid, mib * MIB_KIB, cpu=cpu)
    dom = host.add_domain(name, state=state, uuid=uuid, memory_kib=mib * MIB_KIB, xml=xml, **kwargs)
    dom.script = script(ticks)
    return dom


SIZES = {"web1": 512, "web2": 512, "app1": 1024, "app2": 1024, "db1": 2048, "db2": 1536}


def six_guests(world):
    return {name: add_guest(world, name, mib) for name, mib in SIZES.items()}


def world_migration(world):
    """How each guest migrates in these tests: the migrate code path on the fake world's clock, no DNS."""
    environment = MigrationEnvironment(clock=world.clock, wait=world.wait, fs_type_of=lambda path: None,
                                       resolves_locally=lambda host: False)
    return lambda request, check: run_migration(request, check, environment)


@dataclass
class PreparedEvacuation:
    """An evacuation's options and environment, ready to run (a test may change the environment first)."""

    options: EvacuationOptions
    check_mode: bool
    environment: EvacuationEnvironment

    def run(self):
        return run_evacuation(self.options, self.check_mode, self.environment)

    def using(self, **changes):
        self.environment = replace(self.environment, **changes)
        return self


def evacuation(world, check_mode=False, on_progress=None, **params):
    values = {"uri": SRC, "destinations": [{"name": "hv2", "uri": HV2}, {"name": "hv3", "uri": HV3}], "max_parallel": 2, "max_parallel_per_destination": 1,
              "memory_reserve_mib": 512}
    values.update(params)
    options = EvacuationOptions.from_params(values)
    environment = EvacuationEnvironment(resolves_locally=lambda host: False, on_progress=on_progress,
                                        migrate_guest=world_migration(world))
    return PreparedEvacuation(options, check_mode, environment)


def placement_now(world):
    """name -> list of (host, state, persistent) for every domain on every host."""
    found: dict[str, list[tuple[str, int, bool]]] = {}
    for host in world.hosts.values():
        for dom in host.domains.values():
            found.setdefault(dom.name(), []).append((host.hostname, dom.state()[0], bool(dom.persistent)))
    return found


def rows(result):
    return {row["name"]: row for row in result["vms"]}


# ---------------------------------------------------------------------------
# The happy path, idempotence, check mode


def test_six_guests_move_each_exactly_once_persistent(hosts):
    six_guests(hosts)
    result = evacuation(hosts).run()
    assert result["failed"] is False and result["changed"] is True
    assert hv(hosts, "hv1").domains == {}
    where = placement_now(hosts)
    for name in SIZES:
        assert len(where[name]) == 1, where[name]
        host, state, persistent = where[name][0]
        assert host in ("hv2", "hv3") and state == RUNNING and persistent
        assert rows(result)[name]["to"] == host
        assert rows(result)[name]["result"] == "migrated"
    assert result["summary"]["by_result"] == {"migrated": 6}
    # largest first: db1 2048, db2 1536, app1/app2 1024, web1/web2 512
    assert [item["name"] for item in result["plan"]] == ["db1", "db2", "app1", "app2", "web1", "web2"]
    db1 = rows(result)["db1"]
    assert (db1["from"], db1["mode"], db1["downtime_ms"], db1["data_sent_bytes"]) == ("hv1", "live", 42, 1100000000)
    assert db1["seconds"] is not None
    assert result["placement"]["before"]["db1"] == "hv1"
    assert result["placement"]["after"]["db1"] == db1["to"]


def test_rerun_on_an_empty_host_changes_nothing(hosts):
    six_guests(hosts)
    evacuation(hosts).run()
    hosts.calls.clear()
    result = evacuation(hosts).run()
    assert (result["changed"], result["failed"]) == (False, False)
    assert result["vms"] == [] and result["msg"] == "nothing to evacuate: the host is empty"
    assert hosts.mutations == []


def test_check_mode_plan_is_what_then_happens_and_changes_nothing(hosts):
    six_guests(hosts)
    planned = evacuation(hosts, check_mode=True).run()
    assert hosts.mutations == []
    assert planned["changed"] is True and planned["failed"] is False
    assert {row["result"] for row in planned["vms"]} == {"planned"}
    assert all(row["details"]["preflight"] for row in planned["vms"])
    plan = {item["name"]: item["destination"] for item in planned["plan"]}
    assert set(plan.values()) == {"hv2", "hv3"}
    done = evacuation(hosts).run()
    assert {row["name"]: row["to"] for row in done["vms"]} == plan
    assert {name: where[0][0] for name, where in placement_now(hosts).items()} == plan


def test_spread_rule_and_reserve_on_the_real_code_path(hosts):
    hv(hosts, "hv2").memory_stats["free"] = 3 * 1048576   # usable 2560 MiB with the 512 reserve
    hv(hosts, "hv3").memory_stats["free"] = 2 * 1048576   # usable 1536 MiB
    for name, mib in (("a", 1536), ("b", 1536), ("c", 1024), ("d", 1024)):
        add_guest(hosts, name, mib)
    result = evacuation(hosts, check_mode=True).run()
    # a: hv2 1024 left vs hv3 0 -> hv2; b: only hv3 fits (0 left); c: only hv2 fits (0 left); d: nowhere
    expected = {"a": "hv2", "b": "hv3", "c": "hv2", "d": None}
    assert {item["name"]: item["destination"] for item in result["plan"]} == expected
    assert result["failed"] is True
    assert result["msg"].startswith("the guests cannot all be placed: 1 guest(s) would not be moved: d (unplaceable")


# ---------------------------------------------------------------------------
# Concurrency


def recording_migrations(world, hold=0.15):
    """Wrap the fake's migrate to record how many run at once, overall and per destination."""
    seen = {"max": 0, "active": 0, "per_dest": {}, "max_per_dest": {}, "order": []}
    lock = threading.Lock()
    original = world.migrate

    def migrate(dom, dest, params, flags):
        with lock:
            seen["active"] += 1
            seen["per_dest"][dest.hostname] = seen["per_dest"].get(dest.hostname, 0) + 1
            seen["max"] = max(seen["max"], seen["active"])
            seen["max_per_dest"][dest.hostname] = max(seen["max_per_dest"].get(dest.hostname, 0),
                                                      seen["per_dest"][dest.hostname])
            seen["order"].append(dom.name())
        time.sleep(hold)  # keep it in flight long enough for the scheduler to start others
        try:
            return original(dom, dest, params, flags)
        finally:
            with lock:
                seen["active"] -= 1
                seen["per_dest"][dest.hostname] -= 1

    world.migrate = migrate
    return seen


def test_global_and_per_destination_limits_are_honoured(hosts):
    six_guests(hosts)
    seen = recording_migrations(hosts)
    result = evacuation(hosts, max_parallel=2, max_parallel_per_destination=1).run()
    assert result["summary"]["by_result"] == {"migrated": 6}
    assert seen["max"] == 2
    assert seen["max_per_dest"] == {"hv2": 1, "hv3": 1}


def test_per_destination_limit_binds_before_the_global_one(hosts):
    six_guests(hosts)
    hv(hosts, "hv2").memory_stats["free"] = 16 * 1048576
    seen = recording_migrations(hosts)
    result = evacuation(hosts, destinations=[HV2], max_parallel=4, max_parallel_per_destination=2).run()
    assert result["failed"] is False
    assert seen["max"] == 2 and seen["max_per_dest"] == {"hv2": 2}


def test_max_parallel_one_is_sequential_in_plan_order(hosts):
    six_guests(hosts)
    seen = recording_migrations(hosts, hold=0.01)
    result = evacuation(hosts, max_parallel=1, max_parallel_per_destination=3).run()
    assert seen["max"] == 1
    assert seen["order"] == [item["name"] for item in result["plan"]]


# ---------------------------------------------------------------------------
# Failures


def test_unplaceable_guest_continue_moves_the_others_and_fails(hosts):
    six_guests(hosts)
    add_guest(hosts, "huge", 16384)
    result = evacuation(hosts, on_failure="continue").run()
    assert result["failed"] is True and result["changed"] is True
    assert rows(result)["huge"]["result"] == "unplaceable"
    assert rows(result)["huge"]["message"].startswith("fits nowhere: hv2:")
    assert [dom.name() for dom in hv(hosts, "hv1").domains.values()] == ["huge"]
    assert result["summary"]["by_result"] == {"migrated": 6, "unplaceable": 1}
    assert "huge (unplaceable: fits nowhere" in result["msg"]


def test_unplaceable_guest_stop_moves_nothing(hosts):
    six_guests(hosts)
    add_guest(hosts, "huge", 16384)
    result = evacuation(hosts, on_failure="stop").run()
    assert result["failed"] is True and result["changed"] is False
    assert hosts.mutations == []
    assert result["summary"]["by_result"] == {"not_started": 6, "unplaceable": 1}
    assert len(hv(hosts, "hv1").domains) == 7


def failing(dom):
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB // 2)], outcome="fail",
                                    error_text="operation failed: migration out job: unexpectedly failed")


def test_migration_failure_stop_starts_nothing_more(hosts):
    guests = six_guests(hosts)
    failing(guests["db1"])  # the largest: it goes first
    result = evacuation(hosts, on_failure="stop", max_parallel=1).run()
    assert result["failed"] is True
    assert rows(result)["db1"]["result"] == "failed"
    assert "migration failed" in rows(result)["db1"]["message"]
    assert {rows(result)[name]["result"] for name in SIZES if name != "db1"} == {"not_started"}
    assert len(hv(hosts, "hv1").domains) == 6
    assert hv(hosts, "hv1").domains[guests["db1"].UUIDString()].state()[0] == RUNNING
    assert all(not host.domains for host in (hv(hosts, "hv2"), hv(hosts, "hv3")))


def test_migration_failure_continue_moves_the_rest(hosts):
    guests = six_guests(hosts)
    failing(guests["app1"])
    result = evacuation(hosts, on_failure="continue").run()
    assert result["failed"] is True
    assert result["summary"]["by_result"] == {"migrated": 5, "failed": 1}
    assert [dom.name() for dom in hv(hosts, "hv1").domains.values()] == ["app1"]
    assert rows(result)["app1"]["details"]["error"]["kind"] == "migration"
    assert len(placement_now(hosts)["app1"]) == 1  # still only on hv1, running


def test_rerun_after_an_interruption_finishes_without_running_anything_twice(hosts):
    guests = six_guests(hosts)
    # An interrupted run: db1 already runs on hv3 but hv1 still holds its inactive definition,
    # web1 was half-way (the process died after the copy, before the undefine).
    for name in ("db1", "web1"):
        dom = guests[name]
        hv(hosts, "hv3").add_domain(name, uuid=dom.UUIDString(), memory_kib=dom.memory_kib, xml=dom.xml)
        dom._state, dom._reason = SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_MIGRATED
    result = evacuation(hosts).run()
    assert result["failed"] is False
    assert rows(result)["db1"]["to"] == "hv3" and rows(result)["db1"]["result"] == "finished"
    assert rows(result)["db1"]["action"] == "undefine_source"
    assert rows(result)["db1"]["reason"].startswith("already present on hv3")
    assert hv(hosts, "hv1").domains == {}
    for name, where in placement_now(hosts).items():
        assert len(where) == 1, (name, where)
    assert hosts.methods().count(("hv1", "migrateToURI3")) == 4


def test_guest_present_on_two_destinations_is_not_touched(hosts):
    guests = six_guests(hosts)
    dom = guests["web2"]
    for name in ("hv2", "hv3"):
        hv(hosts, name).add_domain("web2", state=SHUTOFF, uuid=dom.UUIDString(), xml=dom.xml)
    result = evacuation(hosts).run()
    assert rows(result)["web2"]["result"] == "unplaceable"
    assert "present on both hv2 and hv3" in rows(result)["web2"]["message"]
    assert not [c for c in hosts.calls if c[1] == "migrateToURI3" and c[2][0] == "web2"]


# ---------------------------------------------------------------------------
# Selection, stopped guests, maintenance, CPU, options


def test_include_exclude_patterns(hosts):
    six_guests(hosts)
    result = evacuation(hosts, include=["web*", "db*"], exclude=["*2"]).run()
    assert sorted(rows(result)) == ["db1", "web1"]
    assert sorted(result["filtered_out"]) == ["app1", "app2", "db2", "web2"]
    assert sorted(dom.name() for dom in hv(hosts, "hv1").domains.values()) == ["app1", "app2", "db2", "web2"]


def test_stopped_guests_migrate_offline_or_are_left(hosts):
    add_guest(hosts, "tpl1", 4096, state=SHUTOFF)
    add_guest(hosts, "web1", 512)
    result = evacuation(hosts, stopped_guests="leave").run()
    assert result["failed"] is False
    assert rows(result)["tpl1"]["result"] == "left"
    assert [dom.name() for dom in hv(hosts, "hv1").domains.values()] == ["tpl1"]
    result = evacuation(hosts, stopped_guests="migrate", post_copy=True,
                        convergence={"on_timeout": "postcopy"}).run()
    assert result["failed"] is False, result["msg"]
    tpl1 = rows(result)["tpl1"]
    assert (tpl1["mode"], tpl1["result"]) == ("offline", "migrated")
    assert "VIR_MIGRATE_OFFLINE" in tpl1["details"]["flags"]
    assert "VIR_MIGRATE_POSTCOPY" not in tpl1["details"]["flags"]
    assert placement_now(hosts)["tpl1"] == [(tpl1["to"], SHUTOFF, True)]


def test_user_paused_guest_moves_paused_and_the_report_says_so(hosts):
    add_guest(hosts, "paused1", 512, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_USER)
    add_guest(hosts, "web1", 512)
    plan = evacuation(hosts, check_mode=True).run()
    assert {item["name"]: item["pause_reason"] for item in plan["plan"]} == {"paused1": "user", "web1": None}
    assert "paused1: paused by its user (virsh suspend or the like): moves paused" in plan["report_text"]
    result = evacuation(hosts).run()
    assert result["failed"] is False, result["msg"]
    row = rows(result)["paused1"]
    assert (row["result"], row["action"], row["pause_reason"]) == ("migrated", "migrate_paused", "user")
    assert placement_now(hosts)["paused1"] == [(row["to"], PAUSED, True)]
    assert f"paused1: paused by its user (virsh suspend or the like): moved paused; it stays paused on {row['to']}" \
        in result["report_text"]


def test_user_paused_guest_is_left_when_refused(hosts):
    add_guest(hosts, "paused1", 512, state=PAUSED, reason=lv.VIR_DOMAIN_PAUSED_USER)
    add_guest(hosts, "web1", 512)
    result = evacuation(hosts, on_paused_source="refuse").run()
    assert rows(result)["paused1"]["result"] == "left"
    assert "on_paused_source: refuse" in rows(result)["paused1"]["reason"]
    assert placement_now(hosts)["paused1"] == [("hv1", PAUSED, True)]
    assert rows(result)["web1"]["result"] == "migrated"


def test_maintenance_hosts_are_never_chosen(hosts):
    six_guests(hosts)
    hv(hosts, "hv2").memory_stats["free"] = 16 * 1048576
    hv(hosts, "hv3").memory_stats["free"] = 64 * 1048576
    result = evacuation(hosts, maintenance_hosts=["hv3.example.com"]).run()
    assert {row["to"] for row in result["vms"]} == {"hv2"}
    assert hv(hosts, "hv3").domains == {}
    hv3 = next(d for d in result["destinations"] if d["name"] == "hv3")
    assert hv3["excluded"] == "maintenance (maintenance_hosts)"


def test_cpu_incompatible_destination_is_avoided_per_guest(hosts):
    icelake = "<cpu mode='custom' match='exact'><model fallback='forbid'>Icelake-Server</model></cpu>"
    add_guest(hosts, "new1", 512, cpu=icelake)
    add_guest(hosts, "old1", 512)
    hv(hosts, "hv2").incompatible_cpu_models = {"Icelake-Server"}
    hv(hosts, "hv3").memory_stats["free"] = 1024 * 1024 + 512 * 1024  # room for one guest only
    result = evacuation(hosts).run()
    assert rows(result)["new1"]["to"] == "hv3"
    assert rows(result)["old1"]["to"] == "hv2"
    reason = next(item["reason"] for item in result["plan"] if item["name"] == "new1")
    assert "hv2: cpu: the destination hypervisor cannot run the guest CPU" in reason


def test_named_destinations_and_the_source_itself_is_ignored(hosts):
    add_guest(hosts, "web1", 512)
    dests = [{"name": "hv1", "uri": "qemu+tls://hv1.example.com/system"}, {"name": "hv2", "uri": HV2}]
    options_seen = []

    def resolves(host):
        options_seen.append(host)
        return host == "hv1.example.com"

    evac = evacuation(hosts, destinations=dests)
    evac.using(resolves_locally=resolves)
    result = evac.run()
    assert rows(result)["web1"]["to"] == "hv2"
    assert result["destinations"][0] == {**result["destinations"][0], "name": "hv1",
                                         "excluded": "the source host itself"}


@pytest.mark.parametrize("params, message", [
    ({"destinations": []}, "destinations is empty"),
    ({"destinations": [HV2, HV2]}, "listed twice"),
    ({"destinations": [{"uri": HV2, "colour": "red"}]}, "unknown keys colour"),
    ({"live": False}, "live: false is not an evacuation mode"),
    ({"max_parallel": 0}, "at least 1"),
    ({"tunnelled": True, "tls": True}, "tls and tunnelled exclude each other"),
    ({"destinations": ["qemu:///system"]}, "dest_uri is local"),
])
def test_bad_options_are_refused_before_anything(hosts, params, message):
    add_guest(hosts, "web1", 512)
    with pytest.raises(ValidationError) as caught:
        evacuation(hosts, **params).run()
    assert message in str(caught.value)
    assert caught.value.domain is None, "an evacuation's option error names no domain"
    assert hosts.mutations == []


def test_every_bad_option_is_reported_at_once_and_names_no_domain(hosts):
    add_guest(hosts, "web1", 512)
    with pytest.raises(ValidationError) as caught:
        evacuation(hosts, max_parallel=0, bandwidth=-5, tunnelled=True, tls=True).run()
    text = str(caught.value)
    # on_failure, stopped_guests and report_format are checked by the argument spec: test_module_refuses_bad_arguments
    for part in ("at least 1", "bandwidth must not be negative", "tls and tunnelled exclude each other"):
        assert part in text, text
    assert text.count("bandwidth must not be negative") == 1, "a migration option's problem is named once"
    assert "evacuate-option-check" not in text and "domain" not in text.split(":", maxsplit=1)[0]
    assert hosts.mutations == []


def test_check_mode_plan_that_would_fail_reports_no_change(hosts):
    add_guest(hosts, "huge", 65536)
    add_guest(hosts, "web1", 512)
    result = evacuation(hosts, check_mode=True).run()
    assert (result["failed"], result["changed"]) == (True, False)
    assert hosts.mutations == []


# ---------------------------------------------------------------------------
# Progress and report


def test_progress_shows_each_guest_state_and_percentage(hosts, tmp_path):
    for name, mib in (("db1", 2048), ("web1", 512), ("web2", 512)):
        add_guest(hosts, name, mib, ticks=8)
    snapshots = []
    path = tmp_path / "run" / "progress.json"
    result = evacuation(hosts, progress_path=str(path), progress_interval=0.02, max_parallel=1,
                        on_progress=snapshots.append).run()
    assert result["failed"] is False
    first = snapshots[0]
    assert {vm["state"] for vm in first["vms"]} == {"queued"} and first["finished"] is False
    migrating = [vm for snap in snapshots for vm in snap["vms"] if vm["state"] == "migrating"
                 and vm["percent"] is not None]
    assert {vm["name"] for vm in migrating} == {"db1", "web1", "web2"}
    assert any(0 < vm["percent"] < 100 for vm in migrating)
    percents = [vm["percent"] for vm in migrating if vm["name"] == "db1"]
    assert percents == sorted(percents)
    assert any(" -> " in snap["line"] and "%" in snap["line"] for snap in snapshots)
    on_disk = json.loads(path.read_text())
    assert on_disk["finished"] is True
    assert {vm["state"] for vm in on_disk["vms"]} == {"migrated"} and {vm["percent"] for vm in on_disk["vms"]} == {100}
    assert on_disk["line"].startswith("[00:") and "3/3 done, 0 failed" in on_disk["line"]
    assert sorted(os.listdir(path.parent)) == ["progress.json"]  # atomic: no temporary left


def test_report_written_as_json_and_as_text(hosts, tmp_path):
    six_guests(hosts)
    add_guest(hosts, "huge", 16384)
    json_path = tmp_path / "report.json"
    result = evacuation(hosts, report_path=str(json_path), report_format="json").run()
    report = json.loads(json_path.read_text())
    assert report == json.loads(json.dumps(result["report"]))
    assert report["summary"]["by_result"] == {"migrated": 6, "unplaceable": 1}
    assert {row["name"] for row in report["vms"]} == set(SIZES) | {"huge"}
    assert "details" not in report["vms"][0]
    assert oct(json_path.stat().st_mode & 0o777) == "0o640"
    text_path = tmp_path / "report.txt"
    evacuation(hosts, report_path=str(text_path), report_format="text").run()
    text = text_path.read_text()
    assert text.startswith("Evacuation of hv1 (qemu:///system)\n")
    assert "huge: fits nowhere" in text
    assert text.splitlines()[-1].startswith("Run ") or "Run " in text
    kept = sorted(os.listdir(tmp_path))
    assert len(kept) == 4 and {"report.json", "report.txt"} < set(kept)  # each run's own file, and the links
    assert os.path.basename(result["report_path"]) in kept and result["report"]["run_id"] == result["run_id"]


def test_report_table_rendering():
    rows_ = [{"name": "db1", "from": "hv1", "to": "hv2", "mode": "live", "result": "migrated", "seconds": 12.44,
              "downtime_ms": 38, "data_sent_bytes": 2147483648},
             {"name": "big", "from": "hv1", "to": None, "mode": "live", "result": "unplaceable", "seconds": None,
              "downtime_ms": None, "data_sent_bytes": None, "message": "fits nowhere"}]
    assert render_table(rows_) == [
        "VM   FROM  TO   MODE  RESULT       TIME    DOWNTIME  DATA SENT",
        "---  ----  ---  ----  -----------  ------  --------  ---------",
        "db1  hv1   hv2  live  migrated     12.4 s  38 ms     2.0 GiB",
        "big  hv1   -    live  unplaceable  -       -         -",
    ]
    text = render_text({"source_name": "hv1", "source_uri": "qemu:///system", "check_mode": True,
                        "summary": {"total": 2, "by_result": {"migrated": 1, "unplaceable": 1}, "seconds": 13},
                        "vms": rows_})
    assert text.splitlines()[0] == "Evacuation of hv1 (qemu:///system) - CHECK MODE, nothing moved"
    assert "Total 2 guest(s): 1 migrated, 1 unplaceable; 13.0 s" in text
    assert text.rstrip().endswith("big: fits nowhere")
    empty = render_text({"source_name": "hv1", "source_uri": SRC, "summary": {}, "vms": []})
    assert "(no guests to move: the host is empty)" in empty


# ---------------------------------------------------------------------------
# The module: argument spec, main(), diff, failure shape


@pytest.fixture
def module_world(monkeypatch, hosts):
    """Drive the module's evacuation and migrations with the fake world's clock and no DNS."""
    module_environment = functools.partial(EvacuationEnvironment, resolves_locally=lambda host: False,
                                           migrate_guest=world_migration(hosts))
    monkeypatch.setattr(_evacuation, "EvacuationEnvironment", module_environment)
    return hosts


def run_module(args, capsys, check_mode=False, diff=False):
    return run_module_main(evacuate.main, args, capsys, check_mode, diff)


MODULE_ARGS = {"destinations": [{"name": "hv2", "uri": HV2}, {"name": "hv3", "uri": HV3}]}


def test_module_check_mode_returns_the_plan_and_diff(module_world, capsys):
    six_guests(module_world)
    code, result = run_module(MODULE_ARGS, capsys, check_mode=True, diff=True)
    assert code == 0 and result["changed"] is True and result["check_mode"] is True
    assert module_world.mutations == []
    assert [item["name"] for item in result["plan"]] == ["db1", "db2", "app1", "app2", "web1", "web2"]
    assert all(item["destination"] in ("hv2", "hv3") and item["reason"] for item in result["plan"])
    assert result["diff"]["before"] == {name: "hv1" for name in SIZES}
    assert result["diff"]["after"] == {item["name"]: item["destination"] for item in result["plan"]}
    assert "warnings" not in result or all(isinstance(w, str) for w in result["warnings"])


def test_module_run_then_rerun_is_idempotent(module_world, capsys, tmp_path):
    six_guests(module_world)
    report = tmp_path / "report.txt"
    code, result = run_module(dict(MODULE_ARGS, report_path=str(report), report_format="text"), capsys)
    assert code == 0 and result["changed"] is True
    assert result["summary"]["by_result"] == {"migrated": 6}
    assert report.read_text().splitlines()[3].startswith("VM ")
    code, result = run_module(MODULE_ARGS, capsys)
    assert (code, result["changed"], result["msg"]) == (0, False, "nothing to evacuate: the host is empty")


def test_module_fails_with_the_plan_when_a_guest_fits_nowhere(module_world, capsys):
    add_guest(module_world, "huge", 65536)
    add_guest(module_world, "web1", 512)
    code, result = run_module(MODULE_ARGS, capsys, check_mode=True)
    assert code == 1 and result["failed"] is True
    assert result["msg"].startswith("the guests cannot all be placed: 1 guest(s) would not be moved: huge")
    assert {item["name"]: item["destination"] for item in result["plan"]}["huge"] is None
    assert module_world.mutations == []


@pytest.mark.parametrize("args, message", [
    ({}, "missing required arguments: destinations"),
    (dict(MODULE_ARGS, on_failure="retry"), "value of on_failure must be one of"),
    (dict(MODULE_ARGS, stopped_guests="destroy"), "value of stopped_guests must be one of"),
    (dict(MODULE_ARGS, report_format="xml"), "value of report_format must be one of"),
    (dict(MODULE_ARGS, live=False), "live: false is not an evacuation mode"),
])
def test_module_refuses_bad_arguments(module_world, capsys, args, message):
    add_guest(module_world, "web1", 512)
    code, result = run_module(args, capsys)
    assert code == 1 and message in result["msg"]
    assert module_world.mutations == []


def test_shared_argument_spec_with_migrate():
    tuning = migration_tuning_argument_spec()
    evacuate_spec, migrate_spec = evacuate_argument_spec(), migrate_argument_spec()
    for option, spec in tuning.items():
        assert evacuate_spec[option] == spec == migrate_spec[option]
    assert "dest_uri" not in evacuate_spec and "name" not in evacuate_spec


# ---------------------------------------------------------------------------
# One evacuation of a source at a time


def hold_lock(path):
    import fcntl

    handle = open(path, "w")  # noqa: SIM115 - held until the test releases it
    handle.write("pid 4242, started by the test\n")
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def test_second_evacuation_waits_for_the_first_then_moves_what_is_left(hosts, tmp_path):
    six_guests(hosts)
    lock = tmp_path / "evacuate.lock"
    holder = hold_lock(lock)
    snapshots, sleeps = [], []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            holder.close()  # the first evacuation ends

    evac = evacuation(hosts, on_progress=snapshots.append, lock_timeout=60)
    evac.using(lock_path=str(lock), sleep=sleep)
    result = evac.run()
    assert len(sleeps) == 3
    assert snapshots[0]["line"] == ("waiting: another evacuation of qemu:///system is running "
                                    "(pid 4242, started by the test)")
    assert result["summary"]["by_result"] == {"migrated": 6}
    assert lock.read_text().startswith(f"pid {os.getpid()}")


def test_evacuation_gives_up_after_lock_timeout_and_touches_nothing(hosts, tmp_path):
    six_guests(hosts)
    lock = tmp_path / "evacuate.lock"
    holder = hold_lock(lock)
    evac = evacuation(hosts, lock_timeout=2)
    evac.using(lock_path=str(lock), sleep=lambda seconds: None)
    with pytest.raises(_errors.MigrationInProgress) as caught:
        evac.run()
    holder.close()
    assert "another evacuation of qemu:///system is running (pid 4242" in str(caught.value)
    assert "waited 2s" in str(caught.value)
    assert hosts.mutations == [] and hosts.calls == []


def test_check_mode_does_not_wait_for_the_lock_but_warns(hosts, tmp_path):
    six_guests(hosts)
    lock = tmp_path / "evacuate.lock"
    holder = hold_lock(lock)
    evac = evacuation(hosts, check_mode=True, lock_timeout=3600)
    evac.using(lock_path=str(lock))
    result = evac.run()
    holder.close()
    assert result["failed"] is False
    assert any("this plan may change while it runs" in warning for warning in result["warnings"])


def test_a_guest_undefined_during_discovery_is_skipped(hosts):
    guests = six_guests(hosts)
    gone = guests["web2"]
    original_state = gone.state

    def vanished(flags=0):
        hv(hosts, "hv1").domains.pop(gone.UUIDString(), None)
        return original_state(flags)

    gone.state = vanished
    result = evacuation(hosts).run()
    assert "web2" not in rows(result) and result["summary"]["by_result"] == {"migrated": 5}


# ---------------------------------------------------------------------------
# A destination lost during the run


def losing_hv3(hosts, during_migration=False):
    """A migrate_guest that loses hv3 when the first guest bound for it starts: before it connects, or
    (``during_migration``) while its migration runs (it fails, the connection cannot be reopened)."""
    lost: list[str] = []

    migrate = world_migration(hosts)

    def migrate_guest(request, check):
        if request.dest_uri == HV3 and not lost:
            lost.append(request.name)
            if during_migration:
                dom = next(d for d in hv(hosts, "hv1").domains.values() if d.name() == request.name)
                dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB // 2)], outcome="fail",
                                                error_text="internal error: client socket is closed")
                original = dom.migrateToURI3

                def migrate_and_lose(*args):
                    hv(hosts, "hv3").reachable = False
                    return original(*args)
                dom.migrateToURI3 = migrate_and_lose
            else:
                hv(hosts, "hv3").reachable = False
        return migrate(request, check)
    return migrate_guest, lost


def evacuation_losing_hv3(hosts, during_migration=False, **params):
    evac = evacuation(hosts, max_parallel=1, **params)
    migrate_guest, lost = losing_hv3(hosts, during_migration)
    evac.using(migrate_guest=migrate_guest)
    return evac, lost


def three_small_guests(hosts):
    return {name: add_guest(hosts, name, 512) for name in ("s1", "s2", "s3")}


def each_on_one_host(hosts):
    return all(len(where) == 1 for where in placement_now(hosts).values())


def test_guests_of_a_destination_lost_before_connecting_go_to_the_others(hosts):
    three_small_guests(hosts)
    evac, lost = evacuation_losing_hv3(hosts)
    result = evac.run()
    assert lost, "no guest was planned for hv3"
    assert result["failed"] is False, result["msg"]
    assert {row["result"] for row in result["vms"]} == {"migrated"}
    assert {row["to"] for row in result["vms"]} == {"hv2"}
    moved = [row for row in result["vms"] if row["re_placed_from"]]
    assert moved and all(row["re_placed_from"] == ["hv3"] for row in moved)
    assert lost[0] in {row["name"] for row in moved}, "the guest that found hv3 gone was not placed again"
    assert f"{lost[0]}: re-placed from hv3 (lost during the run)" in result["report_text"].splitlines()
    assert all(row["reason"].startswith("re-placed, hv3 was lost: ") for row in moved)
    assert hv(hosts, "hv1").domains == {} and hv(hosts, "hv3").domains == {}
    hv3 = next(load for load in result["destinations"] if load["name"] == "hv3")
    assert hv3["excluded"].startswith("unreachable during this run (cannot open qemu+tls://hv3")
    assert each_on_one_host(hosts)


def test_guests_that_fit_nowhere_after_the_loss_are_reported_unplaceable(hosts):
    six_guests(hosts)
    evac, _lost = evacuation_losing_hv3(hosts)
    result = evac.run()
    by_result = result["summary"]["by_result"]
    assert result["failed"] is True
    assert set(by_result) == {"migrated", "unplaceable"} and by_result["unplaceable"] >= 1, by_result
    for row in result["vms"]:
        if row["result"] == "unplaceable":
            assert row["re_placed_from"] == ["hv3"]
            assert row["message"].startswith("hv3 was lost (") and "fits nowhere else" in row["message"]
        else:
            assert row["to"] == "hv2"
    left = {dom.name() for dom in hv(hosts, "hv1").domains.values()}
    assert left == {row["name"] for row in result["vms"] if row["result"] == "unplaceable"}
    assert each_on_one_host(hosts)


def test_a_lost_destination_with_on_failure_stop_starts_nothing_more(hosts):
    three_small_guests(hosts)
    evac, lost = evacuation_losing_hv3(hosts, on_failure="stop")
    result = evac.run()
    results = {row["name"]: row["result"] for row in result["vms"]}
    assert results[lost[0]] == "failed"
    assert "not_started" in results.values() or list(results.values()).count("migrated") == 2, results
    assert all(row["re_placed_from"] == [] for row in result["vms"])
    assert each_on_one_host(hosts)


def test_a_destination_lost_during_a_migration_keeps_that_guest_and_moves_the_rest_elsewhere(hosts):
    three_small_guests(hosts)
    evac, lost = evacuation_losing_hv3(hosts, during_migration=True)
    result = evac.run()
    rows_by_name = rows(result)
    failed = rows_by_name[lost[0]]
    assert failed["result"] == "failed" and failed["to"] == "hv3" and failed["re_placed_from"] == []
    assert failed["details"]["unreachable"] == ["destination"]
    others = [row for name, row in rows_by_name.items() if name != lost[0]]
    assert {(row["result"], row["to"]) for row in others} == {("migrated", "hv2")}
    assert [dom.name() for dom in hv(hosts, "hv1").domains.values()] == [lost[0]]
    assert each_on_one_host(hosts)


def test_a_crashed_worker_is_raised_with_its_traceback_after_the_others_are_marked(hosts):
    three_small_guests(hosts)
    snapshots = []

    def crashing(request, check):
        raise ValueError(f"bug while moving {request.name}")

    evac = evacuation(hosts, max_parallel=1, on_progress=snapshots.append).using(migrate_guest=crashing)
    with pytest.raises(RuntimeError) as caught:
        evac.run()
    assert "an evacuation worker crashed" in str(caught.value) and "ValueError: bug while moving" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)
    last = snapshots[-1]
    assert last["finished"] is True
    assert sorted(vm["state"] for vm in last["vms"]) == ["migrating", "not_started", "not_started"]
    assert [method for _host, method, _args in hosts.mutations] == ["setMetadata"]  # the first guest's origin only


# ---------------------------------------------------------------------------
# The audit log and reports kept per run


def audit_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_move_and_the_run_are_audited(hosts, tmp_path):
    six_guests(hosts)
    log = tmp_path / "audit.jsonl"
    result = evacuation(hosts, audit_log=str(log), tls=False, bandwidth=100).run()
    assert result["failed"] is False and result["audit_log"] == str(log)
    records = audit_lines(log)
    moves, (summary,) = records[:-1], records[-1:]
    assert sorted(record["guest_name"] for record in moves) == sorted(SIZES)
    assert {record["run_id"] for record in records} == {result["run_id"]}
    assert {(record["action"], record["result"], record["source"]) for record in moves} == {
        ("evacuate", "migrated", "hv1")}
    for record in moves:
        row = rows(result)[record["guest_name"]]
        assert (record["destination"], record["guest_uuid"]) == (row["to"], row["uuid"])
        assert record["started_at"] <= record["finished_at"]
        assert record["flags"] == ["live", "persistent", "undefine_source", "p2p", "bandwidth"]
    assert (summary["guest_name"], summary["result"]) == (None, "succeeded")
    assert summary["finished_at"] >= max(record["finished_at"] for record in moves)


def test_moves_bound_the_time_each_guest_could_be_on_both_hosts(hosts, tmp_path):
    for name in ("a1", "a2", "a3"):
        add_guest(hosts, name, 512, ticks=5)
    moments = []
    log = tmp_path / "audit.jsonl"

    def migrate(request, check):
        moments.append(("start", request.name, time.time()))
        try:
            return world_migration(hosts)(request, check)
        finally:
            moments.append(("end", request.name, time.time()))

    evacuation(hosts, audit_log=str(log), max_parallel=2).using(migrate_guest=migrate).run()
    by_name = {record["guest_name"]: record for record in audit_lines(log) if record["guest_name"]}
    for kind, name, moment in moments:
        record = by_name[name]
        assert record["started_at"] <= audit.iso_utc(moment) <= record["finished_at"], (kind, name)


def test_check_mode_and_an_empty_audit_log_write_nothing(hosts, tmp_path):
    six_guests(hosts)
    log = tmp_path / "audit.jsonl"
    planned = evacuation(hosts, check_mode=True, audit_log=str(log)).run()
    assert planned["audit_log"] is None and planned["run_id"] and not log.exists()
    moved = evacuation(hosts, audit_log="").run()
    assert moved["audit_log"] is None and not log.exists()


def test_a_failed_move_is_audited(hosts, tmp_path):
    six_guests(hosts)
    log = tmp_path / "audit.jsonl"

    def failing(request, check):
        raise _errors.MigrationFailed("migrate", "the job was aborted", domain=request.name)

    result = evacuation(hosts, audit_log=str(log), max_parallel=1, on_failure="stop").using(
        migrate_guest=failing).run()
    records = audit_lines(log)
    assert [record["result"] for record in records] == ["failed", "failed"]
    assert records[0]["message"].startswith("migrate failed")
    assert records[-1]["guest_name"] is None and result["failed"] is True


def test_reports_are_kept_per_run_in_a_directory(hosts, tmp_path):
    six_guests(hosts)
    reports = tmp_path / "reports"
    reports.mkdir()
    first = evacuation(hosts, report_path=str(reports), report_format="text").run()
    second = evacuation(hosts, report_path=str(reports), report_format="text").run()
    assert first["report_path"] != second["report_path"]
    assert sorted(os.listdir(reports)) == sorted(
        os.path.basename(result["report_path"]) for result in (first, second))
    assert os.path.basename(first["report_path"]) == "evacuate-hv1-{}.txt".format(first["run_id"])
    assert "Run {}".format(second["run_id"]) in (reports / os.path.basename(second["report_path"])).read_text()


def test_module_returns_the_run_and_writes_the_default_audit_log(module_world, capsys, private_audit_log):
    add_guest(module_world, "web1", 512)
    code, result = run_module(MODULE_ARGS, capsys)
    assert code == 0 and result["audit_log"] == str(private_audit_log)
    assert [record["guest_name"] for record in audit_lines(private_audit_log)] == ["web1", None]


# ---------------------------------------------------------------------------
# The operator's cancel request


WRITTEN = 1796219941.0  # 2026-12-02T13:59:01Z


def write_cancel(path):
    path.write_text("cancel requested from ctl1\n")
    os.utime(path, (WRITTEN, WRITTEN))


def test_a_standing_cancel_request_refuses_the_run_before_anything_changes(hosts, tmp_path):
    six_guests(hosts)
    cancel = tmp_path / "cancel"
    write_cancel(cancel)
    for check_mode in (True, False):
        hosts.calls.clear()
        with pytest.raises(_errors.CancelRequested) as caught:
            evacuation(hosts, check_mode=check_mode, cancel_path=str(cancel)).run()
        assert f"a cancel request stands: {cancel}, written 2026-12-02T13:59:01.000Z" in str(caught.value)
        assert caught.value.hint.startswith("when the run may go ahead, withdraw the request")
        assert hosts.calls == [] and hosts.mutations == []
    assert len(hv(hosts, "hv1").domains) == len(SIZES)


def test_an_empty_cancel_path_turns_requests_off(hosts, tmp_path):
    add_guest(hosts, "web1", 512)
    write_cancel(tmp_path / "cancel")
    result = evacuation(hosts, cancel_path="").run()
    assert result["failed"] is False and "cancelled" not in result


def test_a_cancel_after_the_first_move_starts_no_more(hosts, tmp_path):
    six_guests(hosts)
    cancel = tmp_path / "cancel"
    log = tmp_path / "audit.jsonl"
    moved = []

    def migrate(request, check):
        result = world_migration(hosts)(request, check)
        moved.append(request.name)
        write_cancel(cancel)
        return result

    result = evacuation(hosts, max_parallel=1, cancel_path=str(cancel), audit_log=str(log),
                        report_path=str(tmp_path / "report.txt"), report_format="text").using(
        migrate_guest=migrate).run()
    assert moved == ["db1"]
    assert result["cancelled"] is True and result["failed"] is True
    assert result["msg"] == (f"cancelled by the operator ({cancel}, written 2026-12-02T13:59:01.000Z): "
                             "1 moved, 0 aborted, 5 not started")
    assert rows(result)["db1"]["result"] == "migrated"
    for name in ("db2", "app1", "app2", "web1", "web2"):
        assert rows(result)[name]["result"] == "cancelled"
        assert rows(result)[name]["message"] == f"not started: cancelled by the operator ({cancel})"
        assert [where[0] for where in placement_now(hosts)[name]] == ["hv1"]
        assert result["placement"]["after"][name] == "hv1"
    assert result["summary"]["by_result"] == {"migrated": 1, "cancelled": 5}
    assert "cancelled" in result["report_text"]
    assert [record["guest_name"] for record in audit_lines(log)] == ["db1", None]


def test_a_cancel_aborts_the_running_migration_through_its_monitor(hosts, tmp_path, monkeypatch):
    first = add_guest(hosts, "db1", 2048)
    add_guest(hosts, "web1", 512)
    first.script = lv.MigrationScript(samples=[lv.sample(500_000_000, iteration=i) for i in range(1, 4)],
                                      outcome="never")
    cancel = tmp_path / "cancel"
    log = tmp_path / "audit.jsonl"
    start = first.migrateToURI3

    def cancel_once_it_runs(*args):
        write_cancel(cancel)
        return start(*args)

    monkeypatch.setattr(first, "migrateToURI3", cancel_once_it_runs)
    prepared = evacuation(hosts, max_parallel=1, cancel_path=str(cancel), audit_log=str(log))
    result = prepared.using(migrate_guest=None).run()  # the default migrator: the migrate code path, its monitor
    assert rows(result)["db1"]["result"] == "cancelled" and rows(result)["web1"]["result"] == "cancelled"
    assert "cancelled by the operator" in rows(result)["db1"]["message"]
    assert rows(result)["db1"]["details"]["cancelled"] is True
    assert rows(result)["web1"]["message"] == f"not started: cancelled by the operator ({cancel})"
    assert result["msg"].endswith(": 0 moved, 1 aborted, 1 not started")
    assert placement_now(hosts)["db1"] == [("hv1", RUNNING, True)]
    assert ("hv1", "abortJob") in hosts.methods()
    moves = [record for record in audit_lines(log) if record["guest_name"]]
    assert [(record["guest_name"], record["result"]) for record in moves] == [("db1", "failed")]


def test_the_default_migrator_hands_the_cancel_check_to_each_migration(monkeypatch):
    seen = []
    monkeypatch.setattr(_evacuation, "run_migration",
                        lambda request, check, environment: seen.append(environment.cancel_requested) or {})

    def check():
        return None

    EvacuationEnvironment().migrator(check)(None, False)
    assert seen == [check]


def test_the_module_fails_with_the_cancelled_result(module_world, capsys, tmp_path):
    add_guest(module_world, "web1", 512)
    cancel = tmp_path / "cancel"
    write_cancel(cancel)
    code, result = run_module({**MODULE_ARGS, "cancel_path": str(cancel)}, capsys)
    assert code == 1 and result["error"]["kind"] == "cancelled" and module_world.mutations == []
    assert result["msg"].startswith("evacuate failed (source qemu:///system): a cancel request stands: ")


def test_the_cancelled_message_counts_moves_aborts_unstarted_and_post_copy_left_to_finish():
    request = CancelRequest("/var/lib/virtops/cancel", WRITTEN, "")

    def row(name, result, message=None, details=None):
        entry = guest_row(name, f"uuid-{name}", "hv1", "hv2", "live", 512, result, message, "test")
        entry["details"] = details or {}
        return entry

    table = [row("a", "migrated"), row("b", "migrated", CANCEL_DURING_POSTCOPY), row("c", "cancelled", "aborted",
             {"cancelled": True}), row("d", "cancelled", "not started"), row("e", "failed", "boom")]
    assert cancelled_message(table, request) == (
        "cancelled by the operator (/var/lib/virtops/cancel, written 2026-12-02T13:59:01.000Z): 2 moved (1 in "
        "post-copy when the cancel came: left to finish), 1 aborted, 1 not started; besides, 1 guest(s) were not "
        "moved: e (failed: boom)")
    assert "b: " + CANCEL_DURING_POSTCOPY in render_text({"vms": table, "summary": {}})
