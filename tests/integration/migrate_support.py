# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the migrate integration tests: read virsh and the guests' disks, swap files, inject faults.

They work on the session's lab (``virtops_lab.client.Lab``: VIRTOPS_LAB_NAME, default ``vtl``), which
must be up and prepared (libvirt TLS between the hypervisors, the NFS export) before these tests run.
Running playbooks and modules, SSH and the guests are the lab client's (lab/virtops_lab/), offered here
under the names the tests use.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtops_lab import ansible_runs, client, guests
from virtops_lab.ansible_runs import Run

LAB = client.Lab.of_session()
LAB_NAME = LAB.name
REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = guests.TEST_PLAYBOOKS
INVENTORY = LAB.inventory
OPERATOR_DIR = ansible_runs.operator_dir()

# The session lab's ways (virtops_lab.client.Lab), under the names the tests use.
ansible_env = LAB.ansible_env
playbook = LAB.playbook
module_cmd = LAB.module_cmd
module = LAB.module
start_module = LAB.start_module
text_env = LAB.text_env
playbook_text_cmd = LAB.playbook_text_cmd
playbook_text = LAB.playbook_text
start_playbook_text = LAB.start_playbook_text
host_address = LAB.address
ssh_input = LAB.ssh_input
dest_uri = LAB.tls_uri
finish_module = ansible_runs.finish_module
wait_for = client.wait_for


