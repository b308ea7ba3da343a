# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:
    # The operator's cancel request (evacuate, restore).
    DOCUMENTATION = r"""
options:
  cancel_path:
    description:
      - "The operator's cancel request, a file on the host the module runs on (the playbook
        C(virtops.migration.cancel) writes it on every hypervisor). While this file exists the run starts
        nothing: a run started while it exists refuses before anything changes (check mode too), naming the file and
        when it was written; a running run that sees it appear (checked at least once a second) starts no new move,
        aborts its running live migrations except one already in post-copy (aborting that would lose the guest: it is
        left to finish and the report says so), and ends with every guest in the report; the result has
        RV(cancelled=true) and C(failed=true)."
      - "Withdraw the request by removing the file. An empty string turns cancel requests off."
      - "A guest whose migration was aborted stays on the host it was leaving, running as it was (the migrate code
        path's usual recovery); its row and those of the guests not started say V(cancelled)."
    type: path
    default: /var/lib/virtops/cancel
"""
