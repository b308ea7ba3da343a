"""Fixtures for the lab integration tests: real hosts, reached over SSH.

The session's lab is the default topology under the name in VIRTOPS_LAB_NAME
(default ``vtl``); it is brought up once (``up`` keeps a healthy lab) and left
running for the next level of tests and for inspection.
"""

from __future__ import annotations

import os

import pytest
from labtools import Lab, lab_command


@pytest.fixture(scope="session")
def lab() -> Lab:
    name = os.environ.get("VIRTOPS_LAB_NAME", "vtl")
    lab_command("up", f"--name={name}")
    return Lab(name)
