# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The modules' footprint, BEFORE (a git revision) against AFTER (this working tree), in one run.

For each tree: its tarball is built and installed (tests/packaging/artifact.py), then

* payload: for each module (migrate, migration_job, evacuate), the collection's module_utils files
  AnsiballZ ships with it and their lines, in the AnsiballZ Ansible builds
  (``ansible.executor.module_common.modify_module``; its finder ``recursive_finder`` fills the zip);
* process time (with ``--lab``): a migrate task whose guest already runs on its destination
  (``changed=false``), on a lab hypervisor. The module runs once through ``ansible`` with
  ANSIBLE_KEEP_REMOTE_FILES=1 and its own remote temporary directory; its AnsiballZ wrapper (the
  arguments inside) is kept on the host and then run there as ``python3 AnsiballZ_migrate.py``,
  BEFORE and AFTER interleaved (the order alternating), ``--runs`` times each after one warm-up, with
  ``ansible.builtin.ping``'s wrapper (the floor: what any module's process costs on that host) among them.
  The time is that of the whole process on the host (bash's ``time`` around it: interpreter start, the
  wrapper unpacking its zip, imports, the module, its exit): wall time, and CPU time (user + system).

    python tests/bench/footprint.py --lab vtl --runs 9 --markdown docs/benchmarks/footprint.md

The guest (``fp1``, a boot-sector guest on the lab's NFS export) is created and removed by the
integration tests' guests.yml; the lab must be up and prepared (libvirt TLS between hypervisors).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtops_lab.ansible_runs import Run, operator_dir

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "packaging"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import artifact

MODULES = ("migrate", "migration_job", "evacuate")
COLLECTION_PREFIX = "ansible_collections/virtops/migration/"
MODULE_UTILS_PREFIX = COLLECTION_PREFIX + "plugins/module_utils/"
DEFAULT_BEFORE = "0ac4fb6"
GUEST = "fp1"
GUEST_HOST = "hv3"   # where fp1 runs: the destination of the idempotent task (evacuation tests empty hv1)
TASK_HOST = "hv2"    # where the task runs: its source, which no longer has the guest
HOST_DIR = "/var/tmp/virtops-footprint"
FLOOR = "floor"  # ansible.builtin.ping's wrapper on the same host: what any module's process costs there


# ---------------------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Tree:
    """One collection tree, built and installed: its label and ANSIBLE_COLLECTIONS_PATH."""

    label: str
    description: str
    collections: str


def export_revision(revision: str, dest: Path) -> None:
    """The files of ``revision`` (``git archive``) in an emptied ``dest``."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO, check=True,
                             capture_output=True).stdout
    if dest.exists():
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def install_tree(source: Path, work: Path) -> str:
    """Build ``source``'s tarball under ``work`` and install it there; its ANSIBLE_COLLECTIONS_PATH."""
    tarball = artifact.build(source, work / "dist")
    artifact.install(tarball, work / "collections")
    return artifact.collections_path(work / "collections")


def prepare_trees(before: str, work: Path) -> list[Tree]:
    """BEFORE (git revision ``before``) and AFTER (this working tree, uncommitted work included)."""
    export_revision(before, work / "before" / "source")
    artifact.source_copy(REPO, work / "after" / "source")
    return [
        Tree("before", f"commit {before}", install_tree(work / "before" / "source", work / "before")),
        Tree("after", "working tree", install_tree(work / "after" / "source", work / "after")),
    ]


# ---------------------------------------------------------------------------------------- payload


ZIP_DATA = re.compile(r"""zip_data=['"]([A-Za-z0-9+/=]+)['"]""")


def payload_files(collections: str, module: str) -> dict[str, Any]:
    """The AnsiballZ of ``module`` as Ansible builds it (``module_common.modify_module``, whose finder picks
    the module_utils): {path in its zip: lines} of this collection's files, the zip's entries, the wrapper's bytes.

    Runs in a process of its own (``--payload``): the collection loader is installed once per process.
    """
    from ansible import constants
    from ansible.executor import module_common
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.utils.collection_loader._collection_finder import (
        _AnsibleCollectionFinder,
    )

    _AnsibleCollectionFinder(paths=[str(Path(p).absolute()) for p in collections.split(":")])._install()
    import ansible_collections.virtops.migration as collection

    module_path = Path(next(iter(collection.__path__))) / "plugins" / "modules" / f"{module}.py"
    built = module_common.modify_module(
        module_name=f"virtops.migration.{module}", module_path=str(module_path), module_args={},
        templar=Templar(loader=DataLoader()), task_vars={"ansible_python_interpreter": "/usr/bin/python3"},
        module_compression=constants.config.get_config_value("DEFAULT_MODULE_COMPRESSION"), environment={})
    found = ZIP_DATA.search(built.b_module_data.decode())
    if found is None:
        raise RuntimeError(f"no zip in the AnsiballZ wrapper of {module}")
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(found.group(1)))) as payload:
        return {
            "collection": {name: len(payload.read(name).splitlines()) for name in payload.namelist()
                           if name.startswith(COLLECTION_PREFIX.split("/", maxsplit=1)[0] + "/")},
            "zip_entries": len(payload.namelist()),
            "wrapper_bytes": len(built.b_module_data),
        }


