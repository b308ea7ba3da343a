# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest plugin: the fault-injection and security tests write the table of what was tried.

A test marked ``@pytest.mark.fault_table(area=..., fault=..., expected=...)`` takes the
``observed`` fixture and calls it with what it saw (the module's message, where the guest
runs, the disk counter before and after). At the end of the session every marked test that
ran becomes a row (area, fault, expected, observed, held = the test passed and nothing failed
in its teardown) of ``build/fault-results/fault-results.{json,md}``. When the session covered every test file that
uses the marker and every marked test ran, the markdown is also written to
docs/fault-injection-results.md, the table the docs link to (a run of one file or one test
leaves that table alone).

Sessions that run side by side on labs of their own (``make test``) share one table: with
VIRTOPS_FAULT_TABLE_SHARDS naming a directory, each session leaves its rows and the tests it
collected there as ``<lab>.json``, and the table (and the coverage check) is the union of every
shard in it; the session that ends last writes the complete table. ``make test`` empties the
directory first.

A check made in a fixture's teardown counts for the rows of the tests that used that fixture:
when the teardown of a wider-scoped fixture fails (pytest reports it on whichever test ran
last), every marked test that requested the fixture is not held; a teardown failure that names
no fixture counts against the test it was reported on.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import time
from pathlib import Path
from types import CodeType, TracebackType

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "build" / "fault-results"
DOCS_TABLE = REPO / "docs" / "fault-injection-results.md"
MARKER = "fault_table"
SHARDS_ENV = "VIRTOPS_FAULT_TABLE_SHARDS"
ROWS_KEY = pytest.StashKey[dict]()
MARKED_KEY = pytest.StashKey[list]()
FIXTURE_CODES_KEY = pytest.StashKey[dict]()  # a fixture function's code -> the fixture's name and scope
FIXTURES_USED_KEY = pytest.StashKey[dict]()  # a marked test's node id -> the fixtures it requested


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(area, fault, expected): a row of the fault-injection results table")
    config.stash[ROWS_KEY] = {}
    config.stash[MARKED_KEY] = []
    config.stash[FIXTURE_CODES_KEY] = {}
    config.stash[FIXTURES_USED_KEY] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[MARKED_KEY] = [item.nodeid for item in items if item.get_closest_marker(MARKER)]


def files_using_the_marker() -> set[str]:
    here = Path(__file__).resolve().parent
    return {path.name for path in here.glob("test_*.py") if f"mark.{MARKER}" in path.read_text()}


def covers_the_whole_table(marked_tests: list[str], rows: list[dict]) -> bool:
    ran = {row["test"] for row in rows if row["held"] is not None}
    marked = set(marked_tests)
    files = {nodeid.split("::", 1)[0].rsplit("/", 1)[-1] for nodeid in marked}
    return ran == marked and files == files_using_the_marker()


def _row(item: pytest.Item) -> dict:
    rows = item.config.stash[ROWS_KEY]
    if item.nodeid not in rows:
        marker = item.get_closest_marker(MARKER)
        rows[item.nodeid] = {"test": item.nodeid, "area": marker.kwargs["area"], "fault": marker.kwargs["fault"],
                             "expected": marker.kwargs["expected"], "observed": [], "held": None}
    return rows[item.nodeid]


@pytest.fixture
def observed(request: pytest.FixtureRequest):
    """Call with a sentence of what the test saw; sentences accumulate in the row."""
    if request.node.get_closest_marker(MARKER) is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses `observed` without @pytest.mark.{MARKER}")
    row = _row(request.node)
    return row["observed"].append


def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    """Remember which function each fixture runs, to know a failing teardown's fixture by its frames."""
    code = fixture_code(fixturedef)
    if code is not None:
        request.config.stash[FIXTURE_CODES_KEY][code] = (fixturedef.argname, fixturedef.scope)


def fixture_code(fixturedef: pytest.FixtureDef) -> CodeType | None:
    func = fixturedef.func
    wrapped = getattr(func, "_get_wrapped_function", None)
    return getattr(inspect.unwrap(wrapped() if wrapped else func), "__code__", None)


def tracebacks(error: BaseException | None, seen: set[int] | None = None) -> list[TracebackType]:
    """The tracebacks of an error, of the errors it groups and of those it was raised from."""
    seen = set() if seen is None else seen
    if error is None or id(error) in seen:
        return []
    seen.add(id(error))
    found = [error.__traceback__] if error.__traceback__ is not None else []
    for inner in getattr(error, "exceptions", ()):
        found += tracebacks(inner, seen)
    return found + tracebacks(error.__cause__, seen) + tracebacks(error.__context__, seen)


