"""TLS probes against libvirtd, run from the controller.

  tls_probe.py URI
      Open the libvirt URI; print the remote hostname (exit 0) or libvirt's
      error text (exit 3).
  tls_probe.py --raw ADDRESS PORT PKIDIR
      TLS handshake with PKIDIR's client certificate and key, trusting
      PKIDIR's cacert.pem, then wait for libvirtd's one-byte confirmation that
      it accepted the client certificate. Exit 0 when confirmed, 3 when the
      server refused. Unlike the libvirt client, this does not check its own
      certificate first, so a certificate from another CA reaches the server.
"""

import socket
import ssl
import sys

import libvirt


def open_uri(uri: str) -> int:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as err:
        print(err.get_error_message())
        return 3
    try:
        print(conn.getHostname())
    finally:
        conn.close()
    return 0


def raw_handshake(address: str, port: int, pkidir: str) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(f"{pkidir}/cacert.pem")
    context.load_cert_chain(f"{pkidir}/clientcert.pem", f"{pkidir}/clientkey.pem")
    with socket.create_connection((address, port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                confirmation = tls.recv(1)
        except (ssl.SSLError, OSError) as err:
            print(f"refused: {err}")
            return 3
    if confirmation == b"\x01":
        print("accepted")
        return 0
    print(f"refused: confirmation {confirmation!r}")
    return 3


def main() -> int:
    if sys.argv[1] == "--raw":
        return raw_handshake(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    return open_uri(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
