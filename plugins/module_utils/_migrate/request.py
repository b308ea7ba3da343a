# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The migration request: validation, VIR_MIGRATE_* flags and typed params.

``validate_request`` refuses every bad input of SECURITY.md that can be
judged without libvirt; ``validate_against_domain`` the ones that need the
source domain.  Both run before anything is touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
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
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    GuestSpec,
    normalize_uuid,
    xml_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    ON_TIMEOUT_CHOICES,
    POSTCOPY,
    PolicyConfig,
)

COPY_STORAGE_CHOICES = ("none", "all", "inc")
COMPRESSION_CHOICES = ("xbzrle", "mt")
PAUSED_SOURCE_CHOICES = ("resume", "migrate_paused", "refuse")
PREFLIGHT_CHECKS = ("cpu", "memory", "storage", "networks")
MIGRATE_URI_SCHEMES = ("tcp", "rdma", "unix")

# Flag names in the order they are reported.
FLAG_NAMES = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_TUNNELLED",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_UNDEFINE_SOURCE",
    "VIR_MIGRATE_PAUSED",
    "VIR_MIGRATE_NON_SHARED_DISK",
    "VIR_MIGRATE_NON_SHARED_INC",
    "VIR_MIGRATE_CHANGE_PROTECTION",
    "VIR_MIGRATE_UNSAFE",
    "VIR_MIGRATE_OFFLINE",
    "VIR_MIGRATE_COMPRESSED",
    "VIR_MIGRATE_ABORT_ON_ERROR",
    "VIR_MIGRATE_AUTO_CONVERGE",
    "VIR_MIGRATE_RDMA_PIN_ALL",
    "VIR_MIGRATE_POSTCOPY",
    "VIR_MIGRATE_TLS",
    "VIR_MIGRATE_PARALLEL",
    "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    "VIR_MIGRATE_POSTCOPY_RESUME",
)

XML_PARAM_NAMES = ("destination_xml", "persistent_xml")


@dataclass
class MigrationRequest:
    """Everything the user asked for, typed.  Built by ``from_params``."""

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


def _check_choices(request: MigrationRequest) -> Iterator[ValidationError]:
    choices = {
        "copy_storage": ([request.copy_storage], COPY_STORAGE_CHOICES),
        "compression": (request.compression, COMPRESSION_CHOICES),
        "on_paused_source": ([request.on_paused_source], PAUSED_SOURCE_CHOICES),
        "preflight_skip": (request.preflight_skip, PREFLIGHT_CHECKS),
        "convergence.on_timeout": ([request.convergence.on_timeout], ON_TIMEOUT_CHOICES),
    }
    for option, (values, allowed) in choices.items():
        for value in values:
            if value not in allowed:
                yield _refuse(request, "{}: unknown value {!r} (choose from {})".format(option, value, ", ".join(allowed)))


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


HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_identity(request: MigrationRequest) -> Iterator[ValidationError]:
    """The domain's name or UUID (a migrate run names one domain; evacuate names none up front)."""
    if not request.name and not request.uuid:
        yield _refuse(request, "one of name or uuid is required")
    if request.uuid:
        try:
            request.uuid = normalize_uuid(request.uuid)
        except ValidationError as error:
            yield error


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


OPTION_CHECKS = (_check_names, _check_choices, _check_non_negative, _check_transport, _check_modes, _check_migrate_uri)


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
    """Refuse bad inputs that need no libvirt, every one at once; returns the (normalized) request."""
    problems = list(_check_identity(request)) + option_problems(request, resolves_locally)
    if problems:
        raise ValidationError.of_all(problems, **request.context())
    return request


def validate_against_domain(request: MigrationRequest, source: DomainInfo, guest: GuestSpec | None) -> None:
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
    if guest is not None and request.migrate_disks:
        known = {disk.target for disk in guest.disks}
        unknown = [target for target in request.migrate_disks if target not in known]
        if unknown:
            raise ValidationError(
                "validate options",
                "migrate_disks names disks the domain does not have: {} (it has {})".format(", ".join(unknown), ", ".join(sorted(known)) or "none"),
                **context)