def payload_of(tree: Tree, module: str) -> dict[str, Any]:
    """The module_utils files and lines the AnsiballZ of ``module`` carries from ``tree``, and its totals."""
    found = json.loads(subprocess.run([sys.executable, __file__, "--payload", tree.collections, module],
                                      check=True, capture_output=True, text=True).stdout)
    files: dict[str, int] = found["collection"]
    shipped = {name: lines for name, lines in files.items()
               if name.startswith(MODULE_UTILS_PREFIX) and lines > 0}
    return {"files": len(shipped), "lines": sum(shipped.values()),
            "collection_files": len(files), "collection_lines": sum(files.values()),
            "zip_entries": found["zip_entries"], "wrapper_bytes": found["wrapper_bytes"],
            "paths": {name[len(MODULE_UTILS_PREFIX):]: lines for name, lines in sorted(shipped.items())}}


# ---------------------------------------------------------------------------------------- lab


PROCESS_TIME = re.compile(r"^FOOTPRINT-TIME (\S+) (\S+) (\S+)$", re.MULTILINE)


def timed_process(command: str) -> str:
    """``command`` under bash's ``time``: its wall, user and system seconds on stderr (FOOTPRINT-TIME)."""
    script = 'TIMEFORMAT="FOOTPRINT-TIME %3R %3U %3S"; time ' + command
    return "bash -c " + shlex.quote(script)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class LabRun:
    """The idempotent migrate task on the lab, its AnsiballZ wrapper kept per tree and run on the host."""

    def __init__(self, lab_name: str, after: Tree) -> None:
        import os

        os.environ.setdefault("VIRTOPS_INSTALLED_COLLECTIONS", after.collections)
        from labaccess import BenchLab

        self.lab = BenchLab(lab_name, None)
        self.guest = {"name": GUEST, "host": GUEST_HOST, "kind": "bootsector", "disk": "nfs",
                      "persistent": True, "running": True}

    def args(self) -> dict[str, Any]:
        return {"name": GUEST, "dest_uri": self.lab.dest_uri(GUEST_HOST)}

    def create_guest(self) -> None:
        self.lab.create_guests([self.guest])

    def remove_guest(self) -> None:
        self.lab.remove_guests([self.guest])
        self.lab.ssh(TASK_HOST, f"rm -rf {HOST_DIR}")

    def keep_wrapper(self, label: str, module: str, args: dict[str, Any], collections: str) -> str:
        """Run ``module`` once (ANSIBLE_COLLECTIONS_PATH ``collections``), its wrapper kept; its path on the host."""
        remote_tmp = f"{HOST_DIR}/{label}/tmp"
        wrapper = f"{HOST_DIR}/{label}/AnsiballZ_{module.rsplit('.', 1)[-1]}.py"
        self.lab.ssh(TASK_HOST, f"rm -rf {HOST_DIR}/{label} && mkdir -p {remote_tmp}")
        env = self.lab.client.ansible_env()
        env.update(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_REMOTE_TMP=remote_tmp)
        command = ["ansible", TASK_HOST, "-i", str(self.lab.client.inventory), "-m", module]
        command += ["-a", json.dumps(args)] if args else []
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=operator_dir(), timeout=600,
                              check=False)
        results = Run.from_process(proc).results(TASK_HOST)
        result = results[-1] if results else {"failed": True, "msg": proc.stderr[-2000:]}
        if result.get("failed") or result.get("changed"):
            raise RuntimeError(f"{label}: {module} did not report ok/changed=false: {result}")
        self.lab.ssh(TASK_HOST, f"mv $(ls -1t {remote_tmp}/*/{Path(wrapper).name} | head -1) {wrapper} "
                                f"&& rm -rf {remote_tmp}")
        return wrapper

    def keep_wrappers(self, trees: list[Tree]) -> dict[str, str]:
        """The idempotent migrate task's wrapper of each tree, then the floor's (ansible.builtin.ping)."""
        wrappers = {tree.label: self.keep_wrapper(tree.label, "virtops.migration.migrate", self.args(), tree.collections)
                    for tree in trees}
        wrappers[FLOOR] = self.keep_wrapper(FLOOR, "ansible.builtin.ping", {}, trees[-1].collections)
        return wrappers

    def run_wrapper(self, wrapper: str) -> dict[str, Any]:
        """One run of the kept wrapper on the host: the process's wall and CPU time, the module's own timings."""
        proc = self.lab.ssh(TASK_HOST, timed_process(f"/usr/bin/python3 {shlex.quote(wrapper)}"))
        measured = PROCESS_TIME.search(proc.stderr)
        start = proc.stdout.find("{")
        result = json.loads(proc.stdout[start:]) if start >= 0 else {}
        if measured is None or result.get("failed") or result.get("changed"):
            raise RuntimeError(f"{wrapper}: the re-run did not report ok/changed=false: {proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}")
        wall, user, system = (float(value) for value in measured.groups())
        return {"process_s": wall, "cpu_s": round(user + system, 3), "timings": result.get("timings") or {}}


