# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""libvirt connection URIs and connections.

URI form (libvirt's connection URIs):
``driver[+transport]://[user@][host][:port]/[path][?extra]``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)

DEFAULT_URI = "qemu:///system"  # the local hypervisor: modules run on a host and manage its guests
SUPPORTED_DRIVERS = ("qemu",)
REMOTE_TRANSPORTS = ("tls", "tcp", "ssh", "libssh", "libssh2", "ext")
LOCAL_TRANSPORTS = ("unix",)
DEFAULT_PORTS = {"tls": 16514, "tcp": 16509, "ssh": 22, "libssh": 22, "libssh2": 22}
LOCAL_HOSTNAMES = ("localhost", "localhost.localdomain", "localhost6", "ip6-localhost")


@dataclass(frozen=True)
class LibvirtURI:
    """A parsed libvirt connection URI."""

    uri: str
    driver: str
    transport: str | None
    user: str | None
    host: str | None
    port: int | None
    path: str
    query: dict[str, list[str]]

    @property
    def effective_transport(self) -> str:
        """The transport libvirt uses: ``tls`` for a bare remote URI."""
        if self.transport:
            return self.transport
        return "tls" if self.host else "unix"

    @property
    def effective_port(self) -> int | None:
        if self.port is not None:
            return self.port
        return DEFAULT_PORTS.get(self.effective_transport)

    @property
    def is_remote(self) -> bool:
        """True when the URI names a host other than this one."""
        if not self.host or self.effective_transport in LOCAL_TRANSPORTS:
            return False
        return not is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for localhost names and loopback addresses (no DNS lookup)."""
    name = host.strip("[]").lower()
    if name in LOCAL_HOSTNAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_uri(uri: str, option: str = "uri") -> LibvirtURI:
    """Parse a libvirt URI, raising ValidationError when it is malformed."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValidationError(f"validate {option}", f"{option} is empty")
    if any(ch.isspace() for ch in uri):
        raise ValidationError(
            f"validate {option}",
            f"{option} {uri!r} contains whitespace",
            hint="write the URI as driver[+transport]://[user@]host[:port]/system",
        )
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(
            f"validate {option}",
            f"{option} {uri!r} is malformed: {exc}",
            hint="write the URI as driver[+transport]://[user@]host[:port]/system",
        )
    if "://" not in uri or not parts.scheme:
        raise ValidationError(
            f"validate {option}",
            f"{option} {uri!r} is malformed: no driver[+transport]:// scheme",
            hint="for example qemu+tls://hv2.example.com/system",
        )
    driver, _plus, transport = parts.scheme.partition("+")
    if driver not in SUPPORTED_DRIVERS:
        raise ValidationError(
            f"validate {option}",
            "{} {!r} uses driver {!r}; this collection migrates QEMU/KVM domains ({})".format(option, uri, driver, ", ".join(SUPPORTED_DRIVERS)),
        )
    if transport and transport not in REMOTE_TRANSPORTS + LOCAL_TRANSPORTS:
        raise ValidationError(
            f"validate {option}",
            "{} {!r} uses unknown transport {!r} (known: {})".format(option, uri, transport, ", ".join(REMOTE_TRANSPORTS + LOCAL_TRANSPORTS)),
        )
    if parts.path not in ("/system", "/session"):
        raise ValidationError(
            f"validate {option}",
            f"{option} {uri!r} has path {parts.path!r}; QEMU URIs end in /system (or /session)",
        )
    return LibvirtURI(
        uri=uri,
        driver=driver,
        transport=transport or None,
        user=parts.username,
        host=(parts.hostname or None),
        port=port,
        path=parts.path,
        query=parse_qs(parts.query),
    )


def local_addresses_of(host: str) -> bool:
    """True when ``host`` resolves to an address assigned to this machine.

    Binding a socket succeeds only for local addresses, which avoids
    enumerating interfaces.  Resolution failures count as "not local"; the
    connection attempt reports unreachable hosts later.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _type, _proto, _canon, sockaddr in infos:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.bind((sockaddr[0], 0))
        except OSError:
            continue
        finally:
            probe.close()
        return True
    return False


def validate_dest_uri(
    source_uri: str,
    dest_uri: str,
    resolves_locally: Callable[[str], bool] = local_addresses_of,
) -> tuple[LibvirtURI, LibvirtURI]:
    """Refuse a malformed or local ``dest_uri`` and a destination that is the source.

    ``resolves_locally`` is consulted only when the source URI is local (the
    task runs on the source host): then a destination name that resolves to
    one of this machine's addresses is this machine.  The definitive check,
    host UUIDs, is a preflight check.
    """
    source = parse_uri(source_uri, "uri")
    dest = parse_uri(dest_uri, "dest_uri")
    context = {"source_uri": source_uri, "dest_uri": dest_uri}
    if source.driver != dest.driver:
        raise ValidationError(
            "validate dest_uri",
            f"source driver {source.driver!r} and destination driver {dest.driver!r} differ",
            **context,
        )
    if not dest.is_remote:
        raise ValidationError(
            "validate dest_uri",
            "dest_uri is local (%s); a migration destination must be another host"
            % (dest.host or "no host part"),
            hint="name the destination hypervisor, e.g. qemu+tls://hv2.example.com/system",
            **context,
        )
    same = False
    if source.is_remote:
        same = (source.host or "").lower() == (dest.host or "").lower()
    else:
        same = resolves_locally(dest.host or "")
    if same:
        raise ValidationError(
            "validate dest_uri",
            f"the destination {dest.host} is the source host",
            hint="point dest_uri at a different hypervisor",
            **context,
        )
    return source, dest


CA_FILE = "/etc/pki/CA/cacert.pem"
CLIENT_CERT_FILE = "/etc/pki/libvirt/clientcert.pem"
CLIENT_KEY_FILE = "/etc/pki/libvirt/private/clientkey.pem"
USER_PKI_DIR = "~/.pki/libvirt"
RENEW_HINT = "renew it (the libvirt_pki role reissues certificates that expire within libvirt_pki_renew_days)"


@dataclass(frozen=True)
class ClientPKI:
    """The files libvirt's client presents and trusts for one TLS URI (and where they come from)."""

    ca_file: str
    client_cert: str
    client_key: str
    origin: str  # "pkipath", "user" (~/.pki/libvirt), "system"


def client_pki(uri: LibvirtURI, euid: int | None = None, exists: Callable[[str], bool] = os.path.exists) -> ClientPKI:
    """The CA file and client certificate libvirt's client uses (virNetTLSContextLocateCredentials, libvirt 9.0).

    ``?pkipath=DIR``: DIR/cacert.pem, DIR/clientcert.pem, DIR/clientkey.pem, whether they exist or not.
    A non-root client: ~/.pki/libvirt/cacert.pem when it exists, and that directory's clientcert.pem and
    clientkey.pem when both exist; whatever is missing there comes from the system tree.
    """
    pkipath = uri.query.get("pkipath")
    if pkipath:
        directory = pkipath[0]
        return ClientPKI(os.path.join(directory, "cacert.pem"), os.path.join(directory, "clientcert.pem"),
                         os.path.join(directory, "clientkey.pem"), "pkipath")
    ca_file, cert, key, origin = CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, "system"
    if (os.geteuid() if euid is None else euid) != 0:
        user_dir = os.path.expanduser(USER_PKI_DIR)
        user = [os.path.join(user_dir, name) for name in ("cacert.pem", "clientcert.pem", "clientkey.pem")]
        if exists(user[0]):
            ca_file, origin = user[0], "user"
        if exists(user[1]) and exists(user[2]):
            cert, key, origin = user[1], user[2], "user"
    return ClientPKI(ca_file, cert, key, origin)


SYSTEM_PKI = ClientPKI(CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, "system")

# The remote libvirtd refused the client's certificate after the handshake: it only closes the
# connection, so the client cannot tell why; the remote's journal says which of these it was.
REFUSED_BY_REMOTE = (
    ("the remote libvirtd refused this host's client certificate ({client_cert}) after the TLS handshake, for a "
     "reason only the remote's journal names: its issuer is not a CA the remote trusts (unknown issuer), or its "
     "DN is not in the remote tls_allowed_dn_list, or its dates are not valid by the remote's clock (expired, "
     "not yet active), or it is revoked there"),
    ("read the remote's journal (journalctl -u libvirtd: 'known issuer', 'not on the list of allowed clients', "
     "'expired'), then: for an unknown issuer, issue {client_cert} from the CA in the remote's " + CA_FILE
     + " (libvirt_pki role) or install the CA that signed it there; for the DN, add this client's DN "
     "(virt-pki-query-dn {client_cert}) to tls_allowed_dn_list on the remote libvirtd (libvirtd role: "
     "libvirtd_tls_allowed_dn_list/_extra); for dates, check both clocks (NTP) or " + RENEW_HINT),
)

# (needle in libvirt's text, lower case) -> (the cause, what to do next); the most specific first.
# {ca_file}, {client_cert} and {client_key} are the files the client uses for the URI (client_pki).
CONNECTION_DIAGNOSES = (
    ("has expired", ("a TLS certificate has expired", RENEW_HINT)),
    ("is not yet active", ("a TLS certificate is not yet valid",
                           "check the clocks of both hosts (NTP) or wait until the certificate's start date")),
    ("our own certificate", (
        "this host's client certificate is not signed by a CA in its CA file (unknown CA, another PKI's certificate)",
        ("reissue the client certificate from the cluster's CA (libvirt_pki role) as {client_cert}, or install "
         "that CA as {ca_file}"))),
    ("unable to read tls confirmation", REFUSED_BY_REMOTE),
    ("server verification (of our certificate", REFUSED_BY_REMOTE),
    ("not allowed", ("the client's DN is not allowed by the remote libvirtd",
                     ("add this client's DN (virt-pki-query-dn {client_cert}) to tls_allowed_dn_list on the "
                      "remote libvirtd"))),
    ("certificate", ("TLS certificate verification failed",
                     ("check the CA ({ca_file}) and the client certificate ({client_cert}) here and the server "
                      "certificate there: issuer, validity dates, and that the server certificate's SANs contain the "
                      "URI's host name"))),
    ("authentication", (None, "check the SASL user/password or the ssh key for this URI")),
    ("connection refused", (None, ("libvirtd is not listening there: check libvirtd-tls.socket / "
                                   "libvirtd-tcp.socket on the remote host and the port in the URI"))),
    ("no route", (None, "the host is unreachable: check the network and the host name in the URI")),
    ("name or service not known", (None, "the host name does not resolve on this machine")),
    ("failed to connect socket", (None, "libvirtd is not running or the socket is not accessible")),
)


def _with_files(text: str | None, pki: ClientPKI) -> str | None:
    if text is None:
        return None
    return text.format(ca_file=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key)


def connection_diagnosis(libvirt_text: str, pki: ClientPKI = SYSTEM_PKI) -> tuple[str | None, str]:
    """The cause (None when libvirt's text says it well enough) and what to do next, from libvirt's text.

    ``pki`` names the files the client used, so the advice points at them.
    """
    lowered = libvirt_text.lower()
    for needle, (cause, hint) in CONNECTION_DIAGNOSES:
        if needle in lowered:
            return _with_files(cause, pki), _with_files(hint, pki) or ""
    return None, "check that libvirtd runs on that host and that this URI works with virsh -c"


def diagnose_failed_open(uri: str, role: str, libvirt_text: str) -> tuple[str | None, str]:
    """(cause or None, next step) for a connection libvirt could not open, naming the files in use."""
    try:
        parsed: LibvirtURI | None = parse_uri(uri, "dest_uri" if role == "destination" else "uri")
    except ValidationError:
        parsed = None
    tls = parsed is not None and parsed.effective_transport == "tls" and bool(parsed.host)
    pki = client_pki(parsed) if tls and parsed is not None else SYSTEM_PKI
    cause, hint = connection_diagnosis(libvirt_text, pki)
    if tls and parsed is not None and "failed to verify peer's certificate" in libvirt_text.lower():
        found = diagnose_server_certificate(parsed.host or "", parsed.effective_port or 16514, pki.ca_file)
        if found:
            cause, hint = found
    return cause, hint


def diagnose_server_certificate(host: str, port: int, ca_file: str, timeout: float = 10.0) -> tuple[str, str] | None:
    """Why the server certificate at host:port fails here: (cause, next step), or None.

    libvirt reports only "Failed to verify peer's certificate"; a TLS handshake of our own (no client
    certificate, nothing sent) tells an unknown CA or an expired certificate from a name that is not in
    the certificate's SANs. libvirtd asks for a client certificate: its refusal of ours (none) can end
    the handshake before it returns (TLS 1.3 sends it right after the client's Finished), but only
    once this side has verified the server's certificate, so it counts as "verified".
    """
    import ssl  # only a failed TLS open needs it: every other run starts without loading it

    for check_hostname in (False, True):
        try:
            context = ssl.create_default_context(cafile=ca_file)
            context.check_hostname = check_hostname
            with socket.create_connection((host, port), timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            if check_hostname:
                return (f"the server certificate does not name {host}: {reason}",
                        (f"use a host name or address that is in the server certificate's SANs in the URI, or add {host} "
                         "to them (libvirt_pki_server_dns_names / libvirt_pki_server_extra_sans) and reissue it"))
            if "expired" in reason:
                return f"the server certificate has expired: {reason}", RENEW_HINT + " on the remote host"
            return (f"the server certificate does not verify against {ca_file}: {reason}",
                    (f"issue the remote host's certificate from the CA in {ca_file} (libvirt_pki role), or install "
                     "the CA that signed it"))
        except ssl.SSLError:
            continue  # the server refused this client after its certificate passed this check
        except (OSError, ValueError):
            return None
    return None


# Every connection sends libvirt keepalives: a peer silent for KEEPALIVE_INTERVAL_SECONDS * (KEEPALIVE_COUNT + 1)
# seconds (a libvirtd stopped or hung, a link cut) is dropped by libvirt, and each call waiting on it fails.
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 2
# Opening has a deadline of its own: a libvirtd that is stopped still completes the TCP handshake (the kernel
# accepts for it), then never answers the TLS handshake or the first RPC; keepalive exists only once open. A
# libvirtd being restarted holds new connections for up to 30 s (it waits for running jobs before it exits).
CONNECT_TIMEOUT_SECONDS = 45.0
# Closing sends a last RPC; a peer that does not answer it is left behind after this long.
CLOSE_TIMEOUT_SECONDS = 2.0

Result = TypeVar("Result")


class NoAnswer(Exception):
    """A libvirt call did not return within its deadline: the host behind it does not answer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no answer within {seconds:g}s")


def call_within(seconds: float, call: Callable[[], Result],
                discard: Callable[[Result], Any] | None = None) -> Result:
    """``call()``'s result (or its exception), or NoAnswer once it has run ``seconds`` without returning.

    The call runs in a daemon thread: one that never returns is left behind and cannot hold the process.
    ``discard`` receives a result that arrives after the deadline (a connection opened too late, to close).
    """
    done = threading.Event()
    lock = threading.Lock()
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below, never swallowed
            box["error"] = exc
        with lock:
            done.set()
            late = box.get("abandoned", False)
        if late and discard is not None and "value" in box:
            discard(box["value"])

    threading.Thread(target=worker, name="virtops-bounded-call", daemon=True).start()
    done.wait(max(seconds, 0.0))
    with lock:
        if not done.is_set():
            box["abandoned"] = True
            raise NoAnswer(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


_event_loop_lock = threading.Lock()
_event_loop: list[threading.Thread] = []  # the one thread running libvirt's event loop, once started


def ensure_event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (once per process), before any connection opens.

    libvirt sends keepalives, and notices a peer that stopped answering them, only while an event loop runs.
    """
    with _event_loop_lock:
        if _event_loop:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run_events() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except libvirt.libvirtError:
                    threading.Event().wait(1.0)

        thread = threading.Thread(target=run_events, name="virtops-libvirt-events", daemon=True)
        thread.start()
        _event_loop.append(thread)


def start_keepalive(conn: Any) -> None:
    """Ask libvirt to probe the peer of ``conn`` and drop it when it stops answering."""
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL_SECONDS, KEEPALIVE_COUNT)
    except libvirt.libvirtError:
        return  # a peer without keepalive support: the deadlines of the steps that matter still hold


def open_connection(uri: str, role: str = "source", within: float | None = None, **context: Any) -> Any:
    """Open a read-write libvirt connection with keepalive; ConnectionFailed names the cause.

    The open gives up after ``within`` seconds (CONNECT_TIMEOUT_SECONDS by default).
    """
    ensure_event_loop()
    seconds = CONNECT_TIMEOUT_SECONDS if within is None else within
    try:
        conn = call_within(seconds, lambda: libvirt.open(uri), discard=close_quietly)
    except NoAnswer:
        raise ConnectionFailed(
            f"connect to {role}",
            f"cannot open {uri}: no answer within {seconds:g}s (the libvirt daemon there accepts connections "
            "but does not answer: stopped, hung or overloaded)",
            hint="check the libvirt daemon on that host (systemctl status libvirtd; is it stopped or stuck?), "
                 "then re-run", **context).with_context()
    except libvirt.libvirtError as exc:
        error = ConnectionFailed.from_libvirt(
            f"connect to {role}", exc, message=f"cannot open {uri}", **context
        )
        cause, error.hint = diagnose_failed_open(uri, role, error.libvirt_error or "")
        if cause:
            error.message = f"cannot open {uri}: {cause}"
        raise error.with_context()
    if conn is None:  # very old bindings returned None instead of raising
        raise ConnectionFailed(f"connect to {role}", f"cannot open {uri}", **context)
    start_keepalive(conn)
    return conn


def close_quietly(conn: Any, within: float = CLOSE_TIMEOUT_SECONDS) -> None:
    """Close a connection, ignoring errors (used on the way out); waits at most ``within`` seconds."""
    if conn is None:
        return
    try:
        call_within(within, conn.close)
    except Exception:  # noqa: BLE001 - closing must never mask the real error
        return
