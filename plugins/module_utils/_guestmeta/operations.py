# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Set or clear a guest's placement constraints in its metadata (the guest_placement module).

The decision is a pure function over values, ``desired_metadata(before, request)``:

=============  ==========================================================================
state          the element after the run
=============  ==========================================================================
present        each constraint option given replaces that field; omitted ones are kept;
               ``pin_policy: none`` removes the pin
absent         no constraints at all (constraint options are refused with it); children
               this version does not know stay, unless the whole element goes
=============  ==========================================================================

The origin an evacuation recorded is kept in both states; only ``clear_origin: true``
removes it (with state=absent: the whole element). The element is written (live when the guest runs, to its definition when it
is persistent) only when it differs from what the guest holds.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
    close_quietly,
    open_connection,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    find_domain,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    GuestMetadata,
    metadata_problems,
    parse_guest_metadata,
    read_guest_metadata_text,
    render_guest_metadata,
    write_guest_metadata,
)

STATES = ("present", "absent")
PIN_CHOICES = ("skip", "shutdown", "block", "none")
CONSTRAINT_OPTIONS = ("anti_affinity", "affinity", "pin_policy", "priority", "require_labels")


@dataclass(frozen=True)
class PlacementRequest:
    """What the module was asked; a constraint option that is None was not given."""

    uri: str = DEFAULT_URI
    name: str | None = None
    uuid: str | None = None
    state: str = "present"
    anti_affinity: tuple[tuple[str, str], ...] | None = None
    affinity: tuple[str, ...] | None = None
    pin_policy: str | None = None
    priority: int | None = None
    require_labels: tuple[tuple[str, str], ...] | None = None
    clear_origin: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PlacementRequest:
        values = {key: value for key, value in params.items() if key in cls.__dataclass_fields__ and value is not None}
        if "anti_affinity" in values:
            values["anti_affinity"] = tuple((item["group"], item.get("mode") or "hard")
                                            for item in values["anti_affinity"])
        if "affinity" in values:
            values["affinity"] = tuple(values["affinity"])
        if "require_labels" in values:
            values["require_labels"] = tuple((str(label), _label_value(value))
                                             for label, value in values["require_labels"].items())
        return cls(**values)

    def given(self) -> list[str]:
        """The constraint options that were given."""
        return [option for option in CONSTRAINT_OPTIONS if getattr(self, option) is not None]

    def context(self) -> dict[str, Any]:
        return {"domain": self.name or self.uuid, "source_uri": self.uri}


