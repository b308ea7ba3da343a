# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Domain errors.

Every error names the operation, the domain, both URIs, libvirt's own error
text (when libvirt raised it) and what to do next.  Modules turn them into
``fail_json`` in ``main()``; nothing in module_utils calls ``fail_json``.
"""

from __future__ import annotations

from typing import Any


def libvirt_error_text(exc: BaseException) -> str:
    """Return libvirt's own message for a libvirtError (or str(exc))."""
    getter = getattr(exc, "get_error_message", None)
    if callable(getter):
        text = getter()
        if text:
            return str(text)
    return str(exc)


def libvirt_error_code(exc: BaseException) -> int | None:
    """Return the VIR_ERR_* code of a libvirtError, None for other errors."""
    getter = getattr(exc, "get_error_code", None)
    if callable(getter):
        return getter()
    return None


# libvirt has no error code of its own for "another job holds this domain": these are the texts
# of VIR_ERR_OPERATION_INVALID (a migration job is there) and VIR_ERR_OPERATION_TIMEOUT (the
# job lock was not released within libvirt's wait).
ANOTHER_JOB_TEXTS = ("another migration job is already running", "cannot acquire state change lock")


def another_job_holds_domain(exc: BaseException) -> bool:
    """libvirt refused to start a job because another one holds the domain: none was started."""
    text = libvirt_error_text(exc).lower()
    return libvirt_error_code(exc) is not None and any(marker in text for marker in ANOTHER_JOB_TEXTS)


class MigrationError(Exception):
    """A failure with everything an operator needs to act on it."""

    kind = "error"

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        domain: str | None = None,
        source_uri: str | None = None,
        dest_uri: str | None = None,
        libvirt_error: str | None = None,
        error_code: int | None = None,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.operation = operation
        self.message = message
        self.domain = domain
        self.source_uri = source_uri
        self.dest_uri = dest_uri
        self.libvirt_error = libvirt_error
        self.error_code = error_code
        self.hint = hint
        self.details = dict(details or {})
        super().__init__(self.render())

    @classmethod
    def from_libvirt(
        cls,
        operation: str,
        exc: BaseException,
        message: str | None = None,
        **context: Any,
    ) -> MigrationError:
        """Wrap a libvirtError, keeping libvirt's text and error code."""
        text = libvirt_error_text(exc)
        return cls(
            operation,
            message or "libvirt refused the operation",
            libvirt_error=text,
            error_code=libvirt_error_code(exc),
            **context,
        )

    def with_context(self, **context: Any) -> MigrationError:
        """Fill in domain/URIs that were unknown where the error was raised."""
        for key in ("domain", "source_uri", "dest_uri", "hint"):
            if getattr(self, key) is None and context.get(key) is not None:
                setattr(self, key, context[key])
        self.args = (self.render(),)
        return self

    def render(self) -> str:
        where = []
        if self.domain:
            where.append(f"domain '{self.domain}'")
        if self.source_uri:
            where.append(f"source {self.source_uri}")
        if self.dest_uri:
            where.append(f"destination {self.dest_uri}")
        text = f"{self.operation} failed"
        if where:
            text += " ({})".format(", ".join(where))
        text += ": " + self.message.rstrip(".")
        if self.libvirt_error:
            text += ". libvirt said: " + self.libvirt_error.rstrip(".")
        if self.hint:
            text += f". Next: {self.hint}"
        return text

    def to_result(self) -> dict[str, Any]:
        """The keys a module adds to fail_json."""
        result: dict[str, Any] = {
            "error": {
                "kind": self.kind,
                "operation": self.operation,
                "message": self.message,
                "domain": self.domain,
                "source_uri": self.source_uri,
                "dest_uri": self.dest_uri,
                "libvirt_error": self.libvirt_error,
                "libvirt_error_code": self.error_code,
                "hint": self.hint,
            }
        }
        result.update(self.details)
        return result


class ValidationError(MigrationError):
    """A bad input, refused before anything was touched."""

    kind = "validation"

    @classmethod
    def of_all(cls, problems: list[ValidationError], **context: Any) -> ValidationError:
        """One error naming every problem found (each once), for the given domain and URIs."""
        unique = list({problem.message: problem for problem in problems}.values())
        hints = list(dict.fromkeys(problem.hint for problem in unique if problem.hint))
        if len(unique) == 1:
            return cls(unique[0].operation, unique[0].message, hint=unique[0].hint, **context)
        listed = "; ".join(f"({number}) {problem.message}" for number, problem in enumerate(unique, start=1))
        return cls("validate options", f"{len(unique)} problems with the options: {listed}",
                   hint="; ".join(hints) or None, **context)


class ConnectionFailed(MigrationError):
    """A libvirt connection could not be opened."""

    kind = "connection"


class DomainNotFound(MigrationError):
    """The domain exists on neither host (VIR_ERR_NO_DOMAIN)."""

    kind = "not_found"


class SplitBrain(MigrationError):
    """The domain is active on both hosts; nothing was touched."""

    kind = "split_brain"


class PreflightFailed(MigrationError):
    """A preflight check failed; nothing was touched."""

    kind = "preflight"


class MigrationFailed(MigrationError):
    """The migration itself failed; ``details`` holds the recovery report."""

    kind = "migration"


class JobError(MigrationError):
    """A migration_job operation failed."""

    kind = "job"


class CancelRequested(MigrationError):
    """The operator asked the runs on this host to stop (a cancel request); nothing was started."""

    kind = "cancelled"


class MigrationInProgress(MigrationError):
    """A migration job for this domain is already running (another run?)."""

    kind = "in_progress"
