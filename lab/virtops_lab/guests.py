"""Test guests on a lab's hypervisors, made and removed by tests/integration/playbooks/guests.yml.

The integration tests and the benchmarks create their guests here (see that playbook for a guest's keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from virtops_lab.client import Lab

TEST_PLAYBOOKS = Path(__file__).resolve().parents[2] / "tests" / "integration" / "playbooks"


def create_guests(lab: Lab, guests: list[dict[str, Any]]) -> None:
    run = lab.playbook(TEST_PLAYBOOKS / "guests.yml", {"virtops_test_guests": guests})
    assert run.rc == 0, f"creating guests failed: {run.describe()}"


def remove_guests(lab: Lab, guests: list[dict[str, Any]]) -> None:
    run = lab.playbook(TEST_PLAYBOOKS / "guests.yml", {"virtops_test_guests": guests, "virtops_test_state": "absent"})
    assert run.rc == 0, f"removing guests failed: {run.describe()}"
