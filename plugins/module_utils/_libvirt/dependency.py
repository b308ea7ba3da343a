# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Guarded import of libvirt-python.

Modules must import cleanly without libvirt (``ansible-test sanity`` import
test) and report ``missing_required_lib('libvirt-python')`` with the original
traceback before doing any work.
"""

from __future__ import annotations

import traceback

try:
    import libvirt  # pylint: disable=unused-import  # re-exported: modules import it from here
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None

LIBVIRT_LIBRARY_NAME = "libvirt-python (Debian: python3-libvirt)"
