# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark's lab: bring it up, bootstrap it, create guests, run the module and virsh on it, timed.

It reaches the lab through the lab client (virtops_lab.client, on the venv's import path), as the
integration tests do. The client runs Ansible from the operator directory and with the installed
collection of the lab named in VIRTOPS_LAB_NAME: ``BenchLab`` sets it to its own lab.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from virtops_lab import guests as test_guests
from virtops_lab.ansible_runs import Run, operator_dir
from virtops_lab.client import Lab, lab_command, wait_for
from virtops_lab.guests import TEST_PLAYBOOKS

SERIAL_LOG = "/var/log/libvirt/qemu/{name}-serial.log"
HOST_TIMING = re.compile(r"^BENCH-TIMING (\S+) (\S+) (-?\d+)$", re.MULTILINE)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class HostRun:
    """A shell script run on a lab host over SSH: the controller's wall time and the host's own."""

    rc: int
    wall_s: float
    host_s: float | None
    stdout: str
    stderr: str


def timed_script(script: str) -> str:
    """Wrap ``script`` so the host reports its own start, end and exit status."""
    return ("__s=$(date +%s.%N); ( " + script + " ); __rc=$?; __e=$(date +%s.%N); "
            "echo \"BENCH-TIMING $__s $__e $__rc\"")


def parse_host_timing(stdout: str) -> tuple[float | None, int | None]:
    """(seconds, exit status) from the line ``timed_script`` prints, or (None, None)."""
    found = HOST_TIMING.findall(stdout)
    if not found:
        return None, None
    start, end, rc = found[-1]
    return float(end) - float(start), int(rc)


def parse_virsh_fields(text: str) -> dict[str, str]:
    """``Key:  value`` lines (virsh domjobinfo, dominfo) as a dict of stripped strings."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def virsh_number(value: str | None) -> float | None:
    """The leading number of a virsh value such as ``45 ms`` or ``128.000 MiB``."""
    if not value:
        return None
    match = re.match(r"-?\d+(\.\d+)?", value)
    return float(match.group(0)) if match else None


class BenchLab:
    """One lab, reached through the lab client (``client``)."""

    def __init__(self, name: str, subnet: str | None) -> None:
        self.client = Lab(name)
        self.name = name
        # The subnet of this lab when it already exists (so ``up`` never renumbers it).
        self.subnet = subnet or self.client.subnet
        os.environ["VIRTOPS_LAB_NAME"] = name
        if self.subnet:
            os.environ["VIRTOPS_LAB_SUBNET"] = self.subnet

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> None:
        args = ["up", f"--name={self.name}"]
        if self.subnet:
            args.append(f"--subnet={self.subnet}")
        proc = lab_command(*args, check=False, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"lab up failed:\n{proc.stdout}\n{proc.stderr}")

    def playbook(self, name: str, timeout: float = 1800) -> None:
        run = self.client.playbook(TEST_PLAYBOOKS / name, timeout=timeout)
        if run.rc != 0:
            raise RuntimeError(f"{name} failed: {run.describe()}")

    def bootstrap(self) -> None:
        self.playbook("prepare_lab.yml")

    def guest_media(self) -> None:
        self.playbook("guest_media.yml")

    # ------------------------------------------------------------------ hosts

    def ssh(self, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.client.ssh(host, command, check=False, timeout=timeout)

    def run_timed(self, host: str, script: str, timeout: float = 900) -> HostRun:
        started = time.monotonic()
        proc = self.ssh(host, timed_script(script), timeout=timeout)
        wall = time.monotonic() - started
        host_s, rc = parse_host_timing(proc.stdout)
        return HostRun(rc if rc is not None else proc.returncode, wall, host_s, proc.stdout, proc.stderr)

    def dest_uri(self, host: str) -> str:
        return self.client.tls_uri(host)

    def completed_job(self, host: str, name: str) -> dict[str, float | None]:
        """libvirt's completed job statistics of ``name`` on ``host`` (times in ms, sizes in MiB)."""
        proc = self.ssh(host, f"virsh domjobinfo {shlex.quote(name)} --completed")
        fields = parse_virsh_fields(proc.stdout)
        return {
            "time_elapsed_ms": virsh_number(fields.get("Time elapsed")),
            "downtime_ms": virsh_number(fields.get("Total downtime")),
            "data_processed_mib": virsh_number(fields.get("Data processed")),
            "memory_iterations": virsh_number(fields.get("Iteration")),
        }

    def running_guests(self, host: str) -> list[str]:
        return self.ssh(host, "virsh -q list --name --state-running").stdout.split()

    def where(self, name: str, hosts: tuple[str, ...]) -> str | None:
        for host in hosts:
            if name in self.running_guests(host):
                return host
        return None

    # ------------------------------------------------------------------ ansible

    def module(self, host: str, module: str, args: dict[str, Any], timeout: float = 1800,
               keep_remote_files: bool = False) -> tuple[float, dict[str, Any]]:
        """Run a collection module through the ``ansible`` CLI; (controller wall seconds, result)."""
        env = self.client.ansible_env()
        if keep_remote_files:
            env["ANSIBLE_KEEP_REMOTE_FILES"] = "1"
        started = time.monotonic()
        proc = subprocess.run(self.client.module_cmd(host, module, args), capture_output=True, text=True,
                              env=env, cwd=operator_dir(), timeout=timeout, check=False)
        wall = time.monotonic() - started
        results = Run.from_process(proc).results(host)
        if not results:
            return wall, {"failed": True, "msg": f"no result (rc {proc.returncode}): {proc.stderr[-2000:]}"}
        return wall, results[-1]

    def adhoc(self, host: str, fqcn: str, args: dict[str, Any], timeout: float = 300) -> tuple[float, dict[str, Any]]:
        """Any module by its full name through the ``ansible`` CLI; (controller wall seconds, result)."""
        command = ["ansible", host, "-i", str(self.client.inventory), "-m", fqcn]
        if args:
            command += ["-a", json.dumps(args)]
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True, env=self.client.ansible_env(), cwd=operator_dir(),
                              timeout=timeout, check=False)
        wall = time.monotonic() - started
        results = Run.from_process(proc).results(host)
        return wall, results[-1] if results else {"failed": True, "msg": proc.stderr[-2000:]}

    def latest_ansiballz(self, host: str, module: str) -> str | None:
        """The newest kept AnsiballZ wrapper of ``module`` on ``host`` (ANSIBLE_KEEP_REMOTE_FILES)."""
        proc = self.ssh(host, f"ls -1t ~/.ansible/tmp/*/AnsiballZ_{module}.py 2>/dev/null | head -1")
        path = proc.stdout.strip()
        return path or None

    def clear_ansiballz(self, host: str) -> None:
        self.ssh(host, "rm -rf ~/.ansible/tmp/ansible-tmp-*")

    def run_ansiballz(self, host: str, path: str) -> tuple[float | None, dict[str, Any]]:
        """Run a kept module wrapper directly with the host's python3: (host seconds, result)."""
        run = self.run_timed(host, f"/usr/bin/python3 {shlex.quote(path)}")
        body = run.stdout[: run.stdout.find("BENCH-TIMING")]
        start = body.find("{")
        try:
            result = json.loads(body[start:]) if start >= 0 else {}
        except json.JSONDecodeError:
            result = {"failed": True, "msg": body[-500:]}
        return run.host_s, result

    # ------------------------------------------------------------------ guests

    def create_guests(self, guests: list[dict[str, Any]]) -> None:
        test_guests.remove_guests(self.client, guests)
        test_guests.create_guests(self.client, guests)

    def remove_guests(self, guests: list[dict[str, Any]]) -> None:
        test_guests.remove_guests(self.client, guests)

    def wait_booted(self, guests: list[dict[str, Any]], timeout: float = 120) -> None:
        """Wait until every Linux guest printed ``virtops-guest: up`` (after its RAM fill)."""
        for guest in guests:
            if guest.get("kind") != "linux":
                continue
            log_path = SERIAL_LOG.format(name=guest["name"])
            allowed = timeout + guest.get("fill_mib", 0) / 4

            def booted(guest: dict[str, Any] = guest, log_path: str = log_path) -> bool:
                return "virtops-guest: up" in self.ssh(guest["host"], f"cat {log_path} 2>/dev/null").stdout

            wait_for(booted, allowed, interval=2, what=f"{guest['name']} to boot")
