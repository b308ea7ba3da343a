# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bootstrap playbook on hosts that were never bootstrapped: check mode, then a real run.

The suite's shared lab is bootstrapped once by the collection with the default CA directory; these
cases need hosts fresh from `up` and a CA of their own, so they bring up a small lab of their own
(one storage host and one hypervisor, the default topology's nfs1 and hv1: every role of the
bootstrap runs), each case on freshly recreated machines, and take it down at the end. Its name and
subnet are BOOTSTRAP_LAB / BOOTSTRAP_SUBNET below (VIRTOPS_BOOTSTRAP_LAB_NAME and
VIRTOPS_BOOTSTRAP_LAB_SUBNET override them). Each case is a row of the fault-injection results table.

"Nothing changed on a host" is read from the lab machine's overlay: every file the host writes lands
in its upper directory on the controller, so listing that directory (type, size, mtime of each
entry) before and after the run sees any write anywhere on the host's root filesystem. Only what
logging in writes by itself may change: the journal, lastlog, wtmp, the mtimes of directories, and
Ansible's own working directory ~/.ansible/tmp, which any Ansible run makes and leaves empty.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import migrate_support
import pytest
from labtools import Lab, lab_command

BOOTSTRAP_LAB = os.environ.get("VIRTOPS_BOOTSTRAP_LAB_NAME", "lbt")
BOOTSTRAP_SUBNET = os.environ.get("VIRTOPS_BOOTSTRAP_LAB_SUBNET", "10.79.0.0/24")
BOOTSTRAP_HOSTS = {"nfs1": "storage", "hv1": "hypervisors"}
ROLES_BY_GROUP = {"storage": ["nfs_server"], "hypervisors": ["libvirt_pki", "libvirtd", "nfs_client"]}
BOOTSTRAP = "virtops.migration.bootstrap"
# What a login and the host's own logging write, whatever the playbook does; and the directory
# Ansible works in on any host it reaches (remote_tmp, left empty: anything inside it still counts).
WRITTEN_BY_LOGGING_IN = ("var/log/journal/", "var/log/lastlog", "var/log/wtmp")
ANSIBLE_REMOTE_TMP = ("root/.ansible", "root/.ansible/tmp")
DPKG_STATES = "dpkg-query --show --showformat='${Package} ${Version} ${db:Status-Abbrev}\\n'"
ADMIN_ROW = "controller (admin certificate)"


# ---------------------------------------------------------------------------
# The lab of this file and what is on its hosts


def lab_args() -> list[str]:
    return [f"--name={BOOTSTRAP_LAB}", f"--subnet={BOOTSTRAP_SUBNET}", f"--hosts={','.join(BOOTSTRAP_HOSTS)}"]


@pytest.fixture(scope="module")
def bootstrap_lab():
    """The lab of this file; taken down after the last case."""
    try:
        yield Lab(BOOTSTRAP_LAB)
    finally:
        lab_command("down", f"--name={BOOTSTRAP_LAB}", check=False)


@pytest.fixture
def fresh_lab(bootstrap_lab: Lab) -> Lab:
    """The file's lab with its machines made afresh: hosts as installed, never bootstrapped."""
    lab_command("up", "--recreate", *lab_args())
    return bootstrap_lab


def upper_dir(lab: Lab, host: str) -> Path:
    return lab.state / "machines" / host / "upper"


def written_files(lab: Lab, host: str) -> dict[str, tuple]:
    """Every entry the host has written to its root filesystem: path -> (type, size, mtime) (directories: type)."""
    root = upper_dir(lab, host)
    entries: dict[str, tuple] = {}
    for path in root.rglob("*"):
        relative = str(path.relative_to(root))
        if relative.startswith(WRITTEN_BY_LOGGING_IN) or relative in ANSIBLE_REMOTE_TMP:
            continue
        stat = path.lstat()
        kind = "dir" if path.is_dir() and not path.is_symlink() else "link" if path.is_symlink() else "file"
        entries[relative] = (kind,) if kind == "dir" else (kind, stat.st_size, stat.st_mtime_ns)
    return entries


def host_state(lab: Lab, host: str) -> dict[str, Any]:
    return {
        "files written": written_files(lab, host),
        "dpkg": lab.ssh(host, DPKG_STATES).stdout,
        "/etc/pki": lab.ssh(host, "find /etc/pki -printf '%M %u %g %p\\n' 2>/dev/null | sort", check=False).stdout,
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, object]:
    """What differs, by aspect; for files, the paths added, removed or changed."""
    found: dict[str, object] = {}
    for aspect, old in before.items():
        new = after[aspect]
        if old == new:
            continue
        if aspect == "files written":
            found[aspect] = sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
        else:
            found[aspect] = {"before": old, "after": new}
    return found


def lab_variables(directory: Path, variables: dict) -> Path:
    """An inventory source with variables for every host, given after the lab's (the README's way)."""
    path = directory / "lab-vars.yml"
    path.write_text(json.dumps({"all": {"vars": variables}}))
    return path


