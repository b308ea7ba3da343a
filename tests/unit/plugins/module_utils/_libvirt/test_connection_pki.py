"""A failed TLS connection's advice names the files the client really used, and a refusal the client
cannot explain lists the possible causes instead of guessing one.

libvirt 9.0's client (virNetTLSContextLocateCredentials) reads ``?pkipath=DIR`` when given, else, for a
non-root user, ~/.pki/libvirt where the files exist, else the system tree. When the server refuses the
client's certificate after the handshake (unknown issuer, DN not allowed, dates) it only closes the
connection: the client says "Unable to read TLS confirmation" whatever the reason was.
"""

from __future__ import annotations

import os

import fake_libvirt
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CA_FILE,
    CLIENT_CERT_FILE,
    client_pki,
    connection_diagnosis,
    open_connection,
    parse_uri,
)

HOST_URI = "qemu+tls://hv2.example.com/system"
USER_DIR = os.path.expanduser("~/.pki/libvirt")
REFUSED = "Unable to read TLS confirmation: Input/output error"
OWN_CERT = ("Our own certificate /srv/pki/clientcert.pem failed validation against /srv/pki/cacert.pem: "
            "The certificate is not trusted.")


def test_pkipath_names_its_files_whether_they_exist_or_not():
    pki = client_pki(parse_uri(HOST_URI + "?pkipath=/srv/pki"), euid=0, exists=lambda path: False)
    assert (pki.ca_file, pki.client_cert, pki.client_key, pki.origin) == (
        "/srv/pki/cacert.pem", "/srv/pki/clientcert.pem", "/srv/pki/clientkey.pem", "pkipath")


def test_root_uses_the_system_tree_even_with_user_files():
    pki = client_pki(parse_uri(HOST_URI), euid=0, exists=lambda path: True)
    assert (pki.ca_file, pki.client_cert, pki.origin) == (CA_FILE, CLIENT_CERT_FILE, "system")


@pytest.mark.parametrize("present,ca_file,cert", [
    ({"cacert.pem", "clientcert.pem", "clientkey.pem"}, f"{USER_DIR}/cacert.pem", f"{USER_DIR}/clientcert.pem"),
    ({"cacert.pem"}, f"{USER_DIR}/cacert.pem", CLIENT_CERT_FILE),
    ({"clientcert.pem"}, CA_FILE, CLIENT_CERT_FILE),  # cert and key go as a pair
    ({"clientcert.pem", "clientkey.pem"}, CA_FILE, f"{USER_DIR}/clientcert.pem"),
    (set(), CA_FILE, CLIENT_CERT_FILE),
])
def test_non_root_uses_the_user_files_that_exist(present, ca_file, cert):
    pki = client_pki(parse_uri(HOST_URI), euid=1000,
                     exists=lambda path: os.path.dirname(path) == USER_DIR and os.path.basename(path) in present)
    assert (pki.ca_file, pki.client_cert) == (ca_file, cert)


def test_a_refusal_after_the_handshake_lists_every_cause():
    cause, hint = connection_diagnosis(REFUSED)
    for words in ("unknown issuer", "tls_allowed_dn_list", "expired", "revoked", "only the remote's journal"):
        assert words in cause, (words, cause)
    for words in ("journalctl", "virt-pki-query-dn", "CA", "clocks"):
        assert words in hint, (words, hint)


def failed_open(world, uri, text):
    host = world.add_host(uri, "hv2")
    host.open_error = fake_libvirt.libvirtError(text)
    with pytest.raises(ConnectionFailed) as raised:
        open_connection(uri, "destination")
    return raised.value


def test_controller_with_pkipath_gets_advice_about_its_own_files(world):
    error = failed_open(world, HOST_URI + "?pkipath=/srv/pki", REFUSED)
    text = f"{error.message} {error.hint}"
    assert "/srv/pki/clientcert.pem" in text
    assert CLIENT_CERT_FILE not in text
    assert "unknown issuer" in error.message and "tls_allowed_dn_list" in error.message


def test_an_untrusted_own_certificate_names_the_pkipath_ca_file(world):
    error = failed_open(world, HOST_URI + "?pkipath=/srv/pki", OWN_CERT)
    assert "install that CA as /srv/pki/cacert.pem" in error.hint
    assert "/etc/pki" not in error.hint
