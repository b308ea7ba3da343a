"""SSH from the controller to the lab's machines: the key, the pinned host keys, the one command line.

``ssh_command`` is the only place that builds the ssh command line; the lab's own checks and
every client (tests, benchmarks) use it.
"""

from __future__ import annotations

import subprocess

from virtops_lab.state import LabPaths
from virtops_lab.system import run
from virtops_lab.topology import Host, Topology


def host_key_options(paths: LabPaths) -> list[str]:
    """ssh options that accept only the host keys recorded by `up` (also given to Ansible)."""
    return ["-o", f"UserKnownHostsFile={paths.known_hosts}", "-o", "StrictHostKeyChecking=yes"]


def ssh_command(paths: LabPaths, address: str, command: str) -> list[str]:
    """The ssh command line that runs ``command`` as root on the machine at ``address``."""
    return [
        "ssh", "-i", str(paths.ssh_key), *host_key_options(paths),
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{address}", command,
    ]


def setup_ssh(paths: LabPaths) -> str:
    paths.ssh_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.ssh_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtops-lab-controller", "-f", str(paths.ssh_key)])
    return paths.ssh_key.with_suffix(".pub").read_text()


def write_known_hosts(topology: Topology, paths: LabPaths) -> None:
    lines = []
    for host in topology.hosts:
        pub = (paths.machine_dir(host.name) / "merged" / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{host.name},{topology.fqdn(host)},{host.address} {pub[0]} {pub[1]}")
    paths.known_hosts.write_text("\n".join(lines) + "\n")


def ssh(paths: LabPaths, host: Host, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(paths, host.address, command), check=False,
                          text=True, capture_output=True, timeout=timeout)
