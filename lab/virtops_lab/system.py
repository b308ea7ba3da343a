"""Running commands for the lab, and the waits and removals every step uses."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def run(cmd: list[str], check: bool = True, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr.strip()}")
    if not quiet and result.returncode != 0:
        log(f"note: {' '.join(cmd)} -> {result.stderr.strip()}")
    return result


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts what a failed debootstrap left mounted inside (proc, sys)."""
    for mount_point in mounts_under(path):
        run(["umount", "-l", mount_point], quiet=True)
    if path.exists():
        shutil.rmtree(path)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below a path, deepest first."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(path) or mount_point.startswith(f"{path}/"):
            mounts.append(mount_point)
    return sorted(mounts, key=len, reverse=True)


def wait_for_port(address: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise LabError(f"{what} did not open {address}:{port} within {timeout:.0f} s")
