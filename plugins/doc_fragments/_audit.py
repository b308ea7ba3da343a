# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:
    # The audit log of every module that changes state (migrate, evacuate, migration_job).
    DOCUMENTATION = r"""
options:
  audit_log:
    description:
      - The audit log on the host that runs the module. Each state-changing action is appended to it as one
        JSON line. A line holds the time, the user (the effective user, and C(SUDO_USER) when set), the host,
        the action, the run id, the guest's name and UUID, the source and destination, the flags, the result,
        the start, end and duration, the downtime and a message.
      - Nothing secret is written. URIs lose their user information and query, and flags are option names
        without their values.
      - Lines from parallel runs never interleave (one append under a lock). The file is created with mode
        C(0640), its directory with C(0750).
      - A log that cannot be written is a warning; the action itself is not failed for it.
      - Check-mode runs and runs that change nothing write no line.
      - Set to an empty string to write no audit log (an explicit opt-out).
    type: path
    default: /var/log/virtops-migration/audit.jsonl
"""