def interleaved(lab: LabRun, wrappers: dict[str, str], runs: int) -> dict[str, list[dict[str, Any]]]:
    """``runs`` samples per wrapper after one warm-up each, the order alternating run by run."""
    labels = list(wrappers)
    for label in labels:
        lab.run_wrapper(wrappers[label])
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for index in range(runs):
        for label in labels if index % 2 == 0 else list(reversed(labels)):
            samples[label].append(lab.run_wrapper(wrappers[label]))
    return samples


def process_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    phases = sorted({phase for sample in samples for phase in sample["timings"]})
    return {
        "runs": len(samples),
        "process_s": [s["process_s"] for s in samples],
        "median_process_s": median([s["process_s"] for s in samples]),
        "cpu_s": [s["cpu_s"] for s in samples],
        "median_cpu_s": median([s["cpu_s"] for s in samples]),
        "median_timings": {phase: median([s["timings"][phase] for s in samples
                                          if isinstance(s["timings"].get(phase), (int, float))])
                           for phase in phases},
    }


IMPORT_TIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$", re.MULTILINE)
COLLECTION_PACKAGE = "ansible_collections.virtops.migration.plugins."


def import_split(stderr: str) -> dict[str, Any]:
    """Seconds of a ``python3 -X importtime`` run's imports: top-level ones by who owns them, and the
    collection's modules one by one (their own time: compiling the source from the zip, running its body)."""
    groups = {"ansible-core": 0.0, "collection (without libvirt)": 0.0, "libvirt bindings": 0.0, "other (stdlib)": 0.0}
    own: dict[str, float] = {}
    for self_us, cumulative_us, indent, name in IMPORT_TIME.findall(stderr):
        if name == "libvirt":
            groups["libvirt bindings"] += int(cumulative_us) / 1e6
            groups["collection (without libvirt)"] -= int(cumulative_us) / 1e6
        if name.startswith(COLLECTION_PACKAGE):
            own[name[len(COLLECTION_PACKAGE):]] = int(self_us) / 1e6
        if indent:
            continue
        group = ("collection (without libvirt)" if name.startswith("ansible_collections")
                 else "ansible-core" if name.startswith("ansible") else "other (stdlib)")
        groups[group] += int(cumulative_us) / 1e6
    return {"groups": groups, "own": own}


