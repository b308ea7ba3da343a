# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Security on the real lab: TLS failures of a migration, the roles' secure defaults, secrets kept
out of every transcript, and bad input refused before anything changes.

Rogue and expired certificates are made here with ``cryptography``, signed by the lab's CA (the
libvirt_pki role's default CA directory on the controller, ~/.virtops/pki) or by a fresh CA, swapped
in on a host for one case and put back afterwards (checksums compared). Every case is a row of the
fault-injection results table (tests/integration/fault_table.py).
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import secrets
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import migrate_support as lab
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from migrate_support import ABSENT, running

SOURCE, DEST, SPARE = "hv1", "hv2", "hv3"
HYPERVISORS = (SOURCE, DEST, SPARE)
# The libvirt_pki role's defaults: libvirt_pki_ca_dir and the admin client certificate under it.
PKI_DIR = Path(os.environ.get("HOME", "/root")) / ".virtops" / "pki"
CA_CERT, CA_KEY, ADMIN_DIR = PKI_DIR / "ca" / "cacert.pem", PKI_DIR / "ca" / "cakey.pem", PKI_DIR / "admin"
ORGANIZATION = lab.PKI_ORGANIZATION
ADMIN_CN = lab.PKI_ADMIN_CN
CLIENT_CERT, CLIENT_KEY = "/etc/pki/libvirt/clientcert.pem", "/etc/pki/libvirt/private/clientkey.pem"
HOST_CERTS = ["/etc/pki/libvirt/servercert.pem", CLIENT_CERT, "/etc/pki/qemu/server-cert.pem",
              "/etc/pki/qemu/client-cert.pem"]
TLS_GUEST = {"name": "vs-tls", "host": SOURCE, "kind": "linux", "memory_mib": 128, "counter": True}
BAD_INPUT_GUEST = {"name": "vs-bad", "host": SOURCE}
SECRETS_GUEST = {"name": "vs-secret", "host": SOURCE}
APPLY_ROLE = lab.PLAYBOOKS / "apply_role.yml"
BOOTSTRAP = "virtops.migration.bootstrap"


def fqdn(host: str) -> str:
    return f"{host}.{lab.LAB_NAME}.virtops.test"


def short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------
# Certificates made for the cases


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def lab_ca() -> Issued:
    """The CA the libvirt_pki role made on the controller (every lab host trusts it)."""
    key = serialization.load_pem_private_key(CA_KEY.read_bytes(), password=None)
    return Issued(x509.load_pem_x509_certificate(CA_CERT.read_bytes()), key)


