# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:
    # Source and destination connections (migrate, evacuate).
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the source hypervisor.
      - The default, V(qemu:///system), means the task runs on the source host (delegate it there).
      - A remote URI (V(qemu+tls://hv1.example.com/system), V(qemu+ssh://root@hv1/system), V(qemu+tcp://hv1/system)
        with SASL) lets the task run elsewhere; the client certificates, SSH keys or SASL credentials of the
        user running the module are used.
    type: str
    default: qemu:///system
  dest_uri:
    description:
      - libvirt connection URI of the destination hypervisor, for example V(qemu+tls://hv2.example.com/system).
      - Must name another host. Malformed, local (V(qemu:///system), V(localhost), loopback, V(+unix)) and
        same-host URIs are refused before anything is touched.
      - With O(p2p=true) the source libvirtd connects to this URI itself, so it must also work from the
        source host (TLS certificates and DN allow list of the destination).
      - The module itself also opens it, to reconcile by UUID and to run the preflight checks.
    type: str
    required: true
"""

    # Only the connection to the host that runs the domain (migration_job).
    SOURCE = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor that runs the domain (the migration source).
      - The default, V(qemu:///system), means the task runs on that host.
    type: str
    default: qemu:///system
"""
