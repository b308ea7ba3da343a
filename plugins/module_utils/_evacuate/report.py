# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The evacuation report and progress files: rendering and atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    RESUME_SOURCE,
    describe_pause,
)

FILE_MODE = 0o640
DIR_MODE = 0o750

REPORT_COLUMNS = (
    ("VM", "name"),
    ("FROM", "from"),
    ("TO", "to"),
    ("MODE", "mode"),
    ("RESULT", "result"),
    ("TIME", "seconds"),
    ("DOWNTIME", "downtime_ms"),
    ("DATA SENT", "data_sent_bytes"),
)


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _cell(key: str, row: Mapping[str, Any]) -> str:
    value = row.get(key)
    if value is None or value == "":
        return "-"
    if key == "seconds":
        return f"{float(value):.1f} s"
    if key == "downtime_ms":
        return f"{int(value)} ms"
    if key == "data_sent_bytes":
        return human_bytes(int(value))
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows as aligned text lines: a header, a rule, one line per VM."""
    table = [[title for title, _key in REPORT_COLUMNS]]
    table += [[_cell(key, row) for _title, key in REPORT_COLUMNS] for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(REPORT_COLUMNS))]
    lines = ["  ".join(text.ljust(widths[i]) for i, text in enumerate(line)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def render_text(report: Mapping[str, Any]) -> str:
    """The whole report as readable text: heading, table, summary, messages."""
    summary = report.get("summary", {})
    rows = report.get("vms", [])
    mode = " - CHECK MODE, nothing moved" if report.get("check_mode") else ""
    heading = "Evacuation of {} ({}){}".format(report.get("source_name") or "?", report.get("source_uri") or "?", mode)
    lines = [heading, "=" * len(heading), ""]
    lines += render_table(rows) if rows else ["(no guests to move: the host is empty)"]
    lines.append("")
    counts = ", ".join(f"{count} {name}" for name, count in summary.get("by_result", {}).items())
    lines.append("Total {} guest(s){}; {:.1f} s".format(summary.get("total", 0), f": {counts}" if counts else "",
                                                        float(summary.get("seconds", 0.0))))
    notes = [note for note in (_note(row) for row in rows) if note]
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines) + "\n"


def _note(row: Mapping[str, Any]) -> str | None:
    """The line the report adds under the table for ``row``: its problem, or that it was re-placed."""
    parts = []
    if row.get("pause_reason") and row.get("result") not in ("left", "unplaceable", "not_started"):
        parts.append(paused_note(row))
    if row.get("re_placed_from"):
        parts.append("re-placed from {} (lost during the run)".format(", ".join(row["re_placed_from"])))
    if row.get("message") and row.get("result") not in ("migrated", "unchanged"):
        parts.append(str(row["message"]))
    return "{}: {}".format(row.get("name"), "; ".join(parts)) if parts else None


def paused_note(row: Mapping[str, Any]) -> str:
    """What became of a guest found paused: resumed (a migration had paused it) or moved paused."""
    planned = row.get("result") == "planned"
    pause = describe_pause(str(row["pause_reason"]))
    if RESUME_SOURCE in str(row.get("action") or ""):
        return "{}: {} on the source, then migrated".format(pause, "to be resumed" if planned else "resumed")
    return "{}: {} paused; it stays paused on {}".format(pause, "moves" if planned else "moved", row.get("to") or "?")


def write_atomic(path: str, text: str, mode: int = FILE_MODE) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def render_report(report: Mapping[str, Any], report_format: str) -> str:
    if report_format == "text":
        return render_text(report)
    return json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
