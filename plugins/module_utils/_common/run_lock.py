# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""One run at a time per source (evacuate) or per domain (migrate), on the machine that runs the module.

An evacuation run with ``async`` keeps running when ansible-playbook is
killed; a re-run must not race it for the same guests.  Two migrate runs of
one domain started at once both pass the look-up before either has a job; the
second must not start (or abort) a migration the first owns.  The lock is an
``flock`` on a file named after what it guards, released by the kernel when
the process ends, however it ends.  ``flock`` locks belong to open files, so
two threads of one evacuation lock two domains independently.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationInProgress,
)

LOCK_DIRS = ("/run/lock", "/var/lock")
WAIT_STEP = 1.0


def lock_path_for(kind: str, key: str) -> str:
    """``/run/lock/virtops-<kind>-<hash of key>.lock`` (or the first writable fallback)."""
    directory = next((path for path in LOCK_DIRS if os.path.isdir(path) and os.access(path, os.W_OK)),
                     tempfile.gettempdir())
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(directory, f"virtops-{kind}-{digest}.lock")


class RunLock:
    """Hold a run lock; wait up to ``timeout`` seconds for another run to release it.

    ``busy`` says what holds it (the holder's pid is added); ``operation`` and
    ``hint`` shape the MigrationInProgress raised when the wait is over.  In
    check mode the lock is not taken and a busy lock is only a warning.
    """

    def __init__(self, path: str, busy: str, operation: str, hint: str, timeout: float = 0,
                 check_mode: bool = False, on_wait: Callable[[str], Any] | None = None,
                 sleep: Callable[[float], Any] = time.sleep, **context: Any) -> None:
        self.path = path
        self.busy = busy
        self.operation = operation
        self.hint = hint
        self.timeout = timeout
        self.check_mode = check_mode
        self.on_wait = on_wait
        self.sleep = sleep
        self.context = context
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

    def __enter__(self) -> RunLock:  # noqa: PYI034 - typing.Self needs Python 3.11 on the managed host
        fd = self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        waited = 0.0
        while not self.try_lock(fd):
            busy = f"{self.busy} ({self.holder()})"
            if self.check_mode:
                self.warning = f"{busy}; this plan may change while it runs"
                self.close()
                return self
            if waited >= self.timeout:
                self.close()
                waited_text = f"; waited {waited:.0f}s (lock_timeout {self.timeout:g}s)" if self.timeout else ""
                raise MigrationInProgress(self.operation, f"{busy}{waited_text}; nothing was touched",
                                          hint=self.hint, **self.context)
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


def evacuation_lock(source_uri: str, timeout: float, check_mode: bool = False,
                    on_wait: Callable[[str], Any] | None = None, path: str | None = None,
                    sleep: Callable[[float], Any] = time.sleep) -> RunLock:
    """One evacuation of ``source_uri`` at a time; a second run waits up to ``timeout`` seconds."""
    return RunLock(path or lock_path_for("evacuate", source_uri), f"another evacuation of {source_uri} is running",
                   "lock the source", "let it finish (its progress file shows where it is), then re-run: the "
                   "re-run moves only what is left", timeout, check_mode, on_wait, sleep, source_uri=source_uri)


def migration_lock(uuid: str, check_mode: bool = False, path: str | None = None, **context: Any) -> RunLock:
    """One migrate run per domain at a time; a second run fails at once and touches nothing."""
    return RunLock(path or lock_path_for("migrate", uuid.lower()),
                   "a migration of this domain is already running from this machine", "lock the domain",
                   "watch or abort it with virtops.migration.migration_job, or let it finish, then re-run",
                   0, check_mode, **context)
