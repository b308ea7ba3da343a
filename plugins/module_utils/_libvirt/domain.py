# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Find domains by name or UUID and describe their state and definition."""

from __future__ import annotations

import uuid as uuid_lib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
    libvirt_error_code,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)

RUNNING = "running"
PAUSED = "paused"
SHUTOFF = "shutoff"
OTHER = "other"
ACTIVE_STATES = (RUNNING, PAUSED, OTHER)


def state_name(state_code: int) -> str:
    """Collapse VIR_DOMAIN_* states to running / paused / shutoff / other."""
    if state_code in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return RUNNING
    if state_code in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return PAUSED
    if state_code == libvirt.VIR_DOMAIN_SHUTOFF:
        return SHUTOFF
    return OTHER


PAUSED_REASONS = {
    "VIR_DOMAIN_PAUSED_USER": "user",
    "VIR_DOMAIN_PAUSED_MIGRATION": "migration",
    "VIR_DOMAIN_PAUSED_IOERROR": "ioerror",
    "VIR_DOMAIN_PAUSED_POSTCOPY": "postcopy",
    "VIR_DOMAIN_PAUSED_POSTCOPY_FAILED": "postcopy_failed",
    "VIR_DOMAIN_PAUSED_STARTING_UP": "starting_up",
}
RUNNING_REASONS = {
    "VIR_DOMAIN_RUNNING_MIGRATED": "migrated",
    "VIR_DOMAIN_RUNNING_MIGRATION_CANCELED": "migration_canceled",
    "VIR_DOMAIN_RUNNING_POSTCOPY": "postcopy",
    "VIR_DOMAIN_RUNNING_POSTCOPY_FAILED": "postcopy_failed",
    "VIR_DOMAIN_RUNNING_UNPAUSED": "unpaused",
    "VIR_DOMAIN_RUNNING_BOOTED": "booted",
}


def reason_name(state_code: int, reason_code: int) -> str:
    """A short name for the state reason that matters to migration."""
    if state_code == libvirt.VIR_DOMAIN_PAUSED:
        table = PAUSED_REASONS
    elif state_code == libvirt.VIR_DOMAIN_RUNNING:
        table = RUNNING_REASONS
    else:
        return "unknown"
    for constant, name in table.items():
        if getattr(libvirt, constant, None) == reason_code:
            return name
    return "unknown"


@dataclass
class DomainInfo:
    """What reconciliation and planning need to know about one domain."""

    name: str
    uuid: str
    state: str
    reason: str
    persistent: bool
    max_memory_kib: int
    memory_kib: int

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def postcopy_state(self) -> bool:
        return self.reason in ("postcopy", "postcopy_failed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "state": self.state,
            "state_reason": self.reason,
            "persistent": self.persistent,
            "memory_kib": self.memory_kib,
            "max_memory_kib": self.max_memory_kib,
        }


def describe_domain(dom: Any) -> DomainInfo:
    """Read state, persistence and memory of a virDomain."""
    state_code, reason_code = dom.state()
    info = dom.info()
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state_name(state_code),
        reason=reason_name(state_code, reason_code),
        persistent=bool(dom.isPersistent()),
        max_memory_kib=int(info[1]),
        memory_kib=int(info[2]),
    )


def normalize_uuid(value: str) -> str:
    """Canonical lower-case UUID string; ValidationError for anything else."""
    try:
        return str(uuid_lib.UUID(str(value)))
    except ValueError:
        raise ValidationError("validate uuid", f"{value!r} is not a UUID")


def _lookup(conn: Any, method: str, key: str) -> Any | None:
    try:
        return getattr(conn, method)(key)
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise MigrationError.from_libvirt(f"look up domain {key}", exc, domain=key)


def lookup_by_uuid(conn: Any, uuid: str) -> Any | None:
    """The virDomain with this UUID, or None (VIR_ERR_NO_DOMAIN)."""
    return _lookup(conn, "lookupByUUIDString", uuid)


def lookup_by_name(conn: Any, name: str) -> Any | None:
    """The virDomain with this name, or None (VIR_ERR_NO_DOMAIN)."""
    return _lookup(conn, "lookupByName", name)


