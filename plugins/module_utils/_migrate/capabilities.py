# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""What the throughput options (``compression``, ``parallel_connections``) need from both hosts.

Pure decisions over plain values: no libvirt here.  Versions are libvirt's integers,
``major * 1000000 + minor * 1000 + release``, as ``virConnectGetLibVersion`` (libvirt) and
``virConnectGetVersion`` (the hypervisor, i.e. QEMU) return them.

The requirements table:

=====================  ===============  ============  ================================
option                 libvirt          QEMU          kind
=====================  ===============  ============  ================================
parallel_connections   >= 5.2.0         >= 4.0.0      multifd (VIR_MIGRATE_PARALLEL)
compression xbzrle     >= 1.0.3         >= 1.2.0      pre-copy page compression
compression mt         >= 1.3.4         >= 2.4.0      pre-copy page compression
compression zlib       >= 9.4.0         >= 5.0.0      multifd compression
compression zstd       >= 9.4.0         >= 5.0.0      multifd compression
=====================  ===============  ============  ================================

Both hosts must meet a requirement: the source's QEMU compresses and the destination's
decompresses, and each libvirt passes the parameters to its own QEMU.

Combinations that never work, whatever the versions (``combination_problems``):

- a multifd compression method (zlib, zstd) without ``parallel_connections``: QEMU applies
  them to multifd channels only;
- a multifd method together with a pre-copy method (xbzrle, mt): libvirt sends one or the
  other kind to QEMU;
- zlib and zstd together: QEMU's ``multifd-compression`` parameter holds one method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LIBVIRT = "libvirt"
QEMU = "QEMU"

PRECOPY_COMPRESSION = "pre-copy page compression"
MULTIFD_COMPRESSION = "multifd compression"
MULTIFD = "parallel migration connections (multifd)"


def version_number(major: int, minor: int, release: int = 0) -> int:
    """libvirt's encoding of a version: 9.4.0 is 9004000."""
    return major * 1000000 + minor * 1000 + release


def version_text(number: int) -> str:
    """9004000 is ``9.4.0``."""
    return f"{number // 1000000}.{(number // 1000) % 1000}.{number % 1000}"


@dataclass(frozen=True)
class Requirement:
    """What one throughput option needs from each host."""

    option: str
    kind: str
    min_libvirt: int
    min_qemu: int
    needs_multifd: bool = False
    drop: str = ""

    @property
    def how_to_drop(self) -> str:
        return self.drop or f"drop {self.option}"

    @property
    def label(self) -> str:
        return f"{self.option} (libvirt >= {version_text(self.min_libvirt)}, QEMU >= {version_text(self.min_qemu)})"


# Sources of the figures (libvirt's and QEMU's own history):
# - VIR_MIGRATE_PARALLEL and VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: libvirt 5.2.0. libvirt drives QEMU's
#   "multifd" migration capability, named so (without the experimental "x-" prefix) since QEMU 4.0.0.
# - VIR_MIGRATE_COMPRESSED (xbzrle): introduced for libvirt 1.0.3 ("Introduce VIR_MIGRATE_COMPRESSED flag",
#   libvir-list, February 2013); QEMU's xbzrle capability exists since QEMU 1.2.0.
# - mt: the method is selected through VIR_MIGRATE_PARAM_COMPRESSION, added with multithread compression
#   ("migration: add compress method option", libvir-list, 2016), first released in libvirt 1.3.4; that is
#   later than libvirt 1.1.0, which is sometimes quoted, so the later figure is required here. QEMU's
#   "compress" capability exists since QEMU 2.4.0; QEMU deprecated it in 8.2 in favour of multifd compression.
# - zlib and zstd: QEMU's multifd-compression parameter since QEMU 5.0.0 (multifd zlib and zstd, 2020);
#   VIR_MIGRATE_PARAM_COMPRESSION accepts them since libvirt 9.4.0, with the zlib and zstd level parameters.
PARALLEL_CONNECTIONS = Requirement("parallel_connections", MULTIFD, version_number(5, 2), version_number(4, 0),
                                   drop="drop parallel_connections (and zlib or zstd from compression)")


def compression_requirement(method: str, kind: str, min_libvirt: int, min_qemu: int) -> Requirement:
    return Requirement(f"compression {method}", kind, min_libvirt, min_qemu, needs_multifd=kind == MULTIFD_COMPRESSION,
                       drop=f"drop {method} from compression")


