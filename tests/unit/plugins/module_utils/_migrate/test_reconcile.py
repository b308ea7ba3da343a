"""Every row of the reconciliation table, and the predicted placement."""

from __future__ import annotations

import pytest
from ansible_collections.virtops.migration.plugins.module_utils._common.errors import (
    DomainNotFound,
    MigrationInProgress,
    SplitBrain,
    ValidationError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    DomainInfo,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.reconcile import (
    Observed,
    paused_source_handling,
    predicted_placement,
    reconcile,
    refuse_same_host,
)
from ansible_collections.virtops.migration.plugins.module_utils._migrate.request import (
    MigrationRequest,
)

UUID = "6f1b1a52-2f0e-4c57-9c3b-6d3f9f8e2a10"


def dom(state="running", persistent=True, reason=None):
    reason = reason or {"running": "booted", "paused": "user", "shutoff": "unknown"}[state]
    return DomainInfo("vm1", UUID, state, reason, persistent, 1048576, 1048576)


def req(**overrides):
    values = {"name": "vm1", "dest_uri": "qemu+tls://hv2/system"}
    values.update(overrides)
    return MigrationRequest.from_params(values)


def decide(source, dest, request=None, **observed):
    return reconcile(request or req(), Observed(source, dest, **observed))


def test_running_on_source_only_migrates():
    decision = decide(dom(), None)
    assert (decision.actions, decision.changed) == (["migrate"], True)
    assert decision.explanation == "running on source only: live migration"


def test_running_on_source_with_inactive_definition_on_destination_migrates():
    decision = decide(dom(), dom("shutoff"))
    assert (decision.actions, decision.changed) == (["migrate"], True)


def test_running_on_destination_only_config_as_requested_is_noop():
    decision = decide(None, dom())
    assert (decision.actions, decision.changed) == ([], False)
    assert "nothing to do" in decision.explanation


def test_running_on_destination_transient_with_persistent_asked_defines_it():
    decision = decide(None, dom(persistent=False))
    assert (decision.actions, decision.changed) == (["define_on_destination"], True)


def test_transient_on_destination_persistent_false_is_noop():
    decision = decide(None, dom(persistent=False), req(persistent=False, undefine_source=False))
    assert (decision.actions, decision.changed) == ([], False)


def test_persistent_on_destination_with_persistent_false_warns_only():
    decision = decide(None, dom(), req(persistent=False, undefine_source=False))
    assert (decision.actions, decision.changed) == ([], False)
    assert decision.warnings == [("domain is already persistent on the destination; persistent: false "
                                 "does not undefine it")]


def test_running_on_destination_source_keeps_inactive_definition_undefines_source():
    decision = decide(dom("shutoff"), dom())
    assert (decision.actions, decision.changed) == (["undefine_source"], True)


def test_source_definition_kept_when_undefine_source_false():
    decision = decide(dom("shutoff"), dom(), req(undefine_source=False))
    assert (decision.actions, decision.changed) == ([], False)
    assert "keeps its inactive definition" in decision.explanation


def test_transient_destination_and_leftover_source_definition_do_both():
    decision = decide(dom("shutoff"), dom(persistent=False))
    assert decision.actions == ["define_on_destination", "undefine_source"]
    assert decision.changed is True


def test_paused_on_destination_warns():
    decision = decide(None, dom("paused"))
    assert decision.changed is False
    assert decision.warnings == [("domain is paused on the destination (reason: user); this module "
                                 "does not resume it there")]


@pytest.mark.parametrize("source_state,dest_state", [
    ("running", "running"), ("running", "paused"), ("paused", "running"), ("paused", "paused"),
])
def test_active_on_both_is_split_brain(source_state, dest_state):
    with pytest.raises(SplitBrain, match="active on both hosts") as caught:
        decide(dom(source_state), dom(dest_state))
    assert caught.value.dest_uri == "qemu+tls://hv2/system"
    assert caught.value.domain == "vm1"


def test_paused_on_source_resume_then_migrate():
    decision = decide(dom("paused", reason="migration"), None)
    assert (decision.actions, decision.changed) == (["resume_source", "migrate"], True)
    assert "resuming it on the source, then migrating" in decision.explanation


def test_paused_on_source_migrate_paused_per_option():
    decision = decide(dom("paused", reason="migration"), None, req(on_paused_source="migrate_paused"))
    assert (decision.actions, decision.changed) == (["migrate_paused"], True)
    assert "stays paused" in decision.explanation


def test_user_paused_source_moves_paused_and_is_never_resumed():
    decision = decide(dom("paused", reason="user"), None)
    assert (decision.actions, decision.changed) == (["migrate_paused"], True)
    assert "paused by its user" in decision.explanation
    assert "arrives paused" in decision.explanation
    assert decision.warnings and "stays paused" in decision.warnings[0]


def test_user_paused_source_refused_when_asked():
    with pytest.raises(ValidationError, match="paused by its user.*on_paused_source: refuse.*nothing was touched"):
        decide(dom("paused", reason="user"), None, req(on_paused_source="refuse"))


def test_migration_paused_source_resumed_even_with_refuse():
    decision = decide(dom("paused", reason="migration"), None, req(on_paused_source="refuse"))
    assert decision.actions == ["resume_source", "migrate"]


@pytest.mark.parametrize("reason,option,handling", [
    ("migration", "resume", "resume"), ("migration", "migrate_paused", "migrate_paused"),
    ("migration", "refuse", "resume"),
    ("user", "resume", "migrate_paused"), ("user", "migrate_paused", "migrate_paused"), ("user", "refuse", "refuse"),
    ("ioerror", "resume", "migrate_paused"), ("unknown", "resume", "migrate_paused"),
    ("watchdog", "refuse", "refuse"),
])
def test_only_a_pause_by_migration_is_resumed(reason, option, handling):
    assert paused_source_handling(reason, option) == handling


def test_same_host_uuid_is_refused_as_the_source_host():
    with pytest.raises(ValidationError, match="the destination is the source host.*host UUID 1234") as caught:
        refuse_same_host(req(), "1234", "1234")
    assert "destroy" not in str(caught.value).lower()
    assert refuse_same_host(req(), "1234", "5678") is True
    assert refuse_same_host(req(), None, "5678") is False
    assert refuse_same_host(req(), None, None) is False


def test_split_brain_hint_advises_destroying_only_two_running_copies_on_distinct_hosts():
    with pytest.raises(SplitBrain) as proven:
        decide(dom(), dom(), hosts_distinct=True)
    assert "destroy the other one by hand" in proven.value.hint
    with pytest.raises(SplitBrain) as unproven:
        decide(dom(), dom(), hosts_distinct=False)
    assert "destroy nothing" in unproven.value.hint
    assert "destroy the other" not in unproven.value.hint
    with pytest.raises(SplitBrain) as one_paused:
        decide(dom(), dom("paused"), hosts_distinct=True)
    assert "destroy nothing" in one_paused.value.hint


def test_not_found_on_either_uses_no_domain_wording():
    with pytest.raises(DomainNotFound, match="Domain not found: no domain with matching name 'vm1'"):
        decide(None, None)


def test_not_found_by_uuid_wording():
    with pytest.raises(DomainNotFound, match=f"no domain with matching uuid '{UUID}'"):
        decide(None, None, req(name=None, uuid=UUID))


def test_job_running_reports_in_progress():
    with pytest.raises(MigrationInProgress, match="already running"):
        decide(dom(), dom("paused", reason="migration"), source_job_active=True)


def test_same_name_other_uuid_on_destination_refused():
    with pytest.raises(ValidationError, match="different domain"):
        decide(dom(), None, dest_name_owner="00000000-0000-0000-0000-000000000001")


def test_shutoff_on_source_offline_migrates():
    decision = decide(dom("shutoff"), None, req(live=False))
    assert (decision.actions, decision.changed) == (["migrate_offline"], True)


def test_shutoff_on_source_live_refused():
    with pytest.raises(ValidationError, match="shut off on the source"):
        decide(dom("shutoff"), None)


def test_running_on_source_offline_refused():
    with pytest.raises(ValidationError, match="offline migration"):
        decide(dom(), None, req(live=False))


def test_defined_on_both_offline_undefines_source():
    decision = decide(dom("shutoff"), dom("shutoff"), req(live=False))
    assert (decision.actions, decision.changed) == (["undefine_source"], True)
    decision = decide(dom("shutoff"), dom("shutoff"), req(live=False, undefine_source=False))
    assert (decision.actions, decision.changed) == ([], False)


def test_defined_on_both_live_refused():
    with pytest.raises(ValidationError, match="running on neither"):
        decide(dom("shutoff"), dom("shutoff"))


def test_shutoff_on_destination_only():
    assert decide(None, dom("shutoff"), req(live=False)).changed is False
    decision = decide(None, dom("shutoff"))
    assert decision.changed is False
    assert decision.warnings == [("domain is defined on the destination but shut off; this module does "
                                 "not start it")]


def test_failed_postcopy_resumed_only_with_post_copy():
    source, dest = dom("paused", reason="postcopy_failed"), dom("paused", reason="postcopy_failed")
    with pytest.raises(SplitBrain, match="post-copy migration failed"):
        decide(source, dest)
    decision = decide(source, dest, req(post_copy=True))
    assert (decision.actions, decision.changed) == (["postcopy_resume"], True)


@pytest.mark.parametrize("overrides,source,expected", [
    ({}, dom(), {"source": {"present": False, "state": None, "persistent": False},
                 "destination": {"present": True, "state": "running", "persistent": True}}),
    ({"undefine_source": False}, dom(),
     {"source": {"present": True, "state": "shutoff", "persistent": True},
      "destination": {"present": True, "state": "running", "persistent": True}}),
    ({"persistent": False, "undefine_source": False}, dom(persistent=False),
     {"source": {"present": False, "state": None, "persistent": False},
      "destination": {"present": True, "state": "running", "persistent": False}}),
    ({"live": False}, dom("shutoff"),
     {"source": {"present": False, "state": None, "persistent": False},
      "destination": {"present": True, "state": "shutoff", "persistent": True}}),
])
def test_predicted_placement(overrides, source, expected):
    request = req(**overrides)
    observed = Observed(source, None)
    assert predicted_placement(request, observed, reconcile(request, observed)) == expected
