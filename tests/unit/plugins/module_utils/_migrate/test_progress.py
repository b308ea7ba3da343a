"""One migration's progress: published while it migrates, with the shared writer."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.progress import (
    published_progress,
    validate_progress_interval,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    run_migration,
)
from builders import environment_of, migrate_request

SRC = "qemu:///system"
DEST = "qemu+tls://hv2.example.com/system"


def test_a_live_migration_publishes_its_progress(world):
    dom = world.hosts[SRC].add_domain("vm1")
    dom.script = lv.MigrationScript(samples=[lv.sample(remaining=1048576 // (i + 1), iteration=i + 1)
                                             for i in range(3)])
    snapshots = []
    environment = environment_of(world, on_progress=snapshots.append, progress_interval=0.01)
    result = run_migration(migrate_request(), False, environment)
    assert result["changed"] is True
    first, last = snapshots[0], snapshots[-1]
    assert first["vms"][0]["state"] == "migrating" and first["finished"] is False
    assert first["line"].startswith("[00:00] 0/1 done, 0 failed | vm1 -> hv2.example.com ")
    assert last["finished"] is True
    assert (last["vms"][0]["state"], last["vms"][0]["percent"]) == ("migrated", 100)
    assert "1/1 done" in last["line"]


def test_nothing_is_published_without_a_path_or_in_check_mode(world, tmp_path):
    world.hosts[SRC].add_domain("vm1")
    path = tmp_path / "progress.json"
    run_migration(migrate_request(), True, environment_of(world, progress_path=str(path)))
    assert not path.exists()


def test_a_failed_migration_ends_failed_and_writer_problems_are_warnings(tmp_path):
    warnings = []
    blocker = tmp_path / "file"
    blocker.write_text("")
    seen = []
    with pytest.raises(RuntimeError), published_progress(True, "vm1", "u1", SRC, DEST, str(blocker / "p.json"), 5,
                                                         connect=None, on_progress=seen.append,
                                                         warn=warnings.append):
        raise RuntimeError("boom")
    assert seen[-1]["vms"][0]["state"] == "failed"
    assert "1 failed" in seen[-1]["line"]
    assert warnings and warnings[0].startswith("progress: cannot write the progress file")


def test_only_a_migration_is_published():
    seen = []
    with published_progress(False, "vm1", "u1", SRC, DEST, None, 1, None, seen.append, print):
        pass
    assert seen == []


def test_progress_interval_must_be_positive():
    assert validate_progress_interval(0.5) == 0.5
    with pytest.raises(ValidationError, match="progress_interval must be positive"):
        validate_progress_interval(0)
