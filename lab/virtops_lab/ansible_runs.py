"""Ansible against a lab as an operator runs it: the collection's installed tarball, from a directory outside
the repository (no ansible.cfg, no playbook-adjacent collections of the checkout), the json callback.

Each function takes the lab's inventory (``Lab.inventory``); ``virtops_lab.client.Lab`` offers them as methods.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtops_lab.state import session_lab_name

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "tests" / "packaging" / "artifact.py"
VENV_BIN = Path(sys.executable).parent


def operator_dir() -> Path:
    """Where Ansible runs from: VIRTOPS_OPERATOR_DIR, default /var/tmp/virtops-operator-<session's lab>."""
    return Path(os.environ.get("VIRTOPS_OPERATOR_DIR", f"/var/tmp/virtops-operator-{session_lab_name()}"))


def installed_collections() -> str:
    """ANSIBLE_COLLECTIONS_PATH of the collection as operators get it: the tarball of this tree, installed.

    The Makefile builds and installs it once for all suites and passes the path in
    VIRTOPS_INSTALLED_COLLECTIONS; without it, it is built and installed here (tests/packaging/artifact.py
    into build/installed/<session's lab>), once per process.
    """
    given = os.environ.get("VIRTOPS_INSTALLED_COLLECTIONS")
    if given:
        return given
    return build_and_install(REPO / "build" / "installed" / session_lab_name())


@functools.cache
def build_and_install(dest: Path) -> str:
    proc = subprocess.run([sys.executable, str(ARTIFACT), str(dest)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building and installing the collection into {dest} failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def ansible_env(inventory: Path) -> dict[str, str]:
    """The environment of every ansible command: the installed collection, this inventory, the json callback."""
    workdir = operator_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=installed_collections(),
        ANSIBLE_INVENTORY=str(inventory),
        ANSIBLE_HOME=str(workdir / ".ansible"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_HOST_KEY_CHECKING="true",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def text_env(inventory: Path) -> dict[str, str]:
    """``ansible_env`` with ansible-playbook's normal output (what an operator reads)."""
    env = ansible_env(inventory)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def parse_callback_output(stdout: str) -> dict[str, Any]:
    """The json callback's document in ``stdout`` (empty when there is none)."""
    start = stdout.find("{")
    return json.loads(stdout[start:]) if start >= 0 else {}


@dataclass
class Run:
    """One ansible(-playbook) run: return code and the json callback's document."""

    rc: int
    doc: dict[str, Any]
    stderr: str

    @classmethod
    def from_process(cls, proc: subprocess.CompletedProcess) -> Run:
        return cls(proc.returncode, parse_callback_output(proc.stdout), proc.stderr)

    def results(self, host: str) -> list[dict[str, Any]]:
        """Every task result of ``host``, in order."""
        found = []
        for play in self.doc.get("plays", []):
            for task in play.get("tasks", []):
                if host in task.get("hosts", {}):
                    result = dict(task["hosts"][host])
                    result["_task"] = task["task"]["name"]
                    found.append(result)
        return found

    def task(self, host: str, name: str) -> dict[str, Any]:
        """The last result of the task whose (templated) name starts with ``name``."""
        matches = [r for r in self.results(host) if r["_task"].startswith(name)]
        assert matches, f"no task {name!r} ran on {host}: {self.describe()}"
        return matches[-1]

    def changed(self, host: str) -> int:
        return self.doc.get("stats", {}).get(host, {}).get("changed", 0)

    def describe(self) -> str:
        return json.dumps(self.doc.get("stats"), sort_keys=True) + "\n" + self.stderr[-3000:]


def playbook_cmd(inventory: Path, path: Path | str, extra_vars: dict[str, Any] | None = None,
                 check: bool = False) -> list[str]:
    cmd = ["ansible-playbook", "-i", str(inventory), str(path)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    return cmd


def playbook(inventory: Path, path: Path | str, extra_vars: dict[str, Any] | None = None, check: bool = False,
             timeout: float = 600) -> Run:
    proc = subprocess.run(playbook_cmd(inventory, path, extra_vars, check), capture_output=True, text=True,
                          env=ansible_env(inventory), cwd=operator_dir(), timeout=timeout, check=False)
    return Run.from_process(proc)


def playbook_text(inventory: Path, path: Path | str, extra_vars: dict[str, Any] | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a playbook with the default callback; the text an operator would read."""
    return subprocess.run(playbook_cmd(inventory, path, extra_vars), capture_output=True, text=True,
                          env=text_env(inventory), cwd=operator_dir(), timeout=timeout, check=False)


def start_playbook_text(inventory: Path, path: Path | str, extra_vars: dict[str, Any] | None = None) -> subprocess.Popen:
    """Start a playbook in its own process group (so the whole run can be killed)."""
    return subprocess.Popen(playbook_cmd(inventory, path, extra_vars), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=text_env(inventory), cwd=operator_dir(), start_new_session=True)


def module_cmd(inventory: Path, host: str, module: str, args: dict[str, Any], check: bool = False) -> list[str]:
    cmd = ["ansible", host, "-i", str(inventory), "-m", f"virtops.migration.{module}", "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    return cmd


def module(inventory: Path, host: str, module_name: str, args: dict[str, Any], check: bool = False,
           timeout: float = 600) -> dict[str, Any]:
    """Run a collection module on a lab host; the result dict (``failed`` set on failure)."""
    proc = subprocess.run(module_cmd(inventory, host, module_name, args, check), capture_output=True, text=True,
                          env=ansible_env(inventory), cwd=operator_dir(), timeout=timeout, check=False)
    return Run.from_process(proc).results(host)[-1]


def start_module(inventory: Path, host: str, module_name: str, args: dict[str, Any]) -> subprocess.Popen:
    """Start a module run in the background (for a migration to steer while it runs)."""
    return subprocess.Popen(module_cmd(inventory, host, module_name, args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ansible_env(inventory), cwd=operator_dir())


def finish_module(proc: subprocess.Popen, host: str, timeout: float = 300) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return Run(proc.returncode, parse_callback_output(stdout), stderr).results(host)[-1]


def adhoc(inventory: Path, pattern: str, module: str, args: str = "") -> dict:
    """Run an ad-hoc module by its full name; the json callback's per-host results of its one task."""
    command = [str(VENV_BIN / "ansible"), pattern, "-m", module]
    if args:
        command += ["-a", args]
    result = subprocess.run(command, check=False, text=True, capture_output=True, env=ansible_env(inventory),
                            cwd=operator_dir(), timeout=600)
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]
