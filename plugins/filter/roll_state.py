# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: roll_state
short_description: Which rolling maintenance a run belongs to, and what is left of it
version_added: 2.1.0
description:
  - Decides, from the step each host of a rolling maintenance recorded (the role
    C(virtops.migration.rolling_maintenance) keeps it on each host), whether a run of the roll starts
    a new roll or resumes one that was interrupted, and which hosts are done, failed, under way or left.
  - A roll is unfinished while a host's record of it names a step other than C(done) (the host was
    being evacuated, maintained or restored, or failed), or while some of the given hosts have no
    C(done) record of it (a run stopped between two hosts). The most recent unfinished roll is resumed.
    With none, a new roll starts with the id given.
  - A host is left to do unless its record says C(done) for the roll.
positional: hosts, new_roll_id
options:
  _input:
    description:
      - Each host's record, by inventory name; an empty mapping (or null) for a host without one. A record
        holds C(roll) (the roll id), C(step) (evacuating, maintaining, restoring, done or failed), C(at)
        (ISO 8601 time) and C(message).
    type: dict
    required: true
  hosts:
    description: The hosts of the roll, in the order the roll takes them.
    type: list
    elements: str
    required: true
  new_roll_id:
    description: The id a new roll gets.
    type: str
    required: true
  restart:
    description: Start a new roll even when one is unfinished.
    type: bool
    default: false
author:
  - virtops.migration maintainers (@virtops)
"""

EXAMPLES = r"""
- name: The roll this run belongs to
  ansible.builtin.set_fact:
    roll: "{{ records | virtops.migration.roll_state(ansible_play_hosts_all, now(utc=true).strftime('%Y%m%dT%H%M%SZ')) }}"
"""

RETURN = r"""
_value:
  description: The roll and its hosts.
  type: dict
  contains:
    roll_id:
      description: The roll's id.
      type: str
      sample: 20261202T130501Z
    resumed:
      description: Whether an unfinished roll is resumed.
      type: bool
    done:
      description: Hosts this roll finished (never taken again).
      type: list
      elements: str
    failed:
      description: Hosts on which this roll failed (taken again by this run).
      type: list
      elements: str
    under_way:
      description: Hosts the roll was working on when it stopped, with their step.
      type: dict
    hosts:
      description: The hosts of the roll, in order.
      type: list
      elements: str
    left:
      description: Hosts this run takes, in order.
      type: list
      elements: str
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

DONE = "done"
FAILED = "failed"
STEPS = ("evacuating", "maintaining", "restoring", DONE, FAILED)


def valid_records(records: Mapping[str, Any], hosts: list[str]) -> dict[str, Mapping[str, Any]]:
    """The records of the roll's hosts that name a roll and a known step."""
    kept = {}
    for host in hosts:
        record = records.get(host) or {}
        if not isinstance(record, Mapping):
            raise AnsibleFilterError(f"roll_state: the record of {host} is not a mapping: {record!r}")
        if record.get("roll") and record.get("step") in STEPS:
            kept[host] = record
    return kept


def unfinished_roll(records: Mapping[str, Mapping[str, Any]], hosts: list[str]) -> str | None:
    """The most recent roll a host is still in (a step other than done), or that not every host finished."""
    candidates = []
    for record in records.values():
        roll = str(record["roll"])
        finished_by = [host for host in hosts if records.get(host, {}).get("roll") == roll
                       and records[host].get("step") == DONE]
        if record["step"] != DONE or len(finished_by) < len(hosts):
            candidates.append((str(record.get("at") or ""), roll))
    return max(candidates)[1] if candidates else None


def roll_state(records: Mapping[str, Any] | None, hosts: list[str], new_roll_id: str,
               restart: bool = False) -> dict[str, Any]:
    """The filter: see DOCUMENTATION."""
    if not isinstance(hosts, list) or not hosts or not all(isinstance(host, str) for host in hosts):
        raise AnsibleFilterError(f"roll_state: hosts must be a non-empty list of host names, got {hosts!r}")
    if not new_roll_id:
        raise AnsibleFilterError("roll_state: new_roll_id must be a non-empty string")
    kept = valid_records(records or {}, hosts)
    roll = None if restart else unfinished_roll(kept, hosts)
    resumed = roll is not None
    roll = roll or str(new_roll_id)
    steps = {host: record["step"] for host, record in kept.items() if str(record["roll"]) == roll}
    return {
        "roll_id": roll,
        "resumed": resumed,
        "hosts": list(hosts),
        "done": [host for host in hosts if steps.get(host) == DONE],
        "failed": [host for host in hosts if steps.get(host) == FAILED],
        "under_way": {host: step for host, step in steps.items() if step not in (DONE, FAILED)},
        "left": [host for host in hosts if steps.get(host) != DONE],
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"roll_state": roll_state}
