"""Placement rules of the evacuation (pure: no libvirt)."""

from __future__ import annotations

import random

from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    CPU_FAILED,
    CPU_PASSED,
    CPU_WARNING,
    LIVE,
    OFFLINE,
    CpuVerdict,
    DestinationCapacity,
    GuestToMove,
    placement_order,
    plan_placement,
)

MIB = 1024  # KiB


def guest(name, mib, mode=LIVE, **kwargs):
    state = "running" if mode == LIVE else "shutoff"
    return GuestToMove(name=name, uuid=f"uuid-{name}", state=state, persistent=True, memory_kib=mib * MIB,
                       mode=mode, **kwargs)


def dest(name, available_mib, reserve_mib=512, excluded=None):
    return DestinationCapacity(name, f"qemu+tls://{name}.example.com/system", available_mib * MIB,
                               reserve_mib * MIB, excluded)


def where(plan):
    return {item.guest.name: item.destination for item in plan.assignments}


def test_fits_exactly_up_to_the_reserve():
    plan = plan_placement([guest("a", 3584)], [dest("hv2", 4096, reserve_mib=512)])
    assert where(plan) == {"a": "hv2"}
    assert plan.loads[0].as_dict()["left_after_mib"] == 0


def test_one_mib_over_the_reserve_does_not_fit_and_says_why():
    plan = plan_placement([guest("a", 3585)], [dest("hv2", 4096, reserve_mib=512)])
    assert where(plan) == {"a": None}
    reason = plan.unplaceable[0].reason
    assert reason.startswith("fits nowhere: hv2: 3584 MiB left")
    assert "reserve 512 MiB" in reason and "needs 3585 MiB" in reason


def test_guests_already_planned_count_against_the_destination():
    plan = plan_placement([guest("a", 2048), guest("b", 2048)], [dest("hv2", 4096 + 512)])
    assert where(plan) == {"a": "hv2", "b": "hv2"}
    plan = plan_placement([guest("a", 2048), guest("b", 2049)], [dest("hv2", 4096 + 512)])
    assert where(plan) == {"b": "hv2", "a": None}
    assert "planned 2049 MiB" in plan.unplaceable[0].reason


def test_largest_first_then_most_memory_left_after_placement():
    # usable: hv2 8192, hv3 6144
    guests = [guest("small", 1024), guest("big", 4096), guest("mid1", 2048), guest("mid2", 2048)]
    plan = plan_placement(guests, [dest("hv2", 8192 + 512), dest("hv3", 6144 + 512)])
    assert [item.guest.name for item in plan.assignments] == ["big", "mid1", "mid2", "small"]
    # big: hv2 4096 left vs hv3 2048 -> hv2; mid1: hv2 2048 vs hv3 4096 -> hv3;
    # mid2: hv2 2048 vs hv3 2048, 1 planned each -> name: hv2; small: hv2 1024 vs hv3 3072 -> hv3
    assert where(plan) == {"big": "hv2", "mid1": "hv3", "mid2": "hv2", "small": "hv3"}
    assert "most memory left after placement: hv2 4096 MiB left" in plan.assignments[0].reason
    assert "other candidates: hv3 2048 MiB left" in plan.assignments[0].reason


def test_tie_on_memory_goes_to_fewer_planned_guests_then_name():
    guests = [guest("a", 1024), guest("b", 512), guest("c", 512)]
    # usable: hv2 2048, hv3 2560
    plan = plan_placement(guests, [dest("hv2", 2048 + 512), dest("hv3", 2560 + 512)])
    # a: hv2 1024 left vs hv3 1536 -> hv3 (now 1536 left, 1 planned)
    # b: hv2 1536 left (0 planned) vs hv3 1024 -> hv2 (1536 left, 1 planned)
    # c: hv2 1024 vs hv3 1024, 1 planned each -> hv2 by name
    assert where(plan) == {"a": "hv3", "b": "hv2", "c": "hv2"}
    plan = plan_placement([guest("x", 100)], [dest("hv3", 4096), dest("hv2", 4096)])
    assert where(plan) == {"x": "hv2"}


def test_cpu_incompatible_destination_is_skipped_and_named():
    guests = [guest("a", 1024)]
    verdicts = {("uuid-a", "hv2"): CpuVerdict(CPU_FAILED, "the destination hypervisor cannot run the guest CPU"),
                ("uuid-a", "hv3"): CpuVerdict(CPU_PASSED, "destination can run the guest CPU (identical)")}
    plan = plan_placement(guests, [dest("hv2", 16384), dest("hv3", 2048)], verdicts)
    assert where(plan) == {"a": "hv3"}
    assert "hv2: cpu: the destination hypervisor cannot run the guest CPU" in plan.assignments[0].reason


