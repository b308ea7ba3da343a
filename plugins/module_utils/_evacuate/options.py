# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The evacuate module's options, typed, and the checks the argument spec cannot make.

The argument spec (``argspec.py``) checks types and choices; ``validate_options`` checks what
depends on several options or on the destinations (each destination's migrate request is
checked like the migrate module checks its own).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    DEFAULT_CANCEL_PATH,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    constraint_option_problems,
    host_label_problems,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    LIVE,
    OFFLINE,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
    option_problems,
)

ON_FAILURE_CHOICES = ("continue", "stop")
STOPPED_GUESTS_CHOICES = ("migrate", "leave")
REPORT_FORMAT_CHOICES = ("json", "text")
DEST_KEYS = ("name", "uri", "migrate_uri", "tls_destination")

# Migration options that only apply to a running guest: off for a stopped guest's offline migration.
LIVE_ONLY_OFF = {"post_copy": False, "postcopy_bandwidth": None, "auto_converge": False,
                 "auto_converge_initial": None, "auto_converge_increment": None}


@dataclass(frozen=True)
class DestinationSpec:
    """A destination as the options name it: how to reach it, and the migrate options for guests sent there."""

    name: str
    uri: str
    migrate_uri: str | None = None
    tls_destination: str | None = None


@dataclass(frozen=True)
class EvacuationOptions:
    """The evacuate module's options, typed; ``migration`` holds the shared tuning options."""

    destinations: list[DestinationSpec]
    uri: str = DEFAULT_URI
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    constraints: dict[str, Any] = field(default_factory=dict)
    host_labels: dict[str, Any] = field(default_factory=dict)
    stopped_guests: str = "migrate"
    maintenance_hosts: list[str] = field(default_factory=list)
    memory_reserve_mib: int = 512
    max_parallel: int = 2
    max_parallel_per_destination: int = 1
    on_failure: str = "continue"
    plan_file: str | None = None
    progress_path: str | None = None
    progress_interval: float = 1.0
    lock_timeout: float = 3600.0
    report_path: str | None = None
    report_format: str = "json"
    audit_log: str | None = None
    cancel_path: str = DEFAULT_CANCEL_PATH
    """The operator's cancel request (``_common/cancel.py``); empty: cancel requests are off."""
    migration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EvacuationOptions:
        own = {"uri", "include", "exclude", "constraints", "host_labels", "stopped_guests", "maintenance_hosts", "memory_reserve_mib",
               "max_parallel", "max_parallel_per_destination", "on_failure", "plan_file", "progress_path",
               "progress_interval", "lock_timeout", "report_path", "report_format", "audit_log", "cancel_path"}
        values = {key: params[key] for key in own if params.get(key) is not None}
        for key in ("include", "exclude", "maintenance_hosts"):
            if key in values:
                values[key] = list(values[key])
        migration = {key: value for key, value in params.items()
                     if key not in own and key != "destinations" and not key.startswith("_")}
        return cls(destinations=parse_destinations(params.get("destinations") or []), migration=migration, **values)

    @property
    def modes(self) -> tuple[str, ...]:
        """The migration modes this evacuation uses: live always, offline when stopped guests move."""
        return (LIVE, OFFLINE) if self.stopped_guests == "migrate" else (LIVE,)

    def destination_named(self, name: str) -> DestinationSpec:
        return next(spec for spec in self.destinations if spec.name == name)

    def template_request(self, dest: DestinationSpec, mode: str) -> MigrationRequest:
        """The migrate request for a guest going to ``dest`` (name and uuid filled in by ``guest_request``)."""
        values = dict(self.migration)
        if mode == OFFLINE:
            values.update(LIVE_ONLY_OFF)
            convergence = dict(values.get("convergence") or {})
            convergence["on_timeout"] = "abort"
            values["convergence"] = convergence
        values.update(uri=self.uri, dest_uri=dest.uri, live=mode == LIVE, migrate_uri=dest.migrate_uri,
                      tls_destination=dest.tls_destination)
        return MigrationRequest.from_params(values)

    def guest_request(self, destination: str, name: str, uuid: str, mode: str) -> MigrationRequest:
        """The migrate request that moves the guest ``name`` (``uuid``) to the destination named ``destination``."""
        return replace(self.template_request(self.destination_named(destination), mode), name=name, uuid=uuid)


