"""What a lab leaves on this machine, found without any state file, and its removal."""

from __future__ import annotations

import json

from virtops_lab.cgroups import (
    CGROUP_BASE,
    cgroup_hierarchies,
    kill_cgroup_tree,
    lab_processes,
)
from virtops_lab.network import remove_nat_rules, tagged_bridges, write_hosts_file_block
from virtops_lab.state import STATE_ROOT, TAG, state_dir
from virtops_lab.system import log, mounts_under, remove_tree, run


def known_labs() -> set[str]:
    """Every lab name that left a trace: state dir, cgroup, tagged bridge or NAT rule."""
    names: set[str] = set()
    if STATE_ROOT.exists():
        names |= {p.name for p in STATE_ROOT.iterdir() if p.is_dir()}
    for hierarchy in cgroup_hierarchies():
        base = hierarchy / CGROUP_BASE
        if base.exists():
            names |= {p.name for p in base.iterdir() if p.is_dir()}
    names |= set(tagged_bridges())
    for table in ("nat", "filter"):
        for rule in run(["iptables", "-t", table, "-S"], check=False, quiet=True).stdout.splitlines():
            if f'"{TAG}:' in rule or f"{TAG}:" in rule:
                names.add(rule.split(f"{TAG}:", 1)[1].split('"')[0].split()[0])
    return names


def teardown(lab: str) -> None:
    """Remove every trace of one lab, whatever state a crash left it in."""
    state = state_dir(lab)
    kill_cgroup_tree(lab)
    for mount_point in mounts_under(state):
        if run(["umount", mount_point], check=False, quiet=True).returncode != 0:
            run(["umount", "-l", mount_point], quiet=True)
    bridge = tagged_bridges().get(lab)
    if bridge:
        run(["ip", "link", "delete", bridge])
    for link in json.loads(run(["ip", "-j", "link", "show"], quiet=True).stdout or "[]"):
        if link["ifname"].startswith(f"vb-{lab}-"):
            run(["ip", "link", "delete", link["ifname"]], check=False)
    remove_nat_rules(lab)
    write_hosts_file_block(lab, [])
    remove_tree(state)


def remove_leftovers(name: str) -> None:
    """Tear down what this lab left, and every other lab none of whose processes is alive."""
    for lab in sorted(known_labs()):
        if lab == name:
            log(f"removing what lab {lab} left behind")
            teardown(lab)
        elif not lab_processes(lab):
            log(f"removing the leftovers of lab {lab} (none of its processes is alive)")
            teardown(lab)
        else:
            log(f"note: lab {lab} is running too; on this machine, names it shares with {name} resolve to {name}")
