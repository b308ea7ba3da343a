"""A lab's processes: each lives in a cgroup named after the lab, found and killed through it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from virtops_lab.system import LabError

CGROUP_BASE = "virtops-lab"


def cgroup_hierarchies() -> list[Path]:
    """The cgroup trees used to track lab processes (v1 named systemd + unified, or pure v2)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [p for p in (base / "systemd", base / "unified") if (p / "cgroup.procs").exists()]


def lab_cgroup(hierarchy: Path, lab: str, host: str | None = None) -> Path:
    path = hierarchy / CGROUP_BASE / lab
    return path / host if host else path


def cgroup_pids(path: Path) -> set[int]:
    """The processes in a cgroup tree. Another lab's `down` may remove cgroups while the tree is
    walked: the walk is then done again, so a live lab is never seen with fewer processes."""
    for _attempt in range(5):
        if not path.exists():
            return set()
        try:
            return {pid for procs in path.rglob("cgroup.procs") for pid in cgroup_procs(procs)}
        except FileNotFoundError:
            time.sleep(0.2)
    raise LabError(f"the cgroup tree {path} kept changing while it was read")


def cgroup_procs(procs: Path) -> set[int]:
    try:
        return {int(p) for p in procs.read_text().split()}
    except OSError:
        return set()


def lab_processes(lab: str) -> set[int]:
    return set().union(*(cgroup_pids(lab_cgroup(h, lab)) for h in cgroup_hierarchies()))


def kill_cgroup_tree(lab: str) -> None:
    """SIGKILL every process of a lab until none is left, then remove its cgroups."""
    deadline = time.monotonic() + 30
    while pids := lab_processes(lab):
        if time.monotonic() > deadline:
            raise LabError(f"processes {sorted(pids)} of lab {lab} survive SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for hierarchy in cgroup_hierarchies():
        remove_cgroup_dirs(lab_cgroup(hierarchy, lab))


def remove_cgroup_dirs(path: Path) -> None:
    if not path.exists():
        return
    for directory in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        directory.rmdir()
    path.rmdir()


def spawn_in_cgroup(cmd: list[str], lab: str, unit: str, log_path: Path) -> subprocess.Popen:
    cgroups = [lab_cgroup(h, lab, unit) for h in cgroup_hierarchies()]
    for path in cgroups:
        path.mkdir(parents=True, exist_ok=True)

    def enter_cgroup() -> None:
        os.setsid()
        for path in cgroups:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    with open(log_path, "ab") as log_file:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=enter_cgroup, close_fds=True)  # noqa: PLW1509 - single-threaded CLI
