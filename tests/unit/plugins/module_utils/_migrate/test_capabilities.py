"""What compression and parallel_connections need from both hosts, decided over plain values."""

from __future__ import annotations

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._migrate.capabilities import (
    COMPRESSION_REQUIREMENTS,
    LIBVIRT,
    PARALLEL_CONNECTIONS,
    QEMU,
    HostVersions,
    combination_problems,
    requirements_for,
    shortfalls,
    version_number,
    version_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    COMPRESSION_CHOICES,
)

SOURCE_URI = "qemu:///system"
DEST_URI = "qemu+tls://hv2.example.com/system"
LAB_LIBVIRT = version_number(9, 0)
LAB_QEMU = version_number(7, 2)


def hosts(source_libvirt=LAB_LIBVIRT, source_qemu=LAB_QEMU, dest_libvirt=LAB_LIBVIRT, dest_qemu=LAB_QEMU):
    return [HostVersions("source", SOURCE_URI, source_libvirt, source_qemu),
            HostVersions("destination", DEST_URI, dest_libvirt, dest_qemu)]


def test_versions_are_libvirts_encoding():
    assert version_number(9, 4) == 9004000
    assert version_number(1, 0, 3) == 1000003
    assert version_text(7002000) == "7.2.0"
    assert version_text(1003004) == "1.3.4"


def test_every_compression_choice_has_a_requirement():
    assert tuple(COMPRESSION_REQUIREMENTS) == COMPRESSION_CHOICES == ("xbzrle", "mt", "zlib", "zstd")


@pytest.mark.parametrize("requirement,libvirt,qemu,multifd", [
    (PARALLEL_CONNECTIONS, "5.2.0", "4.0.0", False),
    (COMPRESSION_REQUIREMENTS["xbzrle"], "1.0.3", "1.2.0", False),
    (COMPRESSION_REQUIREMENTS["mt"], "1.3.4", "2.4.0", False),
    (COMPRESSION_REQUIREMENTS["zlib"], "9.4.0", "5.0.0", True),
    (COMPRESSION_REQUIREMENTS["zstd"], "9.4.0", "5.0.0", True),
])
def test_table(requirement, libvirt, qemu, multifd):
    assert (version_text(requirement.min_libvirt), version_text(requirement.min_qemu)) == (libvirt, qemu)
    assert requirement.needs_multifd is multifd


@pytest.mark.parametrize("requirement", [PARALLEL_CONNECTIONS, *COMPRESSION_REQUIREMENTS.values()])
def test_boundaries_on_each_side(requirement):
    exact = hosts(requirement.min_libvirt, requirement.min_qemu, requirement.min_libvirt, requirement.min_qemu)
    assert shortfalls([requirement], exact) == []
    below_libvirt = hosts(dest_libvirt=requirement.min_libvirt - 1, dest_qemu=requirement.min_qemu,
                          source_libvirt=requirement.min_libvirt, source_qemu=requirement.min_qemu)
    [found] = shortfalls([requirement], below_libvirt)
    assert (found.host.side, found.component, found.needs) == ("destination", LIBVIRT, requirement.min_libvirt)
    below_qemu = hosts(source_libvirt=requirement.min_libvirt, source_qemu=requirement.min_qemu - 1,
                       dest_libvirt=requirement.min_libvirt, dest_qemu=requirement.min_qemu)
    [found] = shortfalls([requirement], below_qemu)
    assert (found.host.side, found.component, found.needs) == ("source", QEMU, requirement.min_qemu)


@pytest.mark.parametrize("compression,parallel,options", [
    ([], None, []),
    ([], 2, ["parallel_connections"]),
    (["xbzrle"], None, ["compression xbzrle"]),
    (["mt", "xbzrle"], None, ["compression xbzrle", "compression mt"]),
    (["zstd"], 4, ["parallel_connections", "compression zstd"]),
])
def test_requirements_for(compression, parallel, options):
    assert [r.option for r in requirements_for(compression, parallel)] == options


def test_lab_versions_meet_parallel_connections_and_xbzrle():
    assert shortfalls(requirements_for(["xbzrle"], 2), hosts()) == []


def test_zstd_on_libvirt_9_0_names_9_4_0_for_both_hosts():
    found = shortfalls(requirements_for(["zstd"], 2), hosts())
    assert [(s.host.side, s.component) for s in found] == [("source", LIBVIRT), ("destination", LIBVIRT)]
    message = found[1].message
    assert "compression zstd needs libvirt 9.4.0 or later" in message
    assert f"the destination {DEST_URI} has libvirt 9.0.0" in message
    assert "drop zstd from compression, or upgrade libvirt on the destination to 9.4.0 or later" in message


def test_old_qemu_on_the_destination_only():
    found = shortfalls(requirements_for([], 2), hosts(dest_qemu=version_number(3, 1)))
    assert [(s.host.uri, s.component, version_text(s.has)) for s in found] == [(DEST_URI, QEMU, "3.1.0")]


@pytest.mark.parametrize("compression,parallel,problem", [
    (["zlib"], None, "compression zlib is multifd compression"),
    (["zstd"], 0, "parallel_connections is not set"),
    (["zlib", "mt"], 2, "compression zlib (multifd) cannot be combined with mt"),
    (["xbzrle", "zstd"], 2, "cannot be combined with xbzrle"),
    (["zlib", "zstd"], 2, "both zlib and zstd"),
])
def test_combinations_that_never_work(compression, parallel, problem):
    problems = combination_problems(compression, parallel)
    assert any(problem in text for text, _next_step in problems), problems
    assert all(next_step for _text, next_step in problems)


@pytest.mark.parametrize("compression,parallel", [
    ([], None), (["xbzrle"], None), (["xbzrle", "mt"], None), (["xbzrle"], 2), (["zlib"], 2), (["zstd"], 1),
])
def test_combinations_that_work(compression, parallel):
    assert combination_problems(compression, parallel) == []
