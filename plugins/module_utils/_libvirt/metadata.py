# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The collection's own element in a libvirt domain's ``<metadata>``.

In the domain XML it reads (every child optional, each list element may repeat)::

    <metadata>
      <virtops:guest xmlns:virtops="https://virtops.dev/xmlns/migration/1">
        <virtops:anti-affinity group="db" mode="hard"/>
        <virtops:affinity group="web"/>
        <virtops:pin policy="skip"/>
        <virtops:priority value="10"/>
        <virtops:require-label name="rack" value="r1"/>
        <virtops:origin host="hv1" host-uuid="..." run-id="..." time="2026-12-01T14:00:00Z"/>
      </virtops:guest>
    </metadata>

virDomainGetMetadata(VIR_DOMAIN_METADATA_ELEMENT) returns the element with its
namespace stripped (``<guest>...</guest>``) and virDomainSetMetadata takes it
the same way, placing it in NAMESPACE with the prefix KEY.  Parsing accepts a
full domain XML, the namespaced element or the stripped one; it ignores
children and attributes it does not know (a newer collection may add some) and
refuses bad values of the ones it knows with a ValidationError naming the guest.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
    libvirt_error_code,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)

NAMESPACE = "https://virtops.dev/xmlns/migration/1"
KEY = "virtops"
ELEMENT = "guest"

ANTI_AFFINITY_MODES = ("hard", "soft")
CHILDREN = ("anti-affinity", "affinity", "pin", "priority", "require-label", "origin")
PIN_POLICIES = ("skip", "shutdown", "block")

# libvirt's values, for bindings too old to name them.
_METADATA_ELEMENT = 2
_AFFECT_LIVE = 1
_AFFECT_CONFIG = 2
_ERR_NO_DOMAIN_METADATA = 80

READ_OPERATION = "read placement metadata"
WRITE_OPERATION = "write placement metadata"


@dataclass(frozen=True)
class Origin:
    """Where a guest was before an evacuation moved it (the host it belongs on)."""

    host: str
    host_uuid: str | None = None
    run_id: str | None = None
    time: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "host_uuid": self.host_uuid, "run_id": self.run_id, "time": self.time}


@dataclass(frozen=True)
class GuestMetadata:
    """A guest's placement constraints and origin, as its metadata element holds them.

    The lists are kept sorted (and without repeats), so two values that
    describe the same element compare equal whatever order they were given in.
    ``unknown`` holds the child elements this version does not know (a newer
    collection's, another tool's), as XML text: they are written back unchanged.
    """

    anti_affinity: tuple[tuple[str, str], ...] = ()
    affinity: tuple[str, ...] = ()
    pin_policy: str | None = None
    priority: int | None = None
    require_labels: tuple[tuple[str, str], ...] = ()
    origin: Origin | None = None
    unknown: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "anti_affinity", tuple(sorted({tuple(pair) for pair in self.anti_affinity})))
        object.__setattr__(self, "affinity", tuple(sorted(set(self.affinity))))
        object.__setattr__(self, "require_labels", tuple(sorted({tuple(pair) for pair in self.require_labels})))

    @property
    def empty(self) -> bool:
        return self == GuestMetadata()

    def as_dict(self) -> dict[str, Any]:
        """The value as a module returns it."""
        return {
            "anti_affinity": [{"group": group, "mode": mode} for group, mode in self.anti_affinity],
            "affinity": list(self.affinity),
            "pin_policy": self.pin_policy,
            "priority": self.priority,
            "require_labels": dict(self.require_labels),
            "origin": self.origin.as_dict() if self.origin else None,
        }


def with_origin(meta: GuestMetadata, origin: Origin | None) -> GuestMetadata:
    """The same constraints with this origin (None: without one)."""
    return replace(meta, origin=origin)


# ---------------------------------------------------------------------------
# Validation: every problem of a value, as text naming the bad value.