def test_cpu_incompatible_everywhere_is_unplaceable():
    verdicts = {("uuid-a", name): CpuVerdict(CPU_FAILED, "incompatible") for name in ("hv2", "hv3")}
    plan = plan_placement([guest("a", 1024)], [dest("hv2", 16384), dest("hv3", 16384)], verdicts)
    assert where(plan) == {"a": None}
    assert plan.unplaceable[0].reason == "fits nowhere: hv2: cpu: incompatible; hv3: cpu: incompatible"


def test_cpu_warning_still_places_and_is_mentioned():
    verdicts = {("uuid-a", "hv2"): CpuVerdict(CPU_WARNING, "host-passthrough CPU cannot be compared")}
    plan = plan_placement([guest("a", 1024)], [dest("hv2", 4096)], verdicts)
    assert where(plan) == {"a": "hv2"}
    assert plan.assignments[0].reason.endswith("cpu: host-passthrough CPU cannot be compared")


def test_maintenance_host_is_never_chosen_even_when_it_is_the_roomiest():
    guests = [guest("a", 1024), guest("b", 1024)]
    plan = plan_placement(guests, [dest("hv2", 65536, excluded="maintenance (maintenance_hosts)"),
                                   dest("hv3", 4096)])
    assert where(plan) == {"a": "hv3", "b": "hv3"}
    assert "hv2: maintenance (maintenance_hosts)" in plan.assignments[0].reason
    assert plan.loads[0].planned == []


def test_everything_excluded_means_unplaceable():
    plan = plan_placement([guest("a", 1)], [dest("hv2", 4096, excluded="unreachable (Connection refused)")])
    assert plan.unplaceable[0].reason == "fits nowhere: hv2: unreachable (Connection refused)"
    assert plan_placement([guest("a", 1)], []).unplaceable[0].reason == "fits nowhere: no destination given"


def test_plan_is_deterministic_whatever_the_input_order():
    guests = [guest(f"vm{i}", size) for i, size in enumerate([512, 1024, 1024, 2048, 768, 1024, 512, 3072])]
    dests = [dest("hv2", 6000), dest("hv3", 6000), dest("hv4", 5000)]
    expected = plan_placement(guests, dests).as_list()
    for seed in range(5):
        shuffled_guests, shuffled_dests = list(guests), [dest(d.name, d.available_kib // MIB) for d in dests]
        random.Random(seed).shuffle(shuffled_guests)
        random.Random(seed + 100).shuffle(shuffled_dests)
        assert plan_placement(shuffled_guests, shuffled_dests).as_list() == expected


def test_pinned_guest_stays_where_it_is_even_if_another_host_is_better():
    pinned = guest("a", 1024, pinned_to="hv2", pinned_active=True)
    plan = plan_placement([guest("b", 4096), pinned], [dest("hv2", 2048), dest("hv3", 65536)])
    assert [item.guest.name for item in plan.assignments] == ["a", "b"]
    assert where(plan) == {"a": "hv2", "b": "hv3"}
    assert plan.assignments[0].reason.startswith("already present on hv2")
    assert plan.loads[0].planned_kib == 0  # it already runs there: its memory is already used


def test_pinned_to_a_maintenance_host_is_finished_there_but_unreachable_is_not():
    pinned = guest("a", 1024, pinned_to="hv2", pinned_active=True)
    plan = plan_placement([pinned], [dest("hv2", 4096, excluded="maintenance (maintenance_hosts)"),
                                     dest("hv3", 4096)])
    assert where(plan) == {"a": "hv2"}
    assert "note: hv2 is maintenance" in plan.assignments[0].reason
    plan = plan_placement([pinned], [dest("hv2", 0, excluded="unreachable (refused)"), dest("hv3", 4096)])
    assert where(plan) == {"a": None}
    assert "cannot be used (unreachable (refused))" in plan.unplaceable[0].reason


def test_stopped_guests_need_no_memory_and_spread_by_count():
    guests = [guest("s1", 8192, OFFLINE), guest("s2", 8192, OFFLINE), guest("s3", 8192, OFFLINE)]
    plan = plan_placement(guests, [dest("hv2", 1024), dest("hv3", 2048)])
    assert where(plan) == {"s1": "hv3", "s2": "hv2", "s3": "hv3"}
    assert all(load.planned_kib == 0 for load in plan.loads)
    assert "fewest guests planned" in plan.assignments[0].reason


def test_order_running_before_stopped_largest_first():
    guests = [guest("s", 9999, OFFLINE), guest("r1", 10), guest("r2", 20), guest("p", 5, pinned_to="hv2")]
    assert [g.name for g in placement_order(guests)] == ["p", "r2", "r1", "s"]
