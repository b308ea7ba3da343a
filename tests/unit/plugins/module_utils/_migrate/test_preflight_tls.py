"""tls: true needs QEMU's certificate files on both hosts: preflight reads the source's, and a migration
that fails on a missing file names the host that lacks it.

QEMU's tls-creds-x509 object loads ca-cert.pem, then server-cert.pem/server-key.pem on the destination
(it listens) or client-cert.pem/client-key.pem on the source, and says "Unable to access credentials
PATH: REASON" on whichever side lacks one; libvirt relays that text without saying which host it was.
"""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationFailed,
    PreflightFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    guest_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate import (
    preflight as _preflight,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.preflight import (
    FAILED,
    PASSED,
    WARNING,
    CheckResult,
    PreflightContext,
    PreflightReport,
    check_migration_tls,
    migration_tls_diagnosis,
    migration_tls_dir,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import environment_of, migrate_request

SRC = "qemu:///system"
DEST = "qemu+tls://hv2.example.com/system"
UUID = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"
SOURCE_FILES = {f"/etc/pki/qemu/{name}" for name in ("ca-cert.pem", "client-cert.pem", "client-key.pem")}
QEMU_CONF = 'default_tls_x509_cert_dir = "/etc/pki/qemu"\ndefault_tls_x509_verify = 1\n'


def credentials_text(path: str) -> str:
    """libvirt's error when QEMU cannot load a TLS file (object-add of tls-creds-x509)."""
    return (f"internal error: unable to execute QEMU command 'object-add': Unable to access credentials {path}: "
            "No such file or directory")


@pytest.mark.parametrize("conf,present,directory", [
    ('migrate_tls_x509_cert_dir = "/srv/migrate-pki"\n' + QEMU_CONF, set(), "/srv/migrate-pki"),
    (QEMU_CONF, {"/etc/pki/libvirt-migrate"}, "/etc/pki/libvirt-migrate"),
    ('default_tls_x509_cert_dir = "/srv/qemu-pki"\n', set(), "/srv/qemu-pki"),
    ('#migrate_tls_x509_cert_dir = "/srv/x"\n', set(), "/etc/pki/qemu"),
    (None, set(), "/etc/pki/qemu"),
])
def test_the_directory_libvirt_gives_qemu(conf, present, directory):
    assert migration_tls_dir(conf, present.__contains__) == directory


def context(world, files, uri=SRC):
    request = MigrationRequest.from_params({"name": "vm1", "uri": uri, "dest_uri": DEST, "tls": True})
    guest = guest_spec(lv.domain_xml("vm1", UUID))
    info = DomainInfo("vm1", UUID, "running", "booted", True, 1048576, 1048576)
    return PreflightContext(request, lv.FakeConnection(world.hosts[SRC]), lv.FakeConnection(world.hosts[DEST]),
                            info, guest, [], [], path_exists=files.__contains__, read_text=lambda path: QEMU_CONF)


def test_source_with_its_files_passes_and_says_the_destination_is_not_read(world):
    result = check_migration_tls(context(world, SOURCE_FILES))
    assert result.status == PASSED
    assert "the source (hv1) has ca-cert.pem, client-cert.pem, client-key.pem in /etc/pki/qemu" in result.message
    assert "cannot be read through libvirt" in result.message


def test_source_lacking_a_file_fails_naming_the_host_the_file_and_the_role(world):
    result = check_migration_tls(context(world, SOURCE_FILES - {"/etc/pki/qemu/client-key.pem"}))
    assert result.status == FAILED
    for words in ("the source (hv1) lacks /etc/pki/qemu/client-key.pem", "tls: true", "libvirt_pki role"):
        assert words in result.message, (words, result.message)


def test_controller_side_run_cannot_read_either_host(world):
    world.add_host("qemu+tls://hv1.example.com/system", "hv1")
    result = check_migration_tls(context(world, set(), uri="qemu+tls://hv1.example.com/system"))
    assert result.status == WARNING


@pytest.mark.parametrize("name,source_checked,host", [
    ("server-cert.pem", False, "the destination (hv2.example.com)"),
    ("server-key.pem", False, "the destination (hv2.example.com)"),
    ("client-cert.pem", False, "the source ("),
    ("ca-cert.pem", True, "the destination (hv2.example.com)"),
    ("ca-cert.pem", False, "the destination (hv2.example.com) or the source ("),
])
def test_a_missing_file_is_put_on_the_host_that_needs_it(name, source_checked, host):
    request = MigrationRequest.from_params({"name": "vm1", "dest_uri": DEST, "tls": True})
    report = PreflightReport([CheckResult("tls", PASSED if source_checked else WARNING, "")])
    cause, hint = migration_tls_diagnosis(credentials_text(f"/etc/pki/qemu/{name}"), request, report)
    assert cause.startswith(f"{host}")
    assert f"lacks /etc/pki/qemu/{name} (No such file or directory)" in cause
    assert hint.startswith("issue /etc/pki/qemu on " + host) and "libvirt_pki role" in hint


def test_other_errors_and_runs_without_tls_get_no_tls_diagnosis():
    with_tls = MigrationRequest.from_params({"name": "vm1", "dest_uri": DEST, "tls": True})
    without = MigrationRequest.from_params({"name": "vm1", "dest_uri": DEST})
    assert migration_tls_diagnosis("operation failed: migration out job: unexpectedly failed", with_tls, None) is None
    assert migration_tls_diagnosis(credentials_text("/etc/pki/qemu/ca-cert.pem"), without, None) is None


# ---------------------------------------------------------------------------
# End to end through the migrator


@pytest.fixture
def source_pki(tmp_path, monkeypatch):
    """The source's qemu.conf points QEMU at a directory of ours; returns it (empty)."""
    directory = tmp_path / "qemu-pki"
    directory.mkdir()
    conf = tmp_path / "qemu.conf"
    conf.write_text(f'migrate_tls_x509_cert_dir = "{directory}"\n')
    monkeypatch.setattr(_preflight, "QEMU_CONF", str(conf))
    return directory


def migrate(world, check_mode=False):
    environment = environment_of(world, fs_type_of=lambda path: None)
    return run_migration(migrate_request(tls=True), check_mode, environment)


@pytest.mark.parametrize("check_mode", [True, False])
def test_source_lacking_its_files_is_refused_before_anything_changes(world, source_pki, check_mode):
    world.hosts[SRC].add_domain("vm1").script = lv.MigrationScript()
    with pytest.raises(PreflightFailed) as caught:
        migrate(world, check_mode)
    assert f"the source (hv1) lacks {source_pki}/ca-cert.pem" in str(caught.value)
    assert world.mutations == []


def test_destination_lacking_its_ca_is_named_in_the_failure(world, source_pki):
    for name in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        (source_pki / name).write_text("-----BEGIN CERTIFICATE-----\n")
    dom = world.hosts[SRC].add_domain("vm1")
    dom.script = lv.MigrationScript(outcome="fail", error_text=credentials_text("/etc/pki/qemu/ca-cert.pem"))
    with pytest.raises(MigrationFailed) as caught:
        migrate(world)
    error = caught.value
    assert "the destination (hv2.example.com) lacks /etc/pki/qemu/ca-cert.pem" in error.message
    assert error.hint.startswith("issue /etc/pki/qemu on the destination (hv2.example.com) with the libvirt_pki role")
    assert "runs on: source" in error.message
