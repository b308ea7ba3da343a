# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bootstrap playbook on hosts that were never bootstrapped: check mode, then a real run.

The suite's shared lab is bootstrapped once by the collection with the default CA directory; the
check-mode case needs hosts fresh from `up`, so it brings up a small lab of its own (one storage
host and one hypervisor, the default topology's nfs1 and hv1: every role of the bootstrap runs),
on freshly recreated machines, taken down at the end. The other cases run on the shared lab. Its name and
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
import shutil
import subprocess
from pathlib import Path
from typing import Any

import migrate_support
import pytest
from virtops_lab.ansible_runs import ansible_env
from virtops_lab.client import Lab, lab_command

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
DEFAULT_PKI = Path(os.environ.get("HOME", "/root")) / ".virtops" / "pki"  # libvirt_pki_ca_dir's default


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


def bootstrap(lab: Lab, variables: Path, check: bool = False, timeout: float = 1800,
              home: Path | None = None) -> migrate_support.Run:
    """playbooks/bootstrap.yml on ``lab``, through the collection (the json callback's document).

    ``home``: the HOME of the ansible-playbook process (the controller user's home directory).
    """
    cmd = ["ansible-playbook", "-i", str(lab.inventory), "-i", str(variables), BOOTSTRAP]
    if check:
        cmd.append("--check")
    env = ansible_env(lab.inventory)
    if home is not None:
        env["HOME"] = str(home)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=migrate_support.OPERATOR_DIR, timeout=timeout, check=False)
    return migrate_support.Run.from_process(proc)


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
    area="bootstrap", fault="a real bootstrap with libvirt_pki_ca_dir set to a directory of its own (the cluster's "
                            "CA copied out of ~/.virtops/pki) in an inventory source of its own, from a controller "
                            "user whose home holds no ~/.virtops; libvirt_pki_admin_dir left to the role",
    expected="rc 0; the final check opens each hypervisor from the controller with the admin certificate "
             "under that CA directory; the default CA directory is not touched")
def test_bootstrap_with_its_own_ca_directory_passes_its_final_check(prepared_lab, tmp_path, observed):
    ca_dir, home = tmp_path / "pki", tmp_path / "home"
    shutil.copytree(DEFAULT_PKI, ca_dir)  # the cluster's CA, so nothing on the hosts is reissued
    home.mkdir()
    default_before = sorted((str(p), p.stat().st_mtime_ns) for p in DEFAULT_PKI.rglob("*"))

    run = bootstrap(prepared_lab, lab_variables(tmp_path, {"libvirt_pki_ca_dir": str(ca_dir)}), home=home)

    matrix = next((r["msg"] for r in run.results("hv1") if r["_task"].startswith("Print this hypervisor's row")), {})
    assert run.rc == 0, f"the bootstrap failed: {failures(run)}; matrix {matrix}\n{run.describe()}"
    assert matrix.get(ADMIN_ROW) == "ok", matrix
    assert not (home / ".virtops").exists(), "the bootstrap used the controller user's home instead of the CA directory"
    default_after = sorted((str(p), p.stat().st_mtime_ns) for p in DEFAULT_PKI.rglob("*"))
    assert default_after == default_before, "the bootstrap touched the default CA directory"
    observed(f"rc 0; hv1's row of the matrix: {matrix}; admin certificate from {ca_dir.name}/admin; "
             f"~/.virtops/pki unchanged, nothing made under the controller user's home")


# ---------------------------------------------------------------------------
# The CA on a controller that keeps nothing between runs (the session's bootstrapped lab)

PKI_FILES = ["/etc/pki/CA/cacert.pem", "/etc/pki/libvirt/servercert.pem", "/etc/pki/libvirt/clientcert.pem",
             "/etc/pki/libvirt/private/serverkey.pem", "/etc/pki/libvirt/private/clientkey.pem",
             "/etc/pki/qemu/ca-cert.pem", "/etc/pki/qemu/server-cert.pem", "/etc/pki/qemu/server-key.pem",
             "/etc/pki/qemu/client-cert.pem", "/etc/pki/qemu/client-key.pem"]
LIBVIRTD_START = "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic libvirtd.service"
DEFAULT_CA = DEFAULT_PKI / "ca"


