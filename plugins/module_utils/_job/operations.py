# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Control a running migration job: QEMU's migration monitor commands as operations.

``info migrate`` -> ``info``; ``migrate_cancel`` -> ``abort``;
``migrate_set_downtime`` / ``migrate_set_speed`` -> ``tune``; and ``postcopy``.
The module's argument spec checks the operation's name (OPERATIONS) and that one of name or uuid
is given; ``validate_job_request`` checks what the spec cannot express.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    JobError,
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI,
    close_quietly,
    open_connection,
    parse_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.dependency import (
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    describe_domain,
    find_domain,
    lookup_by_uuid,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.job_stats import (
    job_statistics,
)

OPERATIONS = ("info", "abort", "tune", "postcopy")
ABORT_WAIT_SECONDS = 60.0  # how long abort waits for the job to be gone
POLL_SECONDS = 0.5  # between two reads of the job while abort waits


@dataclass
class JobRequest:
    operation: str = "info"
    uri: str = DEFAULT_URI
    dest_uri: str | None = None
    name: str | None = None
    uuid: str | None = None
    max_downtime: int | None = None
    bandwidth: int | None = None
    wait_timeout: float = ABORT_WAIT_SECONDS

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JobRequest:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in params.items() if key in known and value is not None})

    def context(self) -> dict[str, Any]:
        return {"domain": self.name or self.uuid, "source_uri": self.uri, "dest_uri": self.dest_uri}


def validate_job_request(request: JobRequest) -> None:
    def refuse(message: str) -> ValidationError:
        return ValidationError("validate options", message, **request.context())

    for option in ("max_downtime", "bandwidth", "wait_timeout"):
        value = getattr(request, option)
        if value is not None and value < 0:
            raise refuse(f"{option} must not be negative (got {value})")
    tuning = request.max_downtime is not None or request.bandwidth is not None
    if request.operation == "tune" and not tuning:
        raise refuse("operation tune needs max_downtime and/or bandwidth")
    if request.operation != "tune" and tuning:
        raise refuse("max_downtime and bandwidth only apply to operation tune")
    parse_uri(request.uri, "uri")
    if request.dest_uri:
        parse_uri(request.dest_uri, "dest_uri")


