"""Ways to drive and reach the lab from tests: its CLI, SSH, ad-hoc Ansible."""

from __future__ import annotations

import functools
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
LAB_NAME = os.environ.get("VIRTOPS_LAB_NAME", "vtl")
VENV_BIN = Path(sys.executable).parent
# Where the integration tests run Ansible from, as an operator would: a directory outside the
# repository (no ansible.cfg, no playbook-adjacent collections of the checkout).
OPERATOR_DIR = Path(os.environ.get("VIRTOPS_OPERATOR_DIR", f"/var/tmp/virtops-operator-{LAB_NAME}"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "packaging"))
import artifact  # tests/packaging/artifact.py, put on the path just above


@functools.cache
def installed_collections() -> str:
    """ANSIBLE_COLLECTIONS_PATH of the collection as operators get it: the tarball of this tree, installed.

    The Makefile builds and installs it once for all suites and passes the path in
    VIRTOPS_INSTALLED_COLLECTIONS; a run of pytest on its own builds and installs it here, once.
    The dependencies (community.*, ansible.posix) come from the venv's ``ansible`` package.
    """
    given = os.environ.get("VIRTOPS_INSTALLED_COLLECTIONS")
    if given:
        return given
    return str(artifact.build_and_install(REPO_ROOT / "build" / "installed" / LAB_NAME))


def ansible_env(inventory: Path) -> dict[str, str]:
    """The environment of every ansible command the tests run: the installed collection, this inventory."""
    OPERATOR_DIR.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=installed_collections(),
        ANSIBLE_INVENTORY=str(inventory),
        ANSIBLE_HOME=str(OPERATOR_DIR / ".ansible"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_HOST_KEY_CHECKING="true",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


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
        return ansible_env(self.inventory)

    def ansible_adhoc(self, pattern: str, module: str, args: str = "") -> dict:
        """Run an ad-hoc module; return the json callback's per-host results of its one task."""
        command = [str(VENV_BIN / "ansible"), pattern, "-m", module]
        if args:
            command += ["-a", args]
        result = subprocess.run(command, check=False, text=True, capture_output=True, env=self.ansible_env(),
                                cwd=OPERATOR_DIR, timeout=600)
        report = json.loads(result.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]