def foreign_ca(common_name: str = ORGANIZATION) -> Issued:
    """Another CA, by default with the same names as the lab's (only its key differs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, server: bool = False, dns_names: tuple[str, ...] = (),
          valid_days: tuple[int, int] = (-1, 30)) -> Issued:
    """A client (or server) certificate as libvirt_pki makes them, signed by ``ca``;
    ``valid_days`` = (not before, not after) in days from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
               .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def pkipath(directory: Path, client: Issued, trusted: list[Issued]) -> Path:
    """A libvirt pkipath directory: cacert.pem (every CA in ``trusted``), clientcert.pem, clientkey.pem."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "cacert.pem").write_bytes(b"".join(ca.cert_pem for ca in trusted))
    (directory / "clientcert.pem").write_bytes(client.cert_pem)
    key = directory / "clientkey.pem"
    key.write_bytes(client.key_pem)
    key.chmod(0o600)
    return directory


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def lab_ready(request):
    """The session's lab prepared by the bootstrap playbook, with the Linux guest's boot media, and no
    file left swapped by an interrupted earlier run."""
    request.getfixturevalue("prepared_lab")
    for host in HYPERVISORS:
        lab.restore_swapped(host)
    run = lab.playbook(lab.PLAYBOOKS / "guest_media.yml")
    assert run.rc == 0, f"guest media failed: {run.describe()}"


def placement(name: str) -> tuple[dict, ...]:
    return tuple(lab.domain(host, name) for host in HYPERVISORS)


@pytest.fixture(scope="module")
def tls_guest(lab_ready):
    """A Linux guest on hv1 writing its counter to its NFS-backed disk, for the TLS cases."""
    lab.remove_guests([TLS_GUEST])
    lab.create_guests([TLS_GUEST])
    log = f"/var/log/libvirt/qemu/{TLS_GUEST['name']}-serial.log"
    lab.wait_for(lambda: "counter on /dev/vda" in lab.ssh(SOURCE, f"cat {log}").stdout,
                 timeout=90, what="the Linux guest to boot and start its disk counter")
    yield TLS_GUEST["name"]
    lab.remove_guests([TLS_GUEST])


@pytest.fixture(scope="module")
def bad_input_guest(lab_ready):
    lab.remove_guests([BAD_INPUT_GUEST])
    lab.create_guests([BAD_INPUT_GUEST])
    yield BAD_INPUT_GUEST["name"]
    lab.remove_guests([BAD_INPUT_GUEST])


# ---------------------------------------------------------------------------
# TLS failures of a real migration (hv1 -> hv2 over qemu+tls)


@contextmanager
def client_cert_on_source(cert: Issued):
    """hv1's client certificate and key (libvirt's, used by the module and by libvirtd as migration
    client) replaced for the case."""
    with lab.swapped_files(SOURCE, {CLIENT_CERT: cert.cert_pem, CLIENT_KEY: cert.key_pem}):
        yield


# A name of hv2 that is not in its server certificate (which names hv2, its FQDN and its address):
# added to hv1's /etc/hosts for the case.
MISMATCH_NAME = f"hv2-alias.{lab.LAB_NAME}.virtops.test"


def alias_on_source():
    hosts = lab.ssh(SOURCE, "cat /etc/hosts").stdout
    return lab.swapped_files(SOURCE, {"/etc/hosts": f"{hosts}{lab.host_address(DEST)}\t{MISMATCH_NAME}\n".encode()})


TLS_CASES = [
    pytest.param(
        "foreign-ca", id="client-cert-foreign-ca",
        marks=pytest.mark.fault_table(
            area="TLS", fault="hv1's client certificate issued by another CA (same DN as its real one)",
            expected="migration refused before any change; the error names the unknown issuer/CA and what to do; "
                     "the guest runs on hv1 only, its disk counter goes on")),
    pytest.param(
        "dn-not-allowed", id="client-dn-not-allowed",
        marks=pytest.mark.fault_table(
            area="TLS", fault="hv1's client certificate from the lab CA with a DN not in hv2's tls_allowed_dn_list",
            expected="hv2 refuses the client; the error points at tls_allowed_dn_list; guest on hv1 only, counter goes on")),
    pytest.param(
        "name-mismatch", id="server-name-mismatch",
        marks=pytest.mark.fault_table(
            area="TLS", fault="dest_uri names hv2 by an alias (in hv1's /etc/hosts) that its server "
                              "certificate's SANs do not carry",
            expected="refused; the error says the certificate does not match the host name and to use a name in "
                     "its SANs; guest on hv1 only, counter goes on")),
    pytest.param(
        "expired", id="client-cert-expired",
        marks=pytest.mark.fault_table(
            area="TLS", fault="hv1's client certificate (lab CA, right DN) expired yesterday",
            expected="refused; the error says the certificate expired and to renew it; guest on hv1 only, "
                     "counter goes on")),
]

# What the module's error must say: (the cause, what to do next), as regular expressions.
TLS_EXPECTED = {
    "foreign-ca": (r"unknown CA.*not trusted", r"reissue the client certificate from the cluster's CA"),
    "dn-not-allowed": (r"refused this host's client certificate.*DN is not in the remote tls_allowed_dn_list",
                       r"add this client's DN .* to tls_allowed_dn_list"),
    "name-mismatch": (rf"server certificate does not name {re.escape(MISMATCH_NAME)}", r"in the server certificate's SANs"),
    "expired": (r"clientcert\.pem has expired", r"renew"),
}


def tls_fault(case: str):
    """The context manager that injects ``case`` and the dest_uri the module is given."""
    if case == "foreign-ca":
        return client_cert_on_source(issue(foreign_ca(), fqdn(SOURCE))), lab.dest_uri(DEST)
    if case == "dn-not-allowed":
        return client_cert_on_source(issue(lab_ca(), f"rogue.{lab.LAB_NAME}.virtops.test")), lab.dest_uri(DEST)
    if case == "name-mismatch":
        return alias_on_source(), f"qemu+tls://{MISMATCH_NAME}/system"
    if case == "expired":
        return client_cert_on_source(issue(lab_ca(), fqdn(SOURCE), valid_days=(-60, -1))), lab.dest_uri(DEST)
    raise ValueError(case)


@pytest.mark.parametrize("case", TLS_CASES)
def test_tls_failure_leaves_the_guest_running_on_the_source(tls_guest, case, observed):
    if case == "name-mismatch":
        # The premise: hv2's certificate does not carry the alias.
        sans = lab.ssh(DEST, "openssl x509 -noout -ext subjectAltName -in /etc/pki/libvirt/servercert.pem").stdout
        assert fqdn(DEST) in sans and MISMATCH_NAME not in sans, sans
    assert placement(tls_guest) == (running(True), ABSENT, ABSENT)
    before = lab.disk_mark(tls_guest)
    fault, dest_uri = tls_fault(case)
    with fault:
        if case == "name-mismatch":
            resolved = lab.ssh(SOURCE, f"getent hosts {MISMATCH_NAME}").stdout.split()
            assert resolved[:1] == [lab.host_address(DEST)], resolved
        result = lab.module(SOURCE, "migrate", {"name": tls_guest, "dest_uri": dest_uri, "persistent": True,
                                                "undefine_source": True}, timeout=300)
        during = placement(tls_guest)
    error = result.get("error") or {}
    observed(f"module: {short(result.get('msg'), 600)}")
    assert result.get("failed") is True, result
    assert error.get("kind") == "connection", error
    cause, next_step = TLS_EXPECTED[case]
    message = result["msg"]
    assert re.search(cause, message, re.IGNORECASE), f"the error does not name the cause ({cause}): {message}"
    assert error.get("hint") and re.search(next_step, error["hint"]), f"no next step ({next_step}): {error}"
    assert during == (running(True), ABSENT, ABSENT)
    assert placement(tls_guest) == (running(True), ABSENT, ABSENT)
    after = lab.assert_disk_intact_and_written(tls_guest, before)
    observed(f"afterwards: runs on hv1 only (persistent), nothing on hv2/hv3; disk counter {before.counter} -> "
             f"{after.counter}, rest of the disk unchanged; hv1's certificates restored")


# ---------------------------------------------------------------------------
# The roles' defaults, checked on the lab


@pytest.mark.fault_table(area="defaults", fault="plain TCP port 16509 on every hypervisor (default: libvirtd_tcp false)",
                         expected="nothing listens on 16509; connecting from the controller is refused; TLS 16514 listens")
def test_tcp_port_closed_everywhere(lab_ready, observed):
    seen = []
    for host in HYPERVISORS:
        listening = lab.ssh(host, "ss -ltnH").stdout
        assert not re.search(r":16509\s", listening), f"{host}: {listening}"
        assert re.search(r":16514\s", listening), f"{host}: TLS not listening: {listening}"
        probe = subprocess.run(["virsh", "-c", f"qemu+tcp://{lab.host_address(host)}/system", "hostname"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert probe.returncode != 0, probe.stdout
        assert re.search(r"Connection refused", probe.stderr), probe.stderr
        seen.append(host)
    observed(f"{', '.join(seen)}: 16509 not listening (ss), qemu+tcp:// from the controller: 'Connection refused'; "
             "16514 listening")


@pytest.mark.fault_table(area="defaults", fault="rogue TLS clients from the controller: a foreign CA's certificate "
                                                "with the admin's DN, and a lab-CA certificate with an unlisted DN",
                         expected="each hypervisor refuses both (its journal names why); the admin certificate works")
def test_rogue_tls_clients_refused(lab_ready, tmp_path, observed):
    # The foreign CA bears the lab CA's names (a CA of another name is not in the server's list of acceptable
    # issuers, so libvirt's client would not even send the certificate); the client trusts both CAs, so it
    # sends its certificate and the server's verdict lands in the server's journal.
    ours, foreign = lab_ca(), foreign_ca()
    foreign_dir = pkipath(tmp_path / "foreign", issue(foreign, ADMIN_CN), [ours, foreign])
    unlisted_dir = pkipath(tmp_path / "unlisted", issue(ours, "intruder"), [ours])
    since = int(time.time()) - 1
    outcome, reasons = {}, {}
    for host in HYPERVISORS:
        for label, directory in (("admin", ADMIN_DIR), ("foreign-ca", foreign_dir), ("unlisted-dn", unlisted_dir)):
            proc = subprocess.run(["virsh", "-c", f"qemu+tls://{fqdn(host)}/system?pkipath={directory}", "hostname"],
                                  capture_output=True, text=True, timeout=60, check=False)
            outcome[(host, label)] = (proc.returncode, proc.stdout.strip(), proc.stderr.strip())
        assert outcome[(host, "admin")][:2] == (0, fqdn(host)), outcome[(host, "admin")]
        for label in ("foreign-ca", "unlisted-dn"):
            assert outcome[(host, label)][0] != 0, f"{host} let {label} in: {outcome[(host, label)]}"

        def journal_names_both(host=host):
            text = lab.ssh(host, f"journalctl -u libvirtd.service --since @{since} --no-pager -o cat").stdout
            return (re.search(r"Certificate failed validation: The certificate (hasn't got a known issuer|is not "
                              r"trusted)", text)
                    and "Distinguished Name is not on the list of allowed clients" in text) and text
        lab.wait_for(journal_names_both, timeout=20, what=f"{host}'s journal to record both refusals")
        reasons[host] = re.search(r"The certificate (hasn't got a known issuer|is not trusted)",
                                  journal_names_both()).group(0)
    said = {label: short(outcome[(SOURCE, label)][2].splitlines()[-1], 120) for label in ("foreign-ca", "unlisted-dn")}
    observed(f"hv1, hv2, hv3 refused both; virsh said '{said['foreign-ca']}' / '{said['unlisted-dn']}'; their "
             f"journals: '{reasons[SOURCE]}' (foreign CA) and 'Client's Distinguished Name is not on the list of "
             "allowed clients'; the admin certificate was answered by each")


@pytest.mark.fault_table(area="defaults", fault="private key files on the hypervisors and the controller",
                         expected="libvirt's keys 0600 root; QEMU's copies 0640 root:libvirt-qemu (documented: QEMU "
                                  "reads them); CA and admin keys 0600 in 0700 directories")
def test_private_key_modes(lab_ready, observed):
    listing = []
    for host in HYPERVISORS:
        found = lab.ssh(host, "find /etc/pki -type f -name '*key*.pem' -printf '%p %m %u %g\\n' | sort; "
                              "stat -c '%n %a %U %G' /etc/pki/libvirt/private").stdout.splitlines()
        modes = {line.split()[0]: tuple(line.split()[1:]) for line in found}
        assert modes == {
            "/etc/pki/libvirt/private": ("700", "root", "root"),
            "/etc/pki/libvirt/private/clientkey.pem": ("600", "root", "root"),
            "/etc/pki/libvirt/private/serverkey.pem": ("600", "root", "root"),
            "/etc/pki/qemu/client-key.pem": ("640", "root", "libvirt-qemu"),
            "/etc/pki/qemu/server-key.pem": ("640", "root", "libvirt-qemu"),
        }, f"{host}: {modes}"
        listing.append(f"{host}: " + ", ".join(f"{Path(p).name} {m[0]}" for p, m in modes.items() if p.endswith(".pem")))
    for path in (CA_KEY, ADMIN_DIR / "clientkey.pem"):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700", path.parent
    observed("; ".join(listing) + f"; controller: {CA_KEY.name} 600, admin clientkey.pem 600, directories 700")


@pytest.mark.fault_table(area="defaults", fault="libvirtd's unix sockets on every hypervisor",
                         expected="libvirt-sock and libvirt-sock-ro 0770 root:libvirt, libvirt-admin-sock 0700 "
                                  "root:root (roles/libvirtd README)")
def test_socket_modes(lab_ready, observed):
    want = {"/run/libvirt/libvirt-sock": ("770", "root", "libvirt"),
            "/run/libvirt/libvirt-sock-ro": ("770", "root", "libvirt"),
            "/run/libvirt/libvirt-admin-sock": ("700", "root", "root")}
    for host in HYPERVISORS:
        found = lab.ssh(host, "stat -c '%n %a %U %G' " + " ".join(want)).stdout.splitlines()
        modes = {line.split()[0]: tuple(line.split()[1:]) for line in found}
        assert modes == want, f"{host}: {modes}"
    observed("hv1, hv2, hv3: " + ", ".join(f"{Path(p).name} {m[0]} {m[1]}:{m[2]}" for p, m in want.items()))


UNLISTED_ADDRESS_OFFSET = 200  # .200 in the lab subnet: no lab host has it
TIMED_OUT = 124  # timeout(1)'s exit status
NFS4_REFUSAL = re.compile(r"NFS4ERR_(NOENT|ACCESS|PERM|WRONGSEC)")


@pytest.mark.fault_table(area="defaults", fault="NFS export reached from an address not in its clients list "
                                                "(hv3 speaking from a second, unlisted address)",
                         expected="the server refuses the mount (MNT3ERR_ACCES) and NFSv4; the same host from its "
                                  "listed address is served")
def test_nfs_export_refuses_an_unlisted_address(lab_ready, observed):
    address = lab.host_address(SPARE)
    server = lab.host_address(lab.STORAGE_HOST)
    unlisted = ".".join(address.split(".")[:3] + [str(UNLISTED_ADDRESS_OFFSET)])
    dev = lab.ssh(SPARE, f"ip -o route get {server}").stdout.split(" dev ")[1].split()[0]
    export = f"nfs://{server}{lab.NFS_EXPORT}"
    listed = lab.ssh(SPARE, f"nfs-ls {export}")
    assert listed.returncode == 0, f"control case: {listed.stderr}"
    listed_v4 = lab.ssh(SPARE, f"timeout 60 nfs-ls '{export}?version=4'")
    assert listed_v4.returncode == 0, f"control case (NFSv4): {listed_v4.stderr}"
    setup = lab.ssh(SPARE, f"set -e; ip addr add {unlisted}/32 dev {dev}; ip route add {server}/32 dev {dev} src {unlisted}")
    try:
        assert setup.returncode == 0, setup.stderr
        route = lab.ssh(SPARE, f"ip -o route get {server}").stdout
        assert f"src {unlisted}" in route, route
        v3 = lab.ssh(SPARE, f"timeout 60 nfs-ls {export}")
        v4 = lab.ssh(SPARE, f"timeout 60 nfs-ls '{export}?version=4'")
    finally:
        lab.ssh(SPARE, f"ip route del {server}/32 dev {dev} src {unlisted}; ip addr del {unlisted}/32 dev {dev}")
    assert f"src {unlisted}" not in lab.ssh(SPARE, f"ip -o route get {server}").stdout
    assert v3.returncode != 0 and "MNT3ERR_ACCES" in v3.stderr, (v3.returncode, v3.stdout, v3.stderr)
    # nfs-ganesha leaves the export out of an unlisted client's NFSv4 pseudo filesystem (NFS4ERR_NOENT,
    # while the listed address lists it: the control above) or denies it; a timeout (124) is no refusal.
    assert v4.returncode not in (0, TIMED_OUT) and NFS4_REFUSAL.search(v4.stderr), (v4.returncode, v4.stdout, v4.stderr)
    observed(f"from {unlisted}: NFSv3 '{short(v3.stderr.strip().splitlines()[-1], 120)}', NFSv4 refused "
             f"('{short((v4.stderr.strip().splitlines() or ['-'])[-1], 120)}'); from {address} (listed): served")


# ---------------------------------------------------------------------------
# TCP+SASL on one host, the bootstrap and the modules at -vvv, and the transcript scanned for secrets


@dataclass
class SecretsRun:
    transcript: str
    password: str
    admin_dir: Path


def _verbose(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd + ["-vvv"], capture_output=True, text=True, env=lab.text_env(), cwd=lab.OPERATOR_DIR,
                          timeout=timeout, check=False)


SASL_DB = "/etc/libvirt/passwd.db"
SASL_FILES = ["/etc/sasl2/libvirt.conf", SASL_DB]
LIBVIRTD_CONFIG = ["/etc/libvirt/libvirtd.conf", "/etc/libvirt/qemu.conf", "/etc/default/libvirtd",
                   "/etc/systemd/system/libvirtd-tcp.socket.d/virtops.conf",
                   "/etc/systemd/system/libvirtd-tls.socket.d/virtops.conf"]


@pytest.fixture(scope="module")
def secrets_run(lab_ready, tmp_path_factory):
    """The bootstrap playbook at -vvv with, on hv3, TCP+SASL (a password) and a renewal window that
    reissues its certificates, plus a fresh admin key on the controller; then the modules at -vvv.
    Afterwards hv3's certificates, SASL files and libvirtd settings are put back."""
    work = tmp_path_factory.mktemp("secrets")
    password = "vts-" + secrets.token_urlsafe(18)
    admin_dir = work / "admin"
    overlay = work / "overlay.yml"
    overlay.write_text(yaml.safe_dump({"all": {"vars": {"libvirt_pki_admin_dir": str(admin_dir)}, "children": {
        "hypervisors": {"hosts": {SPARE: {
            "libvirtd_tcp": True, "libvirtd_sasl_mech_list": ["scram-sha-256", "digest-md5"],
            "libvirtd_sasl_users": [{"name": "migrator", "password": password}],
            "libvirt_pki_cert_valid_days": 500, "libvirt_pki_renew_days": 400}}}}}}))
    overlay.chmod(0o600)
    certs_before = lab.file_checksums(SPARE, HOST_CERTS)
    config_before = lab.file_checksums(SPARE, LIBVIRTD_CONFIG)
    sasl_saved = {path: lab.ssh(SPARE, f"base64 -w0 {path}").stdout if digest != "absent" else None
                  for path, digest in lab.file_checksums(SPARE, SASL_FILES).items()}
    save = lab.ssh(SPARE, "rm -rf /root/.virtops-test-certs; " + lab.save_files_script(HOST_CERTS, "/root/.virtops-test-certs"))
    assert save.returncode == 0, save.stderr
    parts = []
    try:
        boot = _verbose(["ansible-playbook", "-i", str(lab.INVENTORY), "-i", str(overlay), str(BOOTSTRAP)], 1200)
        parts.append(boot.stdout + boot.stderr)
        (work / "transcript.log").write_text("\n".join(parts))
        assert boot.returncode == 0, f"the bootstrap failed, see {work / 'transcript.log'}: {boot.stdout[-1500:]}"
        assert lab.file_checksums(SPARE, HOST_CERTS)["/etc/pki/libvirt/servercert.pem"] != \
            certs_before["/etc/pki/libvirt/servercert.pem"], "hv3's certificate was not reissued"
        lab.create_guests([SECRETS_GUEST])
        module_args = {"name": SECRETS_GUEST["name"], "dest_uri": lab.dest_uri(DEST)}
        for host, module, args, check in (
                (SOURCE, "migrate", module_args, True),
                (SOURCE, "migrate", module_args, False),
                (DEST, "migration_job", {"name": SECRETS_GUEST["name"], "operation": "info"}, False),
                (DEST, "evacuate", {"destinations": [{"name": SPARE, "uri": lab.dest_uri(SPARE)}]}, True)):
            run = _verbose(lab.module_cmd(host, module, args, check), 600)
            parts.append(run.stdout + run.stderr)
            assert run.returncode == 0, f"{module}: {run.stdout[-2000:]}"
        (work / "transcript.log").write_text("\n".join(parts))
        yield SecretsRun("\n".join(parts), password, admin_dir)
    finally:
        lab.remove_guests([SECRETS_GUEST])
        restore = lab.ssh(SPARE, "set -e; if [ -d /root/.virtops-test-certs ]; then cd /root/.virtops-test-certs; "
                                 "find . -type f | while read -r f; do cp -a \"$f\" \"/${f#./}\"; done; "
                                 "rm -rf /root/.virtops-test-certs; fi")
        for path, content in sasl_saved.items():
            if path == SASL_DB:
                continue  # the role's own business once SASL is off: asserted below
            if content is None:
                lab.ssh(SPARE, f"rm -f {path}")
            else:
                lab.ssh_input(SPARE, f"base64 -d > {path}", content.encode())
        back = lab.libvirtd_role_on(SPARE)
        assert restore.returncode == 0, restore.stderr
        assert back.rc == 0, f"restoring libvirtd on hv3 failed: {back.describe()}"
        assert lab.file_checksums(SPARE, [SASL_DB])[SASL_DB] == "absent", \
            "the libvirtd role left the SASL password database after SASL was switched off"
        assert lab.file_checksums(SPARE, HOST_CERTS) == certs_before
        assert lab.file_checksums(SPARE, LIBVIRTD_CONFIG) == config_before
        assert lab.ssh(SPARE, f"virsh -c qemu+tls://{fqdn(DEST)}/system hostname").stdout.strip() == fqdn(DEST)