COMPRESSION_REQUIREMENTS: dict[str, Requirement] = {
    "xbzrle": compression_requirement("xbzrle", PRECOPY_COMPRESSION, version_number(1, 0, 3), version_number(1, 2)),
    "mt": compression_requirement("mt", PRECOPY_COMPRESSION, version_number(1, 3, 4), version_number(2, 4)),
    "zlib": compression_requirement("zlib", MULTIFD_COMPRESSION, version_number(9, 4), version_number(5, 0)),
    "zstd": compression_requirement("zstd", MULTIFD_COMPRESSION, version_number(9, 4), version_number(5, 0)),
}
COMPRESSION_METHODS = tuple(COMPRESSION_REQUIREMENTS)


def multifd_methods_in(compression: Sequence[str]) -> list[str]:
    """The methods that compress multifd channels (they need parallel_connections)."""
    return [method for method in compression if COMPRESSION_REQUIREMENTS[method].needs_multifd]


def precopy_methods_in(compression: Sequence[str]) -> list[str]:
    """The methods that compress pages of the main migration stream."""
    return [method for method in compression if not COMPRESSION_REQUIREMENTS[method].needs_multifd]


def combination_problems(compression: Sequence[str], parallel_connections: int | None) -> list[tuple[str, str]]:
    """(problem, next step) for each combination that no host can run, whatever its versions."""
    multifd_methods = multifd_methods_in(compression)
    precopy_methods = precopy_methods_in(compression)
    problems = []
    if multifd_methods and not parallel_connections:
        problems.append((
            "compression {} is multifd compression, which QEMU applies only to parallel migration connections, "
            "and parallel_connections is not set".format(" and ".join(multifd_methods)),
            "set parallel_connections (2 or more), or use xbzrle or mt instead"))
    if multifd_methods and precopy_methods:
        problems.append((
            "compression {} (multifd) cannot be combined with {} (pre-copy page compression) in one "
            "migration".format(" and ".join(multifd_methods), " and ".join(precopy_methods)),
            "keep either the multifd method or the pre-copy methods in compression"))
    if len(set(multifd_methods)) > 1:
        problems.append(("compression names both zlib and zstd: QEMU compresses multifd channels with one method",
                         "keep one of zlib or zstd"))
    return problems


def requirements_for(compression: Sequence[str], parallel_connections: int | None) -> list[Requirement]:
    """The requirements the options ask for, in the table's order (none when neither option is set)."""
    wanted = [PARALLEL_CONNECTIONS] if parallel_connections else []
    wanted += [requirement for method, requirement in COMPRESSION_REQUIREMENTS.items() if method in compression]
    return wanted


@dataclass(frozen=True)
class HostVersions:
    """One host's side (source or destination), its URI, and the versions its libvirt reported."""

    side: str
    uri: str
    libvirt: int
    qemu: int

    @property
    def label(self) -> str:
        return f"the {self.side} {self.uri}"

    @property
    def summary(self) -> str:
        return f"{self.side} {self.uri}: libvirt {version_text(self.libvirt)}, QEMU {version_text(self.qemu)}"


@dataclass(frozen=True)
class Shortfall:
    """A host whose libvirt or QEMU is older than an option needs."""

    requirement: Requirement
    host: HostVersions
    component: str
    has: int
    needs: int

    @property
    def message(self) -> str:
        return (f"{self.requirement.option} needs {self.component} {version_text(self.needs)} or later on both hosts; "
                f"{self.host.label} has {self.component} {version_text(self.has)}: {self.requirement.how_to_drop}, "
                f"or upgrade {self.component} on the {self.host.side} to {version_text(self.needs)} "
                "or later")


def shortfalls(requirements: Sequence[Requirement], hosts: Sequence[HostVersions]) -> list[Shortfall]:
    """Every (requirement, host, component) whose version is below the minimum."""
    found = []
    for requirement in requirements:
        for host in hosts:
            if host.libvirt < requirement.min_libvirt:
                found.append(Shortfall(requirement, host, LIBVIRT, host.libvirt, requirement.min_libvirt))
            if host.qemu < requirement.min_qemu:
                found.append(Shortfall(requirement, host, QEMU, host.qemu, requirement.min_qemu))
    return found