def ssh(host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``command`` on ``host`` (unchecked: the caller reads the return code)."""
    return LAB.ssh(host, command, check=False, timeout=timeout)


# ---------------------------------------------------------------------------
# Reading the hosts directly (read-only virsh over SSH)


def domain(host: str, name: str) -> dict[str, Any]:
    """``{present, state, persistent}`` of a domain on a host, from ``virsh dominfo``."""
    proc = ssh(host, f"virsh -q dominfo {name}")
    if proc.returncode != 0:
        assert "failed to get domain" in proc.stderr or "Domain not found" in proc.stderr, proc.stderr
        return {"present": False, "state": None, "persistent": False}
    info = {}
    for line in proc.stdout.splitlines():
        key, _colon, value = line.partition(":")
        info[key.strip()] = value.strip()
    state = {"shut off": "shutoff"}.get(info["State"], info["State"])
    return {"present": True, "state": state, "persistent": info["Persistent"] == "yes"}


ABSENT = {"present": False, "state": None, "persistent": False}


def running(persistent: bool) -> dict[str, Any]:
    return {"present": True, "state": "running", "persistent": persistent}


# ---------------------------------------------------------------------------
# Guests


def create_guests(specs: list[dict[str, Any]]) -> None:
    guests.create_guests(LAB, specs)


def remove_guests(specs: list[dict[str, Any]]) -> None:
    guests.remove_guests(LAB, specs)


# ---------------------------------------------------------------------------
# What a guest wrote to its NFS-backed disk (Linux guests created with "counter": true)

STORAGE_HOST = "nfs1"
NFS_EXPORT = "/srv/vmimages"
COUNTER_SECTOR = 1024  # guest-init's COUNTER_SECTOR


@dataclass(frozen=True)
class DiskMark:
    """The guest's counter and a digest of the rest of its disk, read on the NFS server."""

    counter: int
    rest_sha256: str


def disk_mark(name: str) -> DiskMark:
    """Read the image on the export: the counter sector and a SHA-256 of every other byte."""
    image = f"{NFS_EXPORT}/{name}.img"
    script = (f"set -e; dd if={image} bs=512 skip={COUNTER_SECTOR} count=1 status=none | head -c 64 | tr -d '\\0\\n'; echo;"
              f" {{ head -c {COUNTER_SECTOR * 512} {image}; tail -c +{COUNTER_SECTOR * 512 + 513} {image}; }}"
              " | sha256sum | cut -d' ' -f1")
    proc = ssh(STORAGE_HOST, script)
    assert proc.returncode == 0, f"reading {image} on {STORAGE_HOST}: {proc.stderr}"
    counter_line, digest = proc.stdout.splitlines()[-2:]
    words = counter_line.split()
    counter = int(words[1]) if len(words) == 2 and words[0] == "virtops-counter" else 0
    return DiskMark(counter, digest.strip())


def wait_for_counter_past(name: str, value: int, timeout: float = 60) -> DiskMark:
    """Wait until the guest has written a counter above ``value`` (it is running and its writes land)."""
    def advanced() -> DiskMark | None:
        mark = disk_mark(name)
        return mark if mark.counter > value else None
    try:
        return wait_for(advanced, timeout, interval=1, what=f"{name} to write a counter above {value}")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{guest_diagnosis(name)}") from None


def guest_diagnosis(name: str) -> str:
    """Where a guest that stopped writing is, in which state and why, its disk errors and its console's last lines."""
    lines = []
    for host in HYPERVISORS:
        proc = ssh(host, f"virsh domstate --reason {name} && virsh domblkerror {name}; "
                         f"tail -n 15 /var/log/libvirt/qemu/{name}-serial.log 2>/dev/null; "
                         f"tail -n 5 /var/log/libvirt/qemu/{name}.log 2>/dev/null")
        if proc.returncode == 0 or proc.stdout.strip():
            lines.append(f"--- {name} on {host} ---\n{proc.stdout.strip()}\n{proc.stderr.strip()}")
    return "\n".join(lines) or f"{name} is on no hypervisor"


def assert_disk_intact_and_written(name: str, before: DiskMark, timeout: float = 60) -> DiskMark:
    """The rest of the disk is as it was and the guest writes on: the counter goes past ``before``."""
    after = wait_for_counter_past(name, before.counter, timeout)
    assert after.rest_sha256 == before.rest_sha256, f"{name}: disk content changed outside the counter sector"
    return after


# ---------------------------------------------------------------------------
# Files swapped on a host for one case and put back; what the hosts hold, to compare

def file_checksums(host: str, paths: list[str]) -> dict[str, str]:
    """SHA-256 of each path on ``host`` ("absent" for a missing file)."""
    script = "; ".join(f"if [ -e {p} ]; then sha256sum {p}; else echo absent {p}; fi" for p in paths)
    proc = ssh(host, script)
    assert proc.returncode == 0, f"{host}: checksums: {proc.stderr}"
    return {path: digest for digest, path in (line.split(None, 1) for line in proc.stdout.splitlines())}


SWAP_BACKUP = "/root/.virtops-test-swap"


def restore_swapped(host: str) -> None:
    """Put back the files a swap saved on ``host`` (also a swap left behind by an interrupted run)."""
    proc = ssh(host, f"set -e; if [ -d {SWAP_BACKUP} ]; then cd {SWAP_BACKUP}; find . -type f | while read -r f;"
                     f" do cp -a \"$f\" \"/${{f#./}}\"; done; cd /; rm -rf {SWAP_BACKUP}; fi")
    assert proc.returncode == 0, f"{host}: restoring the swapped files failed: {proc.stderr}"


def save_files_script(paths: list[str], backup: str) -> str:
    """Shell: copy each path (owner, mode, times kept) under ``backup`` at the same relative path."""
    copies = "; ".join(f"mkdir -p {backup}$(dirname {p}); cp -a {p} {backup}{p}" for p in paths)
    return f"set -e; mkdir -p -m 0700 {backup}; {copies}"


@contextmanager
def swapped_files(host: str, files: dict[str, bytes]) -> Iterator[None]:
    """Write each content in place of its path on ``host`` (owner and mode kept), saving the originals on
    the host; on exit they are copied back and their checksums compared with the ones before."""
    restore_swapped(host)
    paths = list(files)
    before = file_checksums(host, paths)
    assert "absent" not in before.values(), f"{host}: nothing to swap: {before}"
    try:
        proc = ssh(host, save_files_script(paths, SWAP_BACKUP))
        assert proc.returncode == 0, f"{host}: saving {paths}: {proc.stderr}"
        for path, content in files.items():
            wrote = ssh_input(host, f"cat > {path}", content)
            assert wrote.returncode == 0, f"{host}: writing {path}: {wrote.stderr}"
        yield
    finally:
        restore_swapped(host)
        after = file_checksums(host, paths)
        assert after == before, f"{host}: the swapped files were not restored: {after} != {before}"


def hypervisor_snapshot(hosts: tuple[str, ...] = ("hv1", "hv2", "hv3")) -> dict[str, str]:
    """Per host, every domain's name, state and XML (``virsh dumpxml``), to compare before/after."""
    script = ("for d in $(virsh list --all --name | sort); do echo \"== $d $(virsh domstate $d)\";"
              " virsh dumpxml $d; done")
    found = {}
    for host in hosts:
        proc = ssh(host, script)
        assert proc.returncode == 0, f"{host}: listing domains: {proc.stderr}"
        found[host] = proc.stdout
    return found


# ---------------------------------------------------------------------------
# Faults: libvirt daemons stopped or killed, links cut, where a guest runs on every hypervisor

HYPERVISORS = ("hv1", "hv2", "hv3")
PKI_ORGANIZATION = "virtops"  # libvirt_pki_organization
PKI_ADMIN_CN = "virtops-admin"  # libvirt_pki_admin_common_name


def libvirtd_role_on(target: str, **settings: Any) -> Run:
    """Apply the libvirtd role to ``target`` (a host or group) with the lab's settings, as the bootstrap
    does, plus ``settings`` (role variables)."""
    dns = [f"O={PKI_ORGANIZATION},CN={host}.{LAB_NAME}.virtops.test" for host in HYPERVISORS]
    dns.append(f"O={PKI_ORGANIZATION},CN={PKI_ADMIN_CN}")
    return playbook(PLAYBOOKS / "apply_role.yml", dict({"virtops_test_role": "libvirtd", "virtops_test_target": target,
                                                       "libvirtd_tls_allowed_dn_list": dns}, **settings),
                    timeout=600)


def libvirt_daemon(host: str) -> str:
    """The daemon that serves qemu:///system on ``host``: virtqemud (modular) or libvirtd (monolithic)."""
    proc = ssh(host, "systemctl is-enabled virtqemud.service virtqemud.socket 2>/dev/null | grep -qx enabled"
                     " && echo virtqemud || echo libvirtd")
    return proc.stdout.strip() or "libvirtd"


def libvirt_units(host: str) -> list[str]:
    """The daemon's socket units active now and its service (to start again after a fault).

    The service is listed even when it is not running: socket-activated, it exits when idle.
    """
    daemon = libvirt_daemon(host)
    proc = ssh(host, f"systemctl list-units --state=active --no-legend --plain '{daemon}*' | cut -d' ' -f1")
    return sorted({unit for unit in proc.stdout.split() if unit.endswith(".socket")} | {f"{daemon}.service"})


def stop_libvirt(host: str) -> None:
    """Stop the daemon and every socket that would start it again (the host's libvirt is down)."""
    daemon = libvirt_daemon(host)
    proc = ssh(host, f"systemctl stop {daemon}.socket {daemon}-ro.socket {daemon}-admin.socket"
                     f" {daemon}-tls.socket {daemon}-tcp.socket {daemon}.service 2>&1; systemctl is-active {daemon}.service")
    assert proc.stdout.strip().splitlines()[-1] in ("inactive", "failed"), proc.stdout + proc.stderr


def kill_libvirt(host: str, keep_down: bool = False) -> int:
    """SIGKILL the daemon's main process (its guests' QEMU processes live on); its pid.

    keep_down stops the units first, so neither systemd nor socket activation brings it back.
    """
    daemon = libvirt_daemon(host)
    pid = int(ssh(host, f"systemctl show -p MainPID --value {daemon}.service").stdout.strip() or 0)
    assert pid > 0, f"{daemon} does not run on {host}"
    if keep_down:
        sockets = " ".join(f"{daemon}{suffix}.socket" for suffix in ("", "-ro", "-admin", "-tls", "-tcp"))
        proc = ssh(host, f"systemctl stop {sockets} 2>/dev/null; kill -KILL {pid}; "
                         f"systemctl kill -s KILL {daemon}.service 2>/dev/null; systemctl stop {daemon}.service")
    else:
        proc = ssh(host, f"kill -KILL {pid}")
    assert proc.returncode == 0, proc.stderr
    return pid


def start_libvirt(host: str, units: list[str]) -> None:
    """Start the units again (after stop_libvirt/kill_libvirt) and wait until virsh answers."""
    ssh(host, "systemctl reset-failed; systemctl start " + " ".join(units))
    wait_for(lambda: ssh(host, "virsh -q uri").returncode == 0, timeout=60, what=f"libvirt on {host}")


def veth(host: str) -> str:
    """The controller's end of the host's link to the lab bridge (systemd-nspawn's vb-MACHINE)."""
    return f"vb-{LAB_NAME}-{host}"[:15]


def set_link(host: str, up: bool) -> None:
    """Cut (up=False) or restore the host's only network link, from the controller."""
    subprocess.run(["ip", "link", "set", veth(host), "up" if up else "down"], check=True, timeout=30)


def link_is_up(host: str) -> bool:
    proc = subprocess.run(["ip", "-o", "link", "show", veth(host)], capture_output=True, text=True, check=False)
    return "state UP" in proc.stdout or ",UP" in proc.stdout


def whereabouts(name: str, hosts: tuple[str, ...] = HYPERVISORS) -> dict[str, dict[str, Any]]:
    """``{host: {present, state, persistent}}`` of a domain on every hypervisor that holds it."""
    return {host: info for host in hosts if (info := domain(host, name))["present"]}


def job_running(host: str, name: str) -> dict[str, str] | None:
    """``virsh domjobinfo`` as a dict while a job of the domain is active on ``host``, else None."""
    proc = ssh(host, f"virsh domjobinfo {name}")
    info = {}
    for line in proc.stdout.splitlines():
        key, _colon, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info if proc.returncode == 0 and info.get("Job type") not in (None, "", "None") else None


def wait_for_migration_underway(host: str, name: str, dest: str, timeout: float = 90) -> dict[str, str]:
    """Wait until ``name``'s migration job runs on ``host`` and the incoming domain exists on ``dest``."""
    def underway() -> dict[str, str] | None:
        info = job_running(host, name)
        if info is None or not domain(dest, name)["present"]:
            return None
        return info if info.get("Data processed", "0").split()[0] not in ("0", "0.000") else None
    return wait_for(underway, timeout, interval=0.5, what=f"{name}'s migration from {host} to {dest} to run")
