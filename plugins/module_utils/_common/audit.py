# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The audit log: one JSON line per state-changing action, on the host that acted.

A line is written with one ``write`` on a descriptor opened with ``O_APPEND``,
under a lock within the process (the evacuation's workers are threads) and an
``flock`` across processes (two module runs on one host), so lines never
interleave.  The file is created with mode 0640, its directory with 0750.

Nothing secret reaches the log: URIs lose their user information and query
(``qemu+ssh://admin:pw@hv2/system?keyfile=...`` is written ``qemu+ssh://hv2/system``),
URIs inside messages lose their user information, and flags are names only
(``bandwidth=100`` is written ``bandwidth``).

``append_audit`` never raises: the move it records has happened, so a log
that cannot be written is a warning in the module's result, not a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_AUDIT_LOG = "/var/log/virtops-migration/audit.jsonl"
RECORD_VERSION = 1
ACTIONS = ("migrate", "evacuate", "restore", "roll", "abort", "postcopy", "tune")
FILE_MODE = 0o640
DIRECTORY_MODE = 0o750

# Errors that refuse a run before it tries anything: not an action, no record.
NOT_TRIED_KINDS = ("validation", "in_progress")
# The migration options an audit record names when they are on (or set): names only, never values.
SWITCH_OPTIONS = ("live", "persistent", "undefine_source", "p2p", "tunnelled", "tls", "auto_converge", "post_copy")
VALUE_OPTIONS = ("bandwidth", "postcopy_bandwidth", "max_downtime", "timeout", "compression", "parallel_connections",
                 "migrate_disks", "xml", "persistent_xml", "dest_name", "migrate_uri", "listen_address",
                 "tls_destination")

_IN_PROCESS = threading.Lock()
_URI_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_FLAG_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class AuditRecord:
    """One action on one guest (or one run's summary, ``guest_name`` None).

    ``started_at`` and ``finished_at`` are ISO 8601 UTC (``iso_utc``): for a
    move they bound the time the guest could be on both hosts.
    """

    action: str
    run_id: str
    guest_name: str | None
    guest_uuid: str | None
    source: str | None
    destination: str | None
    flags: tuple[str, ...]
    result: str
    started_at: str
    finished_at: str
    duration_s: float | None
    downtime_ms: int | None = None
    message: str | None = None


def new_run_id(clock: Any = time.time) -> str:
    """A run id that sorts by time and is safe in a file name: ``20261201T143901Z-1a2b3c4d``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{stamp}-{secrets.token_hex(4)}"


def iso_utc(epoch: float) -> str:
    """``epoch`` as ISO 8601 UTC with milliseconds: ``2026-12-01T14:39:01.123Z``."""
    whole = int(epoch)
    millis = round((epoch - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def public_uri(uri: str | None) -> str | None:
    """``uri`` without user information, query or fragment; text that is no URI only loses ``user@``."""
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return scrub_text(uri)
    if not parts.scheme or "://" not in uri:
        return scrub_text(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def scrub_text(text: str | None) -> str | None:
    """``text`` with the user information of every URI in it removed."""
    if text is None:
        return None
    return _URI_USERINFO.sub(r"\1", text)


def flag_names(flags: Any) -> tuple[str, ...]:
    """Names only: ``bandwidth=100`` becomes ``bandwidth``; characters outside a name are dropped."""
    names = []
    for flag in flags or ():
        name = _FLAG_NAME.sub("", str(flag).split("=", 1)[0].split(":", 1)[0])
        if name and name not in names:
            names.append(name)
    return tuple(names)


def option_flags(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the migration options that are on or set (``offline`` when not live); never their values."""
    names = [name for name in SWITCH_OPTIONS if options.get(name) is True]
    if options.get("live") is False:
        names.append("offline")
    if options.get("copy_storage") not in (None, "none"):
        names.append("copy_storage")
    names += [name for name in VALUE_OPTIONS if options.get(name) not in (None, "", [], ())]
    return tuple(names)


def audit_log_argument_spec() -> dict[str, Any]:
    """The ``audit_log`` option of every module that changes state (doc fragment ``virtops.migration._audit``)."""
    return {"audit_log": {"type": "path", "default": DEFAULT_AUDIT_LOG}}


def was_tried(error_kind: str | None) -> bool:
    """Whether a failed run tried something (and is recorded): a refusal of the input or of a busy domain is not."""
    return error_kind not in NOT_TRIED_KINDS


def acting_user() -> dict[str, str | None]:
    """The effective user, and SUDO_USER when set (who ran ``sudo`` or Ansible's ``become``)."""
    uid = os.geteuid()
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        name = str(uid)
    return {"user": name, "sudo_user": os.environ.get("SUDO_USER") or None}


def record_dict(record: AuditRecord, logged_at: float, user: dict[str, str | None], host: str) -> dict[str, Any]:
    """The line's fields, scrubbed, in a fixed order."""
    return {
        "version": RECORD_VERSION,
        "time": iso_utc(logged_at),
        "host": host,
        **user,
        "action": record.action,
        "run_id": record.run_id,
        "result": record.result,
        "guest_name": record.guest_name,
        "guest_uuid": record.guest_uuid,
        "source": public_uri(record.source),
        "destination": public_uri(record.destination),
        "flags": list(flag_names(record.flags)),
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_s": None if record.duration_s is None else round(float(record.duration_s), 3),
        "downtime_ms": None if record.downtime_ms is None else int(record.downtime_ms),
        "message": scrub_text(record.message),
    }


def audit_line(record: AuditRecord, logged_at: float, user: dict[str, str | None], host: str) -> bytes:
    """One JSON object and a newline, ASCII only (so a line is one write of known bytes)."""
    return (json.dumps(record_dict(record, logged_at, user, host), sort_keys=False) + "\n").encode("ascii")


def _ensure_directory(directory: str) -> None:
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)


def _open_for_append(path: str) -> int:
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away
    return fd


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # a short write (full disk, signal): the rest, still under the lock
        data = data[written:]
        written = os.write(fd, data)


def append_audit(path: str | None, record: AuditRecord, clock: Any = time.time) -> str | None:
    """Append ``record`` to the log at ``path``; None or empty ``path``: the log is off.

    Returns None when written (or off), else a warning for the module's result.
    """
    if not path:
        return None
    try:
        line = audit_line(record, clock(), acting_user(), socket.gethostname())
        with _IN_PROCESS:
            _ensure_directory(os.path.dirname(path))
            fd = _open_for_append(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _write_all(fd, line)
            finally:
                os.close(fd)  # releases the flock
    except Exception as err:  # noqa: BLE001 - the action it records is done; a log failure must not fail it
        return (f"audit log {path}: the {record.action} record of {record.guest_name or 'the run'} "
                f"(run {record.run_id}) was not written: {type(err).__name__}: {scrub_text(str(err))}")
    return None


@dataclass(frozen=True)
class AuditTrail:
    """Where one run's records go: its log (None: off) and its run id; ``clock`` gives wall-clock seconds."""

    path: str | None
    run_id: str
    clock: Callable[[], float] = time.time

    def record(self, action: str, started: float, result: str, *, guest_name: str | None = None,
               guest_uuid: str | None = None, source: str | None = None, destination: str | None = None,
               flags: tuple[str, ...] = (), downtime_ms: int | None = None,
               message: str | None = None) -> AuditRecord:
        """The record of an action that started at ``started`` (clock seconds) and finishes now."""
        finished = self.clock()
        return AuditRecord(action=action, run_id=self.run_id, guest_name=guest_name, guest_uuid=guest_uuid,
                           source=source, destination=destination, flags=tuple(flags), result=result,
                           started_at=iso_utc(started), finished_at=iso_utc(finished),
                           duration_s=round(max(0.0, finished - started), 3), downtime_ms=downtime_ms,
                           message=message)

    def append(self, record: AuditRecord) -> str | None:
        """Append ``record`` (see ``append_audit``); a warning when it could not be written."""
        return append_audit(self.path, record, self.clock)

    @property
    def written_to(self) -> str | None:
        """What a module returns as ``audit_log``: the log, or None when it is off."""
        return self.path or None


class MoveTrail:
    """The records of a run's guest moves, made by its worker threads: ``started`` then ``finished`` per move.

    A move's record is written when it finishes, with the time it started: the two bound the time the
    guest could be on both hosts. A move that never started (refused, unplaceable) has no record.
    """

    def __init__(self, trail: AuditTrail, action: str) -> None:
        self.trail = trail
        self.action = action
        self.lock = threading.Lock()
        self.starts: dict[str, float] = {}

    def started(self, uuid: str) -> None:
        with self.lock:
            self.starts[uuid] = self.trail.clock()

    def finished(self, uuid: str, result: str, **fields: Any) -> str | None:
        """Write the move's record (``fields`` as ``AuditTrail.record`` takes them); a warning when it was not."""
        with self.lock:
            started = self.starts.pop(uuid, None)
        if started is None or not self.trail.path:
            return None
        return self.trail.append(self.trail.record(self.action, started, result, guest_uuid=uuid, **fields))


def downtime_of(migration: Mapping[str, Any]) -> int | None:
    """The downtime libvirt measured (ms) in a migrate result's ``stats``; None when it did not say."""
    downtime = (migration.get("stats") or {}).get("downtime")
    return None if downtime is None else int(downtime)


def read_audit(path: str) -> list[dict[str, Any]]:
    """Every record of the log at ``path``, oldest first (a line that is not JSON is skipped)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for text in handle:
            try:
                records.append(json.loads(text))
            except ValueError:
                continue
    return records
