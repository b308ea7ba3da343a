"""Make ``ansible_collections.virtops.migration`` importable from this checkout.

The collection is exposed to Python (and to Ansible) through a symlink
``build/collections/ansible_collections/virtops/migration`` -> the repository
root, which ``make setup`` also creates.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_ROOT = REPO_ROOT / "build" / "collections"
COLLECTION_LINK = COLLECTIONS_ROOT / "ansible_collections" / "virtops" / "migration"

if not COLLECTION_LINK.exists():
    COLLECTION_LINK.parent.mkdir(parents=True, exist_ok=True)
    COLLECTION_LINK.symlink_to(REPO_ROOT, target_is_directory=True)
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
