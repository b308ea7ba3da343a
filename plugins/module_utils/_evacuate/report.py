# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The evacuation's result and report: built from the run's values, rendered as text or JSON, written atomically.

Each guest has a row (``guest_row``), filled in when its turn ends (``outcome_fields``); the module
result holds the rows with the migrate result of each guest (``details``), the report the same
rows without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.cancel import (
    CancelRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.files import (
    write_atomic,
    write_kept,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.outcomes import (
    CANCELLED,
    FINISHED,
    LEFT,
    MIGRATED,
    NOT_STARTED,
    ON_DESTINATION_RESULTS,
    PLANNED,
    PROBLEM_RESULTS,
    UNCHANGED,
    UNPLACEABLE,
    GuestOutcome,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    PlacementPlan,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    CANCEL_DURING_POSTCOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    RESUME_SOURCE,
    describe_pause,
)

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
    heading = "{} of {} ({}){}".format(report.get("operation") or "Evacuation", report.get("source_name") or "?",
                                       report.get("source_uri") or "?", mode)
    lines = [heading, "=" * len(heading), ""]
    lines += render_table(rows) if rows else ["(no guests to move: the host is empty)"]
    lines.append("")
    counts = ", ".join(f"{count} {name}" for name, count in summary.get("by_result", {}).items())
    lines.append("Total {} guest(s){}; {:.1f} s".format(summary.get("total", 0), f": {counts}" if counts else "",
                                                        float(summary.get("seconds", 0.0))))
    if report.get("run_id"):
        lines.append("Run {} at {}".format(report["run_id"], report.get("time") or "?"))
    notes = [note for note in (_note(row) for row in rows) if note]
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines) + "\n"


def _note(row: Mapping[str, Any]) -> str | None:
    """The line the report adds under the table for ``row``: its problem, or that it was re-placed."""
    parts = []
    if row.get("pause_reason") and row.get("result") not in (LEFT, UNPLACEABLE, NOT_STARTED, CANCELLED):
        parts.append(paused_note(row))
    if row.get("re_placed_from"):
        parts.append("re-placed from {} (lost during the run)".format(", ".join(row["re_placed_from"])))
    if row.get("message") and (row.get("result") not in (MIGRATED, UNCHANGED) or row["message"] == CANCEL_DURING_POSTCOPY):
        parts.append(str(row["message"]))
    return "{}: {}".format(row.get("name"), "; ".join(parts)) if parts else None


def paused_note(row: Mapping[str, Any]) -> str:
    """What became of a guest found paused: resumed (a migration had paused it) or moved paused."""
    planned = row.get("result") == PLANNED
    pause = describe_pause(str(row["pause_reason"]))
    if RESUME_SOURCE in str(row.get("action") or ""):
        return "{}: {} on the source, then migrated".format(pause, "to be resumed" if planned else "resumed")
    return "{}: {} paused; it stays paused on {}".format(pause, "moves" if planned else "moved", row.get("to") or "?")


def render_report(report: Mapping[str, Any], report_format: str) -> str:
    if report_format == "text":
        return render_text(report)
    return json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"


# -- rows ----------------------------------------------------------------------


def guest_row(name: str, uuid: str, source: str, destination: str | None, mode: str, memory_mib: int,
              result: str, message: str | None, reason: str | None, pause_reason: str | None = None) -> dict[str, Any]:
    """One guest's row of the result and the report, before any migration filled it in."""
    return {"name": name, "uuid": uuid, "from": source, "to": destination, "mode": mode, "memory_mib": memory_mib,
            "result": result, "changed": False, "action": None, "seconds": None, "downtime_ms": None,
            "data_sent_bytes": None, "message": message, "reason": reason, "re_placed_from": [],
            "pause_reason": pause_reason, "details": {}}


def outcome_fields(outcome: GuestOutcome) -> dict[str, Any]:
    """What a guest's outcome sets in its row: result, message, the migrate result and its measurements."""
    migration = dict(outcome.migration)
    fields: dict[str, Any] = {"result": outcome.result, "message": outcome.message,
                              "changed": bool(migration.get("changed")), "action": migration.get("action"),
                              "details": migration}
    timings = migration.get("timings") or {}
    if "total" in timings:
        fields["seconds"] = timings["total"]
    stats = migration.get("stats") or {}
    if stats:
        fields["downtime_ms"] = stats.get("downtime")
        fields["data_sent_bytes"] = stats.get("data_processed")
    return fields


# -- the result ----------------------------------------------------------------


@dataclass(frozen=True)
class EvacuationFacts:
    """What the result tells besides the rows: the source, the plan, the files, the warnings, the time."""

    source_name: str
    source_uri: str
    check_mode: bool
    plan: PlacementPlan
    filtered: list[str]
    warnings: list[str]
    report_path: str | None
    progress_path: str | None
    seconds: float
    run_id: str | None = None
    time: str | None = None
    cancel: CancelRequest | None = None
    """The operator's cancel request the run saw while it ran (None: not cancelled)."""


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    by_result: dict[str, int] = {}
    for row in rows:
        by_result[row["result"]] = by_result.get(row["result"], 0) + 1
    return {"total": len(rows), "by_result": by_result, "seconds": seconds,
            "changed": sum(1 for row in rows if row["changed"]),
            "problems": sum(by_result.get(result, 0) for result in PROBLEM_RESULTS)}


def evacuation_result(facts: EvacuationFacts, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The module result: ``failed`` set when the host is not (or, in check mode, would not be) emptied."""
    summary = summarize(rows, facts.seconds)
    report_rows = [{key: value for key, value in row.items() if key != "details"} for row in rows]
    report = {"source_name": facts.source_name, "source_uri": facts.source_uri, "check_mode": facts.check_mode,
              "summary": summary, "vms": report_rows, "run_id": facts.run_id, "time": facts.time}
    message = failure_message(rows, facts.check_mode)
    if facts.cancel is not None:
        message = cancelled_message(rows, facts.cancel)
    return {
        # a plan that would fail changes nothing: the run it predicts is refused
        "changed": summary["changed"] > 0 and not (facts.check_mode and message is not None),
        "check_mode": facts.check_mode,
        "source": {"uri": facts.source_uri, "name": facts.source_name},
        "destinations": [load.as_dict() for load in facts.plan.loads],
        "plan": facts.plan.as_list(),
        "vms": rows,
        "filtered_out": list(facts.filtered),
        "summary": summary,
        "report": report,
        "report_lines": render_table(report_rows),
        "report_text": render_text(report),
        "report_path": facts.report_path,
        "progress_path": facts.progress_path,
        "warnings": list(facts.warnings),
        "placement": placement(rows, facts.source_name),
        "failed": message is not None,
        "msg": message or done_message(rows, facts.check_mode),
        **({"cancelled": True} if facts.cancel is not None else {}),
    }


def placement(rows: list[dict[str, Any]], source_name: str) -> dict[str, dict[str, str | None]]:
    """Each guest's host before and after (a guest not moved stays where its row says it was, by default the source)."""
    before = {row["name"]: row.get("from") or source_name for row in rows}
    return {"before": before,
            "after": {row["name"]: row["to"] if row["result"] in ON_DESTINATION_RESULTS else before[row["name"]]
                      for row in rows}}


def failure_message(rows: list[dict[str, Any]], check_mode: bool) -> str | None:
    """Why the evacuation did not (or, in check mode, would not) empty the host; None when it did."""
    problems = [row for row in rows if row["result"] in PROBLEM_RESULTS]
    if not problems:
        return None
    verb = "would not be moved" if check_mode else "were not moved"
    names = "; ".join("{} ({}: {})".format(row["name"], row["result"], row["message"] or row["reason"]) for row in problems)
    unplaceable = [row for row in problems if row["result"] == UNPLACEABLE]
    prefix = "the guests cannot all be placed: " if unplaceable else ""
    return f"{prefix}{len(problems)} guest(s) {verb}: {names}"


def cancelled_message(rows: list[dict[str, Any]], cancel: CancelRequest) -> str:
    """Why a cancelled run ended: the request, then what became of the moves (and any other problem)."""
    moved = [row for row in rows if row["result"] in (MIGRATED, FINISHED)]
    stopped = [row for row in rows if row["result"] == CANCELLED]
    aborted = sum(1 for row in stopped if row["details"].get("cancelled"))
    in_postcopy = sum(1 for row in moved if row["message"] == CANCEL_DURING_POSTCOPY)
    finished_note = f" ({in_postcopy} in post-copy when the cancel came: left to finish)" if in_postcopy else ""
    message = (f"cancelled by the operator ({cancel.describe()}): {len(moved)} moved{finished_note}, {aborted} aborted, "
               f"{len(stopped) - aborted} not started")
    others = failure_message([row for row in rows if row["result"] != CANCELLED], check_mode=False)
    return f"{message}; besides, {others}" if others else message


def done_message(rows: list[dict[str, Any]], check_mode: bool) -> str:
    if not rows:
        return "nothing to evacuate: the host is empty"
    return "{} guest(s) {}".format(len(rows), "planned" if check_mode else "handled")


def write_report(result: dict[str, Any], path: str, report_format: str, run_id: str | None = None) -> dict[str, Any]:
    """Write the report to ``path``; the result, with a warning (and no report_path) when that failed.

    With ``run_id`` the run's report is kept apart (``write_kept``): ``report_path`` in the result is the run's
    own file, and ``path`` (unless a directory) a link to the latest.
    """
    try:
        if run_id is None:
            write_atomic(path, render_report(result["report"], report_format))
        else:
            stem = "evacuate-{}".format(result["source"]["name"])
            extension = ".txt" if report_format == "text" else ".json"
            own = write_kept(path, render_report(result["report"], report_format), run_id, stem, extension)
            return {**result, "report_path": own}
    except OSError as exc:
        return {**result, "report_path": None,
                "warnings": [*result["warnings"], f"cannot write the report {path}: {exc}"]}
    return result
