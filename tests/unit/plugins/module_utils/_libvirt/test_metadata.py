"""The collection's element in a domain's <metadata>: parse, render, and libvirt's get/set over the fake."""

from __future__ import annotations

import fake_libvirt as lv
import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    MigrationError,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.metadata import (
    KEY,
    NAMESPACE,
    GuestMetadata,
    Origin,
    metadata_problems,
    parse_guest_metadata,
    read_guest_metadata,
    render_guest_metadata,
    with_origin,
    write_flags,
    write_guest_metadata,
)

FULL = GuestMetadata(
    anti_affinity=(("db", "hard"), ("cache", "soft")),
    affinity=("web",),
    pin_policy="skip",
    priority=10,
    require_labels=(("rack", "r1"), ("zone", "a")),
    origin=Origin(host="hv1", host_uuid="5f3c0b8e-0000-4000-8000-000000000001", run_id="r-1",
                  time="2026-12-01T14:00:00Z"),
)


def domain_with(element: str, name: str = "vm1") -> str:
    return (f"<domain type='kvm'><name>{name}</name><uuid>5f3c0b8e-0000-4000-8000-0000000000aa</uuid>"
            f"<metadata><other:thing xmlns:other='urn:other'><other:pin policy='bogus'/></other:thing>"
            f"{element}</metadata><devices/></domain>")


# ---------------------------------------------------------------------------
# parse / render


def test_render_then_parse_gives_the_same_value():
    assert parse_guest_metadata(render_guest_metadata(FULL)) == FULL


def test_render_is_the_stripped_element_libvirt_takes():
    text = render_guest_metadata(GuestMetadata(pin_policy="block", priority=-3))
    assert text == '<guest><pin policy="block" /><priority value="-3" /></guest>'


def test_empty_or_absent_is_the_empty_value():
    assert parse_guest_metadata(None) == GuestMetadata()
    assert parse_guest_metadata("") == GuestMetadata()
    assert parse_guest_metadata("<guest/>") == GuestMetadata()
    assert parse_guest_metadata(domain_with("")) == GuestMetadata()
    assert GuestMetadata().empty


def test_full_domain_xml_with_the_namespaced_element():
    element = (f"<virtops:guest xmlns:virtops='{NAMESPACE}'><virtops:anti-affinity group='db' mode='soft'/>"
               "<virtops:pin policy='shutdown'/><virtops:origin host='hv3'/></virtops:guest>")
    meta = parse_guest_metadata(domain_with(element))
    assert meta == GuestMetadata(anti_affinity=(("db", "soft"),), pin_policy="shutdown", origin=Origin("hv3"))


def test_an_element_of_another_namespace_is_not_ours():
    other = "<x:guest xmlns:x='urn:other'><x:pin policy='skip'/></x:guest>"
    assert parse_guest_metadata(other) == GuestMetadata()
    assert parse_guest_metadata(domain_with(other)) == GuestMetadata()


def test_unknown_children_are_kept_aside_and_unknown_attributes_ignored():
    text = ("<guest future='1'><pin policy='skip' reason='licence'/><maintenance-window start='02:00'/>"
            "<x:pin xmlns:x='urn:other' policy='nonsense'/><affinity group='web' weight='3'/></guest>")
    meta = parse_guest_metadata(text)
    assert (meta.affinity, meta.pin_policy) == (("web",), "skip")
    assert meta.unknown[0] == '<maintenance-window start="02:00" />'
    assert "urn:other" in meta.unknown[1] and 'policy="nonsense"' in meta.unknown[1]
    assert not meta.empty


def test_unknown_children_are_written_back_unchanged():
    meta = parse_guest_metadata("<guest><maintenance-window start='02:00'><day>sun</day></maintenance-window>"
                                "<priority value='1'/></guest>")
    again = parse_guest_metadata(render_guest_metadata(with_origin(meta, Origin("hv1"))))
    assert again.unknown == meta.unknown and again.origin == Origin("hv1") and again.priority == 1