# ---------------------------------------------------------------------------
# libvirt flags and typed parameters.


def migration_flags(request: MigrationRequest) -> int:
    """The VIR_MIGRATE_* flags for a request."""
    wanted = {
        "VIR_MIGRATE_LIVE": request.live,
        "VIR_MIGRATE_OFFLINE": not request.live,
        "VIR_MIGRATE_PEER2PEER": request.p2p,
        "VIR_MIGRATE_TUNNELLED": request.tunnelled,
        "VIR_MIGRATE_TLS": request.tls,
        "VIR_MIGRATE_PERSIST_DEST": request.persistent,
        "VIR_MIGRATE_UNDEFINE_SOURCE": request.undefine_source,
        "VIR_MIGRATE_NON_SHARED_DISK": request.copy_storage == "all",
        "VIR_MIGRATE_NON_SHARED_INC": request.copy_storage == "inc",
        "VIR_MIGRATE_COMPRESSED": bool(request.compression),
        "VIR_MIGRATE_PARALLEL": bool(request.parallel_connections),
        "VIR_MIGRATE_AUTO_CONVERGE": request.auto_converge,
        "VIR_MIGRATE_POSTCOPY": request.post_copy,
    }
    flags = 0
    for name, enabled in wanted.items():
        if enabled:
            flags |= getattr(libvirt, name)
    return flags


def flag_names(flags: int) -> list[str]:
    """Names of the VIR_MIGRATE_* bits set in ``flags``."""
    return [name for name in FLAG_NAMES if flags & getattr(libvirt, name, 0)]


def persistent_xml_for(request: MigrationRequest, source_inactive_xml: str | None) -> str | None:
    """The persistent definition to send: always one when persistent is asked.

    Order: ``persistent_xml``, then ``xml`` (so an edited live definition is
    also what persists, the bug Nova fixed), then the source's inactive
    definition.
    """
    if not request.persistent:
        return None
    return request.persistent_xml or request.xml or source_inactive_xml


def migration_params(
    request: MigrationRequest,
    persistent_xml: str | None = None,
    migrate_disks: list[str] | None = None,
) -> dict[str, Any]:
    """The VIR_MIGRATE_PARAM_* typed parameters for migrateToURI3/migrate3."""
    candidates = (
        ("VIR_MIGRATE_PARAM_DEST_NAME", request.dest_name),
        ("VIR_MIGRATE_PARAM_DEST_XML", request.xml),
        ("VIR_MIGRATE_PARAM_PERSIST_XML", persistent_xml if request.persistent else None),
        ("VIR_MIGRATE_PARAM_BANDWIDTH", request.bandwidth),
        ("VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY", request.postcopy_bandwidth),
        ("VIR_MIGRATE_PARAM_URI", request.migrate_uri),
        ("VIR_MIGRATE_PARAM_LISTEN_ADDRESS", request.listen_address),
        ("VIR_MIGRATE_PARAM_MIGRATE_DISKS", list(migrate_disks or request.migrate_disks) or None),
        ("VIR_MIGRATE_PARAM_COMPRESSION", list(request.compression) or None),
        ("VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", request.parallel_connections),
        ("VIR_MIGRATE_PARAM_TLS_DESTINATION", request.tls_destination),
        ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL", request.auto_converge_initial),
        ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT", request.auto_converge_increment),
    )
    params: dict[str, Any] = {}
    for constant, value in candidates:
        if value is None:
            continue
        if request.copy_storage == "none" and constant == "VIR_MIGRATE_PARAM_MIGRATE_DISKS":
            continue
        params[getattr(libvirt, constant)] = value
    return params


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params for the result: XML documents (which may hold secrets) summarized."""
    shown: dict[str, Any] = {}
    for key, value in params.items():
        if key in XML_PARAM_NAMES and isinstance(value, str):
            digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
            shown[key] = f"<{len(value)} bytes of domain XML, sha256 {digest}...>"
        else:
            shown[key] = value
    return shown
