"""The lab's hosts: names, addresses, groups, read from a topology file (lab/topology.yml)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from virtops_lab.system import LabError

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[1] / "topology.yml"


@dataclass
class Host:
    name: str
    address: str
    groups: list[str]
    export_dirs: list[str] = field(default_factory=list)


@dataclass
class Topology:
    name: str
    subnet: ipaddress.IPv4Network
    domain: str
    hosts: list[Host]
    source: str = ""

    @property
    def controller_address(self) -> str:
        return str(next(self.subnet.hosts()))

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def machine(self, host: Host | str) -> str:
        return f"{self.name}-{host if isinstance(host, str) else host.name}"

    @property
    def lab_domain(self) -> str:
        """Each lab's own DNS domain, so that labs side by side never share a full name."""
        return f"{self.name}.{self.domain}"

    def fqdn(self, host: Host) -> str:
        return f"{host.name}.{self.lab_domain}"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "subnet": str(self.subnet),
            "domain": self.domain,
            "hosts": [{"name": h.name, "address": h.address, "groups": h.groups, "export_dirs": h.export_dirs}
                      for h in self.hosts],
        }


def load_topology(path: Path, only_hosts: list[str] | None, name: str | None, subnet: str | None) -> Topology:
    data = yaml.safe_load(path.read_text())
    hosts = [Host(h["name"], str(h["address"]), list(h.get("groups", [])), list(h.get("export_dirs", [])))
             for h in data["hosts"]]
    if only_hosts:
        unknown = set(only_hosts) - {h.name for h in hosts}
        if unknown:
            raise LabError(f"--hosts names hosts that {path} does not define: {', '.join(sorted(unknown))}")
        hosts = [h for h in hosts if h.name in only_hosts]
    topology = Topology(
        name=name or data["name"],
        subnet=ipaddress.ip_network(subnet or data["subnet"]),
        domain=data["domain"],
        hosts=hosts,
        source=str(path),
    )
    if subnet and subnet != data["subnet"]:
        topology.hosts = _renumber(hosts, ipaddress.ip_network(data["subnet"]), topology.subnet)
    validate_topology(topology)
    return topology


def _renumber(hosts: list[Host], old: ipaddress.IPv4Network, new: ipaddress.IPv4Network) -> list[Host]:
    offset = int(new.network_address) - int(old.network_address)
    return [Host(h.name, str(ipaddress.ip_address(int(ipaddress.ip_address(h.address)) + offset)), h.groups, h.export_dirs)
            for h in hosts]


def validate_topology(topology: Topology) -> None:
    if not topology.name.isalnum() or len(topology.name) > 6:
        raise LabError(f"lab name {topology.name!r} must be alphanumeric and at most 6 characters")
    seen: set[str] = {topology.controller_address}
    for host in topology.hosts:
        if ipaddress.ip_address(host.address) not in topology.subnet:
            raise LabError(f"{host.name}: {host.address} is outside {topology.subnet}")
        if host.address in seen:
            raise LabError(f"{host.name}: address {host.address} is used twice (the controller has {topology.controller_address})")
        seen.add(host.address)
        if len(topology.machine(host)) > 12:
            raise LabError(f"machine name {topology.machine(host)} is longer than 12 characters (interface names)")
