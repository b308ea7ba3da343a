# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""A run's pair of libvirt connections: the source's and the destination's.

``Session`` opens both, opens another one when asked (the job monitor's), reads a domain on
either side, and closes what is open at the end.  ``BoundedSession`` is the same pair after a
failure: every call to a side returns within a per-call limit and before a deadline, or that side
is recorded as not checked, its connection dropped without waiting, and it is never asked again;
a connection that was lost or went silent is reopened first, both sides at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    libvirt_error_text,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CLOSE_TIMEOUT_SECONDS,
    NoAnswer,
    call_within,
    close_quietly,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    describe_domain,
    lookup_by_uuid,
)

SOURCE, DESTINATION = "source", "destination"
ROLES = (SOURCE, DESTINATION)

Answer = TypeVar("Answer")
Connect = Callable[..., Any]  # (uri, role, **context) -> a libvirt connection; raises MigrationError


def read_domain(conn: Any, uuid: str) -> tuple[Any, DomainInfo | None]:
    """(virDomain, what it is) for ``uuid`` on ``conn``; (None, None) when it is not there."""
    dom = lookup_by_uuid(conn, uuid)
    return dom, (describe_domain(dom) if dom is not None else None)


class Session:
    """Both ends of one run, by role; each connection may be reopened (or dropped) during the run."""

    def __init__(self, uris: Mapping[str, str], connect: Connect, context: Mapping[str, Any]) -> None:
        self.uris = dict(uris)
        self.connect = connect
        self.context = dict(context)
        self.connections: dict[str, Any] = dict.fromkeys(ROLES)

    @property
    def source(self) -> Any:
        return self.connections[SOURCE]

    @property
    def destination(self) -> Any:
        return self.connections[DESTINATION]

    def open(self, role: str) -> Any:
        """Open ``role``'s connection (raises ConnectionFailed)."""
        self.connections[role] = self.open_another(role)
        return self.connections[role]

    def open_another(self, role: str) -> Any:
        """A further connection to ``role``'s host, which the caller closes."""
        return self.connect(self.uris[role], role, **self.context)

    def read(self, role: str, uuid: str) -> tuple[Any, DomainInfo | None]:
        return read_domain(self.connections[role], uuid)

    def drop(self, role: str, within: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Close ``role``'s connection (waiting at most ``within`` seconds) and forget it."""
        close_quietly(self.connections[role], within=within)
        self.connections[role] = None

    def close(self) -> None:
        for role in ROLES:
            close_quietly(self.connections[role])


class BoundedSession:
    """The session after a failure: every call to a side is bounded; a side that does not answer is left alone.

    ``side_call_seconds`` bounds one call, ``deadline`` (on ``clock``) all of them, ``reconnect_ends``
    the reopening of lost connections; ``window`` names that time in the notes ("the recovery's 50s").
    ``notes`` says, in order, what was reopened and which side was not checked, and why.
    """

    def __init__(self, session: Session, clock: Callable[[], float], deadline: float, reconnect_ends: float,
                 side_call_seconds: float, window: str) -> None:
        self.session = session
        self.clock = clock
        self.deadline = deadline
        self.reconnect_ends = reconnect_ends
        self.side_call_seconds = side_call_seconds
        self.window = window
        self.unchecked: set[str] = set()
        self.notes: list[str] = []

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def ask(self, role: str, call: Callable[[], Answer], discard: Callable[[Answer], Any] | None = None) -> Answer:
        """``call()`` on ``role``'s side within its limit; NoAnswer when that side is (now) not checked."""
        if role in self.unchecked:
            raise NoAnswer(0.0)
        seconds = min(self.side_call_seconds, self.time_left())
        if seconds <= 0:
            self.not_checked(role, f"{self.window} ran out before it was checked")
            raise NoAnswer(0.0)
        try:
            return call_within(seconds, call, discard)
        except NoAnswer:
            self.not_checked(role, f"it did not answer within {seconds:.3g}s (its libvirt daemon is stopped or "
                                   "hung, or the link to it is down)")
            raise

    def not_checked(self, role: str, why: str) -> None:
        """Record that ``role``'s side could not be checked; drop its connection without waiting on it."""
        if role in self.unchecked:
            return
        self.unchecked.add(role)
        self.notes.append(f"the {role} was not checked: {why}; nothing was done there")
        self.session.drop(role, within=0)

    def read(self, role: str, uuid: str) -> tuple[Any, DomainInfo | None]:
        """(virDomain, what it is) on ``role``'s side now; (None, None) when absent or not checked."""
        if role in self.unchecked:
            return None, None
        conn = self.session.connections[role]
        try:
            return self.ask(role, lambda: read_domain(conn, uuid))
        except NoAnswer:
            return None, None
        except libvirt.libvirtError as exc:
            self.not_checked(role, f"libvirt said: {libvirt_error_text(exc)}")
            return None, None

    def reconnect_both(self) -> None:
        """Reopen lost connections to both sides at once: one side's wait does not eat the other's time."""
        failures: list[BaseException] = []

        def reconnect(role: str) -> None:
            try:
                self.reconnect_if_lost(role)
            except BaseException as exc:  # noqa: BLE001 - raised again below, in this thread
                failures.append(exc)

        threads = [threading.Thread(target=reconnect, args=(role,), name=f"virtops-reconnect-{role}", daemon=True)
                   for role in ROLES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each returns within the reconnect window: every call in it has a deadline
        if failures:
            raise failures[0]

    def reconnect_time_left(self) -> float:
        return min(self.deadline, self.reconnect_ends) - self.clock()

    def answers(self, conn: Any) -> bool:
        """True when ``conn`` answers in time; False when it is closed; NoAnswer when it is silent."""
        def alive() -> bool:
            # isAlive() learns of a closed socket only once a call failed on it
            return bool(conn.isAlive()) and conn.getLibVersion() is not None

        try:
            return call_within(min(self.side_call_seconds, self.reconnect_time_left()), alive)
        except libvirt.libvirtError:
            return False

    def reconnect_if_lost(self, role: str) -> None:
        """Reopen a connection the failure closed (its libvirtd restarted or the link broke) or that went silent."""
        conn = self.session.connections[role]
        silent = False
        if conn is not None:
            try:
                if self.answers(conn):
                    return
            except NoAnswer:
                silent = True  # hung, or a daemon shutting down: a new connection tells
        self.session.drop(role, within=0 if silent else CLOSE_TIMEOUT_SECONDS)
        seconds = self.reconnect_time_left()
        if seconds <= 0:
            self.not_checked(role, f"{self.window} ran out before it was checked")
            return
        try:
            reopened = call_within(seconds, lambda: self.session.open_another(role), close_quietly)
        except NoAnswer:
            self.not_checked(role, "it did not answer within {:.3g}s: its connection {} and a new one got no answer "
                                   "(its libvirt daemon is stopped or hung, or the link to it is down)".format(
                                       seconds, "stopped answering" if silent else "was lost"))
            return
        except MigrationError as error:
            self.unchecked.add(role)
            self.notes.append(f"lost the connection to the {role} and could not reopen it "
                              f"({error.libvirt_error or error.message}): its side was not checked")
            return
        self.session.connections[role] = reopened
        self.notes.append(f"reconnected to the {role} (the connection was lost during the migration)")