def parse_destinations(items: list[Any], option: str = "destinations") -> list[DestinationSpec]:
    """``destinations`` entries (or those of ``option``, a list of hosts of the same shape): a URI, or a dict
    with uri (and name, migrate_uri, tls_destination)."""
    specs = [destination_spec(item, f"{option}[{index}]") for index, item in enumerate(items)]
    for attribute in ("name", "uri"):
        seen: set[str] = set()
        for spec in specs:
            value = getattr(spec, attribute).lower()
            if value in seen:
                raise ValidationError(f"validate {option}", f"{option} entry {attribute} {getattr(spec, attribute)!r} is listed twice")
            seen.add(value)
    return specs


def destination_spec(item: Any, where: str) -> DestinationSpec:
    """One ``destinations`` entry (``where`` names it in errors)."""
    if isinstance(item, str):
        item = {"uri": item}
    if not isinstance(item, Mapping):
        raise ValidationError("validate destinations", f"{where} must be a URI or a dict with uri and name")
    unknown = sorted(set(item) - set(DEST_KEYS))
    if unknown:
        raise ValidationError("validate destinations", "{} has unknown keys {} (known: {})".format(where, ", ".join(unknown), ", ".join(DEST_KEYS)))
    uri = item.get("uri")
    if not uri or not isinstance(uri, str):
        raise ValidationError("validate destinations", f"{where} has no uri")
    name = item.get("name") or parse_uri(uri, f"{where}.uri").host or uri
    return DestinationSpec(str(name), uri, item.get("migrate_uri"), item.get("tls_destination"))


def short_name(name: str) -> str:
    return name.split(".", 1)[0].lower()


def in_maintenance(dest: DestinationSpec, maintenance_hosts: list[str]) -> bool:
    """A destination is in maintenance when its name or URI host matches an entry (short names match FQDNs)."""
    host = parse_uri(dest.uri).host or ""
    mine = {dest.name.lower(), host.lower(), short_name(dest.name), short_name(host)} - {""}
    return any(entry.lower() in mine or short_name(entry) in mine for entry in maintenance_hosts)


def is_source_host(source_uri: str, dest_uri: str, resolves_locally: Callable[[str], bool]) -> bool:
    source, dest = parse_uri(source_uri, "uri"), parse_uri(dest_uri, "destinations.uri")
    if not dest.host:
        return False
    if source.is_remote:
        return (source.host or "").lower() == dest.host.lower()
    return resolves_locally(dest.host)


def validate_options(options: EvacuationOptions, resolves_locally: Callable[[str], bool]) -> set[str]:
    """Refuse bad options before anything is touched, every one at once; returns the destinations that are the source."""
    parse_uri(options.uri, "uri")
    problems = list(own_option_problems(options))
    sources: set[str] = set()
    for dest in options.destinations:
        if is_source_host(options.uri, dest.uri, resolves_locally):
            sources.add(dest.name)
            continue
        for mode in options.modes:
            problems.extend(option_problems(options.template_request(dest, mode), resolves_locally))
    if problems:
        raise ValidationError.of_all(problems, source_uri=options.uri)
    return sources


def own_option_problems(options: EvacuationOptions) -> Iterator[ValidationError]:
    """The problems with evacuate's own options that the argument spec cannot see (the migration options
    are checked per destination)."""
    def refuse(message: str, hint: str | None = None) -> ValidationError:
        return ValidationError("validate options", message, hint=hint, source_uri=options.uri)

    if not options.destinations:
        yield refuse("destinations is empty", "list the other hypervisors, e.g. qemu+tls://hv2.example.com/system")
    if options.max_parallel < 1 or options.max_parallel_per_destination < 1:
        yield refuse("max_parallel and max_parallel_per_destination must be at least 1")
    if options.memory_reserve_mib < 0:
        yield refuse("memory_reserve_mib must not be negative")
    if options.progress_interval <= 0:
        yield refuse("progress_interval must be positive")
    if options.lock_timeout < 0:
        yield refuse("lock_timeout must not be negative")
    if options.migration.get("live") is False:
        yield refuse("live: false is not an evacuation mode: running guests always migrate live and stopped "
                     "persistent guests offline", "leave live at true; choose what happens to stopped guests "
                     "with stopped_guests")
    if not options.include:
        yield refuse("include is empty: nothing would be evacuated", "use include: ['*'] for every guest")
    for problem in constraint_option_problems(options.constraints) + host_label_problems(options.host_labels):
        yield refuse(problem, "see the constraints and host_labels options of the evacuate module")


def selected(name: str, include: list[str], exclude: list[str]) -> bool:
    """fnmatch (case-sensitive, like libvirt names) on include, then exclude."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in include) and \
        not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)
