"""The lab is real: systemd hosts with their own identity, reached over SSH, that
install packages and find each other by name; and `down` leaves nothing behind,
even after every lab process was killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from virtops_lab.client import Lab, lab_command
from virtops_lab.state import state_dir

SCRATCH_LAB = "ltst"
SCRATCH_SUBNET = "10.82.0.0/24"
CGROUP_ROOTS = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")]


def test_ansible_reaches_every_host_over_ssh(lab: Lab) -> None:
    results = lab.ansible_adhoc("all", "ansible.builtin.ping")
    assert sorted(results) == sorted(lab.hosts)
    assert all(r.get("ping") == "pong" for r in results.values()), results


def test_each_host_has_its_own_hostname_machine_id_and_address(lab: Lab) -> None:
    identities = {}
    for host, hostvars in lab.hosts.items():
        out = lab.ssh(host, "hostname; cat /etc/machine-id; ip -4 -o addr show dev host0").stdout.splitlines()
        hostname, machine_id, address_line = out[0], out[1], out[2]
        assert hostname == host
        assert f" {hostvars['ansible_host']}/" in address_line
        identities[host] = machine_id
    assert len(set(identities.values())) == len(identities), identities
    assert all(len(m) == 32 for m in identities.values())


def test_systemd_is_pid_1_and_the_system_is_running(lab: Lab) -> None:
    for host in lab.hosts:
        assert lab.ssh(host, "cat /proc/1/comm").stdout.strip() == "systemd"
        state = lab.ssh(host, "systemctl is-system-running --wait", check=False).stdout.strip()
        failed = lab.ssh(host, "systemctl --failed --no-legend --plain", check=False).stdout
        assert state == "running", f"{host} is {state}; failed units:\n{failed}"


def test_apt_installs_a_package_inside_a_host(lab: Lab) -> None:
    host = min(lab.hosts)
    lab.ssh(host, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello", timeout=300)
    try:
        assert lab.ssh(host, "hello").stdout.strip() == "Hello, world!"
    finally:
        lab.ssh(host, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q hello", check=False)


def test_hosts_reach_each_other_by_name(lab: Lab) -> None:
    names = sorted(lab.hosts)
    probe = (
        "import socket, sys\n"
        "for name in sys.argv[1:]:\n"
        "    socket.create_connection((name, 22), timeout=5).close()\n"
        "    print(name, socket.gethostbyname(name))\n"
    )
    for host in names:
        peers = [lab.hosts[p]["virtops_libvirt_fqdn"] for p in names if p != host] + [p for p in names if p != host]
        out = lab.ssh(host, f"python3 -c '{probe}' {' '.join(peers)}").stdout.splitlines()
        resolved = dict(line.split() for line in out)
        for peer in names:
            if peer != host:
                assert resolved[peer] == lab.hosts[peer]["ansible_host"]
                assert resolved[lab.hosts[peer]["virtops_libvirt_fqdn"]] == lab.hosts[peer]["ansible_host"]


def test_up_keeps_a_healthy_lab(lab: Lab) -> None:
    before = {h: lab.ssh(h, "cat /etc/machine-id").stdout for h in lab.hosts}
    result = lab_command("up", f"--name={lab.name}")
    assert "already up" in result.stdout
    assert before == {h: lab.ssh(h, "cat /etc/machine-id").stdout for h in lab.hosts}


# ----------------------------------------------------------------- crash and cleanup


def lab_traces(name: str) -> dict[str, object]:
    """Everything a lab can leave on this machine, found the way an operator would look."""
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show"], check=False, capture_output=True, text=True).stdout)
    mounts = Path("/proc/self/mountinfo").read_text()
    iptables = "".join(subprocess.run(["iptables", "-t", t, "-S"], check=False, capture_output=True, text=True).stdout for t in ("nat", "filter"))
    cgroup_processes = []
    for root in CGROUP_ROOTS:
        tree = root / "virtops-lab" / name
        if tree.exists():
            for procs in tree.rglob("cgroup.procs"):
                cgroup_processes += procs.read_text().split()
    nspawn = subprocess.run(["pgrep", "-f", f"systemd-nspawn.* -M {name}-"], check=False, capture_output=True, text=True).stdout.split()
    return {
        "bridges": [l["ifname"] for l in links if l.get("ifalias", "") == f"virtops-lab:{name}"],
        "veths": [l["ifname"] for l in links if l["ifname"].startswith(f"vb-{name}-")],
        "mounts": [line for line in mounts.splitlines() if f"/virtops-lab/{name}/" in line],
        "nat_rules": [line for line in iptables.splitlines() if f"virtops-lab:{name}" in line],
        "processes": cgroup_processes + nspawn,
        "cgroups": [str(r / "virtops-lab" / name) for r in CGROUP_ROOTS if (r / "virtops-lab" / name).exists()],
        "hosts_block": f"virtops-lab {name}" in Path("/etc/hosts").read_text(),
        "state_dir": state_dir(name).exists(),
    }


def nothing_left(traces: dict[str, object]) -> bool:
    return not any(traces.values())


@pytest.fixture
def scratch_lab():
    env = {"VIRTOPS_LAB_SUBNET": SCRATCH_SUBNET}
    os.environ.update(env)
    try:
        yield SCRATCH_LAB
    finally:
        lab_command("down", f"--name={SCRATCH_LAB}", check=False)
        os.environ.pop("VIRTOPS_LAB_SUBNET", None)


def test_up_after_sigkill_of_every_lab_process_then_down_leaves_nothing(scratch_lab: str) -> None:
    lab_command("up", f"--name={scratch_lab}", f"--subnet={SCRATCH_SUBNET}", "--hosts=nfs1,hv1")
    traces = lab_traces(scratch_lab)
    assert traces["bridges"] and traces["mounts"] and traces["processes"] and traces["nat_rules"], traces

    # A crash: every process of the lab dies at once; bridge, mounts, NAT and cgroups stay.
    for pid in traces["processes"]:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    status = lab_command("status", f"--name={scratch_lab}", f"--subnet={SCRATCH_SUBNET}", "--hosts=nfs1,hv1", check=False)
    assert status.returncode != 0, status.stdout

    recovered = lab_command("up", f"--name={scratch_lab}", f"--subnet={SCRATCH_SUBNET}", "--hosts=nfs1,hv1")
    assert "removing what lab" in recovered.stdout
    scratch = Lab(scratch_lab)
    assert scratch.ssh("hv1", "systemctl is-system-running --wait", check=False).stdout.strip() == "running"

    lab_command("down", f"--name={scratch_lab}")
    traces = lab_traces(scratch_lab)
    assert nothing_left(traces), traces