def find_domain(conn: Any, name: str | None = None, uuid: str | None = None) -> Any | None:
    """Find a domain by UUID (preferred) or name; both given must agree."""
    if uuid:
        dom = lookup_by_uuid(conn, normalize_uuid(uuid))
        if dom is not None and name and dom.name() != name:
            raise ValidationError(
                "look up domain",
                f"UUID {uuid} belongs to domain '{dom.name()}', not '{name}'",
                domain=name,
                hint="give only one of name and uuid, or make them match",
            )
        return dom
    if name:
        return lookup_by_name(conn, name)
    raise ValidationError("look up domain", "one of name or uuid is required")


# ---------------------------------------------------------------------------
# Domain XML: the parts that preflight and planning read.


@dataclass
class DiskSpec:
    """One <disk> of a domain definition."""

    target: str
    device: str
    disk_type: str
    source: str | None
    protocol: str | None
    readonly: bool
    shareable: bool

    @property
    def empty(self) -> bool:
        return not self.source


@dataclass
class InterfaceSpec:
    """One <interface> of a domain definition."""

    iface_type: str
    source: str | None


@dataclass
class GuestSpec:
    """What the preflight checks read from the domain XML."""

    name: str
    uuid: str | None
    virt_type: str
    arch: str | None
    machine: str | None
    emulator: str | None
    cpu_mode: str | None
    cpu_xml: str | None
    disks: list[DiskSpec] = field(default_factory=list)
    interfaces: list[InterfaceSpec] = field(default_factory=list)


def parse_domain_xml(xml_text: str, option: str = "domain XML") -> ET.Element:
    """Parse domain XML; ValidationError when it is not a <domain> document."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValidationError(f"validate {option}", f"{option} is not well-formed XML: {exc}")
    if root.tag != "domain":
        raise ValidationError(
            f"validate {option}", f"{option} has root element <{root.tag}>, expected <domain>"
        )
    return root


def _disk_source(disk: ET.Element) -> tuple[str | None, str | None]:
    source = disk.find("source")
    if source is None:
        return None, None
    protocol = source.get("protocol")
    value = source.get("file") or source.get("dev") or source.get("dir") or source.get("name")
    if source.get("pool") and source.get("volume"):
        value = "{}/{}".format(source.get("pool"), source.get("volume"))
    return value, protocol


def _parse_disks(devices: ET.Element | None) -> list[DiskSpec]:
    disks = []
    for disk in [] if devices is None else devices.findall("disk"):
        target = disk.find("target")
        source, protocol = _disk_source(disk)
        disks.append(
            DiskSpec(
                target=target.get("dev", "") if target is not None else "",
                device=disk.get("device", "disk"),
                disk_type=disk.get("type", "file"),
                source=source,
                protocol=protocol,
                readonly=disk.find("readonly") is not None,
                shareable=disk.find("shareable") is not None,
            )
        )
    return disks


def _parse_interfaces(devices: ET.Element | None) -> list[InterfaceSpec]:
    interfaces = []
    for iface in [] if devices is None else devices.findall("interface"):
        source = iface.find("source")
        iface_type = iface.get("type", "")
        value = None
        if source is not None:
            value = source.get({"network": "network", "bridge": "bridge"}.get(iface_type, "dev"))
        interfaces.append(InterfaceSpec(iface_type=iface_type, source=value))
    return interfaces


def guest_spec(xml_text: str) -> GuestSpec:
    """Read name, CPU, disks and interfaces from a domain XML."""
    root = parse_domain_xml(xml_text)
    os_type = root.find("os/type")
    devices = root.find("devices")
    cpu = root.find("cpu")
    return GuestSpec(
        name=root.findtext("name", default=""),
        uuid=root.findtext("uuid"),
        virt_type=root.get("type", "kvm"),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        emulator=devices.findtext("emulator") if devices is not None else None,
        cpu_mode=(cpu.get("mode", "custom") if cpu is not None else None),
        cpu_xml=ET.tostring(cpu, encoding="unicode") if cpu is not None else None,
        disks=_parse_disks(devices),
        interfaces=_parse_interfaces(devices),
    )


def xml_uuid(xml_text: str, option: str) -> str | None:
    """The <uuid> in a user-supplied XML, validated."""
    text = parse_domain_xml(xml_text, option).findtext("uuid")
    return normalize_uuid(text.strip()) if text else None


def migratable_xml(dom: Any, inactive: bool) -> str:
    """The domain XML libvirt would send: migratable, secure, optionally inactive."""
    flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
    if inactive:
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    return dom.XMLDesc(flags)


def host_uuid_of(conn: Any) -> str | None:
    """The host UUID libvirt reports for the host behind ``conn`` (its identity, whatever the URI says)."""
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
