"""The lab's machines: an overlay on the cached root, configured, booted by systemd-nspawn."""

from __future__ import annotations

import os
from pathlib import Path

from virtops_lab.aptcache import apt_proxy_conf
from virtops_lab.cgroups import spawn_in_cgroup
from virtops_lab.network import lab_name_table
from virtops_lab.rootfs import root_kvm_gid
from virtops_lab.ssh import ssh
from virtops_lab.state import TAG, LabPaths
from virtops_lab.system import LabError, log, run, wait_for_port
from virtops_lab.topology import Host, Topology

BOOT_TIMEOUT = 90


def new_machine_id() -> str:
    return os.urandom(16).hex()


def prepare_machine(topology: Topology, paths: LabPaths, root: Path, host: Host, public_key: str) -> Path:
    machine = paths.machine_dir(host.name)
    upper, work, merged = machine / "upper", machine / "work", machine / "merged"
    for directory in (upper, work, merged):
        directory.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "overlay", f"{TAG}-{topology.machine(host)}", "-o",
         f"lowerdir={root},upperdir={upper},workdir={work}", str(merged)])
    etc = merged / "etc"
    (etc / "machine-id").write_text(new_machine_id() + "\n")
    (etc / "hostname").write_text(host.name + "\n")
    (etc / "hosts").write_text(machine_hosts_file(topology))
    (etc / "resolv.conf").write_text(resolv_conf())
    network = etc / "systemd" / "network"
    network.mkdir(parents=True, exist_ok=True)
    (network / "10-lab-host0.network").write_text(
        "[Match]\nName=host0\n\n[Network]\n"
        f"Address={host.address}/{topology.prefixlen}\nGateway={topology.controller_address}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    (etc / "apt" / "apt.conf.d" / "01lab-proxy").write_text(apt_proxy_conf(topology))
    ssh_dir = merged / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    host_key = etc / "ssh" / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(host_key)])
    return merged


def machine_hosts_file(topology: Topology) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{address}\t{names}" for address, names in lab_name_table(topology)]
    return "\n".join(lines) + "\n"


def resolv_conf() -> str:
    servers = [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
               if line.startswith("nameserver") and not line.split()[1].startswith("127.")]
    return "".join(f"nameserver {s}\n" for s in servers)


def export_filesystem(paths: LabPaths, host: Host, export_dir: str) -> Path:
    """A tmpfs of the host's own for a directory it serves over NFS (see the topology)."""
    source = paths.machine_dir(host.name) / "exports" / export_dir.strip("/").replace("/", "-")
    source.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=8g", f"{TAG}-export", str(source)])
    return source


# Post-copy migration: QEMU's check of the host calls munlockall(), which nspawn's default
# system-call filter refuses ("munlockall: Operation not permitted"); every machine may run QEMU.
# A lab recorded with other settings is booted again by `up`.
MEMLOCK_FILTER = "--system-call-filter=@memlock"
BOOT_SETTINGS = [MEMLOCK_FILTER]


def boot_machine(topology: Topology, paths: LabPaths, host: Host, merged: Path, kvm: bool) -> None:
    cmd = [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
        "-D", str(merged), "-M", topology.machine(host),
        f"--network-bridge={topology.bridge}", "--resolv-conf=off", "--timezone=off",
        "--link-journal=no", "--console=read-only", *BOOT_SETTINGS,
    ]
    if kvm:
        cmd.append("--bind=/dev/kvm")
    for export_dir in host.export_dirs:
        cmd.append(f"--bind={export_filesystem(paths, host, export_dir)}:{export_dir}")
    if host.export_dirs:
        # nfs-ganesha's VFS backend opens files by NFS handle; nspawn filters these calls.
        # The handles resolve only on the export's own tmpfs: overlayfs offers none.
        cmd.append("--system-call-filter=open_by_handle_at name_to_handle_at")
    spawn_in_cgroup(restarted_on_reboot(cmd), topology.name, host.name, paths.machine_dir(host.name) / "console.log")


# A machine that reboots (`systemctl reboot`, ansible.builtin.reboot) makes systemd-nspawn exit with
# 133; like systemd-nspawn@.service (RestartForceExitStatus=133), the lab starts it again, so a
# rolling maintenance's reboots really happen. Any other exit (poweroff, a crash, `down`) ends it.
REBOOT_EXIT_STATUS = 133


def restarted_on_reboot(cmd: list[str]) -> list[str]:
    loop = (f'while :; do "$@"; status=$?; [ "$status" -eq {REBOOT_EXIT_STATUS} ] || exit "$status"; '
            'echo "[lab] the machine rebooted: booting it again"; done')
    return ["/bin/sh", "-c", loop, "virtops-lab-machine", *cmd]


def wait_until_booted(topology: Topology, paths: LabPaths, host: Host) -> str:
    try:
        wait_for_port(host.address, 22, BOOT_TIMEOUT, f"{host.name} sshd")
    except LabError as error:
        console = (paths.machine_dir(host.name) / "console.log").read_text(errors="replace")[-3000:]
        raise LabError(f"{error}\n--- {host.name} console (tail) ---\n{console}") from None
    result = ssh(paths, host, "systemctl is-system-running --wait", timeout=BOOT_TIMEOUT)
    state = result.stdout.strip()
    if state not in ("running", "degraded"):
        raise LabError(f"{host.name}: systemd reports {state!r}: {result.stderr.strip()}")
    return state


# Every machine runs a systemd, and each systemd (and its journald, logind, udev...) takes
# inotify instances from one per-user pool (all machines run as root): Debian's default of
# 128 instances runs out at about five labs side by side, and a machine's PID 1 then fails
# to start ("Too many open files"). Raised, never lowered.
INOTIFY_MINIMUMS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 1048576}


def raise_inotify_limits() -> None:
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = Path("/proc/sys") / key
        if int(path.read_text()) < minimum:
            path.write_text(str(minimum))
            log(f"raised {key.replace('/', '.')} to {minimum} (machines' systemd need inotify instances)")


def prepare_kvm(root: Path) -> bool:
    """Give the machines /dev/kvm, owned by the root's kvm group, 0660 (LAB.md). Guests still default to TCG."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return False
    os.chown(kvm, 0, root_kvm_gid(root))
    kvm.chmod(0o660)
    return True