def test_unknown_children_survive_a_write_through_libvirt(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<guest><maintenance-window start='02:00'/></guest>", KEY,
                    NAMESPACE, lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG)
    meta = read_guest_metadata(dom)
    write_guest_metadata(dom, with_origin(meta, Origin("hv1")), persistent=True)
    assert read_guest_metadata(dom, config=True).unknown == ('<maintenance-window start="02:00" />',)


def test_anti_affinity_mode_defaults_to_hard():
    assert parse_guest_metadata("<guest><anti-affinity group='db'/></guest>").anti_affinity == (("db", "hard"),)


def test_order_and_repeats_do_not_matter():
    one = GuestMetadata(affinity=("b", "a", "a"), require_labels=(("z", "1"), ("a", "2")))
    two = GuestMetadata(affinity=("a", "b"), require_labels=(("a", "2"), ("z", "1")))
    assert one == two
    assert one.affinity == ("a", "b")


@pytest.mark.parametrize("element, needle", [
    ("<anti-affinity group='db' mode='medium'/>", "mode 'medium'"),
    ("<anti-affinity group='db' mode='hard'/><anti-affinity group='db' mode='soft'/>", "both modes"),
    ("<anti-affinity mode='hard'/>", "anti-affinity group ''"),
    ("<affinity group=' web'/>", "leading or trailing blanks"),
    ("<pin policy='forever'/>", "pin policy 'forever'"),
    ("<pin/>", "<pin> has no policy attribute"),
    ("<pin policy='skip'/><pin policy='block'/>", "<pin> is given 2 times"),
    ("<priority value='high'/>", "priority 'high' is not an integer"),
    ("<require-label name='rack' value='r1'/><require-label name='rack' value='r2'/>", "more than one value"),
    ("<origin host-uuid='x'/>", "origin host ''"),
    ("<origin host='a'/><origin host='b'/>", "<origin> is given 2 times"),
])
def test_bad_values_are_refused_naming_the_guest_and_the_value(element, needle):
    with pytest.raises(ValidationError) as raised:
        parse_guest_metadata(f"<guest>{element}</guest>", guest="db-1")
    text = str(raised.value)
    assert "domain 'db-1'" in text
    assert needle in text
    assert "guest_placement" in text


def test_a_domain_xml_names_its_guest_in_the_error():
    element = f"<v:guest xmlns:v='{NAMESPACE}'><v:pin policy='never'/></v:guest>"
    with pytest.raises(ValidationError, match="domain 'db-2'.*pin policy 'never'"):
        parse_guest_metadata(domain_with(element, name="db-2"))


def test_every_problem_is_named_at_once():
    with pytest.raises(ValidationError) as raised:
        parse_guest_metadata("<guest><pin policy='x'/><priority value='y'/></guest>", guest="vm9")
    assert "pin policy 'x'" in str(raised.value) and "priority 'y'" in str(raised.value)


def test_not_xml_is_a_validation_error():
    with pytest.raises(ValidationError, match="not well-formed"):
        parse_guest_metadata("<guest><pin", guest="vm1")


def test_problems_of_values_built_in_code():
    assert metadata_problems(FULL) == []
    assert metadata_problems(GuestMetadata(priority=True)) == ["priority True is not an integer"]


def test_with_origin_replaces_only_the_origin():
    moved = with_origin(FULL, Origin("hv9"))
    assert moved.origin == Origin("hv9") and moved.anti_affinity == FULL.anti_affinity
    assert with_origin(FULL, None).origin is None


def test_as_dict():
    assert FULL.as_dict()["anti_affinity"] == [{"group": "cache", "mode": "soft"}, {"group": "db", "mode": "hard"}]
    assert FULL.as_dict()["require_labels"] == {"rack": "r1", "zone": "a"}
    assert FULL.as_dict()["origin"]["host"] == "hv1"


# ---------------------------------------------------------------------------
# libvirt get / set