@pytest.mark.fault_table(area="defaults", fault="TCP listener switched on for hv3 (libvirtd_tcp with SASL, "
                                                "the role's only allowed auth_tcp without the insecure opt-in)",
                         expected="a client without credentials and one with a wrong password are refused; the SASL "
                                  "user gets in (control)")
def test_tcp_with_sasl_refuses_unauthenticated_clients(secrets_run, observed):
    listening = lab.ssh(SPARE, "ss -ltnH").stdout
    assert re.search(r":16509\s", listening), f"TCP is not on on hv3: {listening}"
    uri = f"qemu+tcp://{fqdn(SPARE)}/system"
    connect = f"timeout 30 setsid -w virsh -c {uri} hostname"
    anonymous = lab.ssh(DEST, f"{connect} < /dev/null")
    wrong = lab.ssh_input(DEST, connect, b"migrator\nnot-the-password\n")
    right = lab.ssh_input(DEST, connect, f"migrator\n{secrets_run.password}\n".encode())
    for refused in (anonymous, wrong):  # by SASL itself: a timeout (124) or another failure is no refusal
        assert refused.returncode not in (0, TIMED_OUT) and "error: authentication failed" in refused.stderr, \
            (refused.returncode, refused.stdout, refused.stderr)
    assert right.returncode == 0 and fqdn(SPARE) in right.stdout, (right.stdout, right.stderr)

    def last(proc) -> str:
        return short((proc.stderr.strip().splitlines() or ["-"])[-1], 160)
    observed(f"16509 listening on hv3; from hv2 without credentials: '{last(anonymous)}'; wrong password: "
             f"'{last(wrong)}'; the SASL user: answered {fqdn(SPARE)}")


