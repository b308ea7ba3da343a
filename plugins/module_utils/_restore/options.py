# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The restore module's options, typed, and the checks the argument spec cannot make.

A restore moves guests from the ``search`` hosts to one host, the restored host: ``uri`` is how
this module opens it (by default ``qemu:///system``: the module runs on the restored host, as the
evacuation runs on the host it empties, and both take the same lock there), ``dest_uri`` is how
the search hosts reach it (the destination of every migration).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    DEFAULT_CANCEL_PATH,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.options import (
    LIVE_ONLY_OFF,
    ON_FAILURE_CHOICES,
    REPORT_FORMAT_CHOICES,
    DestinationSpec,
    is_source_host,
    parse_destinations,
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

__all__ = ["ON_FAILURE_CHOICES", "REPORT_FORMAT_CHOICES", "RestoreOptions", "validate_options"]

OWN_KEYS = ("uri", "dest_uri", "migrate_uri", "tls_destination", "maintenance_hosts", "memory_reserve_mib",
            "max_parallel", "max_parallel_per_destination", "on_failure", "progress_path", "progress_interval",
            "lock_timeout", "report_path", "report_format", "audit_log", "labels", "cancel_path")


@dataclass(frozen=True)
class RestoreOptions:
    """The restore module's options, typed; ``migration`` holds the shared tuning options."""

    search: list[DestinationSpec]
    uri: str = DEFAULT_URI
    dest_uri: str | None = None
    migrate_uri: str | None = None
    tls_destination: str | None = None
    maintenance_hosts: list[str] = field(default_factory=list)
    memory_reserve_mib: int = 512
    max_parallel: int = 2
    max_parallel_per_destination: int = 1
    on_failure: str = "continue"
    progress_path: str | None = None
    progress_interval: float = 1.0
    lock_timeout: float = 3600.0
    report_path: str | None = None
    report_format: str = "json"
    audit_log: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    """The restored host's placement labels (a guest requiring labels comes home only when they match)."""
    cancel_path: str = DEFAULT_CANCEL_PATH
    """The operator's cancel request (``_common/cancel.py``); empty: cancel requests are off."""
    migration: dict[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    """guest uuid -> the URI of the search host that holds it (set once discovery found them)."""

    # What the evacuation's discovery and move loop read from their options: a restore moves stopped guests
    # too, and follows no plan file.
    stopped_guests = "migrate"
    plan_file = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RestoreOptions:
        values = {key: params[key] for key in OWN_KEYS if params.get(key) is not None}
        if "maintenance_hosts" in values:
            values["maintenance_hosts"] = list(values["maintenance_hosts"])
        migration = {key: value for key, value in params.items()
                     if key not in OWN_KEYS and key != "search" and not key.startswith("_")}
        return cls(search=parse_destinations(params.get("search") or [], "search"), migration=migration, **values)

    @property
    def restored_uri(self) -> str:
        """The restored host's URI as the search hosts reach it: ``dest_uri``, else ``uri``."""
        return self.dest_uri or self.uri

    def holding(self, sources: Mapping[str, str]) -> RestoreOptions:
        """These options, knowing which search host holds each guest to move (uuid -> its URI)."""
        return replace(self, sources=dict(sources))

    def template_request(self, source_uri: str, mode: str) -> MigrationRequest:
        """The migrate request for a guest coming home from ``source_uri`` (name and uuid filled in later)."""
        values = dict(self.migration)
        if mode == OFFLINE:
            values.update(LIVE_ONLY_OFF)
            convergence = dict(values.get("convergence") or {})
            convergence["on_timeout"] = "abort"
            values["convergence"] = convergence
        values.update(uri=source_uri, dest_uri=self.restored_uri, live=mode == LIVE, migrate_uri=self.migrate_uri,
                      tls_destination=self.tls_destination)
        return MigrationRequest.from_params(values)

    def guest_request(self, destination: str, name: str, uuid: str, mode: str) -> MigrationRequest:
        """The migrate request that brings ``name`` (``uuid``) home from the search host that holds it.

        ``destination`` is always the restored host (the placement's only destination).
        """
        return replace(self.template_request(self.sources[uuid], mode), name=name, uuid=uuid)


def validate_options(options: RestoreOptions, resolves_locally: Callable[[str], bool]) -> None:
    """Refuse bad options before anything is touched, every one at once."""
    parse_uri(options.uri, "uri")
    problems = list(own_option_problems(options))
    for host in options.search:
        if is_source_host(options.restored_uri, host.uri, resolves_locally):
            continue  # the restored host itself, e.g. from a whole inventory group: nothing to bring from it
        for mode in (LIVE, OFFLINE):
            problems.extend(option_problems(options.template_request(host.uri, mode), resolves_locally))
    if problems:
        raise ValidationError.of_all(problems, source_uri=options.uri)


def own_option_problems(options: RestoreOptions) -> Iterator[ValidationError]:
    """The problems with restore's own options that the argument spec cannot see."""
    def refuse(message: str, hint: str | None = None) -> ValidationError:
        return ValidationError("validate options", message, hint=hint, source_uri=options.uri)

    if not options.search:
        yield refuse("search is empty", "list the other hypervisors, where the evacuation sent the guests")
    if options.dest_uri is None and not parse_uri(options.uri, "uri").is_remote:
        yield refuse(f"uri is local ({options.uri}) and dest_uri is not given: the other hypervisors need the "
                     "restored host's own URI to migrate the guests to it",
                     "set dest_uri, e.g. qemu+tls://hv1.example.com/system")
    if options.max_parallel < 1 or options.max_parallel_per_destination < 1:
        yield refuse("max_parallel and max_parallel_per_destination must be at least 1")
    if options.memory_reserve_mib < 0:
        yield refuse("memory_reserve_mib must not be negative")
    if options.progress_interval <= 0:
        yield refuse("progress_interval must be positive")
    if options.lock_timeout < 0:
        yield refuse("lock_timeout must not be negative")
    if options.migration.get("live") is False:
        yield refuse("live: false is not a restore mode: running guests always migrate live and stopped "
                     "persistent guests offline", "leave live at true")
