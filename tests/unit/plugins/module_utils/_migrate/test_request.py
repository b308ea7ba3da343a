"""MigrationRequest validation, VIR_MIGRATE_* flags and typed params."""

from __future__ import annotations

import dataclasses

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    parse_uri,
    validate_dest_uri,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
    guest_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.plan import (
    flag_names,
    migration_flags,
    migration_params,
    persistent_xml_for,
    redact_params,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.policy import (
    PolicyConfig,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
    validate_against_domain,
    validate_disks_named,
    validate_request,
)

DEST = "qemu+tls://hv2.example.com/system"
UUID = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"


def never_local(_host):
    return False


def request(**overrides):
    values = {"name": "vm1", "dest_uri": DEST}
    values.update(overrides)
    return MigrationRequest.from_params(values)


def refused(message_part, **overrides):
    with pytest.raises(ValidationError) as caught:
        validate_request(request(**overrides), never_local)
    assert message_part in str(caught.value)
    return caught.value


# ---------------------------------------------------------------------------
# URIs


@pytest.mark.parametrize("uri,driver,transport,host,port", [
    ("qemu:///system", "qemu", None, None, None),
    ("qemu+tls://hv2.example.com/system", "qemu", "tls", "hv2.example.com", 16514),
    ("qemu+tcp://10.0.0.2:16600/system", "qemu", "tcp", "10.0.0.2", 16600),
    ("qemu+ssh://root@hv2/system?keyfile=/root/.ssh/id", "qemu", "ssh", "hv2", 22),
    ("qemu://hv2/system", "qemu", None, "hv2", 16514),
])
def test_parse_uri(uri, driver, transport, host, port):
    parsed = parse_uri(uri)
    assert (parsed.driver, parsed.transport, parsed.host, parsed.effective_port) == (driver, transport, host, port)


@pytest.mark.parametrize("dest_uri,message", [
    ("hv2.example.com", "malformed"),
    ("qemu+tls:/hv2/system", "malformed"),
    ("qemu+tls://hv2:notaport/system", "malformed"),
    ("qemu+tls://hv2 /system", "whitespace"),
    ("xen+ssh://hv2/system", "driver 'xen'"),
    ("qemu+carrier-pigeon://hv2/system", "unknown transport"),
    ("qemu+tls://hv2/", "path"),
    ("", "empty"),
])
def test_malformed_dest_uri_refused(dest_uri, message):
    error = refused(message, dest_uri=dest_uri)
    assert error.dest_uri == dest_uri
    assert error.source_uri == "qemu:///system"
    assert error.domain == "vm1"


@pytest.mark.parametrize("dest_uri", [
    "qemu:///system",
    "qemu+unix:///system",
    "qemu+tcp://localhost/system",
    "qemu+tls://127.0.0.1/system",
    "qemu+ssh://[::1]/system",
])
def test_local_dest_uri_refused(dest_uri):
    refused("dest_uri is local", dest_uri=dest_uri)


def test_same_host_refused_when_both_remote():
    with pytest.raises(ValidationError, match="is the source host"):
        validate_dest_uri("qemu+tls://HV2.example.com/system", "qemu+ssh://hv2.example.com/system")


def test_same_host_refused_when_dest_resolves_to_this_machine():
    with pytest.raises(ValidationError, match="is the source host"):
        validate_dest_uri("qemu:///system", DEST, lambda host: host == "hv2.example.com")


def test_remote_destination_accepted():
    source, dest = validate_dest_uri("qemu:///system", DEST, never_local)
    assert (source.is_remote, dest.is_remote, dest.host) == (False, True, "hv2.example.com")


# ---------------------------------------------------------------------------
# Option combinations refused before anything is touched


@pytest.mark.parametrize("overrides,message", [
    ({"tunnelled": True, "p2p": False}, "tunnelled migration needs p2p"),
    ({"tunnelled": True, "tls": True}, "tls and tunnelled exclude each other"),
    ({"tunnelled": True, "migrate_uri": "tcp://10.0.0.2"}, "migrate_uri cannot be used with tunnelled"),
    ({"tunnelled": True, "listen_address": "10.0.0.2"}, "listen_address cannot be used with tunnelled"),
    ({"tunnelled": True, "parallel_connections": 4}, "parallel_connections cannot be used with tunnelled"),
    ({"post_copy": True, "live": False}, "post-copy needs a live migration"),
    ({"convergence": {"on_timeout": "postcopy"}}, "on_timeout: postcopy needs post_copy: true"),
    ({"postcopy_bandwidth": 100}, "postcopy_bandwidth only applies with post_copy"),
    ({"live": False, "persistent": False}, "needs persistent: true"),
    ({"live": False, "copy_storage": "all"}, "offline migration cannot copy storage"),
    ({"migrate_disks": ["vda"]}, "migrate_disks lists disks to copy but copy_storage is none"),
    ({"tls_destination": "hv2"}, "tls_destination only applies with tls"),
    ({"auto_converge_initial": 20}, "need auto_converge: true"),
    ({"bandwidth": -1}, "bandwidth must not be negative"),
    ({"postcopy_bandwidth": -5, "post_copy": True}, "postcopy_bandwidth must not be negative"),
    ({"max_downtime": -300}, "max_downtime must not be negative"),
    ({"timeout": -1}, "timeout must not be negative"),
    ({"convergence": {"completion_timeout_per_gib": -1}}, "completion_timeout_per_gib must not be negative"),
    ({"convergence": {"progress_timeout": -10}}, "progress_timeout must not be negative"),
    ({"convergence": {"downtime_max": -1}}, "downtime_max must not be negative"),
    ({"convergence": {"downtime_steps": -2}}, "downtime_steps must not be negative"),
    ({"convergence": {"poll_interval": 0}}, "poll_interval must be positive"),
    ({"parallel_connections": 0}, "parallel_connections must be between 1 and 255"),
    ({"auto_converge": True, "auto_converge_increment": 150}, "at most 100"),
    ({"migrate_uri": "http://hv2"}, "must start with tcp://"),
    ({"migrate_uri": "tcp://"}, "names no host"),
    ({"migrate_uri": "tcp://hv2:99999"}, "malformed"),
    ({"listen_address": "not an address!"}, "neither an IP address nor a host name"),
    ({"dest_name": "a/b"}, "not a valid domain name"),
    ({"xml": "<domain><name>x"}, "not well-formed XML"),
    ({"persistent_xml": "<network/>"}, "expected <domain>"),
    ({"name": None}, "one of name or uuid is required"),
    ({"name": None, "uuid": "not-a-uuid"}, "is not a UUID"),
    ({"compression": ["zlib"]}, "compression zlib is multifd compression"),
    ({"compression": ["zlib", "mt"], "parallel_connections": 2}, "cannot be combined with mt"),
    ({"compression": ["zstd", "zlib"], "parallel_connections": 2}, "both zlib and zstd"),
])
def test_bad_inputs_refused(overrides, message):
    error = refused(message, **overrides)
    assert error.kind == "validation"
    assert error.dest_uri == DEST


def test_every_bad_input_is_reported_at_once():
    error = refused("4 problems with the options", bandwidth=-1, tunnelled=True, p2p=False,
                    dest_uri="qemu:///system", timeout=-1)
    for part in ("bandwidth must not be negative", "tunnelled migration needs p2p: true", "dest_uri is local",
                 "timeout must not be negative"):
        assert part in error.message, error.message
    assert "set p2p: true or tunnelled: false" in error.hint
    assert (error.kind, error.domain, error.dest_uri) == ("validation", "vm1", "qemu:///system")


def test_one_bad_input_keeps_its_own_operation_and_hint():
    error = refused("tunnelled migration needs p2p", tunnelled=True, p2p=False)
    assert error.message.startswith("tunnelled migration needs p2p")
    assert error.hint == "set p2p: true or tunnelled: false"


def test_multifd_compression_without_parallel_connections_says_what_to_set():
    error = refused("parallel_connections is not set", compression=["zstd"])
    assert error.hint == "set parallel_connections (2 or more), or use xbzrle or mt instead"
    assert (error.source_uri, error.dest_uri) == ("qemu:///system", DEST)


def test_multifd_compression_with_parallel_connections_passes():
    checked = validate_request(request(compression=["zstd"], parallel_connections=4), never_local)
    assert checked.compression == ["zstd"]


def test_unknown_convergence_key_refused():
    with pytest.raises(ValidationError, match="unknown keys stall_timeout"):
        request(convergence={"stall_timeout": 10})


def test_valid_request_passes_and_normalizes_uuid():
    checked = validate_request(request(name=None, uuid=UUID.upper()), never_local)
    assert checked.uuid == UUID


def source_info(persistent=True, uuid=UUID):
    return DomainInfo(name="vm1", uuid=uuid, state="running", reason="booted", persistent=persistent,
                      max_memory_kib=1048576, memory_kib=1048576)


def test_undefine_without_persist_refused_on_persistent_domain():
    with pytest.raises(ValidationError, match="would leave 'vm1' defined on no host") as caught:
        validate_against_domain(request(persistent=False), source_info())
    assert "confirm_config_removal" in caught.value.hint


def test_undefine_without_persist_allowed_when_confirmed_or_transient():
    validate_against_domain(request(persistent=False, confirm_config_removal=True), source_info())
    validate_against_domain(request(persistent=False), source_info(persistent=False))
    validate_against_domain(request(persistent=False, undefine_source=False), source_info())


def test_xml_with_other_uuid_refused():
    other = lv.domain_xml("vm1", "11111111-2222-3333-4444-555555555555")
    with pytest.raises(ValidationError, match="xml declares UUID 11111111"):
        validate_against_domain(request(xml=other), source_info())


def test_migrate_disks_naming_unknown_disk_refused():
    guest = guest_spec(lv.domain_xml("vm1", UUID))
    with pytest.raises(ValidationError, match=r"does not have: vdz \(it has vda\)"):
        validate_disks_named(request(copy_storage="all", migrate_disks=["vda", "vdz"]), source_info(), guest)


# ---------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize("overrides,expected", [
    ({}, ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]),
    ({"p2p": False}, ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]),
    ({"tunnelled": True, "persistent": False, "undefine_source": False},
     ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_TUNNELLED"]),
    ({"tls": True, "undefine_source": False},
     ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_TLS"]),
    ({"live": False}, ["VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE",
                       "VIR_MIGRATE_OFFLINE"]),
    ({"copy_storage": "all", "undefine_source": False},
     ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_NON_SHARED_DISK"]),
    ({"copy_storage": "inc", "undefine_source": False},
     ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_NON_SHARED_INC"]),
    ({"compression": ["xbzrle"], "parallel_connections": 4, "auto_converge": True, "post_copy": True,
      "persistent": False, "undefine_source": False},
     ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_COMPRESSED", "VIR_MIGRATE_AUTO_CONVERGE",
      "VIR_MIGRATE_POSTCOPY", "VIR_MIGRATE_PARALLEL"]),
])
def test_flags(overrides, expected):
    flags = migration_flags(validate_request(request(**overrides), never_local))
    assert flag_names(flags) == expected
    assert flags == sum(getattr(lv, name) for name in expected)


def test_default_flags_value():
    # LIVE 1 | PEER2PEER 2 | PERSIST_DEST 8 | UNDEFINE_SOURCE 16
    assert migration_flags(request()) == 27


# ---------------------------------------------------------------------------
# Params


def test_persistent_xml_always_sent_when_persistent():
    source_xml = lv.domain_xml("vm1", UUID)
    req = request()
    params = migration_params(req, persistent_xml_for(req, source_xml))
    assert params == {"persistent_xml": source_xml}


def test_persistent_xml_prefers_option_then_xml():
    custom_live = lv.domain_xml("vm1", UUID, memory_kib=2048)
    custom_persist = lv.domain_xml("vm1", UUID, memory_kib=4096)
    assert persistent_xml_for(request(xml=custom_live), "src") == custom_live
    assert persistent_xml_for(request(xml=custom_live, persistent_xml=custom_persist), "src") == custom_persist
    assert persistent_xml_for(request(persistent=False, undefine_source=False), "src") is None


def test_no_persistent_xml_when_not_persistent():
    req = request(persistent=False, undefine_source=False)
    assert migration_params(req, "ignored") == {}


def test_every_param():
    req = validate_request(request(
        dest_name="vm1-new", xml=lv.domain_xml("vm1", UUID), bandwidth=500, post_copy=True,
        postcopy_bandwidth=1000, migrate_uri="tcp://10.0.0.2:49152", listen_address="0.0.0.0",
        copy_storage="all", migrate_disks=["vda"], compression=["xbzrle", "mt"], parallel_connections=4,
        tls=True, tls_destination="hv2.example.com", auto_converge=True, auto_converge_initial=20,
        auto_converge_increment=10,
    ), never_local)
    params = migration_params(req, "PERSIST")
    assert params == {
        "destination_name": "vm1-new",
        "destination_xml": req.xml,
        "persistent_xml": "PERSIST",
        "bandwidth": 500,
        "bandwidth.postcopy": 1000,
        "migrate_uri": "tcp://10.0.0.2:49152",
        "listen_address": "0.0.0.0",
        "migrate_disks": ["vda"],
        "compression": ["xbzrle", "mt"],
        "parallel.connections": 4,
        "tls.destination": "hv2.example.com",
        "auto_converge.initial": 20,
        "auto_converge.increment": 10,
    }


def test_planned_migrate_disks_override_and_need_copy_storage():
    assert migration_params(request(copy_storage="inc"), None, ["vdb"]) == {"migrate_disks": ["vdb"]}
    assert "migrate_disks" not in migration_params(request(), None, ["vdb"])


def test_redact_params_hides_xml():
    shown = redact_params({"persistent_xml": "<domain>secret</domain>", "bandwidth": 5})
    assert shown["bandwidth"] == 5
    assert "secret" not in shown["persistent_xml"]
    assert shown["persistent_xml"].startswith("<23 bytes of domain XML, sha256 ")


def test_max_downtime_and_timeout_feed_the_policy():
    req = request(max_downtime=250, timeout=600, convergence={"on_timeout": "suspend", "downtime_steps": 3})
    assert req.convergence == dataclasses.replace(PolicyConfig(), initial_downtime=250, hard_timeout=600,
                                                  on_timeout="suspend", downtime_steps=3)
