# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migration request and its validation.

``validate_request`` refuses every bad input that can be judged without libvirt and
returns the request with its UUID normalized; ``validate_against_domain`` refuses what
needs the source domain, ``validate_disks_named`` what needs its disks.  All run before
anything is touched.  The flags and parameters sent to libvirt are computed in ``plan.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
    local_addresses_of,
    validate_dest_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    GuestSpec,
    normalize_uuid,
    xml_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.capabilities import (
    COMPRESSION_METHODS,
    combination_problems,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    POSTCOPY,
    PolicyConfig,
)

COPY_STORAGE_CHOICES = ("none", "all", "inc")
COMPRESSION_CHOICES = COMPRESSION_METHODS
PAUSED_SOURCE_CHOICES = ("resume", "migrate_paused", "refuse")
PRECOPY = "precopy"
POSTCOPY_UNAVAILABLE_CHOICES = ("refuse", PRECOPY)
PREFLIGHT_CHECKS = ("cpu", "memory", "storage", "networks", "throughput")
MIGRATE_URI_SCHEMES = ("tcp", "rdma", "unix")


@dataclass(frozen=True)
class MigrationRequest:
    """Everything the user asked for, typed.  Built by ``from_params``; never changed afterwards."""

    dest_uri: str
    uri: str = DEFAULT_URI
    name: str | None = None
    uuid: str | None = None
    live: bool = True
    persistent: bool = True
    undefine_source: bool = True
    confirm_config_removal: bool = False
    p2p: bool = True
    tunnelled: bool = False
    tls: bool = False
    tls_destination: str | None = None
    migrate_uri: str | None = None
    listen_address: str | None = None
    dest_name: str | None = None
    xml: str | None = None
    persistent_xml: str | None = None
    bandwidth: int | None = None
    postcopy_bandwidth: int | None = None
    max_downtime: int | None = None
    copy_storage: str = "none"
    migrate_disks: list[str] = field(default_factory=list)
    compression: list[str] = field(default_factory=list)
    parallel_connections: int | None = None
    auto_converge: bool = False
    auto_converge_initial: int | None = None
    auto_converge_increment: int | None = None
    post_copy: bool = False
    on_postcopy_unavailable: str = "refuse"
    on_paused_source: str = "resume"
    timeout: int | None = None
    preflight_skip: list[str] = field(default_factory=list)
    convergence: PolicyConfig = field(default_factory=PolicyConfig)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MigrationRequest:
        """Build from AnsibleModule.params (unknown keys are ignored)."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in params.items() if key in known and value is not None}
        for list_key in ("migrate_disks", "compression", "preflight_skip"):
            values[list_key] = list(values.get(list_key) or [])
        values["convergence"] = policy_config_from_params(
            params.get("convergence") or {}, params.get("max_downtime"), params.get("timeout")
        )
        return cls(**values)

    @property
    def domain_label(self) -> str:
        return self.name or self.uuid or "?"

    def context(self) -> dict[str, Any]:
        """Keyword arguments naming the domain and both URIs for errors."""
        return {"domain": self.domain_label, "source_uri": self.uri, "dest_uri": self.dest_uri}


def policy_config_from_params(
    convergence: Mapping[str, Any], max_downtime: int | None, timeout: int | None
) -> PolicyConfig:
    """The PolicyConfig for the ``convergence`` dict plus the top-level options."""
    values = {key: value for key, value in convergence.items() if value is not None}
    known = {item.name for item in fields(PolicyConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValidationError("validate convergence", "unknown keys {}".format(", ".join(unknown)))
    values["initial_downtime"] = max_downtime
    values["hard_timeout"] = timeout
    return PolicyConfig(**values)


# ---------------------------------------------------------------------------
# Validation that needs no libvirt.


def _refuse(request: MigrationRequest, message: str, hint: str | None = None) -> ValidationError:
    return ValidationError("validate options", message, hint=hint, **request.context())


def _check_non_negative(request: MigrationRequest) -> Iterator[ValidationError]:
    numbers = {
        "bandwidth": request.bandwidth,
        "postcopy_bandwidth": request.postcopy_bandwidth,
        "max_downtime": request.max_downtime,
        "timeout": request.timeout,
        "auto_converge_initial": request.auto_converge_initial,
        "auto_converge_increment": request.auto_converge_increment,
        "convergence.completion_timeout_per_gib": request.convergence.completion_timeout_per_gib,
        "convergence.progress_timeout": request.convergence.progress_timeout,
        "convergence.downtime_max": request.convergence.downtime_max,
        "convergence.downtime_steps": request.convergence.downtime_steps,
        "convergence.downtime_delay_per_gib": request.convergence.downtime_delay_per_gib,
    }
    for option, value in numbers.items():
        if value is not None and value < 0:
            yield _refuse(request, f"{option} must not be negative (got {value})")
    if request.convergence.poll_interval <= 0:
        yield _refuse(request, "convergence.poll_interval must be positive")
    if request.parallel_connections is not None and not 1 <= request.parallel_connections <= 255:
        yield _refuse(request, f"parallel_connections must be between 1 and 255 (got {request.parallel_connections})")
    for option in ("auto_converge_initial", "auto_converge_increment"):
        value = getattr(request, option)
        if value is not None and value > 100:
            yield _refuse(request, f"{option} is a percentage of CPU throttling, at most 100")


def _check_transport(request: MigrationRequest) -> Iterator[ValidationError]:
    if request.tunnelled and not request.p2p:
        yield _refuse(request, "tunnelled migration needs p2p: true (libvirtd itself carries the "
                      "data over its connection)", hint="set p2p: true or tunnelled: false")
    if request.tunnelled and request.tls:
        yield _refuse(request, "tls and tunnelled exclude each other: tunnelled data already goes "
                      "through the (TLS) libvirtd connection", hint="choose one of tls or tunnelled")
    if request.tunnelled:
        for option in ("migrate_uri", "listen_address", "parallel_connections"):
            if getattr(request, option):
                yield _refuse(request, f"{option} cannot be used with tunnelled migration")
    if request.tls_destination and not request.tls:
        yield _refuse(request, "tls_destination only applies with tls: true")


def _check_modes(request: MigrationRequest) -> Iterator[ValidationError]:
    if request.post_copy and not request.live:
        yield _refuse(request, "post-copy needs a live migration (live: true)")
    if request.convergence.on_timeout == POSTCOPY and not request.post_copy:
        yield _refuse(request, "convergence.on_timeout: postcopy needs post_copy: true, the flag "
                      "must be set when the migration starts")
    if request.postcopy_bandwidth is not None and not request.post_copy:
        yield _refuse(request, "postcopy_bandwidth only applies with post_copy: true")
    if not request.live and not request.persistent:
        yield _refuse(request, "offline migration (live: false) moves only the definition and "
                      "needs persistent: true")
    if not request.live and request.copy_storage != "none":
        yield _refuse(request, "offline migration cannot copy storage; use shared storage or a "
                      "live migration with copy_storage")
    if request.migrate_disks and request.copy_storage == "none":
        yield _refuse(request, "migrate_disks lists disks to copy but copy_storage is none",
                      hint="set copy_storage: all (or inc) or drop migrate_disks")
    if (request.auto_converge_initial is not None or request.auto_converge_increment is not None) \
            and not request.auto_converge:
        yield _refuse(request, "auto_converge_initial/increment need auto_converge: true")


def _check_migrate_uri(request: MigrationRequest) -> Iterator[ValidationError]:
    value = request.migrate_uri
    if not value:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        yield _refuse(request, f"migrate_uri {value!r} is malformed: {exc}")
        return
    if parts.scheme not in MIGRATE_URI_SCHEMES:
        yield _refuse(request, "migrate_uri {!r} must start with {}".format(value, " or ".join(f"{s}://" for s in MIGRATE_URI_SCHEMES)),
                      hint="for example tcp://10.0.0.2 (the destination's address on the migration network)")
    if parts.scheme in ("tcp", "rdma") and not parts.hostname:
        yield _refuse(request, f"migrate_uri {value!r} names no host")


def _check_throughput(request: MigrationRequest) -> Iterator[ValidationError]:
    """Compression methods and parallel connections that can never work together, whatever the hosts."""
    for problem, next_step in combination_problems(request.compression, request.parallel_connections):
        yield _refuse(request, problem, hint=next_step)


HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _normalized_identity(request: MigrationRequest) -> tuple[MigrationRequest, list[ValidationError]]:
    """The request with its UUID normalized, and the problems with the domain's name or UUID.

    A migrate run names one domain; evacuate names none up front.
    """
    problems = [] if request.name or request.uuid else [_refuse(request, "one of name or uuid is required")]
    if not request.uuid:
        return request, problems
    try:
        return replace(request, uuid=normalize_uuid(request.uuid)), problems
    except ValidationError as error:
        return request, [*problems, error]


def _check_names(request: MigrationRequest) -> Iterator[ValidationError]:
    if request.listen_address:
        try:
            ipaddress.ip_address(request.listen_address)
        except ValueError:
            if not HOSTNAME_RE.match(request.listen_address):
                yield _refuse(request, f"listen_address {request.listen_address!r} is neither an IP address nor a host name")
    if request.dest_name is not None and (not request.dest_name or "/" in request.dest_name):
        yield _refuse(request, f"dest_name {request.dest_name!r} is not a valid domain name")
    for option in ("xml", "persistent_xml"):
        text = getattr(request, option)
        if text is not None:
            try:
                xml_uuid(text, option)
            except ValidationError as error:
                yield error


def _check_uris(request: MigrationRequest, resolves_locally: Callable[[str], bool]) -> Iterator[ValidationError]:
    try:
        validate_dest_uri(request.uri, request.dest_uri, resolves_locally)
    except ValidationError as error:
        yield error


OPTION_CHECKS = (_check_names, _check_non_negative, _check_transport, _check_modes, _check_migrate_uri,
                 _check_throughput)


def option_problems(
    request: MigrationRequest,
    resolves_locally: Callable[[str], bool] = local_addresses_of,
) -> list[ValidationError]:
    """Every problem with the options and URIs of a request, whatever domain it is for."""
    problems = list(_check_uris(request, resolves_locally))
    for check in OPTION_CHECKS:
        problems.extend(check(request))
    return problems


def validate_request(
    request: MigrationRequest,
    resolves_locally: Callable[[str], bool] = local_addresses_of,
) -> MigrationRequest:
    """Refuse bad inputs that need no libvirt, every one at once; returns the request with its UUID normalized."""
    normalized, problems = _normalized_identity(request)
    problems += option_problems(normalized, resolves_locally)
    if problems:
        raise ValidationError.of_all(problems, **normalized.context())
    return normalized


def validate_against_domain(request: MigrationRequest, source: DomainInfo) -> None:
    """Refuse what depends on the source domain, still before any change."""
    context = dict(request.context(), domain=source.name)
    if request.undefine_source and not request.persistent and source.persistent \
            and not request.confirm_config_removal:
        raise ValidationError(
            "validate options",
            f"undefine_source: true with persistent: false would leave '{source.name}' defined on no host "
            "(it runs transient on the destination and its configuration is lost when it stops)",
            hint="set persistent: true, or undefine_source: false, or confirm_config_removal: true "
                 "if losing the persistent definition is intended",
            **context,
        )
    for option in ("xml", "persistent_xml"):
        text = getattr(request, option)
        if text is None:
            continue
        declared = xml_uuid(text, option)
        if declared and declared != source.uuid:
            raise ValidationError(
                "validate options", f"{option} declares UUID {declared} but the domain's UUID is {source.uuid}", **context)


def validate_disks_named(request: MigrationRequest, source: DomainInfo, guest: GuestSpec) -> None:
    """Refuse ``migrate_disks`` naming a disk the source domain does not have."""
    if not request.migrate_disks:
        return
    known = {disk.target for disk in guest.disks}
    unknown = [target for target in request.migrate_disks if target not in known]
    if unknown:
        raise ValidationError(
            "validate options",
            "migrate_disks names disks the domain does not have: {} (it has {})".format(", ".join(unknown), ", ".join(sorted(known)) or "none"),
            **dict(request.context(), domain=source.name))
