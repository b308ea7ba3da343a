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

# The unit tests run against a fake libvirt (tests/unit/fake_libvirt.py).  Keep a
# handle on the real bindings, when installed, so its constants can be checked.
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import libvirt as REAL_LIBVIRT
except ImportError:
    REAL_LIBVIRT = None

import fake_libvirt

sys.modules["libvirt"] = fake_libvirt

import pytest


@pytest.fixture
def world():
    """A fresh fake world with two hypervisors, hv1 (source) and hv2 (destination)."""
    fresh = fake_libvirt.World()
    fake_libvirt.CURRENT = fresh
    fresh.add_host("qemu:///system", "hv1")
    fresh.add_host("qemu+tls://hv2.example.com/system", "hv2")
    return fresh


@pytest.fixture
def real_libvirt():
    if REAL_LIBVIRT is None:
        pytest.skip("libvirt-python is not installed")
    return REAL_LIBVIRT


@pytest.fixture(autouse=True)
def private_run_locks(tmp_path_factory, monkeypatch):
    """Run locks (migrate per domain, evacuate per source) in the test's own directory, not /run/lock."""
    from ansible_collections.virtops.migration.plugins.module_utils._common import (
        run_lock as _run_lock,
    )

    lock_dir = tmp_path_factory.mktemp("locks")
    monkeypatch.setattr(_run_lock, "LOCK_DIRS", (str(lock_dir),))
    return lock_dir


@pytest.fixture(autouse=True)
def private_audit_log(tmp_path_factory, monkeypatch):
    """The audit log's default (what a module writes when audit_log is not given) in the test's own directory."""
    from ansible_collections.virtops.migration.plugins.module_utils._common import (
        audit as _audit,
    )

    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    monkeypatch.setattr(_audit, "DEFAULT_AUDIT_LOG", str(path))
    return path
