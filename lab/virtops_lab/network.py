"""The lab's network: its bridge, NAT to the package registries, and its names on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from virtops_lab.state import TAG
from virtops_lab.system import LabError, run
from virtops_lab.topology import Topology


def tagged_bridges() -> dict[str, str]:
    """Lab name -> bridge, for every link whose alias marks it as a lab bridge."""
    found: dict[str, str] = {}
    links = json.loads(run(["ip", "-j", "-d", "link", "show"], quiet=True).stdout or "[]")
    for link in links:
        alias = link.get("ifalias", "")
        if alias.startswith(f"{TAG}:"):
            found[alias.split(":", 1)[1]] = link["ifname"]
    return found


def remove_nat_rules(lab: str) -> None:
    for table in ("nat", "filter"):
        for rule in run(["iptables", "-t", table, "-S"], quiet=True).stdout.splitlines():
            if rule.startswith("-A ") and f"{TAG}:{lab}" in rule:
                args = rule.split()
                args[0] = "-D"
                # iptables -S quotes comments; the shell would strip those quotes.
                run(["iptables", "-t", table, *[a.strip('"') for a in args]])


def hosts_file_block_markers(lab: str) -> tuple[str, str]:
    return f"# BEGIN {TAG} {lab}", f"# END {TAG} {lab}"


def write_hosts_file_block(lab: str, lines: list[str]) -> None:
    begin, end = hosts_file_block_markers(lab)
    hosts_file = Path("/etc/hosts")
    kept, inside = [], False
    for line in hosts_file.read_text().splitlines():
        if line == begin:
            inside = True
        elif line == end:
            inside = False
        elif not inside:
            kept.append(line)
    # The newest lab's block goes first: on the controller its names win.
    block = [begin, *lines, end] if lines else []
    hosts_file.write_text("\n".join(block + kept) + "\n")


def lab_name_table(topology: Topology) -> list[tuple[str, str]]:
    table = [(topology.controller_address, f"controller.{topology.lab_domain} controller")]
    table += [(h.address, f"{topology.fqdn(h)} {h.name}") for h in topology.hosts]
    return table


def setup_network(topology: Topology) -> None:
    bridge = topology.bridge
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "link", "set", bridge, "alias", f"{TAG}:{topology.name}"])
    run(["ip", "addr", "add", f"{topology.controller_address}/{topology.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    uplink = default_route_interface()
    comment = ["-m", "comment", "--comment", f"{TAG}:{topology.name}"]
    subnet = str(topology.subnet)
    run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-d", subnet, "-o", uplink, "-j", "MASQUERADE", *comment])
    # Inserted at the top in reverse order: lab to lab, replies, then DNS/HTTP(S) out only.
    forward_rules = [
        ["-i", bridge, "-j", "DROP"],
        ["-i", bridge, "-o", uplink, "-p", "tcp", "-m", "multiport", "--dports", "80,443", "-j", "ACCEPT"],
        ["-i", bridge, "-o", uplink, "-p", "tcp", "--dport", "53", "-j", "ACCEPT"],
        ["-i", bridge, "-o", uplink, "-p", "udp", "--dport", "53", "-j", "ACCEPT"],
        ["-o", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],
    ]
    for rule in forward_rules:
        run(["iptables", "-I", "FORWARD", "1", *rule, *comment])


def default_route_interface() -> str:
    routes = json.loads(run(["ip", "-j", "route", "show", "default"]).stdout or "[]")
    if not routes:
        raise LabError("this machine has no default route: the lab cannot reach the package registries")
    return routes[0]["dev"]
