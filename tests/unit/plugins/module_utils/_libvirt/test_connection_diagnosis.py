"""Why a TLS connection failed: libvirt's texts mapped to a cause and a next step, and the server
certificate checked by a handshake of our own (a real TLS server on 127.0.0.1 with made certificates)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import fake_libvirt
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    connection_diagnosis,
    diagnose_server_certificate,
    open_connection,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# libvirt 9.0's texts, as the lab's TLS cases produced them.
LIBVIRT_TEXTS = {
    "foreign CA": ("Our own certificate /etc/pki/libvirt/clientcert.pem failed validation against "
                   "/etc/pki/CA/cacert.pem: The certificate is not trusted."),
    "DN refused": "Unable to read TLS confirmation: Input/output error",
    "expired": "The client certificate /etc/pki/libvirt/clientcert.pem has expired",
    "server verification": "authentication failed: Failed to verify peer's certificate",
}


@pytest.mark.parametrize("case,cause,hint", [
    ("foreign CA", "unknown CA", "reissue the client certificate"),
    ("DN refused", "tls_allowed_dn_list", "virt-pki-query-dn"),
    ("expired", "expired", "renew"),
    ("server verification", "verification failed", "SANs"),
])
def test_libvirt_texts_get_a_cause_and_a_next_step(case, cause, hint):
    found_cause, found_hint = connection_diagnosis(LIBVIRT_TEXTS[case])
    assert cause in found_cause
    assert hint in found_hint


def test_texts_that_say_enough_keep_libvirts_wording():
    assert connection_diagnosis("unable to connect to server at 'hv2:16514': Connection refused")[0] is None


@pytest.mark.parametrize("text,needle", [
    ("authentication failed: Failed to verify peer's certificate", "SANs"),
    ("Client's DN is not allowed", "tls_allowed_dn_list"),
    ("unable to connect to server at 'hv2:16514': Connection refused", "libvirtd-tls.socket"),
    ("Cannot recv data: Name or service not known", "does not resolve"),
    ("something else entirely", "virsh -c"),
])
def test_connection_hints(text, needle):
    assert needle in connection_diagnosis(text)[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer_name: str, key, issuer_key, ca: bool, days: tuple[int, int], dns=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer_name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, another CA, and server certificates: good, for another name, expired."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {}
    for label, key in (("ca", ca_key), ("other-ca", other_key)):
        files[label] = root / f"{label}.pem"
        files[label].write_bytes(_cert(label, label, key, key, True, (-1, 30)).public_bytes(serialization.Encoding.PEM))
    for label, dns, days in (("good", ["localhost"], (-1, 30)), ("wrong-name", ["elsewhere.test"], (-1, 30)),
                             ("expired", ["localhost"], (-30, -1))):
        key = ec.generate_private_key(ec.SECP256R1())
        files[label] = root / f"{label}.pem"
        files[label].write_bytes(
            _cert("localhost", "ca", key, ca_key, False, days, dns).public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    return files


@pytest.fixture
def tls_server(pki):
    """Start a TLS server on 127.0.0.1 with one of the server certificates; yields its port."""
    servers = []

    def start(label: str, client_certificate_required: bool = False) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki[label])
        if client_certificate_required:  # as libvirtd does; TLS 1.2 refuses the client inside the handshake
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(pki["ca"])
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)

        def serve():
            while True:
                try:
                    conn, _addr = listener.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append(listener)
        return listener.getsockname()[1]
    yield start
    for listener in servers:
        listener.close()


def test_a_good_certificate_has_nothing_to_report(pki, tls_server):
    assert diagnose_server_certificate("localhost", tls_server("good"), str(pki["ca"])) is None


@pytest.mark.parametrize("label,ca,cause,hint", [
    ("wrong-name", "ca", "does not name localhost", "SANs"),
    ("expired", "ca", "has expired", "renew"),
    ("good", "other-ca", "does not verify against", "install the CA"),
])
def test_the_server_certificate_problem_is_named(pki, tls_server, label, ca, cause, hint):
    found = diagnose_server_certificate("localhost", tls_server(label), str(pki[ca]))
    assert found is not None
    assert cause in found[0]
    assert hint in found[1]


@pytest.mark.parametrize("label,cause", [("wrong-name", "does not name localhost"), ("expired", "has expired")])
def test_a_server_that_refuses_a_client_without_certificate_is_still_diagnosed(pki, tls_server, label, cause):
    found = diagnose_server_certificate("localhost", tls_server(label, client_certificate_required=True),
                                        str(pki["ca"]))
    assert found is not None and cause in found[0]


def test_a_good_certificate_behind_a_client_certificate_request_has_nothing_to_report(pki, tls_server):
    port = tls_server("good", client_certificate_required=True)
    assert diagnose_server_certificate("localhost", port, str(pki["ca"])) is None


def test_nothing_listening_is_no_diagnosis(pki):
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    assert diagnose_server_certificate("localhost", port, str(pki["ca"]), timeout=2) is None


def test_open_connection_names_the_name_mismatch(world, pki, tls_server, tmp_path):
    """libvirt says only "Failed to verify peer's certificate"; the module's error says which name is missing."""
    pkipath = tmp_path / "pkipath"
    pkipath.mkdir()
    (pkipath / "cacert.pem").write_bytes(pki["ca"].read_bytes())
    uri = f"qemu+tls://localhost:{tls_server('wrong-name')}/system?pkipath={pkipath}"
    host = world.add_host(uri, "hv9")
    host.open_error = fake_libvirt.libvirtError(LIBVIRT_TEXTS["server verification"])
    with pytest.raises(ConnectionFailed) as raised:
        open_connection(uri, "destination")
    error = raised.value
    assert "the server certificate does not name localhost" in error.message
    assert "Hostname mismatch" in error.message
    assert "SANs" in error.hint
    assert error.libvirt_error == LIBVIRT_TEXTS["server verification"]
