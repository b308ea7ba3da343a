"""A running lab as tests and benchmarks reach it: its state, inventory and hosts, SSH, its command line.

The integration tests (tests/integration) and the benchmarks (tests/bench) reach a lab through ``Lab``;
SSH goes through the lab's one command line (``virtops_lab.ssh.ssh_command``) and every path through
its state directory (``virtops_lab.state``).
Ansible runs against a lab are in ``virtops_lab.ansible_runs``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from virtops_lab import ansible_runs
from virtops_lab.ansible_runs import Run
from virtops_lab.ssh import ssh_command
from virtops_lab.state import LabPaths, session_lab_name
from virtops_lab.topology import DEFAULT_TOPOLOGY

LAB_CLI = Path(__file__).resolve().parents[1] / "virtops_lab.py"
T = TypeVar("T")


def lab_command(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the lab's command line (lab/virtops_lab.py) with ``args``; on ``check``, fail on a non-zero exit."""
    result = subprocess.run([sys.executable, str(LAB_CLI), *args], check=False, text=True, capture_output=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.5, what: str = "condition") -> T:
    """Call ``predicate`` until it returns something true; that value (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Lab:
    """A lab by name: its files on this machine, its hosts (from its inventory) and the ways to reach them."""

    name: str

    @classmethod
    def of_session(cls) -> Lab:
        return cls(session_lab_name())

    # ------------------------------------------------------------------ state and inventory

    @property
    def paths(self) -> LabPaths:
        return LabPaths(self.name)

    @property
    def state(self) -> Path:
        return self.paths.state

    @property
    def inventory(self) -> Path:
        return self.paths.inventory_dir

    def inventory_document(self) -> dict[str, Any]:
        return yaml.safe_load((self.inventory / "hosts.yml").read_text())

    @property
    def hosts(self) -> dict[str, dict]:
        """Host name -> its inventory variables (ansible_host, virtops_libvirt_fqdn)."""
        found: dict[str, dict] = {}
        for group in self.inventory_document()["all"]["children"].values():
            found.update(group.get("hosts") or {})
        return found

    @property
    def subnet(self) -> str | None:
        """The subnet the lab was brought up on, when it has an inventory (None before its first `up`)."""
        if not (self.inventory / "hosts.yml").exists():
            return None
        return self.inventory_document()["all"]["vars"].get("virtops_lab_subnet")

    def address(self, host: str) -> str:
        return self.hosts[host]["ansible_host"]

    def tls_uri(self, host: str) -> str:
        """libvirt's TLS URI of ``host`` (its full name in the lab's domain).

        Known before the lab's first ``up`` too (test modules name their URIs when pytest collects them):
        from the inventory when there is one, else by the topology's naming rule.
        """
        if (self.inventory / "hosts.yml").exists():
            return f"qemu+tls://{self.hosts[host]['virtops_libvirt_fqdn']}/system"
        domain = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())["domain"]
        return f"qemu+tls://{host}.{self.name}.{domain}/system"

    # ------------------------------------------------------------------ the lab's command line

    def up(self, *args: str) -> subprocess.CompletedProcess:
        return lab_command("up", f"--name={self.name}", *args, timeout=900)

    def down(self, check: bool = True) -> subprocess.CompletedProcess:
        return lab_command("down", f"--name={self.name}", check=check)

    # ------------------------------------------------------------------ SSH

    def ssh_command(self, host: str, command: str) -> list[str]:
        return ssh_command(self.paths, self.address(host), command)

    def ssh(self, host: str, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``command`` as root on ``host``; on ``check``, fail on a non-zero exit."""
        result = subprocess.run(self.ssh_command(host, command), check=False, text=True, capture_output=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{host}: {command!r} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def ssh_input(self, host: str, command: str, data: bytes, timeout: float = 60) -> subprocess.CompletedProcess:
        """Like ``ssh`` (unchecked) with ``data`` on the command's stdin (bytes in, text out)."""
        cmd = self.ssh_command(host, command)
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, check=False)
        return subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))

    # ------------------------------------------------------------------ Ansible, as an operator runs it

    def ansible_env(self) -> dict[str, str]:
        return ansible_runs.ansible_env(self.inventory)

    def ansible_adhoc(self, pattern: str, module: str, args: str = "") -> dict:
        return ansible_runs.adhoc(self.inventory, pattern, module, args)

    def playbook(self, path: Path | str, extra_vars: dict[str, Any] | None = None, check: bool = False,
                 timeout: float = 600) -> Run:
        return ansible_runs.playbook(self.inventory, path, extra_vars, check, timeout)

    def module_cmd(self, host: str, module: str, args: dict[str, Any], check: bool = False) -> list[str]:
        return ansible_runs.module_cmd(self.inventory, host, module, args, check)

    def module(self, host: str, module_name: str, args: dict[str, Any], check: bool = False,
               timeout: float = 600) -> dict[str, Any]:
        return ansible_runs.module(self.inventory, host, module_name, args, check, timeout)

    def start_module(self, host: str, module_name: str, args: dict[str, Any]) -> subprocess.Popen:
        return ansible_runs.start_module(self.inventory, host, module_name, args)

    def text_env(self) -> dict[str, str]:
        return ansible_runs.text_env(self.inventory)

    def playbook_text_cmd(self, path: Path | str, extra_vars: dict[str, Any] | None = None) -> list[str]:
        return ansible_runs.playbook_cmd(self.inventory, path, extra_vars)

    def playbook_text(self, path: Path | str, extra_vars: dict[str, Any] | None = None,
                      timeout: float = 600) -> subprocess.CompletedProcess:
        return ansible_runs.playbook_text(self.inventory, path, extra_vars, timeout)

    def start_playbook_text(self, path: Path | str, extra_vars: dict[str, Any] | None = None) -> subprocess.Popen:
        return ansible_runs.start_playbook_text(self.inventory, path, extra_vars)
