# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Record where an evacuated guest came from, in its own metadata, before it moves.

Just before a guest's migration starts, the evacuated host's name (``virConnectGetHostname``,
the name evacuation and restore both use) and host UUID, the run id when the run has one, and
the time are written as the ``<origin>`` of the guest's metadata element (``_libvirt/metadata.py``),
live when it runs and in its definition when it is persistent. The element moves with the guest,
so a restore finds the guest's home from the guest alone, even when the controller that ran the
evacuation is gone.

``origin_to_record`` decides, on values:

=================================  =====================================================
the guest already holds            written
=================================  =====================================================
no origin                          this host, this run, now
an origin (any host)               nothing: the first origin is kept. The guest left its home
                                   in an earlier evacuation (an interrupted one re-run, or its
                                   current host is being evacuated before the restore): the
                                   home is that earlier host, not this intermediate one
=================================  =====================================================

Check mode writes nothing. A record that cannot be written does not stop the move: the guest's
row carries a warning (a restore then leaves that guest where it is and reports it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    iso_utc,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    close_quietly,
    open_connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    host_uuid_of,
    lookup_by_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    Origin,
    read_guest_metadata,
    with_origin,
    write_guest_metadata,
)


def origin_to_record(held: Origin | None, leaving: Origin) -> Origin | None:
    """The origin to write before a guest leaves ``leaving.host``; None: keep the one it holds."""
    return leaving if held is None else None


def record_origin(source_uri: str, guest_uuid: str, run_id: str | None = None,
                  connect: Callable[..., Any] = open_connection,
                  clock: Callable[[], float] = time.time) -> str | None:
    """Write the guest's origin on the source host unless it holds one; a warning when it could not."""
    conn = None
    try:
        conn = connect(source_uri, "source", source_uri=source_uri)
        dom = lookup_by_uuid(conn, guest_uuid)
        if dom is None:
            return None  # not on the source any more: its migration reconciles where it is
        meta = read_guest_metadata(dom)
        leaving = Origin(host=str(conn.getHostname()), host_uuid=host_uuid_of(conn), run_id=run_id,
                         time=iso_utc(clock()))
        origin = origin_to_record(meta.origin, leaving)
        if origin is not None:
            write_guest_metadata(dom, with_origin(meta, origin), persistent=bool(dom.isPersistent()))
        return None
    except MigrationError as error:
        return not_recorded(error.message if error.kind == "validation" else str(error))
    except libvirt.libvirtError as exc:
        return not_recorded(libvirt_error_text(exc))
    finally:
        close_quietly(conn)


def not_recorded(why: str) -> str:
    return (f"its origin was not recorded in its metadata ({why}); a restore will not know its home: "
            "move it back by hand, or set the origin with virsh metadata")


def migrate_recording_origin(migrate_guest: Callable[[Any, bool], Mapping[str, Any]], request: Any,
                             check_mode: bool, run_id: str | None = None,
                             record: Callable[..., str | None] = record_origin) -> Mapping[str, Any]:
    """Record ``request``'s guest's origin (not in check mode), then run its migration.

    ``request`` is the guest's MigrationRequest (its ``uri`` is the evacuated host). A warning
    about the record joins the migration result's own ``warnings``.
    """
    warning = None if check_mode else record(request.uri, request.uuid, run_id)
    result = migrate_guest(request, check_mode)
    if warning is None:
        return result
    return {**result, "warnings": [*(result.get("warnings") or []), warning]}