def bootstrap(lab: Lab, variables: Path, check: bool = False, timeout: float = 1800) -> migrate_support.Run:
    """playbooks/bootstrap.yml on ``lab``, through the collection (the json callback's document)."""
    cmd = ["ansible-playbook", "-i", str(lab.inventory), "-i", str(variables), BOOTSTRAP]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=migrate_support.ansible_env(),
                          cwd=migrate_support.OPERATOR_DIR, timeout=timeout, check=False)
    return migrate_support.Run(proc.returncode, migrate_support._parse(proc.stdout), proc.stderr)


def tasks_of_role(run: migrate_support.Run, host: str, role: str) -> list[dict]:
    """The results on ``host`` of the tasks of ``virtops.migration.<role>`` (as the json callback names them)."""
    return [r for r in run.results(host) if r["_task"].startswith(f"virtops.migration.{role} : ")]


def failures(run: migrate_support.Run) -> dict[str, list[str]]:
    return {host: [f"{r['_task']}: {r.get('msg', '')}" for r in run.results(host) if r.get("failed")]
            for host in BOOTSTRAP_HOSTS}


# ---------------------------------------------------------------------------
# Check mode on hosts that were never bootstrapped


@pytest.mark.fault_table(
    area="bootstrap", fault="`bootstrap.yml --check` against freshly installed hosts (no python3-apt, no package "
                            "lists, nothing bootstrapped yet)",
    expected="rc 0; nfs_server, libvirt_pki, libvirtd and nfs_client each run and report the packages they would "
             "install; nothing changes on the hosts (no package, no file, /etc/pki as before) nor on the controller "
             "(no CA made)")
def test_check_mode_on_fresh_hosts_reports_and_changes_nothing(fresh_lab, tmp_path, observed):
    ca_dir = tmp_path / "pki"
    before = {host: host_state(fresh_lab, host) for host in BOOTSTRAP_HOSTS}
    assert all("python3-apt " not in state["dpkg"] for state in before.values()), "the hosts are not fresh"

    run = bootstrap(fresh_lab, lab_variables(tmp_path, {"libvirt_pki_ca_dir": str(ca_dir)}), check=True)

    after = {host: host_state(fresh_lab, host) for host in BOOTSTRAP_HOSTS}
    assert run.rc == 0, f"check mode failed: {failures(run)}\n{run.describe()}"
    ran = {}
    for host, group in BOOTSTRAP_HOSTS.items():
        for role in ROLES_BY_GROUP[group]:
            results = tasks_of_role(run, host, role)
            assert results and not any(r.get("failed") for r in results), f"{role} did not run on {host}: {run.describe()}"
            ran[f"{role}@{host}"] = len(results)
    reports = {host: [r["msg"] for r in tasks_of_role(run, host, "apt_packages") if r.get("changed") and "msg" in r]
               for host in BOOTSTRAP_HOSTS}
    assert len(reports["nfs1"]) == 1 and len(reports["hv1"]) == 3, reports
    changed = {host: changes(before[host], after[host]) for host in BOOTSTRAP_HOSTS}
    assert changed == {host: {} for host in BOOTSTRAP_HOSTS}, changed
    assert not ca_dir.exists(), f"check mode made {sorted(str(p) for p in ca_dir.rglob('*'))}"
    observed(f"rc 0; tasks per role: {ran}; reported: {reports}; "
             f"changed per host: {run.doc.get('stats', {}).get('hv1', {}).get('changed')} (hv1), "
             f"{run.doc.get('stats', {}).get('nfs1', {}).get('changed')} (nfs1); "
             f"hosts' files, dpkg states and /etc/pki unchanged; no CA directory on the controller")


# ---------------------------------------------------------------------------
# A real bootstrap with a CA directory of its own


@pytest.mark.fault_table(
    area="bootstrap", fault="a real bootstrap of a second lab with libvirt_pki_ca_dir set to a directory of its "
                            "own (not ~/.virtops/pki) in an inventory source of its own; libvirt_pki_admin_dir "
                            "left to the role",
    expected="rc 0; the final check opens each hypervisor from the controller with the admin certificate "
             "under that CA directory; the default CA directory is not touched")
def test_bootstrap_with_its_own_ca_directory_passes_its_final_check(fresh_lab, tmp_path, observed):
    ca_dir = tmp_path / "pki"
    default_pki = Path(os.environ.get("HOME", "/root")) / ".virtops" / "pki"
    default_before = sorted((str(p), p.stat().st_mtime_ns) for p in default_pki.rglob("*")) if default_pki.exists() else None

    run = bootstrap(fresh_lab, lab_variables(tmp_path, {"libvirt_pki_ca_dir": str(ca_dir)}))

    matrix = next((r["msg"] for r in run.results("hv1") if r["_task"].startswith("Print this hypervisor's row")), {})
    assert run.rc == 0, f"the bootstrap failed: {failures(run)}; matrix {matrix}\n{run.describe()}"
    assert matrix.get(ADMIN_ROW) == "ok", matrix
    assert (ca_dir / "admin" / "clientcert.pem").exists() and (ca_dir / "ca" / "cacert.pem").exists()
    default_after = sorted((str(p), p.stat().st_mtime_ns) for p in default_pki.rglob("*")) if default_pki.exists() else None
    assert default_after == default_before, "the bootstrap touched the default CA directory"
    observed(f"rc 0; hv1's row of the matrix: {matrix}; admin certificate in {ca_dir.name}/admin; "
             f"~/.virtops/pki unchanged")
