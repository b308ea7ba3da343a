"""Fixtures for the lab integration tests: real hosts, reached over SSH.

The session's lab (virtops_lab.client.Lab; lab/ is on the venv's import path) is the
default topology under the name in VIRTOPS_LAB_NAME (default ``vtl``); it is brought up
once (``up`` keeps a healthy lab) and left running for the next level of tests and for
inspection.
"""

from __future__ import annotations

import os

import migrate_support
import placement_cluster
import pytest
from virtops_lab.client import Lab, lab_command

pytest_plugins = ["fault_table"]


@pytest.fixture(scope="session")
def lab() -> Lab:
    lab = Lab.of_session()
    lab_command("up", f"--name={lab.name}")
    return lab


@pytest.fixture(scope="session")
def prepared_lab(lab: Lab) -> Lab:
    """The session's lab set up by the collection itself (playbooks/bootstrap.yml), once.

    VIRTOPS_MIGRATE_PREPARE=0 skips it for a lab already bootstrapped.
    """
    if os.environ.get("VIRTOPS_MIGRATE_PREPARE", "1") != "0":
        run = migrate_support.playbook(migrate_support.PLAYBOOKS / "prepare_lab.yml", timeout=1200)
        assert run.rc == 0, f"lab preparation failed: {run.describe()}"
    return lab


@pytest.fixture(scope="module")
def cluster(prepared_lab: Lab):
    """The placement cluster (placement_cluster.py), made fresh for each suite that uses it and removed after it."""
    placement_cluster.create_cluster()
    yield
    placement_cluster.remove_cluster()
