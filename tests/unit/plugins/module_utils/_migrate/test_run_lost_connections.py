"""The orchestrator when a connection is lost mid-migration, and the job monitor's own connection."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import (
    Connections,
    DeadConnection,
    after_migration_call,
    environment_of,
    migrate_request,
)

DEST = "qemu+tls://hv2.example.com/system"
SRC = "qemu:///system"
GIB_KIB = 1048576


def migrate(world, connections: Connections, **params):
    return run_migration(migrate_request(**params), environment=environment_of(world, connect=connections))


def failing_vm(world):
    dom = world.hosts[SRC].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 512)] * 2, outcome="fail",
                                    error_text="internal error: client socket is closed")
    return dom


def test_the_monitor_watches_the_job_on_a_connection_of_its_own(world):
    """Job queries must not queue behind the blocking migrate call on the same connection."""
    dom = world.hosts[SRC].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 1024 // (i + 1)) for i in range(3)])
    connections = Connections()
    result = migrate(world, connections)
    assert result["changed"] is True
    sources = [conn for uri, _role, conn in connections.opened if uri == SRC]
    assert len(sources) == 2, "the monitor should open its own connection to the source"
    assert all(conn.closed for _uri, _role, conn in connections.opened)


@pytest.mark.parametrize("noticed", [True, False], ids=["closed", "not-yet-noticed"])
@pytest.mark.parametrize("lost", ["source", "destination"])
def test_a_lost_connection_is_reopened_to_report_where_the_domain_runs(world, lost, noticed):
    """libvirtd restarted on one side during the migration: both sides are read again, not a raw lookup error."""
    dom = failing_vm(world)
    connections = Connections()

    def once_the_call_returns():
        connections.replace(lost, DeadConnection(noticed))
    after_migration_call(dom, once_the_call_returns)
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    text = str(raised.value)
    assert "the domain now runs on: source" in text, text
    assert f"reconnected to the {lost}" in text, text
    assert "client socket is closed" in text
    assert raised.value.details["placement"]["source"]["state"] == "running"


def test_a_side_that_cannot_be_reached_again_is_reported_unchecked(world):
    dom = failing_vm(world)
    connections = Connections()

    def once_the_call_returns():
        connections.replace("destination", DeadConnection())
        connections.refuse.add(DEST)
    after_migration_call(dom, once_the_call_returns)
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    text = str(raised.value)
    assert "the domain now runs on: source (the destination could not be checked)" in text, text
    assert "could not reopen it" in text
    assert "inspect both hosts" in text
    assert raised.value.details["unreachable"] == ["destination"]


def test_a_copy_paused_by_the_migration_on_the_destination_is_not_where_the_domain_runs(world):
    """The source's libvirtd restarts and does not answer in time; the destination still holds its incoming copy."""
    dom = world.hosts[SRC].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=GIB_KIB * 512)] * 2, outcome="fail_leave_dest",
                                    error_text="End of file while reading data: Input/output error")
    connections = Connections()

    def once_the_call_returns():
        connections.replace("source", DeadConnection())
        connections.refuse.add(SRC)
    after_migration_call(dom, once_the_call_returns)
    with pytest.raises(MigrationFailed) as raised:
        migrate(world, connections)
    text = str(raised.value)
    assert world.hosts[DEST].domains[dom.UUIDString()].state() == [lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PAUSED_MIGRATION]
    assert "the domain now runs on: unknown (the source could not be checked)" in text, text
    assert "a copy paused by the migration" in text, text
