# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""The operator's cancel request: a file on the host a run works from (evacuate, restore).

While the file exists a run starts nothing: one started then refuses before anything changes
(``refuse_if_requested``); one running when it appears stops starting moves and aborts those it can
(``CancelWatch``, read at least every ``CHECK_SECONDS``). Removing the file withdraws the request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.virtops.migration.plugins.module_utils._common.audit import (
    iso_utc,
)
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    CancelRequested,
)

DEFAULT_CANCEL_PATH = "/var/lib/virtops/cancel"
CHECK_SECONDS = 0.5
"""How often a running run reads the cancel file at the least (the documented promise is once a second)."""
TEXT_LIMIT = 512
"""The most of the file's content a run reads (the request's note: who wrote it, when, why)."""

CancelCheck = Callable[[], "str | None"]
"""() -> None while no cancel is requested; else the path of the cancel request (true in a condition)."""


@dataclass(frozen=True)
class CancelRequest:
    """A cancel request found: its file, when it was written (epoch seconds) and what it says."""

    path: str
    written_at: float
    text: str

    @property
    def written(self) -> str:
        return iso_utc(self.written_at)

    def describe(self) -> str:
        """``/var/lib/virtops/cancel, written 2026-12-01T14:39:01.123Z``: the request as messages name it."""
        return f"{self.path}, written {self.written}"


def read_cancel_request(path: str | None) -> CancelRequest | None:
    """The cancel request at ``path``; None when there is none (no path, no file, or a file that cannot be seen).

    A file that exists but cannot be read is still a request (its text then says why it was not read).
    """
    if not path:
        return None
    try:
        written_at = os.stat(path).st_mtime
    except OSError:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(TEXT_LIMIT).strip()
    except OSError as exc:
        text = f"(not readable: {exc.strerror or exc})"
    return CancelRequest(path, written_at, text)


def cancel_refusal(request: CancelRequest, operation: str, uri: str) -> CancelRequested:
    """The error of a run started while a cancel request stands: nothing was started or changed."""
    said = f' ("{request.text}")' if request.text else ""
    return CancelRequested(
        operation, f"a cancel request stands: {request.describe()}{said}; nothing was started or changed",
        hint=f"when the run may go ahead, withdraw the request (remove {request.path}) and run again",
        source_uri=uri)


def refuse_if_requested(path: str | None, operation: str, uri: str) -> None:
    """Raise CancelRequested when a cancel request stands at ``path`` (None or empty: requests are off)."""
    request = read_cancel_request(path)
    if request is not None:
        raise cancel_refusal(request, operation, uri)


class CancelWatch:
    """A running run's view of the cancel file: once a request is seen the run stays cancelled.

    Called (a ``CancelCheck``) from the scheduler and from each migration's job monitor, in several
    threads; ``request`` is the first request seen, for the result's message.
    """

    def __init__(self, path: str | None, read: Callable[[str | None], CancelRequest | None] = read_cancel_request) -> None:
        self.path = path or None
        self.read = read
        self.lock = threading.Lock()
        self.request: CancelRequest | None = None

    def __call__(self) -> str | None:
        if self.path is None:
            return None
        if self.request is None:
            found = self.read(self.path)
            with self.lock:
                if self.request is None:
                    self.request = found
        return self.request.path if self.request is not None else None
