# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection on the lab: what the destination lacks and libvirt itself does not check beforehand.

A read-only cdrom image in a local directory of the source: libvirt neither copies nor checks a
read-only disk, so QEMU on the destination must open it at the same path. A destination without
/etc/pki/qemu, migrated to with tls: true: QEMU there cannot load its TLS files. Each case asserts the
suite's outcome (test_faults.py): the guest runs exactly once, is defined persistently there only, its
disk counter goes on advancing, and the module's message names the cause and the next step.
"""

from __future__ import annotations

import migrate_support as lab
import pytest
from test_faults import (  # noqa: F401 # pylint: disable=unused-import # home, units and vm are fixtures
    DEST,
    MIGRATION,
    SOURCE,
    boot,
    home,
    migrate,
    migrate_args,
    outcome,
    says,
    short,
    units,
    vm,
)

RO_NAME = "ft-ro"
RO_DIR = "/var/lib/virtops-test-ro"
RO_IMAGE = f"{RO_DIR}/ft-ro-tools.iso"
RO_POOL = "virtops-test-ro"
RO_GUEST = {"name": RO_NAME, "host": SOURCE, "kind": "linux", "memory_mib": 128, "counter": True, "cdrom": RO_IMAGE}
# The same 1 MiB on every host that gets the image.
WRITE_RO_IMAGE = f"mkdir -p {RO_DIR} && yes virtops-read-only-image | head -c 1048576 > {RO_IMAGE}"
QEMU_TLS_DIR = "/etc/pki/qemu"
QEMU_TLS_ASIDE = "/root/.virtops-test-pki-qemu"


def forget_ro_image(host: str) -> None:
    """No pool of the case and no image directory on ``host``."""
    proc = lab.ssh(host, f"virsh pool-destroy {RO_POOL} >/dev/null 2>&1; rm -rf {RO_DIR}")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def ro_guest(units):  # noqa: F811 - the fixture imported above
    """A Linux guest on hv1: its disk on NFS, plus a read-only cdrom image in a local directory of hv1."""
    for host in (SOURCE, DEST):
        forget_ro_image(host)
    made = lab.ssh(SOURCE, WRITE_RO_IMAGE)
    assert made.returncode == 0, made.stderr
    boot([RO_GUEST])
    yield RO_GUEST
    lab.remove_guests([RO_GUEST])
    for host in (SOURCE, DEST):
        forget_ro_image(host)


@pytest.fixture
def ro_home(ro_guest):
    """Before: the guest on hv1 only, writing, and nothing of the image on hv2; its disk mark."""
    forget_ro_image(DEST)
    if lab.whereabouts(RO_NAME) != {SOURCE: lab.running(True)}:
        boot([RO_GUEST])
    return lab.wait_for_counter_past(RO_NAME, lab.disk_mark(RO_NAME).counter)


def ro_args() -> dict:
    return {"name": RO_NAME, "dest_uri": lab.dest_uri(DEST)}


@pytest.mark.fault_table(area=MIGRATION, fault="a read-only cdrom image in a local directory of the source (the disk "
                                               "itself on NFS), absent on the destination",
                         expected="check mode predicts the refusal; the real run is refused by preflight before "
                                  "anything changes, naming the disk, its path and the ways out (same path on the "
                                  "destination, eject or detach, shared storage); the guest runs on on the source")
def test_read_only_disk_absent_on_destination(ro_home, observed):
    before = lab.hypervisor_snapshot()
    predicted = lab.module(SOURCE, "migrate", ro_args(), check=True)
    result = lab.module(SOURCE, "migrate", ro_args())
    for run in (predicted, result):
        assert run.get("failed"), run
        assert run["error"]["kind"] == "preflight", run["error"]
        assert run["changed"] is False
        says(run, "hdc (read-only cdrom", RO_IMAGE, "same path on the destination", "eject it", "shared storage",
             "no active storage pool on the destination")
    assert lab.hypervisor_snapshot() == before, "a hypervisor's domains changed"
    observed(f"check mode: {short(predicted['msg'], 200)} | real run:")
    assert outcome(observed, result, ro_home, name=RO_NAME) == SOURCE


@pytest.mark.fault_table(area=MIGRATION, fault="the same read-only cdrom image copied to the same path on the "
                                               "destination, into a directory a storage pool there covers (pool "
                                               "started before the copy: its view is stale)",
                         expected="preflight refreshes the pool, finds the image and passes; the guest migrates and "
                                  "runs on the destination only, its disk counter goes on")
def test_read_only_disk_present_on_destination(ro_home, observed):
    pool = lab.ssh(DEST, f"mkdir -p {RO_DIR} && virsh pool-create-as {RO_POOL} dir --target {RO_DIR}")
    assert pool.returncode == 0, pool.stderr
    copied = lab.ssh(DEST, WRITE_RO_IMAGE)
    assert copied.returncode == 0, copied.stderr
    stale = lab.ssh(DEST, f"virsh vol-path --pool {RO_POOL} {RO_IMAGE.rsplit('/', 1)[1]}")
    assert stale.returncode != 0, "the premise: libvirt has not listed the image yet"
    predicted = lab.module(SOURCE, "migrate", ro_args(), check=True)
    assert not predicted.get("failed") and predicted["changed"] is True, predicted.get("msg")
    result = lab.module(SOURCE, "migrate", ro_args())
    assert not result.get("failed"), result.get("msg")
    storage = next(check for check in result["preflight"] if check["name"] == "storage")
    assert storage["status"] == "passed" and f"storage pool {RO_POOL}" in storage["message"], storage
    observed(f"preflight storage: {short(storage['message'], 200)} |")
    assert outcome(observed, result, ro_home, name=RO_NAME) == DEST


@pytest.mark.fault_table(area=MIGRATION, fault="the destination's /etc/pki/qemu (QEMU's TLS files) moved aside; "
                                               "migrate with tls: true",
                         expected="check mode's preflight reads the source's TLS files only (libvirt cannot read "
                                  "the destination's); the run fails when QEMU on the destination cannot load its "
                                  "CA; the message names the destination host, the missing file and the libvirt_pki "
                                  "role; the guest runs on on the source")
def test_destination_lacks_qemu_tls_files(home, observed):  # noqa: F811 - the fixture imported above
    moved = lab.ssh(DEST, f"rm -rf {QEMU_TLS_ASIDE} && mv {QEMU_TLS_DIR} {QEMU_TLS_ASIDE}")
    assert moved.returncode == 0, moved.stderr
    try:
        predicted = lab.module(SOURCE, "migrate", migrate_args(tls=True), check=True)
        result = migrate(tls=True)
    finally:
        back = lab.ssh(DEST, f"if [ -d {QEMU_TLS_ASIDE} ]; then rm -rf {QEMU_TLS_DIR} && mv {QEMU_TLS_ASIDE} "
                             f"{QEMU_TLS_DIR}; fi; test -f {QEMU_TLS_DIR}/server-cert.pem")
        assert back.returncode == 0, f"{DEST}: {QEMU_TLS_DIR} was not put back: {back.stderr}"
    assert result.get("failed"), result
    says(result, f"the destination ({DEST}.{lab.LAB_NAME}.virtops.test) lacks {QEMU_TLS_DIR}/", "libvirt_pki role",
         "runs on: source")
    # Check mode read the source's files (there) and says the destination's cannot be read through libvirt.
    tls_check = next((check for check in predicted.get("preflight", []) if check["name"] == "tls"), None)
    assert tls_check and tls_check["status"] == "passed", predicted.get("preflight")
    observed(f"check mode: preflight tls {short(tls_check['message'], 160)} | real run:")
    assert outcome(observed, result, home) == SOURCE
