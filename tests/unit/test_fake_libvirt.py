"""The fake libvirt must agree with the real bindings on every constant it defines."""

from __future__ import annotations

import fake_libvirt


def test_fake_constants_match_real_libvirt(real_libvirt):
    names = [name for name in dir(fake_libvirt) if name.startswith("VIR_")]
    assert len(names) > 150
    mismatched = {name: (getattr(fake_libvirt, name), getattr(real_libvirt, name, None))
                  for name in names if getattr(real_libvirt, name, None) != getattr(fake_libvirt, name)}
    assert mismatched == {}


def test_fake_migration_methods_exist_in_real_bindings(real_libvirt):
    for method in ("migrateToURI3", "migrate3", "jobStats", "abortJob", "migrateSetMaxDowntime",
                   "migrateGetMaxDowntime", "migrateSetMaxSpeed", "migrateGetMaxSpeed",
                   "migrateStartPostCopy", "undefineFlags", "XMLDesc", "state", "info"):
        assert hasattr(real_libvirt.virDomain, method), method
    for method in ("compareHypervisorCPU", "getMemoryStats", "getCapabilities", "lookupByUUIDString",
                   "networkLookupByName", "interfaceLookupByName", "storageVolLookupByPath", "defineXML"):
        assert hasattr(real_libvirt.virConnect, method), method