def pki_and_libvirtd(lab: Lab) -> dict[str, dict[str, Any]]:
    """Per hypervisor: the checksums of the certificate tree, its modes and owners, libvirtd's PID and start."""
    return {host: {"checksums": migrate_support.file_checksums(host, PKI_FILES),
                   "/etc/pki": host_state(lab, host)["/etc/pki"],
                   "libvirtd": lab.ssh(host, LIBVIRTD_START).stdout}
            for host in migrate_support.HYPERVISORS}


def changed_on_hosts(transcript: str, role: str) -> list[str]:
    """Task results reported changed on a host itself (not delegated to the controller) in ``role``'s tasks,
    read from the default callback's text."""
    found, task = [], ""
    for line in transcript.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed: [") and " -> " not in line.split("]", 1)[0] and f"{role} : " in task:
            found.append(f"{task}: {line[:80]}")
    return found


@pytest.mark.fault_table(
    area="bootstrap", fault="bootstrap from a controller without the cluster's CA (libvirt_pki_ca_dir a new, empty "
                            "directory, as in an execution environment or on a fresh CI runner) against the "
                            "bootstrapped lab",
    expected="refused before any change: the message names the hosts, the CA they trust and the ways out "
             "(a persistent libvirt_pki_ca_dir, libvirt_pki_ca_certificate/_private_key, libvirt_pki_ca_replace); "
             "/etc/pki and libvirtd unchanged on every hypervisor; no CA made on the controller")
def test_bootstrap_without_the_clusters_ca_is_refused_before_any_change(prepared_lab, tmp_path, observed):
    ca_dir = tmp_path / "fresh-controller-pki"
    before = pki_and_libvirtd(prepared_lab)

    run = bootstrap(prepared_lab, lab_variables(tmp_path, {"libvirt_pki_ca_dir": str(ca_dir)}), timeout=900)

    after = pki_and_libvirtd(prepared_lab)
    refusals = {host: r["msg"] for host in migrate_support.HYPERVISORS for r in run.results(host)
                if r.get("failed") and r["_task"].endswith("Refuse to put a CA other than the one the hypervisors trust in its place")}
    assert run.rc != 0 and set(refusals) == set(migrate_support.HYPERVISORS), f"not refused: {run.describe()}"
    message = refusals["hv1"]
    for words in ("hv1", "hv2", "hv3", "holds no CA", str(ca_dir), "libvirt_pki_ca_dir", "libvirt_pki_ca_certificate",
                  "libvirt_pki_ca_private_key", "libvirt_pki_ca_replace", "nothing was changed"):
        assert words in message, f"{words!r} not in {message!r}"
    assert after == before, {host: (before[host], after[host]) for host in before if before[host] != after[host]}
    assert not ca_dir.exists(), f"the refused run made {sorted(str(p) for p in ca_dir.rglob('*'))}"
    observed(f"rc {run.rc}; refused on {sorted(refusals)}: {message[:300]}...; /etc/pki checksums, modes and "
             f"libvirtd's PID and start unchanged on every hypervisor; no {ca_dir.name} on the controller")


@pytest.mark.fault_table(
    area="bootstrap", fault="libvirt_pki from a fresh controller directory with the cluster's CA certificate and key "
                            "given as variables from an ansible-vault encrypted file (--vault-password-file), at -vvv",
    expected="rc 0; no certificate reissued and no task changed on any hypervisor, libvirtd not restarted "
             "(/etc/pki and libvirtd's PID and start unchanged); no CA file written on the controller; the key "
             "appears nowhere in the -vvv transcript")