def metadata_problems(meta: GuestMetadata) -> list[str]:
    """What is wrong with ``meta`` (empty when it can be written and read back as it is)."""
    problems: list[str] = []
    for group, mode in meta.anti_affinity:
        problems += _name_problems("anti-affinity group", group)
        if mode not in ANTI_AFFINITY_MODES:
            problems.append(f"anti-affinity group '{group}' has mode '{mode}', not one of hard, soft")
    groups = [group for group, _mode in meta.anti_affinity]
    for group in sorted({group for group in groups if groups.count(group) > 1}):
        problems.append(f"anti-affinity group '{group}' is given with both modes, hard and soft")
    for group in meta.affinity:
        problems += _name_problems("affinity group", group)
    if meta.pin_policy is not None and meta.pin_policy not in PIN_POLICIES:
        problems.append(f"pin policy '{meta.pin_policy}' is not one of skip, shutdown, block")
    if meta.priority is not None and (isinstance(meta.priority, bool) or not isinstance(meta.priority, int)):
        problems.append(f"priority {meta.priority!r} is not an integer")
    for label, _value in meta.require_labels:
        problems += _name_problems("required label", label)
    labels = [label for label, _value in meta.require_labels]
    for label in sorted({label for label in labels if labels.count(label) > 1}):
        problems.append(f"required label '{label}' is given with more than one value")
    if meta.origin is not None:
        problems += _name_problems("origin host", meta.origin.host)
    return problems


def _name_problems(what: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"{what} {value!r} is not a non-empty name"]
    if value != value.strip():
        return [f"{what} {value!r} has leading or trailing blanks"]
    return []


def check_metadata(meta: GuestMetadata, guest: str | None, operation: str = WRITE_OPERATION) -> None:
    """Raise one ValidationError naming the guest and every bad value of ``meta``."""
    problems = metadata_problems(meta)
    if problems:
        raise ValidationError(operation, "; ".join(problems), domain=guest,
                              hint="fix the values (virsh metadata GUEST --uri " + NAMESPACE
                              + " --key " + KEY + " --edit, or the guest_placement module)")


# ---------------------------------------------------------------------------
# XML


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _in_our_namespace(tag: str) -> bool:
    return not tag.startswith("{") or tag.startswith("{" + NAMESPACE + "}")


def _find_element(root: ET.Element) -> ET.Element | None:
    """Our element: the root itself, or the one under a domain's <metadata>."""
    if _local(root.tag) == ELEMENT and _in_our_namespace(root.tag):
        return root
    if root.tag == "domain":
        return root.find(f"metadata/{{{NAMESPACE}}}{ELEMENT}")
    return None


def parse_guest_metadata(xml: str | None, guest: str | None = None) -> GuestMetadata:
    """The GuestMetadata held by a full domain XML, the namespaced element or the stripped one.

    No element (or no XML) is GuestMetadata(); bad values raise a ValidationError
    naming ``guest`` (or the domain's <name>).
    """
    if not xml or not xml.strip():
        return GuestMetadata()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValidationError(READ_OPERATION, f"the metadata is not well-formed XML ({exc})", domain=guest)
    if root.tag == "domain" and guest is None:
        guest = root.findtext("name")
    element = _find_element(root)
    if element is None:
        return GuestMetadata()
    fields: dict[str, list[ET.Element]] = {}
    unknown: list[str] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue  # a comment or processing instruction
        if _in_our_namespace(child.tag) and _local(child.tag) in CHILDREN:
            fields.setdefault(_local(child.tag), []).append(child)
        else:
            unknown.append(_unknown_text(child))
    problems: list[str] = []
    meta = GuestMetadata(
        anti_affinity=tuple((child.get("group", ""), child.get("mode", "hard")) for child in fields.get("anti-affinity", ())),
        affinity=tuple(child.get("group", "") for child in fields.get("affinity", ())),
        pin_policy=_single(fields, "pin", "policy", problems),
        priority=_priority(_single(fields, "priority", "value", problems), problems),
        require_labels=tuple((child.get("name", ""), child.get("value", "")) for child in fields.get("require-label", ())),
        origin=_origin(fields.get("origin", ()), problems),
        unknown=tuple(unknown),
    )
    problems += metadata_problems(meta)
    if problems:
        raise ValidationError(READ_OPERATION, "; ".join(problems), domain=guest,
                              hint=f"correct the guest's metadata: virsh metadata {guest or 'GUEST'} --uri "
                              f"{NAMESPACE} --key {KEY} --edit, or set it with the guest_placement module")
    return meta


def _single(fields: dict[str, list[ET.Element]], tag: str, attribute: str, problems: list[str]) -> str | None:
    elements = fields.get(tag, ())
    if len(elements) > 1:
        problems.append(f"<{tag}> is given {len(elements)} times, at most once is allowed")
    if not elements:
        return None
    value = elements[0].get(attribute)
    if value is None:
        problems.append(f"<{tag}> has no {attribute} attribute")
    return value


def _priority(text: str | None, problems: list[str]) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        problems.append(f"priority '{text}' is not an integer")
        return None


