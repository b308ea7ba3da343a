# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The machine the benchmarks ran on: the controller and the lab's hypervisors."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from labaccess import BenchLab, parse_virsh_fields

HYPERVISORS = ("hv1", "hv2", "hv3")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def python_package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def controller() -> dict[str, Any]:
    kvm = Path("/dev/kvm").exists()
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_mib": memory_mib(),
        "kernel": platform.release(),
        "kvm_device": kvm,
        # The lab's guests are <domain type='qemu'> (tests/integration/guests/domain.xml.j2): TCG, whatever /dev/kvm says.
        "accelerator": "TCG (QEMU software emulation; domain type 'qemu')"
                       + ("; /dev/kvm exists but is not used" if kvm else "; no /dev/kvm"),
        "python": platform.python_version(),
        "ansible_core": python_package_version("ansible-core"),
        "libvirt_python": python_package_version("libvirt-python"),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent)
    return proc.stdout.strip() or None


def hypervisor(lab: BenchLab, host: str) -> dict[str, Any]:
    version = parse_virsh_fields(lab.ssh(host, "virsh version").stdout)
    os_release = lab.ssh(host, ". /etc/os-release && echo \"$PRETTY_NAME\"").stdout.strip()
    nodeinfo = parse_virsh_fields(lab.ssh(host, "virsh nodeinfo").stdout)
    return {
        "libvirt": version.get("Using library", "").replace("libvirt ", "") or None,
        "qemu": version.get("Running hypervisor", "").replace("QEMU ", "") or None,
        "os": os_release or None,
        "cpus_seen": nodeinfo.get("CPU(s)"),
        "memory_seen": nodeinfo.get("Memory size"),
    }


def describe(lab: BenchLab) -> dict[str, Any]:
    return {
        "controller": controller(),
        "lab": {"name": lab.name, "subnet": lab.subnet,
                "kind": "systemd-nspawn containers on the controller sharing its cores and memory"},
        "hosts": {host: hypervisor(lab, host) for host in HYPERVISORS},
    }
