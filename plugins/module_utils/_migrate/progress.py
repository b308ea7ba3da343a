# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""One migration's progress, published with the evacuation's writer (``_common/progress.py``).

While the migration runs, the writer polls the job on a connection of its own every
``progress_interval`` seconds and writes the snapshot to ``progress_path`` (and hands it to
``on_progress``): memory sent, rate, what remains, the expected end. Nothing is published in check
mode, when nothing migrates, or when neither a path nor a callback is given.

Whatever the run did (migrated, changed nothing, failed before or during the migration), the module
ends the file with a finished snapshot whose line says how the run ended (``run_ending_progress``):
a playbook polling the file stops there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.progress import (
    MIGRATING,
    OnSnapshot,
    Progress,
    ProgressWriter,
    progress_snapshot,
    write_snapshot,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    parse_uri,
)

MIGRATED = "migrated"
FAILED = "failed"


def validate_progress_interval(interval: float) -> float:
    """Refuse an interval that is not positive (before anything is touched)."""
    if interval <= 0:
        raise ValidationError("validate options", f"progress_interval must be positive, not {interval:g}")
    return interval


def host_label(uri: str) -> str:
    """The host a URI names, or this machine's name for a local URI."""
    return parse_uri(uri).host or os.uname().nodename


@contextmanager
def published_progress(migrates: bool, name: str, uuid: str, source_uri: str, dest_uri: str, path: str | None, interval: float,
                       connect: Callable[..., Any], on_progress: OnSnapshot | None,
                       warn: Callable[[str], None]) -> Iterator[None]:
    """Publish the guest's progress while the block runs (the migration); the last snapshot says how it ended."""
    if not migrates or (not path and on_progress is None):
        yield
        return
    progress = Progress(host_label(source_uri), source_uri, done_states=(MIGRATED,), problem_states=(FAILED,))
    progress.add(name, uuid, host_label(dest_uri), MIGRATING)
    writer = ProgressWriter(progress, path, interval, source_uri, connect, on_progress)
    writer.start()
    ended = FAILED
    try:
        yield
        ended = MIGRATED
    finally:
        progress.update(uuid, state=ended, percent=100 if ended == MIGRATED else None)
        progress.finish()
        for problem in writer.stop():
            warn(f"progress: {problem}")


def publish_end(path: str, source_uri: str, line: str, warnings: list[str]) -> None:
    """Write the finished snapshot that ends the progress file; a failure to write it is a warning."""
    try:
        write_snapshot(path, progress_snapshot(host_label(source_uri), source_uri, False, True, None, {}, [], line))
    except (OSError, MigrationError) as exc:
        warnings.append(f"progress: cannot write the progress file {path}: {exc}")


def run_ending_progress(path: str | None, source_uri: str, run: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """``run()``, then end the progress file at ``path`` (None: no file) with how the run ended."""
    try:
        result = dict(run())
    except MigrationError as error:
        if path:
            publish_end(path, source_uri, f"failed: {error}", error.details.setdefault("warnings", []))
        raise
    if path:
        line = "{}: {}".format(result.get("domain") or "?", result.get("explanation") or "done")
        publish_end(path, source_uri, line, result.setdefault("warnings", []))
    return result