def _origin(elements: Any, problems: list[str]) -> Origin | None:
    if len(elements) > 1:
        problems.append(f"<origin> is given {len(elements)} times, at most once is allowed")
    if not elements:
        return None
    element = elements[0]
    return Origin(host=element.get("host", ""), host_uuid=element.get("host-uuid"),
                  run_id=element.get("run-id"), time=element.get("time"))


def _unknown_text(child: ET.Element) -> str:
    """An unknown child as text, in our namespace stripped the way libvirt hands the element out."""
    copy = ET.fromstring(ET.tostring(child))
    for node in copy.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{" + NAMESPACE + "}"):
            node.tag = _local(node.tag)
    copy.tail = None
    return ET.tostring(copy, encoding="unicode")


def render_guest_metadata(meta: GuestMetadata) -> str:
    """The element for virDomainSetMetadata (no namespace: libvirt places it in NAMESPACE as KEY)."""
    root = ET.Element(ELEMENT)
    for group, mode in meta.anti_affinity:
        ET.SubElement(root, "anti-affinity", {"group": group, "mode": mode})
    for group in meta.affinity:
        ET.SubElement(root, "affinity", {"group": group})
    if meta.pin_policy is not None:
        ET.SubElement(root, "pin", {"policy": meta.pin_policy})
    if meta.priority is not None:
        ET.SubElement(root, "priority", {"value": str(meta.priority)})
    for label, value in meta.require_labels:
        ET.SubElement(root, "require-label", {"name": label, "value": value})
    if meta.origin is not None:
        attributes = {"host": meta.origin.host, "host-uuid": meta.origin.host_uuid,
                      "run-id": meta.origin.run_id, "time": meta.origin.time}
        ET.SubElement(root, "origin", {name: value for name, value in attributes.items() if value is not None})
    for text in meta.unknown:
        root.append(ET.fromstring(text))
    return ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------------------
# libvirt


def _constant(name: str, fallback: int) -> int:
    return getattr(libvirt, name, fallback)


def read_guest_metadata_text(dom: Any, config: bool = False) -> str | None:
    """The guest's element as libvirt returns it (the live one when it runs, unless ``config``); None: no element."""
    flags = _constant("VIR_DOMAIN_AFFECT_CONFIG", _AFFECT_CONFIG) if config else 0
    try:
        return dom.metadata(_constant("VIR_DOMAIN_METADATA_ELEMENT", _METADATA_ELEMENT), NAMESPACE, flags)
    except libvirt.libvirtError as exc:
        if libvirt_error_code(exc) == _constant("VIR_ERR_NO_DOMAIN_METADATA", _ERR_NO_DOMAIN_METADATA):
            return None
        raise MigrationError.from_libvirt(READ_OPERATION, exc, domain=_name_of(dom))


def read_guest_metadata(dom: Any, config: bool = False) -> GuestMetadata:
    """The guest's element (the live one when it runs, unless ``config``); none is GuestMetadata()."""
    return parse_guest_metadata(read_guest_metadata_text(dom, config), guest=_name_of(dom))


def write_flags(active: bool, persistent: bool) -> int:
    """VIR_DOMAIN_AFFECT_LIVE when the guest runs, VIR_DOMAIN_AFFECT_CONFIG when it is defined."""
    flags = 0
    if active:
        flags |= _constant("VIR_DOMAIN_AFFECT_LIVE", _AFFECT_LIVE)
    if persistent:
        flags |= _constant("VIR_DOMAIN_AFFECT_CONFIG", _AFFECT_CONFIG)
    return flags


def write_guest_metadata(dom: Any, meta: GuestMetadata, persistent: bool) -> None:
    """Set the element live (if the guest is active) and in its definition (if ``persistent``).

    An empty ``meta`` removes the element. Bad values are refused before libvirt is called.
    """
    guest = _name_of(dom)
    check_metadata(meta, guest)
    try:
        flags = write_flags(bool(dom.isActive()), persistent)
        text = None if meta.empty else render_guest_metadata(meta)
        dom.setMetadata(_constant("VIR_DOMAIN_METADATA_ELEMENT", _METADATA_ELEMENT), text, KEY, NAMESPACE, flags)
    except libvirt.libvirtError as exc:
        raise MigrationError.from_libvirt(WRITE_OPERATION, exc, domain=guest,
                                          hint="check that the guest still exists and libvirtd accepts "
                                          "virsh metadata on it")


def _name_of(dom: Any) -> str:
    return dom.name()  # libvirt-python keeps the name on the handle: no call to libvirtd
