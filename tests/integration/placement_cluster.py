# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The placement cluster the placement-lifecycle and rolling-maintenance suites share.

Six Linux guests over three hypervisors, each writing a counter to its NFS-backed disk:

    hv1: pl-db1 (anti-affinity group db, hard; priority 10), pl-web1 + pl-web2 (affinity group web),
         pl-pin (pinned: skip)
    hv2: pl-db2 (anti-affinity group db, hard)
    hv3: pl-free

The constraints live in the guests' own metadata, set with virtops.migration.guest_placement. Each
suite that uses them makes them afresh (the fixture ``cluster`` in conftest.py) and removes them after. The
checks here are what the fault table's other rows assert: each guest runs exactly once, is defined
persistently there only, and its counter goes on advancing with the rest of its disk unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import combinations

import migrate_support as lab
from migrate_support import HYPERVISORS, running

GUESTS = [
    {"name": "pl-db1", "host": "hv1"},
    {"name": "pl-web1", "host": "hv1"},
    {"name": "pl-web2", "host": "hv1"},
    {"name": "pl-pin", "host": "hv1"},
    {"name": "pl-db2", "host": "hv2"},
    {"name": "pl-free", "host": "hv3"},
]
for _guest in GUESTS:
    _guest.update({"kind": "linux", "memory_mib": 128, "counter": True})
NAMES = [guest["name"] for guest in GUESTS]
HOME = {guest["name"]: guest["host"] for guest in GUESTS}
METADATA = {
    "pl-db1": {"anti_affinity": [{"group": "db", "mode": "hard"}], "priority": 10},
    "pl-db2": {"anti_affinity": [{"group": "db", "mode": "hard"}]},
    "pl-web1": {"affinity": ["web"]},
    "pl-web2": {"affinity": ["web"]},
    "pl-pin": {"pin_policy": "skip"},
}
DB_GROUP = ("pl-db1", "pl-db2")
AUDIT_LOG = "/var/log/virtops-test/placement-audit.jsonl"
MAINTENANCE_MARK = "/etc/virtops/maintenance"
NAMESPACE = "https://virtops.dev/xmlns/migration/1"


def create_cluster() -> None:
    """The six guests booted, writing, and constrained (after removing any left by an earlier run)."""
    media = lab.playbook(lab.PLAYBOOKS / "guest_media.yml")
    assert media.rc == 0, f"guest media failed: {media.describe()}"
    clean_hosts()
    lab.remove_guests(GUESTS)
    lab.create_guests(GUESTS)
    for name in NAMES:
        lab.wait_for_counter_past(name, 0, timeout=300)
    for name, constraints in METADATA.items():
        set_ = lab.module(HOME[name], "guest_placement", dict({"name": name}, **constraints))
        assert not set_.get("failed") and set_["changed"], set_


def remove_cluster() -> None:
    lab.remove_guests(GUESTS)
    clean_hosts()


def clean_hosts() -> None:
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -rf {MAINTENANCE_MARK} /var/log/virtops-test /var/lib/virtops-test "
                      "/run/virtops-test-progress.json")


def bring_home() -> None:
    """Every guest on its home host only, without an origin record, with its constraints."""
    for name in NAMES:
        where = lab.whereabouts(name)
        if where != {HOME[name]: running(True)}:
            (host, _info), = where.items()
            back = lab.module(host, "migrate", {"name": name, "dest_uri": lab.dest_uri(HOME[name])})
            assert not back.get("failed"), back.get("msg")
        lab.module(HOME[name], "guest_placement", {"name": name, "clear_origin": True, **METADATA.get(name, {})})


def fresh_marks() -> dict[str, lab.DiskMark]:
    """Each guest's disk mark, once it has written a counter past the one read now (it runs and writes)."""
    return {name: lab.wait_for_counter_past(name, lab.disk_mark(name).counter) for name in NAMES}


def fresh_files() -> None:
    """No maintenance mark, audit log or plan file left by an earlier case."""
    for host in HYPERVISORS:
        lab.ssh(host, f"rm -rf {MAINTENANCE_MARK} /var/log/virtops-test; mkdir -p /var/lib/virtops-test")


def runs_once_intact(marks: dict[str, lab.DiskMark]) -> dict[str, str]:
    """Each guest runs on exactly one host, persistent there only, and writes on; where each runs."""
    placed = {}
    for name, before in marks.items():
        where = lab.whereabouts(name)
        active = sorted(host for host, info in where.items() if info["state"] not in ("shutoff", None))
        assert len(active) == 1, f"{name} is active on {active or 'no host'}: {where}"
        host = active[0]
        assert where[host] == running(True), f"{name} on {host}: {where[host]}"
        assert sorted(h for h, info in where.items() if info["persistent"]) == [host], f"{name}: {where}"
        lab.assert_disk_intact_and_written(name, before)
        placed[name] = host
    return placed


def counters(marks: dict[str, lab.DiskMark]) -> str:
    return "; ".join(f"{name} {mark.counter}" for name, mark in marks.items())


def seen(placed: dict[str, str], marks: dict[str, lab.DiskMark]) -> str:
    hosts = ", ".join(f"{name} on {host}" for name, host in placed.items())
    return f"{hosts}; each runs once, persistent there only; counters advanced from {counters(marks)}, disks unchanged"


def origin_recorded(host: str, name: str) -> bool:
    proc = lab.ssh(host, f"virsh metadata {name} {NAMESPACE} --config")
    return proc.returncode == 0 and "<origin" in proc.stdout


def audit_records(host: str) -> list[dict]:
    proc = lab.ssh(host, f"cat {AUDIT_LOG} 2>/dev/null")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def short_host(where: str | None, acting_host: str) -> str:
    """The lab host an audit line's source or destination names: a host name, or a URI (a local URI, or
    none, names the host that wrote the line)."""
    if not where:
        return acting_host.split(".", 1)[0]
    if "://" in where:
        authority = where.split("://", 1)[1].split("/", 1)[0]
        return short_host(authority or None, acting_host)
    return where.split(".", 1)[0]


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def shared_hosts(records: list[dict], start: dict[str, str], group: tuple[str, ...]) -> list[str]:
    """Each moment two members of ``group`` could have been on one host, from the audit log.

    A guest is on its start host until its first move starts; while a move runs (started_at to
    finished_at) it may be on both ends; after a move that succeeded it is on the destination, after
    one that failed on the source.
    """
    spans: dict[str, list[tuple[float, float, set[str]]]] = {name: [] for name in group}
    moves = sorted((record for record in records if record.get("guest_name") in group), key=lambda r: r["started_at"])
    last: dict[str, tuple[float, str]] = {name: (float("-inf"), start[name]) for name in group}
    for move in moves:
        name, acting = move["guest_name"], move["host"]
        since, host = last[name]
        began, ended = when(move["started_at"]), when(move["finished_at"])
        origin, target = short_host(move["source"], acting), short_host(move["destination"], acting)
        spans[name].append((since, began, {host}))
        spans[name].append((began, ended, {origin, target}))
        last[name] = (ended, target if move["result"] in ("migrated", "unchanged") else origin)
    for name, (since, host) in last.items():
        spans[name].append((since, float("inf"), {host}))
    clashes = []
    for first, second in combinations(group, 2):
        for a_from, a_to, a_hosts in spans[first]:
            for b_from, b_to, b_hosts in spans[second]:
                if a_from < b_to and b_from < a_to and a_hosts & b_hosts:
                    clashes.append(f"{first} and {second} on {sorted(a_hosts & b_hosts)} between {max(a_from, b_from)} "
                                   f"and {min(a_to, b_to)}")
    return clashes
