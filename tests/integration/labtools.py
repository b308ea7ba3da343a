"""Ways to drive and reach the lab from tests: its CLI, SSH, ad-hoc Ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_CLI = REPO_ROOT / "lab" / "virtops_lab.py"
STATE_ROOT = Path(os.environ.get("VIRTOPS_LAB_STATE", "/var/lib/virtops-lab"))
COLLECTIONS_ROOT = REPO_ROOT / "build" / "collections"


def lab_command(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(LAB_CLI), *args], check=False, text=True, capture_output=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Lab:
    """A running lab: its name, hosts and the ways to reach them."""

    name: str

    @property
    def state(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def inventory(self) -> Path:
        return self.state / "inventory"

    @property
    def hosts(self) -> dict[str, dict]:
        data = yaml.safe_load((self.inventory / "hosts.yml").read_text())
        found: dict[str, dict] = {}
        for group in data["all"]["children"].values():
            found.update(group["hosts"])
        return found

    def ssh(self, host: str, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        args = [
            "ssh", "-i", str(self.state / "ssh" / "id_ed25519"),
            "-o", f"UserKnownHostsFile={self.state / 'ssh' / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            f"root@{self.hosts[host]['ansible_host']}", command,
        ]
        result = subprocess.run(args, check=False, text=True, capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{host}: {command!r} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def ansible_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT),
            ANSIBLE_INVENTORY=str(self.inventory),
            ANSIBLE_FORCE_COLOR="false",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        )
        return env

    def ansible_adhoc(self, pattern: str, module: str, args: str = "") -> dict:
        """Run an ad-hoc module; return the json callback's per-host results of its one task."""
        command = [str(Path(sys.executable).parent / "ansible"), pattern, "-m", module]
        if args:
            command += ["-a", args]
        result = subprocess.run(command, check=False, text=True, capture_output=True, env=self.ansible_env(), timeout=600)
        report = json.loads(result.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]
