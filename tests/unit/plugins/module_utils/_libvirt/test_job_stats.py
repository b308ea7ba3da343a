"""The job-statistics vocabulary every module returns: libvirt's key names, the codes as names,
whether the job runs, and the dirty rate in bytes."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)


def test_live_job_keeps_libvirts_names_and_adds_the_derived_fields():
    shown = job_statistics(lv.sample(400, total=1000, iteration=4, elapsed=12000, dirty_rate=25000))
    assert shown["active"] is True
    assert (shown["job_type"], shown["operation"]) == ("unbounded", "migration_out")
    assert shown["time_elapsed"] == 12000
    assert (shown["data_total"], shown["data_processed"], shown["data_remaining"]) == (1000, 600, 400)
    assert shown["memory_iteration"] == 4
    assert shown["memory_dirty_rate"] == 25000
    assert shown["memory_dirty_rate_bytes"] == 25000 * 4096
    assert shown["downtime"] == 300
    assert "type" not in shown


def test_every_libvirt_key_passes_through_unchanged():
    raw = dict(lv.MigrationScript().completed_stats, time_elapsed_net=5120, errmsg="boom", compression_bytes=7)
    shown = job_statistics(raw)
    assert {key: shown[key] for key in raw if key not in ("type", "operation")} == {
        key: value for key, value in raw.items() if key not in ("type", "operation")}
    assert (shown["active"], shown["job_type"], shown["operation"]) == (False, "completed", "migration_out")


@pytest.mark.parametrize("code,name", [
    (lv.VIR_DOMAIN_JOB_UNBOUNDED, "unbounded"),
    (lv.VIR_DOMAIN_JOB_BOUNDED, "bounded"),
    (lv.VIR_DOMAIN_JOB_COMPLETED, "completed"),
    (lv.VIR_DOMAIN_JOB_CANCELLED, "cancelled"),
])
def test_names_every_job_type(code, name):
    """last_job_stats of an aborted live migration showed job_type '2' on real libvirt 9.0."""
    active = code in (lv.VIR_DOMAIN_JOB_UNBOUNDED, lv.VIR_DOMAIN_JOB_BOUNDED)
    assert job_statistics({"type": code, "operation": 1, "data_remaining": 5}) == {
        "active": active, "job_type": name, "operation": "start", "data_remaining": 5}


def test_no_job():
    assert job_statistics({"type": lv.VIR_DOMAIN_JOB_NONE}) == {"active": False, "job_type": "none",
                                                                "operation": None}


def test_nothing_read_is_empty():
    assert job_statistics({}) == {}
