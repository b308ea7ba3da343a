# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""One evacuation of a source at a time, on the machine that runs the module.

An evacuation run with ``async`` keeps running when ansible-playbook is
killed; a re-run must not race it for the same guests.  The lock is an
``flock`` on a file named after the source URI, released by the kernel when
the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._errors import (
    MigrationInProgress,
)

LOCK_DIRS = ("/run/lock", "/var/lock")
WAIT_STEP = 1.0


def lock_path_for(source_uri: str) -> str:
    directory = next((path for path in LOCK_DIRS if os.path.isdir(path) and os.access(path, os.W_OK)),
                     tempfile.gettempdir())
    digest = hashlib.sha256(source_uri.encode("utf-8")).hexdigest()[:16]
    return os.path.join(directory, f"virtops-evacuate-{digest}.lock")


class EvacuationLock:
    """Hold the source's evacuation lock; wait up to ``timeout`` seconds for another run to end."""

    def __init__(self, source_uri: str, timeout: float, check_mode: bool = False,
                 on_wait: Callable[[str], Any] | None = None, path: str | None = None,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.source_uri = source_uri
        self.timeout = timeout
        self.check_mode = check_mode
        self.on_wait = on_wait
        self.path = path or lock_path_for(source_uri)
        self.sleep = sleep
        self.fd: int | None = None
        self.warning: str | None = None

    def holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
        return text or "unknown process"

    def try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __enter__(self) -> EvacuationLock:  # noqa: PYI034 - typing.Self needs Python 3.11 on the managed host
        fd = self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        waited = 0.0
        while not self.try_lock(fd):
            busy = f"another evacuation of {self.source_uri} is running ({self.holder()})"
            if self.check_mode:
                self.warning = f"{busy}; this plan may change while it runs"
                self.close()
                return self
            if waited >= self.timeout:
                self.close()
                raise MigrationInProgress(
                    "lock the source", f"{busy}; waited {waited:.0f}s (lock_timeout {self.timeout:g}s)",
                    source_uri=self.source_uri, hint="let it finish (its progress file shows where it is), then "
                    "re-run: the re-run moves only what is left")
            if self.on_wait is not None:
                self.on_wait(f"waiting: {busy}")
            self.sleep(WAIT_STEP)
            waited += WAIT_STEP
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        return self

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    def __exit__(self, *exc_info: object) -> None:
        self.close()
