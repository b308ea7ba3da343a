"""The machine root: one debootstrapped Debian tree, cached outside the repository, shared read-only."""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from pathlib import Path

from virtops_lab.state import CACHE_ROOT
from virtops_lab.system import LabError, log, remove_tree, run

DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
ROOT_PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "ca-certificates"]


# Shell run inside the freshly debootstrapped root (chroot). Part of the root's
# recipe: changing it changes the cache key, so the next `up` rebuilds the root.
ROOT_CUSTOMIZATION = """
set -eu
cat > /etc/apt/sources.list <<EOF
deb {mirror} {suite} main
deb {mirror} {suite}-updates main
deb http://deb.debian.org/debian-security {suite}-security main
EOF
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' > /etc/ssh/sshd_config.d/10-lab.conf
systemctl enable systemd-networkd.service
# Background apt runs would race the roles' own apt tasks for the dpkg lock.
systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
getent group kvm >/dev/null || groupadd --system kvm
# This kernel has no sunrpc: rpc_pipefs (wanted by nfs-common, which nfs-ganesha pulls in)
# cannot mount here, and nothing the lab runs needs it.
systemctl mask run-rpc_pipefs.mount
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


def root_recipe_key() -> str:
    recipe = json.dumps([SUITE, DEBIAN_MIRROR, ROOT_PACKAGES, ROOT_CUSTOMIZATION])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def root_path() -> Path:
    return CACHE_ROOT / "rootfs" / f"{SUITE}-{root_recipe_key()}"


def ensure_root() -> Path:
    """The cached machine root of the current recipe; built once, by one process at a time."""
    root = root_path()
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".virtops-lab-root").exists():
            build_root(root)
    return root


def build_root(root: Path) -> None:
    building = root.with_name(root.name + ".building")
    remove_tree(building)
    log(f"building the machine root {root} (debootstrap, about a minute)")
    started = time.monotonic()
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}", SUITE, str(building), DEBIAN_MIRROR])
        script = ROOT_CUSTOMIZATION.format(mirror=DEBIAN_MIRROR, suite=SUITE)
        run(["chroot", str(building), "/bin/sh", "-c", script])
    except LabError as error:
        log_file = building / "debootstrap" / "debootstrap.log"
        detail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        remove_tree(building)
        raise LabError(f"{error}\n{detail}") from None
    (building / ".virtops-lab-root").write_text(root_recipe_key() + "\n")
    building.rename(root)
    log(f"root built in {time.monotonic() - started:.0f} s")


def root_kvm_gid(root: Path) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "kvm":
            return int(fields[2])
    raise LabError(f"{root} has no kvm group")