def test_ca_given_as_vault_variables_reissues_nothing_and_is_never_logged(prepared_lab, tmp_path, observed):
    key = (DEFAULT_CA / "cakey.pem").read_text()
    secrets = tmp_path / "ca-vault.yml"
    secrets.write_text(json.dumps({"libvirt_pki_ca_certificate": (DEFAULT_CA / "cacert.pem").read_text(),
                                   "libvirt_pki_ca_private_key": key}))
    password = tmp_path / "vault-password"
    password.write_text("not-a-real-secret\n")
    env = migrate_support.text_env()
    encrypt = subprocess.run(["ansible-vault", "encrypt", "--vault-password-file", str(password), str(secrets)],
                             capture_output=True, text=True, env=env, cwd=migrate_support.OPERATOR_DIR, check=False)
    assert encrypt.returncode == 0 and secrets.read_text().startswith("$ANSIBLE_VAULT"), encrypt.stderr
    ca_dir = tmp_path / "fresh-controller-pki"
    before = pki_and_libvirtd(prepared_lab)

    cmd = migrate_support.playbook_text_cmd(migrate_support.PLAYBOOKS / "apply_role.yml", {
        "virtops_test_role": "libvirt_pki", "virtops_test_target": "hypervisors", "libvirt_pki_ca_dir": str(ca_dir)})
    cmd += ["-e", f"@{secrets}", "--vault-password-file", str(password), "-vvv"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=migrate_support.OPERATOR_DIR,
                          timeout=900, check=False)

    transcript = proc.stdout + proc.stderr
    after = pki_and_libvirtd(prepared_lab)
    assert proc.returncode == 0, transcript[-4000:]
    assert "ESTABLISH SSH CONNECTION" in transcript, "not a -vvv transcript"
    key_lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
    leaked = [line for line in key_lines if line in transcript]
    assert not leaked, f"{len(leaked)} lines of the CA key in the -vvv transcript"
    assert changed_on_hosts(transcript, "libvirt_pki") == [], changed_on_hosts(transcript, "libvirt_pki")
    assert after == before, {host: (before[host], after[host]) for host in before if before[host] != after[host]}
    written = sorted(str(p.relative_to(ca_dir)) for p in ca_dir.rglob("*"))
    assert written == ["admin", "admin/cacert.pem", "admin/clientcert.pem", "admin/clientkey.pem"], written
    observed(f"rc 0; changed on the hypervisors in libvirt_pki: none; /etc/pki and libvirtd unchanged on "
             f"{', '.join(migrate_support.HYPERVISORS)}; controller directory holds only {written}; "
             f"0 of the key's {len(key_lines)} lines in the {len(transcript.splitlines())}-line -vvv transcript")


# ---------------------------------------------------------------------------
# What the controller needs for the bootstrap's last check (no lab: the first play runs on localhost)


def path_without(tmp_path: Path, program: str, path: str) -> str:
    """A PATH with every program of ``path`` but ``program`` (symlinks in one directory)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in path.split(os.pathsep):
        for entry in Path(directory).glob("*") if Path(directory).is_dir() else []:
            target = bin_dir / entry.name
            if entry.name != program and not target.exists():
                target.symlink_to(entry)
    return str(bin_dir)


@pytest.mark.fault_table(
    area="bootstrap", fault="bootstrap from a controller without virsh (PATH without it); then the same with "
                            "bootstrap_verify_from_controller=false",
    expected="the first play fails before any other runs, naming virsh, the packages that bring it (apt "
             "libvirt-clients, dnf libvirt-client) and bootstrap_verify_from_controller; with false it warns and "
             "goes on")
def test_bootstrap_names_what_the_controller_lacks(tmp_path, observed):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"storage": {}, "hypervisors": {}}}}))
    env = ansible_env(inventory)
    env["PATH"] = path_without(tmp_path, "virsh", env["PATH"])

    def run(*extra: str) -> migrate_support.Run:
        proc = subprocess.run(["ansible-playbook", BOOTSTRAP, *extra], capture_output=True, text=True, env=env,
                              cwd=migrate_support.OPERATOR_DIR, timeout=300, check=False)
        return migrate_support.Run.from_process(proc)

    refused = run()
    failed = [r for r in refused.results("localhost") if r.get("failed")]
    assert refused.rc != 0 and len(failed) == 1, refused.describe()
    message = failed[0]["msg"]
    for words in ("lacks virsh", "apt install libvirt-clients", "dnf install libvirt-client",
                  "bootstrap_verify_from_controller=false", "Nothing was changed"):
        assert words in message, f"{words!r} not in {message!r}"
    skipped = run("-e", "bootstrap_verify_from_controller=false")
    warnings = [r["msg"] for r in skipped.results("localhost") if "WARNING" in str(r.get("msg", ""))]
    assert skipped.rc == 0 and warnings, skipped.describe()
    observed(f"without virsh: rc {refused.rc}, {failed[0]['_task']}: {message}; "
             f"with bootstrap_verify_from_controller=false: rc 0, {warnings[0]}")
