# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault_table plugin: a row holds only when its test and the teardowns it relies on passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INTEGRATION = Path(__file__).resolve().parents[2] / "integration"

SUITE = '''
import pytest

MARK = pytest.mark.fault_table(area="a", fault="f", expected="e")


@pytest.fixture(scope="module")
def shared_run():
    yield "run"
    assert False, "the run left hv3 changed"


@pytest.fixture
def own_cleanup():
    yield
    assert False, "the guest was left behind"


@MARK
def test_uses_the_run(shared_run, observed):
    observed("saw the run")


@MARK
def test_uses_the_run_too(shared_run, observed):
    observed("saw it too")


@MARK
def test_cleans_up_badly(own_cleanup, observed):
    observed("cleaned")


@MARK
def test_alone(observed):
    observed("alone")


def test_unmarked_last():
    pass
'''


@pytest.fixture
def table(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.syspath_prepend(str(INTEGRATION))
    import fault_table

    monkeypatch.setattr(fault_table, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(fault_table, "DOCS_TABLE", tmp_path / "docs.md")
    pytester.makeconftest('pytest_plugins = ["fault_table"]\n')
    return tmp_path


def rows_of(results: Path) -> dict[str, dict]:
    rows = json.loads((results / "results" / "fault-results.json").read_text())
    return {row["test"].split("::")[-1]: row for row in rows}


def test_a_failing_module_teardown_marks_every_test_that_used_the_fixture(pytester, table):
    pytester.makepyfile(test_suite=SUITE)
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    run.assert_outcomes(passed=5, errors=2)
    rows = rows_of(table)
    assert rows["test_uses_the_run"]["held"] is False
    assert rows["test_uses_the_run_too"]["held"] is False
    assert "FAILED in the teardown of shared_run: AssertionError: the run left hv3 changed" in \
        rows["test_uses_the_run"]["observed"][-1]
    assert rows["test_cleans_up_badly"]["held"] is False
    assert "the guest was left behind" in rows["test_cleans_up_badly"]["observed"][-1]
    assert rows["test_alone"]["held"] is True
    assert rows["test_alone"]["observed"] == ["alone"]
    assert "1 of 4 cases held" in (table / "results" / "fault-results.md").read_text()


def test_rows_hold_when_body_and_teardowns_pass(pytester, table):
    pytester.makepyfile(test_suite=SUITE.replace('assert False, "the run left hv3 changed"', "pass")
                        .replace('assert False, "the guest was left behind"', "pass"))
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    run.assert_outcomes(passed=5)
    assert {name: row["held"] for name, row in rows_of(table).items()} == {
        "test_uses_the_run": True, "test_uses_the_run_too": True, "test_cleans_up_badly": True, "test_alone": True}


ONE_ROW = '''
import pytest


@pytest.mark.fault_table(area="a", fault="{name}", expected="e")
def test_{name}(observed):
    observed("{name} seen")
'''


def test_sessions_side_by_side_share_one_table(pytester, table, monkeypatch):
    import fault_table

    monkeypatch.setattr(fault_table, "files_using_the_marker", lambda: {"test_one.py", "test_two.py"})
    monkeypatch.setenv(fault_table.SHARDS_ENV, str(table / "shards"))
    pytester.makepyfile(test_one=ONE_ROW.format(name="one"), test_two=ONE_ROW.format(name="two"))

    monkeypatch.setenv("VIRTOPS_LAB_NAME", "first")
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "test_two.py").assert_outcomes(passed=1)
    assert not (table / "docs.md").exists(), "half the table was published"

    monkeypatch.setenv("VIRTOPS_LAB_NAME", "second")
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "test_one.py").assert_outcomes(passed=1)
    docs = (table / "docs.md").read_text()
    assert "2 of 2 cases held" in docs
    assert docs.index("one seen") < docs.index("two seen"), "rows are not in file order"
    assert sorted(path.name for path in (table / "shards").iterdir()) == ["first.json", "second.json"]