def secret_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM private key that carry private material.

    The lines that encode only the public part (an RSA key's modulus and exponent, which come first in
    the DER) also appear in certificates and requests, so they are left out: the lines from the private
    exponent on (RSA), or those holding the private scalar (EC).
    """
    lines = [line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")]
    der = base64.b64decode("".join(lines))
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        secret = key.private_numbers().d
    else:
        secret = key.private_numbers().private_value
    raw = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
    start = der.find(raw)
    assert start > 0, "private number not found in the key's DER"
    end = len(der) if isinstance(key, rsa.RSAPrivateKey) else start + len(raw)
    return [line for number, line in enumerate(lines) if number * 48 + 48 > start and number * 48 < end]


def private_keys() -> dict[str, str]:
    """Every private key on the hypervisors and the controller (PEM text)."""
    texts = {}
    for host in HYPERVISORS:
        for path in lab.ssh(host, "find /etc/pki -type f -name '*key*.pem'").stdout.split():
            texts[f"{host}:{path}"] = lab.ssh(host, f"cat {path}").stdout
    for path in (CA_KEY, ADMIN_DIR / "clientkey.pem"):
        texts[f"controller:{path}"] = path.read_text()
    return texts


@pytest.mark.fault_table(area="secrets", fault="bootstrap playbook at -vvv (hv3: certificates reissued, TCP+SASL "
                                               "user with a password; a new admin key on the controller), then "
                                               "migrate, migration_job and evacuate at -vvv",
                         expected="the transcript holds no 'PRIVATE KEY', no line of any private key on the hosts "
                                  "or of the CA/admin keys, no SASL password")
def test_no_secret_in_any_transcript(secrets_run, observed):
    text = secrets_run.transcript
    pems = private_keys()
    pems["controller:new admin key"] = (secrets_run.admin_dir / "clientkey.pem").read_text()
    keys = {label: secret_lines(pem) for label, pem in pems.items()}
    hits = []
    if "PRIVATE KEY" in text:
        hits.append("PRIVATE KEY")
    if secrets_run.password in text:
        hits.append("the SASL password")
    for label, lines in keys.items():
        hits += [f"{label} line {n}" for n, line in enumerate(lines) if len(line) >= 16 and line in text]
    # The run did handle the secrets (the scan is not vacuous).
    assert "saslpasswd2" in text or "Create the missing SASL users" in text
    assert "Sign the certificate with the CA" in text and "changed: [hv3]" in text
    assert "ESTABLISH SSH CONNECTION" in text, "not a -vvv transcript"
    observed(f"{len(text.splitlines())} transcript lines scanned for 'PRIVATE KEY', {len(keys)} private keys "
             f"({sum(len(v) for v in keys.values())} base64 lines of private material; the public modulus lines "
             f"appear in certificates and are not secret) and the SASL password: {len(hits)} hits")
    assert not hits, hits


# ---------------------------------------------------------------------------
# Bad input, refused before anything changes


def _module_case(case_id, args, expect, fault):
    return pytest.param(args, expect, id=case_id, marks=pytest.mark.fault_table(
        area="bad input", fault=fault, expected="refused with a clear message; every domain's state and XML "
                                                "unchanged on hv1, hv2, hv3"))


GUEST = BAD_INPUT_GUEST["name"]
MODULE_BAD_INPUTS = [
    _module_case("malformed-dest-uri", {"dest_uri": "qemu+tls//hv2/system"}, r"malformed",
                 "migrate: malformed dest_uri (qemu+tls//hv2/system)"),
    _module_case("local-dest-uri", {"dest_uri": "qemu:///system"}, r"local.*another host",
                 "migrate: local dest_uri (qemu:///system)"),
    _module_case("dest-is-source", {"dest_uri": "SOURCE_URI"}, r"is the source host",
                 "migrate: dest_uri naming the source host itself"),
    _module_case("unknown-domain", {"name": "vs-no-such-guest"}, r"vs-no-such-guest.*(not found|no domain)",
                 "migrate: a domain that exists nowhere"),
    _module_case("tunnelled-without-p2p", {"tunnelled": True, "p2p": False}, r"tunnelled.*needs p2p",
                 "migrate: tunnelled without p2p"),
    _module_case("tls-with-tunnelled", {"tunnelled": True, "tls": True}, r"tls and tunnelled exclude each other",
                 "migrate: tls with tunnelled"),
    _module_case("postcopy-without-live", {"post_copy": True, "live": False}, r"post-copy needs a live migration",
                 "migrate: post_copy without live"),
    _module_case("copy-storage-modes-together", {"copy_storage": "all,inc"}, r"copy_storage.*(one of|choose)",
                 "migrate: both storage-copy modes at once (copy_storage: all,inc)"),
    _module_case("migrate-disks-without-copy", {"migrate_disks": ["vda"]}, r"migrate_disks.*copy_storage is none",
                 "migrate: migrate_disks without copy_storage"),
    _module_case("offline-without-persistent", {"live": False, "persistent": False}, r"needs persistent: true",
                 "migrate: offline (live: false) without persistent"),
    _module_case("negative-bandwidth", {"bandwidth": -1}, r"bandwidth must not be negative",
                 "migrate: bandwidth -1"),
    _module_case("negative-downtime", {"max_downtime": -5}, r"max_downtime must not be negative",
                 "migrate: max_downtime -5"),
    _module_case("negative-timeout", {"timeout": -1}, r"timeout must not be negative", "migrate: timeout -1"),
    _module_case("undefine-source-without-persistent", {"persistent": False, "undefine_source": True},
                 r"would leave 'vs-bad' defined on no host",
                 "migrate: undefine_source without persistent on a persistent domain"),
    _module_case("unknown-option-value", {"on_paused_source": "bogus"}, r"on_paused_source.*(one of|choose).*bogus",
                 "migrate: unknown value of an option (on_paused_source: bogus)"),
    _module_case("unknown-option", {"bandwith": 100}, r"Unsupported parameters.*bandwith",
                 "migrate: an unknown option (a typo: bandwith)"),
]


@pytest.mark.parametrize("args,expect", MODULE_BAD_INPUTS)
def test_module_refuses_bad_input(bad_input_guest, args, expect, observed):
    options = dict({"name": bad_input_guest, "dest_uri": lab.dest_uri(DEST)}, **args)
    if options["dest_uri"] == "SOURCE_URI":
        options["dest_uri"] = lab.dest_uri(SOURCE)
    before = lab.hypervisor_snapshot()
    result = lab.module(SOURCE, "migrate", options, timeout=120)
    after = lab.hypervisor_snapshot()
    observed(f"refused: {short(result.get('msg'), 300)}")
    assert result.get("failed") is True, result
    assert re.search(expect, result["msg"], re.IGNORECASE | re.DOTALL), result["msg"]
    assert result.get("changed", False) is False
    assert after == before, "a domain changed on some hypervisor"
    assert placement(bad_input_guest) == (running(True), ABSENT, ABSENT)
    observed("domains, states and XML identical on hv1-hv3")


def _role_case(case_id, role, host, variables, expect, fault, files):
    return pytest.param(role, host, variables, expect, files, id=case_id, marks=pytest.mark.fault_table(
        area="bad input", fault=fault, expected="the role fails in its preflight with a message naming the opt-in; "
                                                "no task changed anything; its configuration files' checksums "
                                                "unchanged"))


def listeners(host: str) -> set[str]:
    """The local addresses of the TCP listening sockets on ``host``."""
    return {line.split()[3] for line in lab.ssh(host, "ss -ltnH").stdout.splitlines()}


GANESHA_FILES = ["/etc/ganesha/ganesha.conf", "/etc/ganesha/virtops-exports.conf"]
ROLE_BAD_INPUTS = [
    _role_case("libvirtd-tcp-auth-none", "libvirtd", SPARE, {"libvirtd_tcp": True, "libvirtd_auth_tcp": "none"},
               r"libvirtd_allow_insecure_tcp_auth_none", "libvirtd role: TCP with auth_tcp none, no opt-in (hv3)",
               LIBVIRTD_CONFIG),
    _role_case("nfs-wildcard-clients", "nfs_server", "nfs1",
               {"nfs_server_exports": [{"path": "/srv/vmimages", "clients": ["*"],
                                        "options": ["rw", "sync", "root_squash", "insecure", "no_subtree_check"]}]},
               r"nfs_server_allow_wildcard_clients=true", "nfs_server role: export to clients '*', no opt-in",
               GANESHA_FILES),
    _role_case("nfs-no-root-squash", "nfs_server", "nfs1",
               {"nfs_server_exports": [{"path": "/srv/vmimages", "clients": ["10.80.0.11"],
                                        "options": ["rw", "sync", "no_root_squash", "insecure"]}]},
               r"no_root_squash needs nfs_server_allow_no_root_squash=true",
               "nfs_server role: no_root_squash, no opt-in", GANESHA_FILES),
]


@pytest.mark.parametrize("role,host,variables,expect,files", ROLE_BAD_INPUTS)
def test_role_refuses_insecure_settings(lab_ready, role, host, variables, expect, files, observed):
    before = lab.file_checksums(host, files)
    listening = listeners(host)
    run = lab.playbook(APPLY_ROLE, dict({"virtops_test_role": role, "virtops_test_target": host}, **variables))
    failed = [r for r in run.results(host) if r.get("failed")]
    # A looped assert fails with "One or more items failed"; each item carries its own message.
    messages = [item.get("msg", "") for r in failed for item in r.get("results", []) if item.get("failed")]
    message = " ".join(messages or [str(r.get("msg", "")) for r in failed]) or run.stderr[-500:]
    observed(f"{role} on {host} failed at '{failed[0]['_task'] if failed else '?'}': {short(message, 300)}")
    assert run.rc != 0 and failed, run.describe()
    assert re.search(expect, message), message
    assert run.changed(host) == 0, run.describe()
    assert lab.file_checksums(host, files) == before
    assert listeners(host) == listening
    observed(f"changed=0; checksums of {', '.join(Path(f).name for f in files)} unchanged")
