"""Builders shared by the unit tests: requests, and run environments over the fake libvirt's World."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fake_libvirt as lv
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ConnectionFailed,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    open_connection,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.run import (
    MigrationEnvironment,
)

SRC = "qemu:///system"
DEST = "qemu+tls://hv2.example.com/system"


def never_local(host: str) -> bool:
    """resolves_locally without DNS: no destination host is this machine."""
    return False


def environment_of(world: Any, **changes: Any) -> MigrationEnvironment:
    """A migration's environment over the fake world: its clock and waits, no DNS (``changes`` replace any part)."""
    parts: dict[str, Any] = {"clock": world.clock, "wait": world.wait, "resolves_locally": never_local}
    parts.update(changes)
    return MigrationEnvironment(**parts)


def migrate_request(**params: Any) -> MigrationRequest:
    """A migrate request for vm1 from hv1 to hv2 (``params`` as the module takes them)."""
    values: dict[str, Any] = {"name": "vm1", "dest_uri": DEST}
    values.update(params)
    return MigrationRequest.from_params(values)


class Replaceable:
    """A connection a test can replace while the run holds it (its libvirtd died, hung, or the link broke)."""

    def __init__(self, conn: Any) -> None:
        self.target = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class Connections:
    """open_connection that records what was opened, can make a host refuse, and can replace a held connection."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str, Any]] = []
        self.refuse: set[str] = set()

    def __call__(self, uri: str, role: str = "source", **context: Any) -> Replaceable:
        if uri in self.refuse:
            raise ConnectionFailed(f"connect to {role}", f"cannot open {uri}", libvirt_error="Connection refused",
                                   **context)
        conn = Replaceable(open_connection(uri, role, **context))
        self.opened.append((uri, role, conn))
        return conn

    def replace(self, role: str, replacement: Any) -> None:
        """The run's own connection to ``role`` (the first opened) now answers as ``replacement`` does."""
        first = next(conn for _uri, opened_role, conn in self.opened if opened_role == role)
        first.target = replacement


def after_migration_call(dom: Any, then: Callable[[], None]) -> None:
    """Call ``then()`` right after the domain's migration call returns or fails (a host lost mid-migration)."""
    original = dom.migrateToURI3

    def call(*args: Any) -> Any:
        try:
            return original(*args)
        finally:
            then()
    dom.migrateToURI3 = call


class DeadConnection:
    """A connection whose libvirtd went away: every call fails; isAlive() says so only once one did."""

    def __init__(self, noticed: bool = True) -> None:
        self.noticed = noticed

    def isAlive(self) -> int:
        return 0 if self.noticed else 1

    def close(self) -> int:
        return 0

    def __getattr__(self, name: str):
        def closed(*_args, **_kwargs):
            raise lv.libvirtError("internal error: client socket is closed")
        return closed
