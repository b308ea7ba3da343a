"""Where a lab keeps its files on this machine, and the mark on everything it makes.

``state_dir(name)`` is the one place that says where a lab's state lives; every path of a
lab (machines, ssh key, known_hosts, inventory, record) is under it (``LabPaths``).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from virtops_lab.topology import Host, Topology

CACHE_ROOT = Path(os.environ.get("VIRTOPS_LAB_CACHE", "/var/cache/virtops-lab"))
STATE_ROOT = Path(os.environ.get("VIRTOPS_LAB_STATE", "/var/lib/virtops-lab"))
# Bridges (alias), NAT rules (comment), mounts (source) and the /etc/hosts block carry it.
TAG = "virtops-lab"
DEFAULT_SESSION_LAB = "vtl"


def session_lab_name() -> str:
    """The lab that tests and benchmarks work on: VIRTOPS_LAB_NAME, default ``vtl``."""
    return os.environ.get("VIRTOPS_LAB_NAME", DEFAULT_SESSION_LAB)


def state_dir(name: str) -> Path:
    """The directory of the lab ``name``: every file it keeps on this machine."""
    return STATE_ROOT / name


@dataclass(frozen=True)
class LabPaths:
    """The files of one lab, all under its state directory."""

    name: str

    @property
    def state(self) -> Path:
        return state_dir(self.name)

    def machine_dir(self, host_name: str) -> Path:
        return self.state / "machines" / host_name

    @property
    def ssh_key(self) -> Path:
        return self.state / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "ssh" / "known_hosts"

    @property
    def inventory_dir(self) -> Path:
        return self.state / "inventory"

    @property
    def record(self) -> Path:
        return self.state / "lab.json"


@contextlib.contextmanager
def sweep_lock() -> Iterator[None]:
    """Serialise the leftover sweep and first steps of every `up`, and every `down`, on this machine."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT / ".up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def recorded_topology(paths: LabPaths) -> Topology | None:
    """The topology the lab was brought up with, from its record (None when it has none)."""
    if not paths.record.exists():
        return None
    data = json.loads(paths.record.read_text())["topology"]
    return Topology(name=data["name"], subnet=ipaddress.ip_network(data["subnet"]), domain=data["domain"],
                    hosts=[Host(h["name"], h["address"], h["groups"], h["export_dirs"]) for h in data["hosts"]],
                    source=str(paths.record))
