# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Placement at cluster scale: the evacuation planner on a simulated cluster (no lab, no libvirt).

    python tests/bench/placement_scale.py [--out docs/benchmarks] [--seed 14] [--runs 5]
                                          [--hosts 200] [--guests 5000]

A seeded cluster: ``--hosts`` hypervisors (256, 384 or 512 GiB; labels ``rack`` (10 hosts per rack),
``failure_domain`` (20 hosts per domain) and, on every other rack, ``storage=ssd``) running ``--guests``
guests (1 to 32 GiB, filled to about 65 % of each host) with hard and soft anti-affinity groups of three
(members on three hosts of three failure domains), affinity pairs (on one host), pinned guests (policies
skip and shutdown), priorities and guests that require ``storage=ssd``.

Two cases are planned with the evacuation's own code (``constraints.unsatisfiable``, then
``placement.Placer``): (a) one host, (b) a whole failure domain (every guest of its hosts at once, the
domain's hosts excluded as in maintenance). Each case runs ``--runs`` times, alternating with a baseline:
the same cluster with every constraint removed. It reports the planning time (median), what a checker
written here independently of the placer finds broken in the plan (hard anti-affinity, affinity, labels,
memory, excluded or own-source destinations, pinned guests moved, priority order: must be 0), soft
anti-affinity groups left sharing a host (allowed, with a warning), and how evenly memory ends up used
across the destinations (max - min and standard deviation of the used fraction), with ratios against the
baseline. Writes ``placement.json`` and ``placement.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "virtops" / "migration"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(REPO, target_is_directory=True)
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.virtops.migration.plugins.module_utils._evacuate.constraints import (
    HARD,
    NO_CONSTRAINTS,
    SHUTDOWN,
    SKIP,
    SOFT,
    GuestConstraints,
    Resident,
    unsatisfiable,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuate.placement import (
    DestinationCapacity,
    GuestToMove,
    PlacementPlan,
    Placer,
)

GIB = 1024 * 1024  # KiB
RESERVE_KIB = 4 * GIB
HOSTS_PER_RACK = 10
HOSTS_PER_DOMAIN = 20
FILL = 0.65


@dataclass(frozen=True)
class SimGuest:
    name: str
    host: str
    memory_kib: int
    constraints: GuestConstraints


@dataclass(frozen=True)
class Cluster:
    hosts: dict[str, int]  # name -> memory KiB
    labels: dict[str, dict[str, str]]
    guests: list[SimGuest]

    def without_constraints(self) -> Cluster:
        return replace(self, guests=[replace(guest, constraints=NO_CONSTRAINTS) for guest in self.guests])


# -- the simulated cluster --------------------------------------------------------------


def build_cluster(seed: int, host_count: int, guest_count: int) -> Cluster:
    rng = random.Random(seed)
    names = [f"hv{index:03d}" for index in range(host_count)]
    hosts = {name: rng.choice((256, 384, 512)) * GIB for name in names}
    labels = {name: {"rack": f"r{index // HOSTS_PER_RACK:02d}", "failure_domain": f"fd{index // HOSTS_PER_DOMAIN}",
                     **({"storage": "ssd"} if (index // HOSTS_PER_RACK) % 2 == 0 else {})}
              for index, name in enumerate(names)}
    used = dict.fromkeys(names, 0)
    sizes, weights = (1, 2, 4, 8, 16, 32), (20, 30, 25, 15, 7, 3)

    def room(host: str, kib: int) -> bool:
        return used[host] + kib <= FILL * hosts[host]

    def pick(kib: int, avoid: set[str] = frozenset(), among: list[str] | None = None) -> str:
        candidates = among or names
        for _attempt in range(200):
            host = rng.choice(candidates)
            if host not in avoid and room(host, kib):
                return host
        return min((h for h in candidates if h not in avoid), key=lambda h: used[h] / hosts[h])

    specs: list[tuple[str, int, dict[str, Any]]] = []  # (host, kib, constraint fields)
    domains = sorted({label["failure_domain"] for label in labels.values()})
    by_domain = {domain: [h for h in names if labels[h]["failure_domain"] == domain] for domain in domains}
    # anti-affinity groups of three, one member per failure domain (a domain's loss takes one replica)
    for group in range(guest_count // 25):
        mode = SOFT if group % 5 == 0 else HARD
        kib = rng.choice((4, 8)) * GIB
        for domain in rng.sample(domains, 3):
            host = pick(kib, among=by_domain[domain])
            used[host] += kib
            specs.append((host, kib, {"anti_affinity": ((f"aa{group:03d}", mode),)}))
    # affinity pairs, both on one host
    for pair in range(guest_count // 40):
        kib = rng.choice((2, 4)) * GIB
        host = pick(2 * kib)
        used[host] += 2 * kib
        specs += [(host, kib, {"affinity": (f"af{pair:03d}",)})] * 2
    while len(specs) < guest_count:
        kib = rng.choices(sizes, weights)[0] * GIB
        host = pick(kib)
        used[host] += kib
        fields: dict[str, Any] = {}
        draw = rng.random()
        if draw < 0.01:
            fields["pin_policy"] = rng.choice((SKIP, SHUTDOWN))
        elif draw < 0.06:
            fields["priority"] = rng.randint(1, 10)
        elif draw < 0.11 and labels[host].get("storage") == "ssd":
            fields["require_labels"] = (("storage", "ssd"),)
        specs.append((host, kib, fields))
    guests = [SimGuest(f"vm{index:05d}", host, kib, GuestConstraints(**fields))
              for index, (host, kib, fields) in enumerate(specs)]
    return Cluster(hosts, labels, guests)


# -- one evacuation, planned by the evacuation's own code ------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    sources: frozenset[str]


def inputs(cluster: Cluster, case: Case) -> tuple[list[GuestToMove], list[DestinationCapacity]]:
    moving = [GuestToMove(name=g.name, uuid=g.name, state="running", persistent=True, memory_kib=g.memory_kib,
                          constraints=g.constraints, source=g.host)
              for g in cluster.guests if g.host in case.sources]
    residents: dict[str, list[SimGuest]] = defaultdict(list)
    for guest in cluster.guests:
        residents[guest.host].append(guest)
    destinations = []
    for host, memory in cluster.hosts.items():
        used = sum(guest.memory_kib for guest in residents[host])
        dest = DestinationCapacity(host, f"qemu+tls://{host}/system", available_kib=memory - used,
                                   reserve_kib=RESERVE_KIB, labels=dict(cluster.labels[host]),
                                   residents=tuple(Resident(g.name, g.name, g.constraints) for g in residents[host]))
        if host in case.sources:
            dest.excluded = "maintenance (maintenance_hosts)"
        destinations.append(dest)
    return moving, destinations


def plan_case(cluster: Cluster, case: Case) -> tuple[float, list[Any], PlacementPlan, list[GuestToMove]]:
    moving, destinations = inputs(cluster, case)
    started = time.perf_counter()
    problems = unsatisfiable(moving, destinations)
    plan = Placer(destinations).plan(moving)
    return time.perf_counter() - started, problems, plan, moving


# -- the independent checker ----------------------------------------------------------------


def violations(cluster: Cluster, case: Case, plan: PlacementPlan) -> dict[str, Any]:
    """What the plan breaks, found from the final layout without the placer's code."""
    where = {guest.name: guest.host for guest in cluster.guests}
    by_name = {guest.name: guest for guest in cluster.guests}
    found: dict[str, list[str]] = defaultdict(list)
    order = []
    for item in plan.assignments:
        guest = by_name[item.guest.name]
        if item.destination is None:
            if guest.constraints.pin_policy is None:
                found["unplaced"].append(guest.name)
            continue
        if guest.constraints.pin_policy is not None:
            found["pinned guest moved"].append(guest.name)
        if item.destination in case.sources or item.destination == guest.host:
            found["excluded or own source destination"].append(guest.name)
        labels = cluster.labels[item.destination]
        if any(labels.get(label) != value for label, value in guest.constraints.require_labels):
            found["required label missing"].append(guest.name)
        where[guest.name] = item.destination
        order.append(guest)
    used: dict[str, int] = defaultdict(int)
    for name, host in where.items():
        used[host] += by_name[name].memory_kib
    for host, kib in used.items():
        if host not in case.sources and kib > cluster.hosts[host] - RESERVE_KIB and \
                any(item.destination == host for item in plan.assignments):
            found["memory over capacity"].append(host)
    soft_shared = 0
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for guest in cluster.guests:
        for group, mode in guest.constraints.anti_affinity:
            members[(group, mode)].append(guest.name)
    for (group, mode), names in members.items():
        hosts = [where[name] for name in names if where[name] not in case.sources]
        if len(hosts) != len(set(hosts)):
            if mode == HARD:
                found["hard anti-affinity shared a host"].append(group)
            else:
                soft_shared += 1
    pairs: dict[str, set[str]] = defaultdict(set)
    for guest in cluster.guests:
        for group in guest.constraints.affinity:
            pairs[group].add(where[guest.name])
    found["affinity split"] += [group for group, hosts in pairs.items() if len(hosts) > 1]
    unit_priority = {}
    for group in pairs:
        names = [g.name for g in cluster.guests if group in g.constraints.affinity]
        top = max(by_name[name].constraints.priority for name in names)
        unit_priority.update(dict.fromkeys(names, top))
    ranks = [unit_priority.get(guest.name, guest.constraints.priority) for guest in order]
    found["priority order"] += [order[i].name for i in range(1, len(ranks)) if ranks[i] > ranks[i - 1]]
    broken = {kind: len(items) for kind, items in found.items() if items and kind != "unplaced"}
    return {"violations": sum(broken.values()), "by_kind": broken, "unplaced": len(found["unplaced"]),
            "soft_groups_sharing_a_host": soft_shared, "examples": {k: v[:3] for k, v in found.items() if v}}


def evenness(cluster: Cluster, case: Case, plan: PlacementPlan) -> dict[str, float]:
    used: dict[str, int] = defaultdict(int)
    for guest in cluster.guests:
        used[guest.host] += guest.memory_kib
    by_name = {guest.name: guest for guest in cluster.guests}
    for item in plan.assignments:
        if item.destination is not None:
            guest = by_name[item.guest.name]
            used[guest.host] -= guest.memory_kib
            used[item.destination] += guest.memory_kib
    fractions = [used[host] / memory for host, memory in cluster.hosts.items() if host not in case.sources]
    return {"used_min": round(min(fractions), 4), "used_max": round(max(fractions), 4),
            "spread": round(max(fractions) - min(fractions), 4), "stddev": round(statistics.pstdev(fractions), 4),
            "mean": round(statistics.fmean(fractions), 4)}


# -- the run ----------------------------------------------------------------------------------


def measure(cluster: Cluster, baseline: Cluster, case: Case, runs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"constrained": [], "baseline": []}
    outputs: dict[str, Any] = {}
    for _run in range(runs):
        for label, which in (("constrained", cluster), ("baseline", baseline)):
            seconds, problems, plan, moving = plan_case(which, case)
            times[label].append(seconds)
            outputs[label] = (problems, plan, moving)
    result: dict[str, Any] = {"case": case.name, "sources": len(case.sources)}
    for label, which in (("constrained", cluster), ("baseline", baseline)):
        problems, plan, moving = outputs[label]
        result[label] = {
            "guests_to_place": len(moving),
            "placed": sum(1 for item in plan.assignments if item.placed),
            "staying": len(plan.staying), "unplaceable": len(plan.unplaceable),
            "unsatisfiable": [str(problem) for problem in problems],
            "seconds_median": round(statistics.median(times[label]), 4),
            "seconds": [round(value, 4) for value in times[label]],
            "check": violations(which, case, plan), "evenness": evenness(which, case, plan),
            "reason_chars_max": max((len(item.reason) for item in plan.assignments), default=0),
        }
    base, mine = result["baseline"], result["constrained"]
    result["ratio"] = {
        "time": round(mine["seconds_median"] / base["seconds_median"], 2) if base["seconds_median"] else None,
        "spread": round(mine["evenness"]["spread"] / base["evenness"]["spread"], 2) if base["evenness"]["spread"] else None,
        "stddev": round(mine["evenness"]["stddev"] / base["evenness"]["stddev"], 2) if base["evenness"]["stddev"] else None,
    }
    return result


def cluster_facts(cluster: Cluster) -> dict[str, Any]:
    constraints = [guest.constraints for guest in cluster.guests]
    return {"hosts": len(cluster.hosts), "guests": len(cluster.guests),
            "memory_gib": sum(cluster.hosts.values()) // GIB, "guest_memory_gib": sum(g.memory_kib for g in cluster.guests) // GIB,
            "anti_affinity_groups_hard": len({g for c in constraints for g in c.hard_groups}),
            "anti_affinity_groups_soft": len({g for c in constraints for g in c.soft_groups}),
            "affinity_pairs": len({g for c in constraints for g in c.affinity}),
            "pinned": sum(1 for c in constraints if c.pin_policy), "with_priority": sum(1 for c in constraints if c.priority),
            "requiring_labels": sum(1 for c in constraints if c.require_labels),
            "racks": len({labels["rack"] for labels in cluster.labels.values()}),
            "failure_domains": len({labels["failure_domain"] for labels in cluster.labels.values()})}


def markdown(results: dict[str, Any]) -> str:
    facts = results["cluster"]
    lines = [
        "# Placement at cluster scale",
        "",
        "Generated by `tests/bench/placement_scale.py` (part of `make bench`; no lab needed). Reproduce with:",
        "",
        "```sh",
        (f".venv/bin/python tests/bench/placement_scale.py --seed {results['seed']} --runs {results['runs']} "
         f"--hosts {facts['hosts']} --guests {facts['guests']} --out docs/benchmarks"),
        "```",
        "",
        f"Machine: {results['machine']}. Run at {results['time']} UTC.",
        "",
        (f"Simulated cluster (seed {results['seed']}): {facts['hosts']} hypervisors ({facts['memory_gib']} GiB), "
         f"{facts['guests']} guests ({facts['guest_memory_gib']} GiB), {facts['racks']} racks, "
         f"{facts['failure_domains']} failure domains; {facts['anti_affinity_groups_hard']} hard and "
         f"{facts['anti_affinity_groups_soft']} soft anti-affinity groups of three (one member per failure domain), "
         f"{facts['affinity_pairs']} affinity pairs, {facts['pinned']} pinned guests (skip, shutdown), "
         f"{facts['with_priority']} with a priority, {facts['requiring_labels']} requiring `storage=ssd`."),
        "",
        ("Planning time is `constraints.unsatisfiable` plus `Placer.plan`, the median of the runs, each run "
         "alternating with the baseline (the same cluster with no constraint at all). Violations are counted by "
         "a checker in the benchmark written apart from the placer (hard anti-affinity, affinity, labels, memory, "
         "excluded or own-source destinations, pinned guests moved, priority order). Evenness is over the "
         "destinations' used memory fraction after the move."),
        "",
        ("| case | guests placed | stay (pinned) | unplaceable | refused constraints | time (s) | baseline (s) | "
         "ratio | violations | soft groups sharing | used spread | stddev | baseline spread | baseline stddev |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        mine, base = case["constrained"], case["baseline"]
        lines.append(
            f"| {case['case']} | {mine['placed']} of {mine['guests_to_place']} | {mine['staying']} | "
            f"{mine['unplaceable']} | {len(mine['unsatisfiable'])} | {mine['seconds_median']} | "
            f"{base['seconds_median']} | {case['ratio']['time']} | {mine['check']['violations']} | "
            f"{mine['check']['soft_groups_sharing_a_host']} | {mine['evenness']['spread']} | "
            f"{mine['evenness']['stddev']} | {base['evenness']['spread']} | {base['evenness']['stddev']} |")
    lines += ["", "Targets: the whole failure domain planned in under 5 s; 0 violations."]
    for case in results["cases"]:
        mine = case["constrained"]
        target = "met" if mine["check"]["violations"] == 0 and (case["case"] != "failure domain"
                                                                or mine["seconds_median"] < 5) else "NOT met"
        lines.append(f"- {case['case']}: {target} ({mine['seconds_median']} s, {mine['check']['violations']} "
                     f"violation(s); longest reason {mine['reason_chars_max']} characters).")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--guests", type=int, default=5000)
    args = parser.parse_args()
    cluster = build_cluster(args.seed, args.hosts, args.guests)
    baseline = cluster.without_constraints()
    names = sorted(cluster.hosts)
    domain = cluster.labels[names[0]]["failure_domain"]
    cases = [Case("one host", frozenset({names[0]})),
             Case("failure domain", frozenset(h for h in names if cluster.labels[h]["failure_domain"] == domain))]
    results = {"seed": args.seed, "runs": args.runs, "time": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
               "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
               "cluster": cluster_facts(cluster), "cases": [measure(cluster, baseline, case, args.runs) for case in cases]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "placement.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "placement.md").write_text(markdown(results))
    print(markdown(results))
    failed = any(case["constrained"]["check"]["violations"] for case in results["cases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
