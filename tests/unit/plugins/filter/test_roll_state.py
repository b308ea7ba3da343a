# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter virtops.migration.roll_state: a new roll, or the interrupted one resumed where it stopped."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.virtops.migration.plugins.filter.roll_state import (
    FilterModule,
    roll_state,
)

HOSTS = ["hv1", "hv2", "hv3"]
NEW = "20261202T130000Z"


def record(roll: str, step: str, at: str = "2026-12-01T10:00:00+00:00") -> dict:
    return {"roll": roll, "step": step, "at": at, "message": ""}


def test_no_records_start_a_new_roll_with_every_host():
    state = roll_state({"hv1": {}, "hv2": None}, HOSTS, NEW)
    assert state == {"roll_id": NEW, "resumed": False, "hosts": HOSTS, "done": [], "failed": [], "under_way": {}, "left": HOSTS}


def test_a_finished_roll_is_not_resumed():
    records = {host: record("r1", "done") for host in HOSTS}
    state = roll_state(records, HOSTS, NEW)
    assert state["roll_id"] == NEW and not state["resumed"] and state["left"] == HOSTS


def test_a_roll_killed_on_a_host_resumes_with_that_host():
    records = {"hv1": record("r1", "done"), "hv2": record("r1", "maintaining"), "hv3": record("r0", "done")}
    state = roll_state(records, HOSTS, NEW)
    assert state["roll_id"] == "r1" and state["resumed"]
    assert state["done"] == ["hv1"] and state["under_way"] == {"hv2": "maintaining"}
    assert state["left"] == ["hv2", "hv3"]


def test_a_roll_stopped_between_two_hosts_resumes_with_the_next():
    records = {"hv1": record("r1", "done"), "hv2": record("r0", "done"), "hv3": {}}
    state = roll_state(records, HOSTS, NEW)
    assert state["roll_id"] == "r1" and state["left"] == ["hv2", "hv3"]


def test_a_failed_host_is_taken_again():
    records = {"hv1": record("r1", "failed"), "hv2": record("r1", "done")}
    state = roll_state(records, HOSTS, NEW)
    assert state["roll_id"] == "r1" and state["failed"] == ["hv1"] and state["left"] == ["hv1", "hv3"]


def test_the_most_recent_unfinished_roll_wins():
    records = {"hv1": record("old", "failed", "2026-11-01T00:00:00+00:00"),
               "hv2": record("new", "evacuating", "2026-12-01T00:00:00+00:00")}
    assert roll_state(records, HOSTS, NEW)["roll_id"] == "new"


def test_restart_ignores_an_unfinished_roll():
    records = {"hv1": record("r1", "maintaining")}
    state = roll_state(records, HOSTS, NEW, restart=True)
    assert state["roll_id"] == NEW and not state["resumed"] and state["left"] == HOSTS


def test_records_of_other_hosts_and_unknown_steps_are_ignored():
    records = {"hv9": record("r9", "maintaining"), "hv1": {"roll": "r2", "step": "dancing"}}
    assert roll_state(records, HOSTS, NEW)["roll_id"] == NEW


@pytest.mark.parametrize("records,hosts,new_id", [
    ({"hv1": "done"}, HOSTS, NEW),
    ({}, [], NEW),
    ({}, "hv1", NEW),
    ({}, HOSTS, ""),
])
def test_bad_input_is_refused(records, hosts, new_id):
    with pytest.raises(AnsibleFilterError):
        roll_state(records, hosts, new_id)


def test_the_filter_is_registered():
    assert FilterModule().filters()["roll_state"] is roll_state