def import_summary(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of several ``import_split`` results of one wrapper."""
    names = {name for split in splits for name in split["own"]}
    return {
        "runs": len(splits),
        "groups": {group: round(median([s["groups"][group] for s in splits]) or 0.0, 4) for group in splits[0]["groups"]},
        "own": dict(sorted(((name, round(median([s["own"].get(name, 0.0) for s in splits]) or 0.0, 4))
                            for name in names), key=lambda item: -item[1])),
    }


def import_profiles(lab: LabRun, wrappers: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    """``runs`` ``python3 -X importtime`` runs of each wrapper on the host, interleaved as the samples are."""
    labels = list(wrappers)
    splits: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for index in range(runs):
        for label in labels if index % 2 == 0 else list(reversed(labels)):
            command = f"/usr/bin/python3 -X importtime {shlex.quote(wrappers[label])}"
            splits[label].append(import_split(lab.lab.ssh(TASK_HOST, command).stderr))
    return {label: import_summary(found) for label, found in splits.items()}


def measure_on_lab(lab_name: str, trees: list[Tree], runs: int) -> dict[str, Any]:
    lab = LabRun(lab_name, trees[-1])
    lab.create_guest()
    try:
        wrappers = lab.keep_wrappers(trees)
        samples = interleaved(lab, wrappers, runs)
        imports = import_profiles(lab, wrappers, max(3, runs // 2))
    finally:
        lab.remove_guest()
    return {label: {**process_summary(found), "imports": imports[label]} for label, found in samples.items()}


# ---------------------------------------------------------------------------------------- report


def ratio(after: float | None, before: float | None) -> float | None:
    return round(after / before, 3) if after is not None and before else None


def process_row(label: str, summary: dict[str, Any]) -> str:
    times = summary["process_s"]
    return (f"| {label} | {summary['median_process_s']:.3f} | {min(times):.3f} | {max(times):.3f} | "
            f"{summary['median_cpu_s']:.3f} | {summary['median_timings'].get('total', '-')} |")


def above(summary: dict[str, Any], floor: dict[str, Any]) -> str:
    """How much more than the floor a series takes: wall and CPU seconds of the medians."""
    wall = summary["median_process_s"] - floor["median_process_s"]
    cpu = summary["median_cpu_s"] - floor["median_cpu_s"]
    return f"{wall:.3f} s wall / {cpu:.3f} s CPU"


def import_section(process: dict[str, Any], before: str, after: str) -> list[str]:
    """Where the process's time goes: ``python3 -X importtime`` runs of each wrapper (medians, wall seconds)."""
    labels = (before, after, FLOOR)
    imports = {label: process[label]["imports"] for label in labels}
    runs = imports[after].get("runs", "several")
    lines = [
        "",
        "## Where the process time goes",
        "",
        f"From {runs} runs of each wrapper under `python3 -X importtime` after the samples above, interleaved as",
        "they are (medians, wall seconds; importtime's own bookkeeping makes them a little longer). Top-level",
        "imports by owner: the collection's line holds what its modules import first (libvirt's bindings apart),",
        "including the time to compile each source file, which AnsiballZ imports from its zip, so without",
        "cached bytecode.",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for group in imports[after]["groups"]:
        lines.append(f"| imports: {group} | " + " | ".join(f"{imports[label]['groups'][group]:.3f}" for label in labels) + " |")
    lines.append("| the module's run (`timings.total`) | "
                 + " | ".join(f"{process[label]['median_timings'].get('total', 0.0) or 0.0:.3f}" for label in labels) + " |")
    lines += ["", ("Each collection file's own import time, after (compiling it and running its body, without what it "
              "imports):"), "", "| file | s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.4f} |" for name, seconds in imports[after]["own"].items() if seconds >= 0.001]
    return lines


def markdown(document: dict[str, Any]) -> str:
    trees = document["trees"]
    before, after = trees[0]["label"], trees[1]["label"]
    lines = [
        "# Footprint of the modules: payload and the process of an idempotent re-run",
        "",
        (f"Measured {document['measured_at']} by `tests/bench/footprint.py` "
         f"(BEFORE: {trees[0]['description']}; AFTER: {trees[1]['description']}, git {document['git_head']})."),
        "",
        "Reproduce (the lab up and prepared; a few minutes on the shared two-core controller):",
        "",
        "```sh",
        document["command"],
        "```",
        "",
        "## Payload: the collection's module_utils AnsiballZ ships with each module",
        "",
        "Each module's AnsiballZ as Ansible builds it from each tree's installed tarball",
        "(`ansible.executor.module_common.modify_module`, whose finder `recursive_finder` picks the module_utils",
        "a module imports); counted in its zip: files under",
        "`ansible_collections/virtops/migration/plugins/module_utils/` with at least one line (the empty package",
        "`__init__.py` files are not counted), and their lines.",
        "",
        "| module | files before | files after | lines before | lines after | lines after / before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for module in MODULES:
        b, a = document["payload"][before][module], document["payload"][after][module]
        lines.append(f"| {module} | {b['files']} | {a['files']} | {b['lines']} | {a['lines']} | "
                     f"{ratio(a['lines'], b['lines'])} |")
    lines += [
        "",
        "The whole zip: every entry of the collection (the module itself, its module_utils, the package",
        "`__init__.py` files) with their lines, every entry (ansible-core's module_utils included), and the",
        "wrapper's size as sent to the host (base64 of the zip, arguments and bootstrap code).",
        "",
        ("| module | collection entries before / after | their lines before / after | zip entries before / after "
         "| wrapper KiB before / after |"),
        "|---|---:|---:|---:|---:|",
    ]
    for module in MODULES:
        b, a = document["payload"][before][module], document["payload"][after][module]
        lines.append(f"| {module} | {b['collection_files']} / {a['collection_files']} | {b['collection_lines']} / "
                     f"{a['collection_lines']} | {b['zip_entries']} / {a['zip_entries']} | "
                     f"{b['wrapper_bytes'] / 1024:.0f} / {a['wrapper_bytes'] / 1024:.0f} |")
    process = document.get("process")
    lines += ["", "## Process time of an idempotent migrate re-run on a lab hypervisor", ""]
    if not process:
        lines.append("Not measured in this run (no `--lab`).")
    else:
        b, a = process[before], process[after]
        lines += [
            (f"The guest `{GUEST}` runs on {GUEST_HOST}; the migrate task runs on {TASK_HOST} with "
             f"`dest_uri: {document['dest_uri']}`, so the module"),
            "finds no guest here, connects to the destination over TLS, finds the guest there and returns",
            "`changed: false`. Each tree's AnsiballZ wrapper (arguments inside) is kept on the host from one run",
            "through `ansible` (ANSIBLE_KEEP_REMOTE_FILES=1) and run there as `python3 AnsiballZ_migrate.py`:",
            (f"one warm-up each, then {a['runs']} runs each, BEFORE, AFTER and the floor interleaved, the order "
             "alternating."),
            "The time is that of the whole process on the host, from bash's `time` around it (interpreter start,",
            "unpacking, imports, the module, exit): wall time, and CPU time (user + system), which depends less on",
            "what else the shared machine runs. `timings` are the module's own phases (median).",
            "",
            "| | median wall s | min | max | median CPU s (user+sys) | module `timings.total` s |",
            "|---|---:|---:|---:|---:|---:|",
            process_row("before", b),
            process_row("after", a),
            process_row("floor: ansible.builtin.ping", process[FLOOR]),
            "",
            (f"Ratio after / before of the median wall time: **{ratio(a['median_process_s'], b['median_process_s'])}**; "
             f"of the median CPU time: **{ratio(a['median_cpu_s'], b['median_cpu_s'])}**."),
            "",
            (f"CPU / wall of the medians: before {b['median_cpu_s'] / b['median_process_s']:.2f}, after "
             f"{a['median_cpu_s'] / a['median_process_s']:.2f}. The process waits only for the destination's TLS"),
            "handshake and libvirt's answers, so on a quiet machine this is close to 1; well below 1, the process",
            "waited for a core (guests under TCG, other processes): its wall time grows with the machine's load",
            "while its CPU time stays.",
            "",
            "The floor is ansible-core's own: `ansible.builtin.ping`'s wrapper kept and run the same way on the",
            "same host, interleaved with the others (interpreter start, unpacking, `ansible.module_utils.basic`).",
            (f"Above it, the migrate process takes {above(b, process[FLOOR])} (before) and "
             f"{above(a, process[FLOOR])} (after)."),
            "",
            "Module phases (median seconds, from the result's `timings`):",
            "",
            "| phase | before | after |",
            "|---|---:|---:|",
        ]
        for phase in sorted(set(b["median_timings"]) | set(a["median_timings"])):
            lines.append(f"| {phase} | {b['median_timings'].get(phase)} | {a['median_timings'].get(phase)} |")
        lines += ["", "Every sample (process s): before " + ", ".join(f"{v:.3f}" for v in b["process_s"])
                  + "; after " + ", ".join(f"{v:.3f}" for v in a["process_s"])
                  + "; floor " + ", ".join(f"{v:.3f}" for v in process[FLOOR]["process_s"]) + "."]
        lines += import_section(process, before, after)
    lines += ["", "## Files in each payload (lines)", ""]
    for module in MODULES:
        b, a = document["payload"][before][module]["paths"], document["payload"][after][module]["paths"]
        lines.append(f"- {module}: before " + ", ".join(f"{p} ({n})" for p, n in b.items())
                     + "; after " + ", ".join(f"{p} ({n})" for p, n in a.items()))
    return "\n".join(lines) + "\n"


def print_summary(document: dict[str, Any]) -> None:
    trees = [tree["label"] for tree in document["trees"]]
    for module in MODULES:
        row = "  ".join(f"{label}: {document['payload'][label][module]['files']} files "
                        f"{document['payload'][label][module]['lines']} lines" for label in trees)
        print(f"payload {module:14} {row}")
    process = document.get("process")
    if process:
        for label in [*trees, FLOOR]:
            print(f"process {label:7} median wall {process[label]['median_process_s']:.3f} s "
                  f"cpu {process[label]['median_cpu_s']:.3f} s  wall samples {process[label]['process_s']}")
        before, after = process[trees[0]], process[trees[1]]
        print(f"ratio after/before wall {ratio(after['median_process_s'], before['median_process_s'])} "
              f"cpu {ratio(after['median_cpu_s'], before['median_cpu_s'])}")


def reproduce_command(options: argparse.Namespace, argv: list[str]) -> str:
    """``make footprint`` with the settings this run used, or this script's command line."""
    if not options.lab:
        return "python tests/bench/footprint.py " + " ".join(shlex.quote(a) for a in argv)
    settings = {"LAB_NAME": (options.lab, "vtl"), "FOOTPRINT_BEFORE": (options.before, DEFAULT_BEFORE),
                "FOOTPRINT_RUNS": (str(options.runs), "9")}
    return " ".join(["make footprint", *(f"{name}={value}" for name, (value, default) in settings.items()
                                         if value != default)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of BEFORE (default %(default)s)")
    parser.add_argument("--lab", help="measure the process time on this lab (e.g. vtl); payload only without it")
    parser.add_argument("--runs", type=int, default=9, help="process-time samples per tree (default %(default)s)")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "footprint", help="where the trees are built")
    parser.add_argument("--markdown", type=Path, help="write the report here (e.g. docs/benchmarks/footprint.md)")
    parser.add_argument("--json", type=Path, help="write every figure and sample here")
    parser.add_argument("--payload", nargs=2, metavar=("COLLECTIONS", "MODULE"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.payload:
        print(json.dumps(payload_files(*options.payload)))
        return 0
    trees = prepare_trees(options.before, options.work.absolute())
    document: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                   text=True, check=False).stdout.strip(),
        "command": reproduce_command(options, argv),
        "trees": [{"label": t.label, "description": t.description} for t in trees],
        "payload": {t.label: {m: payload_of(t, m) for m in MODULES} for t in trees},
    }
    if options.lab:
        document["dest_uri"] = f"qemu+tls://{GUEST_HOST}.{options.lab}.virtops.test/system"
        document["process"] = measure_on_lab(options.lab, trees, options.runs)
    print_summary(document)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(document, indent=1) + "\n")
    if options.markdown:
        options.markdown.parent.mkdir(parents=True, exist_ok=True)
        options.markdown.write_text(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