class JobController:
    """Run one migration_job operation; ``run()`` returns the module result."""

    def __init__(
        self,
        request: JobRequest,
        check_mode: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        connect: Callable[..., Any] = open_connection,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.request = request
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.connect = connect
        self.poll_seconds = poll_seconds
        self.conn: Any = None
        self.dom: Any = None

    def run(self) -> dict[str, Any]:
        try:
            validate_job_request(self.request)
            self.conn = self.connect(self.request.uri, "source", **self.request.context())
            self.dom = find_domain(self.conn, self.request.name, self.request.uuid)
            if self.dom is None:
                wanted = f"uuid '{self.request.uuid}'" if self.request.uuid else f"name '{self.request.name}'"
                raise DomainNotFound("look up domain", f"Domain not found: no domain with matching {wanted} on {self.request.uri}",
                                     hint="point uri at the host the migration runs from", **self.request.context())
            handler = getattr(self, "op_" + self.request.operation)
            result = handler()
            result.setdefault("domain", self.dom.name())
            result.setdefault("uuid", self.dom.UUIDString())
            return result
        except MigrationError as error:
            raise error.with_context(**self.request.context())
        finally:
            close_quietly(self.conn)

    # -- reading ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        try:
            return job_statistics(self.dom.jobStats(0))
        except libvirt.libvirtError as exc:
            raise JobError.from_libvirt("read job stats", exc, **self.request.context())

    def settings(self) -> dict[str, Any]:
        """Current max downtime (ms) and bandwidth (MiB/s), read back from libvirt."""
        values: dict[str, Any] = {}
        for key, getter in (("max_downtime", "migrateGetMaxDowntime"), ("bandwidth", "migrateGetMaxSpeed")):
            try:
                values[key] = getattr(self.dom, getter)(0)
            except libvirt.libvirtError:
                values[key] = None
        return values

    def in_postcopy(self) -> bool:
        return describe_domain(self.dom).postcopy_state

    def job_result(self, changed: bool, job: dict[str, Any], **extra: Any) -> dict[str, Any]:
        result = {"changed": changed, "operation": self.request.operation, "job": job,
                  "settings": self.settings(), "postcopy": self.in_postcopy()}
        result.update(extra)
        return result

    # -- operations ---------------------------------------------------------

    def op_info(self) -> dict[str, Any]:
        return self.job_result(False, self.stats())

    def require_job(self, job: dict[str, Any], operation: str) -> None:
        if not job["active"]:
            raise JobError(operation, "no migration job is running for this domain",
                           hint="start one with virtops.migration.migrate", **self.request.context())

    def op_tune(self) -> dict[str, Any]:
        before = self.settings()
        wanted = {"max_downtime": self.request.max_downtime, "bandwidth": self.request.bandwidth}
        setters = {"max_downtime": "migrateSetMaxDowntime", "bandwidth": "migrateSetMaxSpeed"}
        changes = {key: value for key, value in wanted.items() if value is not None and before.get(key) != value}
        if changes and not self.check_mode:
            for key, value in changes.items():
                try:
                    getattr(self.dom, setters[key])(value, 0)
                except libvirt.libvirtError as exc:
                    raise JobError.from_libvirt(f"set {key}", exc, f"libvirt refused {key}={value}",
                                                **self.request.context())
        result = self.job_result(bool(changes), self.stats())
        result["diff"] = {"before": before, "after": dict(before, **changes)}
        return result

    def op_postcopy(self) -> dict[str, Any]:
        job = self.stats()
        if self.in_postcopy():
            return self.job_result(False, job)
        self.require_job(job, "switch to post-copy")
        if self.check_mode:
            return self.job_result(True, job)
        try:
            self.dom.migrateStartPostCopy(0)
        except libvirt.libvirtError as exc:
            raise JobError.from_libvirt(
                "switch to post-copy", exc, hint="the migration must have been started with post_copy: true",
                **self.request.context())
        return self.wait_for_postcopy()

    def wait_for_postcopy(self) -> dict[str, Any]:
        """The result once the domain shows the switch (QEMU reports it after the call returns) or the job ended.

        A job that ended before the domain showed a post-copy state finished the migration: the result says so
        with ``postcopy`` false and the final job statistics. Waits at most ``wait_timeout`` seconds.
        """
        deadline = self.clock() + self.request.wait_timeout
        while True:
            job = self.stats()
            if self.in_postcopy():
                return self.job_result(True, job)
            if not job["active"]:
                return self.job_result(True, job, message="the migration ended before the domain showed post-copy")
            if self.clock() >= deadline:
                raise JobError("switch to post-copy",
                               f"libvirt accepted the switch but the domain showed no post-copy state within "
                               f"{self.request.wait_timeout:g}s",
                               hint="check the domain's state with virsh domstate --reason", **self.request.context())
            self.sleep(self.poll_seconds)

    def op_abort(self) -> dict[str, Any]:
        job = self.stats()
        if not job["active"]:
            return self.job_result(False, job, running_on=self.running_on(),
                                   message="no migration job was running")
        if job.get("operation") == "migration_out" and self.in_postcopy():
            raise JobError("abort", "the migration is in post-copy: aborting now would lose the guest",
                           hint="let it finish; post-copy cannot be cancelled", **self.request.context())
        if self.check_mode:
            return self.job_result(True, job, running_on=self.running_on())
        try:
            self.dom.abortJob()
        except libvirt.libvirtError as exc:
            raise JobError.from_libvirt("abort", exc, **self.request.context())
        final = self.wait_until_gone()
        return self.job_result(True, final, running_on=self.running_on(), last_job=job)

    def wait_until_gone(self) -> dict[str, Any]:
        deadline = self.clock() + self.request.wait_timeout
        while True:
            job = self.stats()
            if not job["active"]:
                return job
            if self.clock() >= deadline:
                raise JobError("abort", f"the job was still running {self.request.wait_timeout:g}s after the abort request",
                               hint="check the domain's job with virsh domjobinfo",
                               **self.request.context())
            self.sleep(self.poll_seconds)

    def running_on(self) -> dict[str, Any]:
        """Where the domain runs now: the source's state, and the destination's when dest_uri is given."""
        source = self.side(self.conn)
        report: dict[str, Any] = {"source": self.side_dict(source), "destination": None}
        if self.request.dest_uri:
            dconn = self.connect(self.request.dest_uri, "destination", **self.request.context())
            try:
                report["destination"] = self.side_dict(self.side(dconn))
            finally:
                close_quietly(dconn)
        active = [side for side in ("source", "destination")
                  if report[side] is not None and report[side]["state"] in ("running", "paused", "other")]
        report["hosts"] = active
        return report

    def side(self, conn: Any) -> DomainInfo | None:
        dom = lookup_by_uuid(conn, self.dom.UUIDString())
        return describe_domain(dom) if dom is not None else None

    @staticmethod
    def side_dict(info: DomainInfo | None) -> dict[str, Any]:
        if info is None:
            return {"present": False, "state": None, "persistent": False}
        return {"present": True, "state": info.state, "persistent": info.persistent}