def _label_value(value: Any) -> str:
    """YAML reads rack: 1 as an int and zone: yes as a bool; a label's value is the text written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def request_problems(request: PlacementRequest) -> list[str]:
    """Everything wrong with the options, found before anything is opened."""
    problems: list[str] = []
    if request.state == "absent" and request.given():
        problems.append("state=absent removes every constraint; it takes none of "
                        + ", ".join(request.given()))
    if request.pin_policy is not None and request.pin_policy not in PIN_CHOICES:
        problems.append(f"pin_policy '{request.pin_policy}' is not one of " + ", ".join(PIN_CHOICES))
    wanted = GuestMetadata(anti_affinity=request.anti_affinity or (), affinity=request.affinity or (),
                           priority=request.priority, require_labels=request.require_labels or ())
    problems += metadata_problems(wanted)
    return problems


def validate_request(request: PlacementRequest) -> None:
    problems = [ValidationError("validate options", problem) for problem in request_problems(request)]
    if problems:
        raise ValidationError.of_all(problems, **request.context())
    parse_uri(request.uri, "uri")


def desired_metadata(before: GuestMetadata, request: PlacementRequest) -> GuestMetadata:
    """The element the guest should hold after the run (see the table in the module docstring)."""
    origin = None if request.clear_origin else before.origin
    if request.state == "absent":
        return GuestMetadata() if request.clear_origin else GuestMetadata(origin=origin, unknown=before.unknown)
    after = replace(before, origin=origin)
    if request.anti_affinity is not None:
        after = replace(after, anti_affinity=request.anti_affinity)
    if request.affinity is not None:
        after = replace(after, affinity=request.affinity)
    if request.pin_policy is not None:
        after = replace(after, pin_policy=None if request.pin_policy == "none" else request.pin_policy)
    if request.priority is not None:
        after = replace(after, priority=request.priority)
    if request.require_labels is not None:
        after = replace(after, require_labels=request.require_labels)
    return after


def element_text(meta: GuestMetadata) -> str:
    """The element indented for a diff; empty when the guest holds none."""
    if meta.empty:
        return ""
    root = ET.fromstring(render_guest_metadata(meta))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


@dataclass(frozen=True)
class GuestView:
    """What the guest holds now: live (when it runs) and in its definition (when it is persistent).

    ``unreadable`` holds the element text of a place whose element did not parse (read only
    when the run replaces the whole element); that place then reads as empty.
    """

    name: str
    uuid: str
    persistent: bool
    live: GuestMetadata | None
    config: GuestMetadata | None
    unreadable: tuple[tuple[str, str], ...] = ()

    @property
    def current(self) -> GuestMetadata:
        """The element the guest runs with (its definition's when it is stopped)."""
        return self.live if self.live is not None else (self.config or GuestMetadata())

    def differs_from(self, wanted: GuestMetadata) -> bool:
        return bool(self.unreadable) or any(held is not None and held != wanted for held in (self.live, self.config))

    def places(self) -> list[str]:
        return [place for place, held in (("live", self.live), ("config", self.config)) if held is not None]

    def before_text(self) -> str:
        if self.unreadable:
            return self.unreadable[0][1] + "\n"
        return element_text(self.current)


def read_view(dom: Any, request: PlacementRequest) -> GuestView:
    """Read and parse the element live and in the definition.

    An element that does not parse is refused, except when the run removes everything
    (state=absent and clear_origin=true): then it is what gets replaced.
    """
    replaces_all = request.state == "absent" and request.clear_origin
    unreadable: list[tuple[str, str]] = []

    def parsed(place: str) -> GuestMetadata:
        text = read_guest_metadata_text(dom, config=place == "config")
        try:
            return parse_guest_metadata(text, guest=dom.name())
        except ValidationError as error:
            if not replaces_all:
                error.hint = f"{error.hint}; or remove the whole element with state=absent and clear_origin=true"
                raise error.with_context()
            unreadable.append((place, text or ""))
            return GuestMetadata()
    live = parsed("live") if dom.isActive() else None
    config = parsed("config") if dom.isPersistent() else None
    return GuestView(name=dom.name(), uuid=dom.UUIDString(), persistent=config is not None, live=live,
                     config=config, unreadable=tuple(unreadable))


def run_guest_placement(request: PlacementRequest, check_mode: bool = False,
                        connect: Callable[..., Any] = open_connection) -> dict[str, Any]:
    """Validate, read, decide, and write only what differs; the module's result."""
    validate_request(request)
    conn = None
    try:
        conn = connect(request.uri, "source", **request.context())
        dom = find_domain(conn, request.name, request.uuid)
        if dom is None:
            wanted = f"uuid '{request.uuid}'" if request.uuid else f"name '{request.name}'"
            raise DomainNotFound("look up domain", f"no domain with matching {wanted} on {request.uri}",
                                 hint="point uri at the host the guest is defined on")
        view = read_view(dom, request)
        after = desired_metadata(view.current, request)
        changed = view.differs_from(after)
        if changed and not check_mode:
            write_guest_metadata(dom, after, persistent=view.persistent)
        return {
            "changed": changed,
            "domain": view.name,
            "uuid": view.uuid,
            "metadata": after.as_dict(),
            "written_to": view.places() if changed else [],
            "diff": {"before": view.before_text(), "after": element_text(after),
                     "before_header": f"{view.name} placement metadata",
                     "after_header": f"{view.name} placement metadata"},
        }
    except MigrationError as error:
        raise error.with_context(**request.context())
    finally:
        close_quietly(conn)