def test_no_metadata_reads_as_empty(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    assert read_guest_metadata(dom) == GuestMetadata()


def test_write_a_running_persistent_guest_sets_live_and_config(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    write_guest_metadata(dom, FULL, persistent=True)
    assert world.calls[-1][2][-1] == lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG
    assert world.calls[-1][2][3:5] == (KEY, NAMESPACE)
    assert read_guest_metadata(dom) == FULL
    assert read_guest_metadata(dom, config=True) == FULL
    assert parse_guest_metadata(dom.XMLDesc()) == FULL


def test_write_a_stopped_guest_sets_config_only(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1", state=lv.VIR_DOMAIN_SHUTOFF)
    write_guest_metadata(dom, FULL, persistent=True)
    assert world.calls[-1][2][-1] == lv.VIR_DOMAIN_AFFECT_CONFIG
    assert read_guest_metadata(dom) == FULL


def test_write_a_transient_guest_sets_live_only(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1", persistent=False)
    write_guest_metadata(dom, FULL, persistent=False)
    assert world.calls[-1][2][-1] == lv.VIR_DOMAIN_AFFECT_LIVE
    assert read_guest_metadata(dom) == FULL


def test_write_flags():
    assert write_flags(active=True, persistent=True) == lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG
    assert write_flags(active=False, persistent=True) == lv.VIR_DOMAIN_AFFECT_CONFIG
    assert write_flags(active=True, persistent=False) == lv.VIR_DOMAIN_AFFECT_LIVE


def test_writing_the_empty_value_removes_the_element(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    write_guest_metadata(dom, FULL, persistent=True)
    write_guest_metadata(dom, GuestMetadata(), persistent=True)
    assert world.calls[-1][2][2] is None
    assert read_guest_metadata(dom) == GuestMetadata()
    assert NAMESPACE not in dom.XMLDesc()


def test_other_namespaces_are_left_alone(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<note>keep</note>", "other", "urn:other",
                    lv.VIR_DOMAIN_AFFECT_LIVE)
    write_guest_metadata(dom, FULL, persistent=False)
    assert dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "urn:other") == "<note>keep</note>"


def test_bad_values_are_refused_before_libvirt_is_called(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    with pytest.raises(ValidationError, match="domain 'vm1'.*pin policy 'always'"):
        write_guest_metadata(dom, GuestMetadata(pin_policy="always"), persistent=True)
    assert world.mutations == []


def test_a_libvirt_refusal_is_a_migration_error_with_libvirts_text(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    dom.fail_on["setMetadata"] = lv.libvirtError("Requested operation is not valid: domain is being migrated",
                                                 lv.VIR_ERR_OPERATION_INVALID)
    with pytest.raises(MigrationError) as raised:
        write_guest_metadata(dom, FULL, persistent=True)
    assert "write placement metadata failed (domain 'vm1')" in str(raised.value)
    assert "being migrated" in str(raised.value)


def test_a_bad_element_already_on_the_guest_is_a_validation_error_on_read(world):
    dom = world.hosts["qemu:///system"].add_domain("vm1")
    dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, "<guest><priority value='soon'/></guest>", KEY, NAMESPACE,
                    lv.VIR_DOMAIN_AFFECT_LIVE)
    with pytest.raises(ValidationError, match="domain 'vm1'.*priority 'soon'"):
        read_guest_metadata(dom)


def test_the_element_travels_with_a_migration(world):
    from fake_libvirt import MigrationScript

    dom = world.hosts["qemu:///system"].add_domain("vm1")
    dom.script = MigrationScript()
    write_guest_metadata(dom, FULL, persistent=True)
    dom.migrateToURI3("qemu+tls://hv2.example.com/system", {}, lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_LIVE
                      | lv.VIR_MIGRATE_PERSIST_DEST | lv.VIR_MIGRATE_UNDEFINE_SOURCE)
    moved = world.hosts["qemu+tls://hv2.example.com/system"].domains[dom.UUIDString()]
    assert read_guest_metadata(moved) == FULL
    assert read_guest_metadata(moved, config=True) == FULL