def failing_fixtures(config: pytest.Config, error: BaseException) -> set[tuple[str, str]]:
    """The fixtures (name, scope) whose own code is on the traceback of a teardown error."""
    codes = config.stash[FIXTURE_CODES_KEY]
    names = set()
    for tb in tracebacks(error):
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                names.add(codes[tb.tb_frame.f_code])
            tb = tb.tb_next
    return names


def first_line(report: pytest.TestReport) -> str:
    text = report.longrepr.reprcrash.message if hasattr(report.longrepr, "reprcrash") else report.longrepr
    return (str(text).splitlines() or ["?"])[0][:300]


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def users_of(fixture: str, scope: str, item: pytest.Item) -> list[str]:
    """The marked tests that shared the instance of ``fixture`` torn down after ``item``."""
    if scope == "function":
        return [item.nodeid]
    used = item.config.stash[FIXTURES_USED_KEY]
    return [nodeid for nodeid, requested in used.items() if fixture in requested
            and (scope in ("session", "package") or module_of(nodeid) == module_of(item.nodeid))]


def teardown_failed(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> None:
    """Rows whose test used the fixture that failed in this teardown are not held."""
    config = item.config
    fixtures = failing_fixtures(config, call.excinfo.value) if call.excinfo is not None else set()
    affected = {nodeid for name, scope in fixtures for nodeid in users_of(name, scope, item)} or {item.nodeid}
    where = f"in the teardown of {', '.join(sorted(name for name, _scope in fixtures))}" if fixtures else "in teardown"
    rows = config.stash[ROWS_KEY]
    for nodeid in sorted(affected):
        row = rows.get(nodeid)
        if row is None or row["held"] is None:
            continue
        row["held"] = False
        row["observed"].append(f"FAILED {where}: {first_line(report)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" and report.failed:
        teardown_failed(item, call, report)
    if item.get_closest_marker(MARKER) is None:
        return
    row = _row(item)
    item.config.stash[FIXTURES_USED_KEY][item.nodeid] = set(getattr(item, "fixturenames", ()))
    if report.when == "call" or (report.when == "setup" and not report.passed):
        row["held"] = report.passed and not report.skipped
        if report.skipped:
            row["held"] = None
            row["observed"].append("skipped")
        elif report.failed:
            row["observed"].append("FAILED: " + first_line(report))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict], machine: str) -> str:
    held = sum(1 for row in rows if row["held"])
    lines = [
        "# Fault-injection and security results",
        "",
        "Generated by the lab integration suite (`make test`, tests marked `fault_table`); do not edit by hand.",
        f"Machine: {machine}. {held} of {len(rows)} cases held.",
        "",
        "Every migration fault asserts the same outcome: the guest runs exactly once, it is defined on exactly",
        "one host when persistence was asked, the counter it writes to its NFS-backed disk goes on advancing",
        "past the value read before the fault (the rest of the disk unchanged), and the error names the cause.",
        "",
        "| area | fault | expected | observed | held |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        mark = {True: "yes", False: "**NO**", None: "not run"}[row["held"]]
        lines.append(f"| {_cell(row['area'])} | {_cell(row['fault'])} | {_cell(row['expected'])} | "
                     f"{_cell(' '.join(row['observed']) or '-')} | {mark} |")
    return "\n".join(lines) + "\n"


def test_file(row: dict) -> str:
    return module_of(row["test"])


def merged_with_shards(rows: list[dict], marked: list[str]) -> tuple[list[dict], list[str]]:
    """This session's rows and marked tests joined with those of the sessions beside it (see the docstring)."""
    directory = os.environ.get(SHARDS_ENV)
    if not directory:
        return rows, marked
    shards = Path(directory)
    shards.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("VIRTOPS_LAB_NAME") or f"session-{os.getpid()}"
    (shards / f"{name}.json").write_text(json.dumps({"rows": rows, "marked": marked}, indent=2) + "\n")
    all_rows, all_marked = [], []
    for path in sorted(shards.glob("*.json")):
        shard = json.loads(path.read_text())
        all_rows += shard["rows"]
        all_marked += shard["marked"]
    return sorted(all_rows, key=test_file), all_marked


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    rows, marked = merged_with_shards(list(config.stash[ROWS_KEY].values()), config.stash[MARKED_KEY])
    if not rows:
        return
    machine = f"{platform.node()} {platform.machine()}, {time.strftime('%Y-%m-%d', time.gmtime())}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "fault-results.json").write_text(json.dumps(rows, indent=2) + "\n")
    markdown = render_markdown(rows, machine)
    (RESULTS_DIR / "fault-results.md").write_text(markdown)
    if covers_the_whole_table(marked, rows):
        DOCS_TABLE.parent.mkdir(parents=True, exist_ok=True)
        DOCS_TABLE.write_text(markdown)
