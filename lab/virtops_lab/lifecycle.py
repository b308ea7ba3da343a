"""The lab's commands: up, down, status."""

from __future__ import annotations

import json
import subprocess
import time

from virtops_lab.aptcache import APT_CACHE_PORT, start_apt_cache
from virtops_lab.cgroups import (
    cgroup_hierarchies,
    cgroup_pids,
    lab_cgroup,
    lab_processes,
)
from virtops_lab.cleanup import known_labs, remove_leftovers, teardown
from virtops_lab.host_settings import apply_host_settings, restore_host_settings
from virtops_lab.inventory import write_inventory
from virtops_lab.machines import (
    BOOT_SETTINGS,
    boot_machine,
    prepare_kvm,
    prepare_machine,
    raise_inotify_limits,
    wait_until_booted,
)
from virtops_lab.network import (
    lab_name_table,
    setup_network,
    tagged_bridges,
    write_hosts_file_block,
)
from virtops_lab.rootfs import ensure_root, root_path
from virtops_lab.ssh import setup_ssh, ssh, write_known_hosts
from virtops_lab.state import LabPaths, recorded_topology, sweep_lock
from virtops_lab.system import LabError, log, wait_for_port
from virtops_lab.topology import Topology


def lab_is_healthy(topology: Topology, paths: LabPaths) -> bool:
    if not paths.record.exists():
        return False
    record = json.loads(paths.record.read_text())
    if record.get("topology") != topology.as_dict() or record.get("root") != str(root_path()):
        return False
    if record.get("boot") != BOOT_SETTINGS:  # booted by an earlier version, with other machine settings
        return False
    try:
        wait_for_port(topology.controller_address, APT_CACHE_PORT, 5, "apt cache")
    except LabError:
        return False
    for host in topology.hosts:
        if not cgroup_pids(lab_cgroup(cgroup_hierarchies()[0], topology.name, host.name)):
            return False
        try:
            if ssh(paths, host, "true", timeout=10).returncode != 0:
                return False
        except subprocess.TimeoutExpired:
            return False
    return True


def up(topology: Topology, recreate: bool) -> None:
    started = time.monotonic()
    paths = LabPaths(topology.name)
    if not recreate and lab_is_healthy(topology, paths):
        write_inventory(topology, paths)
        log(f"lab {topology.name} is already up and healthy; inventory: {paths.inventory_dir}")
        return
    root = ensure_root()
    kvm = prepare_kvm(root)
    raise_inotify_limits()
    with sweep_lock():
        # Under the lock until this lab has a live process: a lab that another `up` is
        # building at the same moment never looks like a dead leftover to this one.
        remove_leftovers(topology.name)
        apply_host_settings()
        paths.state.mkdir(parents=True, exist_ok=True)
        public_key = setup_ssh(paths)
        setup_network(topology)
        start_apt_cache(topology)
    write_hosts_file_block(topology.name, [f"{a}\t{n}" for a, n in lab_name_table(topology)])
    for host in topology.hosts:
        merged = prepare_machine(topology, paths, root, host, public_key)
        boot_machine(topology, paths, host, merged, kvm)
    write_known_hosts(topology, paths)
    states = {host.name: wait_until_booted(topology, paths, host) for host in topology.hosts}
    inventory = write_inventory(topology, paths)
    paths.record.write_text(json.dumps({"topology": topology.as_dict(), "root": str(root), "kvm": kvm,
                                        "boot": BOOT_SETTINGS}, indent=2))
    log(f"lab {topology.name} up in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{n} ({s})" for n, s in states.items()))
    log(f"inventory: {inventory}")


def down(names: list[str]) -> None:
    # Under the lock of `up`'s leftover sweep: a lab half taken down here never looks like
    # a dead leftover to an `up` running at the same moment, which would tear it down too.
    with sweep_lock():
        for lab in names:
            teardown(lab)
            log(f"lab {lab} is down; nothing of it is left")
        if not known_labs():
            restore_host_settings()


def status(asked: Topology, describe_asked: bool) -> int:
    """The lab as it was brought up (its record), or that it is down.

    A lab that left nothing on this machine is down: its name is all there is to report, plus,
    when the command named a topology, hosts or subnet, what `up` would bring up with them.
    """
    paths = LabPaths(asked.name)
    bridge = tagged_bridges().get(asked.name)
    if not bridge and not paths.state.exists() and not lab_processes(asked.name):
        line = f"lab {asked.name} is down (nothing of it on this machine)"
        if describe_asked:
            hosts = ", ".join(f"{h.name} {h.address}" for h in asked.hosts)
            line += f"; `up` with these arguments would bring up {hosts} on {asked.subnet}"
        print(line)
        return 3
    topology = recorded_topology(paths) or asked
    healthy = True
    print(f"lab {topology.name}: bridge {bridge or 'absent'}, state {paths.state if paths.state.exists() else 'absent'}")
    for host in topology.hosts:
        pids = cgroup_pids(lab_cgroup(cgroup_hierarchies()[0], topology.name, host.name))
        reachable = "-"
        if pids:
            try:
                result = ssh(paths, host, "systemctl is-system-running", timeout=10)
                reachable = result.stdout.strip() or result.stderr.strip()
            except subprocess.TimeoutExpired:
                reachable = "ssh timeout"
        up_ok = bool(pids) and reachable in ("running", "degraded")
        healthy &= up_ok
        print(f"  {host.name:<6} {host.address:<15} processes {len(pids):>4}  systemd {reachable}")
    return 0 if healthy else 3
