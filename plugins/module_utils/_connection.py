# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""libvirt connection URIs and connections.

URI form (libvirt docs/uri.rst):
``driver[+transport]://[user@][host][:port]/[path][?extra]``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ansible_collections.virtops.migration.plugins.module_utils._errors import (
    ConnectionFailed,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt_dep import (
    libvirt,
)

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


CONNECTION_HINTS = (
    ("certificate", ("check the CA (/etc/pki/CA/cacert.pem) and the client/server certificates: "
     "issuer, validity dates, and that the server certificate's SANs contain the URI's host name")),
    ("not allowed", "add this client's certificate DN to tls_allowed_dn_list on the remote libvirtd"),
    ("expired", "renew the expired certificate (libvirt_pki role)"),
    ("authentication", "check the SASL user/password or the ssh key for this URI"),
    ("connection refused", ("libvirtd is not listening there: check libvirtd-tls.socket / "
     "libvirtd-tcp.socket on the remote host and the port in the URI")),
    ("no route", "the host is unreachable: check the network and the host name in the URI"),
    ("name or service not known", "the host name does not resolve on this machine"),
    ("failed to connect socket", "libvirtd is not running or the socket is not accessible"),
)


def connection_hint(libvirt_text: str) -> str:
    """Pick what-to-do-next advice for a failed connection from libvirt's text."""
    lowered = libvirt_text.lower()
    for needle, hint in CONNECTION_HINTS:
        if needle in lowered:
            return hint
    return "check that libvirtd runs on that host and that this URI works with virsh -c"


def open_connection(uri: str, role: str = "source", **context: Any) -> Any:
    """Open a read-write libvirt connection; ConnectionFailed names the cause."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        error = ConnectionFailed.from_libvirt(
            f"connect to {role}", exc, message=f"cannot open {uri}", **context
        )
        error.hint = connection_hint(error.libvirt_error or "")
        raise error.with_context()
    if conn is None:  # very old bindings returned None instead of raising
        raise ConnectionFailed(f"connect to {role}", f"cannot open {uri}", **context)
    return conn


def close_quietly(conn: Any) -> None:
    """Close a connection, ignoring errors (used on the way out)."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing must never mask the real error
        return
