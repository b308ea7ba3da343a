"""The lab: real Debian 12 hosts on this machine.

Each host is a systemd-nspawn machine booted with systemd, running over a
writable overlay on one shared read-only root that is cached outside the
repository. The machines sit on a private bridge; the controller (this
machine) holds the first address of the subnet, forwards their traffic to the
package registries (DNS, HTTP, HTTPS only) and runs an apt cache for them.

Every process of a machine lives in a cgroup named after the lab, so a crashed
or killed run is found and cleaned by the next ``up`` or ``down`` without any
state file: cgroups, mounts, bridges (tagged with an alias), NAT rules (tagged
with a comment) and the /etc/hosts block are all discovered.

Commands: ``up`` (idempotent: a healthy lab of the same topology is kept),
``down`` (removes everything of the lab), ``status``, ``inventory``
(prints the generated inventory's path).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LAB_DIR = Path(__file__).resolve().parent
DEFAULT_TOPOLOGY = LAB_DIR / "topology.yml"
LAB_GROUP_VARS = LAB_DIR / "inventory" / "group_vars"
CACHE_ROOT = Path(os.environ.get("VIRTOPS_LAB_CACHE", "/var/cache/virtops-lab"))
STATE_ROOT = Path(os.environ.get("VIRTOPS_LAB_STATE", "/var/lib/virtops-lab"))
CGROUP_BASE = "virtops-lab"
TAG = "virtops-lab"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
ROOT_PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "ca-certificates"]
APT_CACHE_PORT = 3142
# apt inside a machine reaches the registries only through the lab's apt cache. A connection to it
# that goes dead (the cache closed it, or stopped answering) must fail within this many seconds and
# be retried, never hold apt-get, and with it a role's package step, for as long as it stays open.
APT_TIMEOUT_S = 20
APT_RETRIES = 2
# The cache's own wait on the registries, shorter than apt's: the cache answers with an error
# (which apt retries) before apt would give up on it.
APT_CACHE_UPSTREAM_TIMEOUT_S = 15
BOOT_TIMEOUT = 90

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


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


@dataclass
class Host:
    name: str
    address: str
    groups: list[str]
    export_dirs: list[str] = field(default_factory=list)


@dataclass
class Topology:
    name: str
    subnet: ipaddress.IPv4Network
    domain: str
    hosts: list[Host]
    source: str = ""

    @property
    def controller_address(self) -> str:
        return str(next(self.subnet.hosts()))

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def machine(self, host: Host | str) -> str:
        return f"{self.name}-{host if isinstance(host, str) else host.name}"

    @property
    def lab_domain(self) -> str:
        """Each lab's own DNS domain, so that labs side by side never share a full name."""
        return f"{self.name}.{self.domain}"

    def fqdn(self, host: Host) -> str:
        return f"{host.name}.{self.lab_domain}"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "subnet": str(self.subnet),
            "domain": self.domain,
            "hosts": [{"name": h.name, "address": h.address, "groups": h.groups, "export_dirs": h.export_dirs}
                      for h in self.hosts],
        }


@dataclass
class Paths:
    topology: Topology
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state = STATE_ROOT / self.topology.name

    def machine_dir(self, host_name: str) -> Path:
        return self.state / "machines" / host_name

    @property
    def ssh_key(self) -> Path:
        return self.state / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "ssh" / "known_hosts"

    @property
    def inventory_dir(self) -> Path:
        return self.state / "inventory"

    @property
    def record(self) -> Path:
        return self.state / "lab.json"


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def run(cmd: list[str], check: bool = True, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr.strip()}")
    if not quiet and result.returncode != 0:
        log(f"note: {' '.join(cmd)} -> {result.stderr.strip()}")
    return result


# --------------------------------------------------------------------------- topology


def load_topology(path: Path, only_hosts: list[str] | None, name: str | None, subnet: str | None) -> Topology:
    data = yaml.safe_load(path.read_text())
    hosts = [Host(h["name"], str(h["address"]), list(h.get("groups", [])), list(h.get("export_dirs", [])))
             for h in data["hosts"]]
    if only_hosts:
        unknown = set(only_hosts) - {h.name for h in hosts}
        if unknown:
            raise LabError(f"--hosts names hosts that {path} does not define: {', '.join(sorted(unknown))}")
        hosts = [h for h in hosts if h.name in only_hosts]
    topology = Topology(
        name=name or data["name"],
        subnet=ipaddress.ip_network(subnet or data["subnet"]),
        domain=data["domain"],
        hosts=hosts,
        source=str(path),
    )
    if subnet and subnet != data["subnet"]:
        topology.hosts = _renumber(hosts, ipaddress.ip_network(data["subnet"]), topology.subnet)
    validate_topology(topology)
    return topology


def _renumber(hosts: list[Host], old: ipaddress.IPv4Network, new: ipaddress.IPv4Network) -> list[Host]:
    offset = int(new.network_address) - int(old.network_address)
    return [Host(h.name, str(ipaddress.ip_address(int(ipaddress.ip_address(h.address)) + offset)), h.groups, h.export_dirs)
            for h in hosts]


def validate_topology(topology: Topology) -> None:
    if not topology.name.isalnum() or len(topology.name) > 6:
        raise LabError(f"lab name {topology.name!r} must be alphanumeric and at most 6 characters")
    seen: set[str] = {topology.controller_address}
    for host in topology.hosts:
        if ipaddress.ip_address(host.address) not in topology.subnet:
            raise LabError(f"{host.name}: {host.address} is outside {topology.subnet}")
        if host.address in seen:
            raise LabError(f"{host.name}: address {host.address} is used twice (the controller has {topology.controller_address})")
        seen.add(host.address)
        if len(topology.machine(host)) > 12:
            raise LabError(f"machine name {topology.machine(host)} is longer than 12 characters (interface names)")


# --------------------------------------------------------------------------- root cache


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


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts what a failed debootstrap left mounted inside (proc, sys)."""
    for mount_point in mounts_under(path):
        run(["umount", "-l", mount_point], quiet=True)
    if path.exists():
        shutil.rmtree(path)


def root_kvm_gid(root: Path) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "kvm":
            return int(fields[2])
    raise LabError(f"{root} has no kvm group")


# --------------------------------------------------------------------------- discovery and cleanup


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


def known_labs() -> set[str]:
    """Every lab name that left a trace: state dir, cgroup, tagged bridge or NAT rule."""
    names: set[str] = set()
    if STATE_ROOT.exists():
        names |= {p.name for p in STATE_ROOT.iterdir() if p.is_dir()}
    for hierarchy in cgroup_hierarchies():
        base = hierarchy / CGROUP_BASE
        if base.exists():
            names |= {p.name for p in base.iterdir() if p.is_dir()}
    names |= set(tagged_bridges())
    for table in ("nat", "filter"):
        for rule in run(["iptables", "-t", table, "-S"], check=False, quiet=True).stdout.splitlines():
            if f'"{TAG}:' in rule or f"{TAG}:" in rule:
                names.add(rule.split(f"{TAG}:", 1)[1].split('"')[0].split()[0])
    return names


def tagged_bridges() -> dict[str, str]:
    """Lab name -> bridge, for every link whose alias marks it as a lab bridge."""
    found: dict[str, str] = {}
    links = json.loads(run(["ip", "-j", "-d", "link", "show"], quiet=True).stdout or "[]")
    for link in links:
        alias = link.get("ifalias", "")
        if alias.startswith(f"{TAG}:"):
            found[alias.split(":", 1)[1]] = link["ifname"]
    return found


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below a path, deepest first."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(path) or mount_point.startswith(f"{path}/"):
            mounts.append(mount_point)
    return sorted(mounts, key=len, reverse=True)


def remove_nat_rules(lab: str) -> None:
    for table in ("nat", "filter"):
        for rule in run(["iptables", "-t", table, "-S"], quiet=True).stdout.splitlines():
            if rule.startswith("-A ") and f"{TAG}:{lab}" in rule:
                args = rule.split()
                args[0] = "-D"
                # iptables -S quotes comments; the shell would strip those quotes.
                run(["iptables", "-t", table, *[a.strip('"') for a in args]])


def hosts_file_block_markers(lab: str) -> tuple[str, str]:
    return f"# BEGIN {TAG} {lab}", f"# END {TAG} {lab}"


def write_hosts_file_block(lab: str, lines: list[str]) -> None:
    begin, end = hosts_file_block_markers(lab)
    hosts_file = Path("/etc/hosts")
    kept, inside = [], False
    for line in hosts_file.read_text().splitlines():
        if line == begin:
            inside = True
        elif line == end:
            inside = False
        elif not inside:
            kept.append(line)
    # The newest lab's block goes first: on the controller its names win.
    block = [begin, *lines, end] if lines else []
    hosts_file.write_text("\n".join(block + kept) + "\n")


def teardown(lab: str) -> None:
    """Remove every trace of one lab, whatever state a crash left it in."""
    state = STATE_ROOT / lab
    kill_cgroup_tree(lab)
    for mount_point in mounts_under(state):
        if run(["umount", mount_point], check=False, quiet=True).returncode != 0:
            run(["umount", "-l", mount_point], quiet=True)
    bridge = tagged_bridges().get(lab)
    if bridge:
        run(["ip", "link", "delete", bridge])
    for link in json.loads(run(["ip", "-j", "link", "show"], quiet=True).stdout or "[]"):
        if link["ifname"].startswith(f"vb-{lab}-"):
            run(["ip", "link", "delete", link["ifname"]], check=False)
    remove_nat_rules(lab)
    write_hosts_file_block(lab, [])
    remove_tree(state)


# --------------------------------------------------------------------------- apt cache


def start_apt_cache(topology: Topology) -> None:
    """An apt-cacher-ng for the lab on the controller address: packages are fetched once."""
    cache_dir = CACHE_ROOT / "apt-cache" / topology.name
    log_dir = cache_dir / "log"
    config_dir = CACHE_ROOT / "apt-cache" / f"{topology.name}.conf"
    log_dir.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(exist_ok=True)
    # A minimal configuration: the packaged one remaps Debian mirrors through lists
    # that do not resolve here. Pass-through caching is all the lab needs. Its own
    # waits on the registries are bounded too (NetworkTimeout), so a stalled download
    # ends as an error to apt (which retries) instead of a silent open connection; a
    # download cut off is retried by the cache itself (DlMaxRetries).
    (config_dir / "acng.conf").write_text(
        f"ExThreshold: 30\nNetworkTimeout: {APT_CACHE_UPSTREAM_TIMEOUT_S}\nDlMaxRetries: {APT_RETRIES}\n"
    )
    shutil.chown(cache_dir, "apt-cacher-ng", "apt-cacher-ng")
    shutil.chown(log_dir, "apt-cacher-ng", "apt-cacher-ng")
    cmd = [
        "setpriv", "--reuid=apt-cacher-ng", "--regid=apt-cacher-ng", "--init-groups",
        "apt-cacher-ng", "-c", str(config_dir), "ForeGround=1",
        f"BindAddress={topology.controller_address}", f"Port={APT_CACHE_PORT}",
        f"CacheDir={cache_dir}", f"LogDir={log_dir}", "PidFile=", "SocketPath=",
    ]
    spawn_in_cgroup(cmd, topology.name, "apt-cache", log_dir / "stdout.log")
    wait_for_port(topology.controller_address, APT_CACHE_PORT, 15, "apt cache")


# --------------------------------------------------------------------------- machines


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


def new_machine_id() -> str:
    return os.urandom(16).hex()


def prepare_machine(topology: Topology, paths: Paths, root: Path, host: Host, public_key: str) -> Path:
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


def apt_proxy_conf(topology: Topology) -> str:
    return (
        f'Acquire::http::Proxy "http://{topology.controller_address}:{APT_CACHE_PORT}";\n'
        f'Acquire::http::Timeout "{APT_TIMEOUT_S}";\n'
        f'Acquire::Retries "{APT_RETRIES}";\n'
    )


def machine_hosts_file(topology: Topology) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{address}\t{names}" for address, names in lab_name_table(topology)]
    return "\n".join(lines) + "\n"


def lab_name_table(topology: Topology) -> list[tuple[str, str]]:
    table = [(topology.controller_address, f"controller.{topology.lab_domain} controller")]
    table += [(h.address, f"{topology.fqdn(h)} {h.name}") for h in topology.hosts]
    return table


def resolv_conf() -> str:
    servers = [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
               if line.startswith("nameserver") and not line.split()[1].startswith("127.")]
    return "".join(f"nameserver {s}\n" for s in servers)


def export_filesystem(paths: Paths, host: Host, export_dir: str) -> Path:
    """A tmpfs of the host's own for a directory it serves over NFS (see the topology)."""
    source = paths.machine_dir(host.name) / "exports" / export_dir.strip("/").replace("/", "-")
    source.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=8g", f"{TAG}-export", str(source)])
    return source


def boot_machine(topology: Topology, paths: Paths, host: Host, merged: Path, kvm: bool) -> None:
    cmd = [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
        "-D", str(merged), "-M", topology.machine(host),
        f"--network-bridge={topology.bridge}", "--resolv-conf=off", "--timezone=off",
        "--link-journal=no", "--console=read-only",
    ]
    if kvm:
        cmd.append("--bind=/dev/kvm")
    for export_dir in host.export_dirs:
        cmd.append(f"--bind={export_filesystem(paths, host, export_dir)}:{export_dir}")
    if host.export_dirs:
        # nfs-ganesha's VFS backend opens files by NFS handle; nspawn filters these calls.
        # The handles resolve only on the export's own tmpfs: overlayfs offers none.
        cmd.append("--system-call-filter=open_by_handle_at name_to_handle_at")
    spawn_in_cgroup(cmd, topology.name, host.name, paths.machine_dir(host.name) / "console.log")


def setup_network(topology: Topology) -> None:
    bridge = topology.bridge
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "link", "set", bridge, "alias", f"{TAG}:{topology.name}"])
    run(["ip", "addr", "add", f"{topology.controller_address}/{topology.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    uplink = default_route_interface()
    comment = ["-m", "comment", "--comment", f"{TAG}:{topology.name}"]
    subnet = str(topology.subnet)
    run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-d", subnet, "-o", uplink, "-j", "MASQUERADE", *comment])
    # Inserted at the top in reverse order: lab to lab, replies, then DNS/HTTP(S) out only.
    forward_rules = [
        ["-i", bridge, "-j", "DROP"],
        ["-i", bridge, "-o", uplink, "-p", "tcp", "-m", "multiport", "--dports", "80,443", "-j", "ACCEPT"],
        ["-i", bridge, "-o", uplink, "-p", "tcp", "--dport", "53", "-j", "ACCEPT"],
        ["-i", bridge, "-o", uplink, "-p", "udp", "--dport", "53", "-j", "ACCEPT"],
        ["-o", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],
    ]
    for rule in forward_rules:
        run(["iptables", "-I", "FORWARD", "1", *rule, *comment])


def default_route_interface() -> str:
    routes = json.loads(run(["ip", "-j", "route", "show", "default"]).stdout or "[]")
    if not routes:
        raise LabError("this machine has no default route: the lab cannot reach the package registries")
    return routes[0]["dev"]


def setup_ssh(paths: Paths) -> str:
    paths.ssh_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.ssh_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtops-lab-controller", "-f", str(paths.ssh_key)])
    return paths.ssh_key.with_suffix(".pub").read_text()


def write_known_hosts(topology: Topology, paths: Paths) -> None:
    lines = []
    for host in topology.hosts:
        pub = (paths.machine_dir(host.name) / "merged" / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{host.name},{topology.fqdn(host)},{host.address} {pub[0]} {pub[1]}")
    paths.known_hosts.write_text("\n".join(lines) + "\n")


def ssh_base_args(paths: Paths) -> list[str]:
    return [
        "-i", str(paths.ssh_key), "-o", f"UserKnownHostsFile={paths.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
    ]


def ssh(paths: Paths, host: Host, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *ssh_base_args(paths), f"root@{host.address}", command], check=False,
                          text=True, capture_output=True, timeout=timeout)


def wait_for_port(address: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise LabError(f"{what} did not open {address}:{port} within {timeout:.0f} s")


def wait_until_booted(topology: Topology, paths: Paths, host: Host) -> str:
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


INVENTORY_HEADER = """\
# Generated by lab/virtops_lab.py up, which rewrites it: do not edit.
# Variables for this lab: a second inventory source after this directory, which Ansible merges:
#   ansible-playbook -i THIS_DIRECTORY -i my-vars.yml ...   (my-vars.yml: all: {vars: {...}})
# Variables for every lab: lab/inventory/group_vars/ (linked here): the operator-style settings of
# the storage and hypervisors groups, and virtops_lab.yml, what only the lab needs (its group
# virtops_lab holds every machine and overrides the others). See docs/development.md, "The lab".
"""

# The group of every lab machine; its group_vars file holds what only the lab needs.
LAB_GROUP = "virtops_lab"
LAB_GROUP_PRIORITY = 10  # above the storage and hypervisors groups (priority 1)


def write_inventory(topology: Topology, paths: Paths) -> Path:
    inventory = paths.inventory_dir
    inventory.mkdir(parents=True, exist_ok=True)
    groups: dict[str, dict] = {}
    for host in topology.hosts:
        host_vars = {"ansible_host": host.address, "virtops_libvirt_fqdn": topology.fqdn(host)}
        for group in (*host.groups, LAB_GROUP):
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = dict(host_vars)  # no YAML anchors
    groups[LAB_GROUP]["vars"] = {"ansible_group_priority": LAB_GROUP_PRIORITY}
    ssh_args = f"-o UserKnownHostsFile={paths.known_hosts} -o StrictHostKeyChecking=yes"
    data = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_private_key_file": str(paths.ssh_key),
                "ansible_ssh_common_args": ssh_args,
                "virtops_lab_name": topology.name,
                "virtops_lab_domain": topology.lab_domain,
                "virtops_lab_subnet": str(topology.subnet),
                "virtops_lab_controller_address": topology.controller_address,
            },
            "children": groups,
        }
    }
    (inventory / "hosts.yml").write_text(INVENTORY_HEADER + yaml.safe_dump(data, sort_keys=False))
    group_vars = inventory / "group_vars"
    if group_vars.is_symlink() or group_vars.exists():
        group_vars.unlink()
    if LAB_GROUP_VARS.exists():
        group_vars.symlink_to(LAB_GROUP_VARS, target_is_directory=True)
    return inventory


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


def lab_is_healthy(topology: Topology, paths: Paths) -> bool:
    if not paths.record.exists():
        return False
    record = json.loads(paths.record.read_text())
    if record.get("topology") != topology.as_dict() or record.get("root") != str(root_path()):
        return False
    try:
        wait_for_port(topology.controller_address, APT_CACHE_PORT, 5, "apt cache")
    except LabError:
        return False
    for host in topology.hosts:
        if not cgroup_pids(lab_cgroup(cgroup_hierarchies()[0], topology.name, host.name)):
            return False
        try:
            if ssh(paths, host, "true", timeout=10).returncode != 0:
                return False
        except subprocess.TimeoutExpired:
            return False
    return True


@contextlib.contextmanager
def sweep_lock() -> Iterator[None]:
    """Serialise the leftover sweep and first steps of every `up`, and every `down`, on this machine."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT / ".up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def remove_leftovers(name: str) -> None:
    """Tear down what this lab left, and every other lab none of whose processes is alive."""
    for lab in sorted(known_labs()):
        if lab == name:
            log(f"removing what lab {lab} left behind")
            teardown(lab)
        elif not lab_processes(lab):
            log(f"removing the leftovers of lab {lab} (none of its processes is alive)")
            teardown(lab)
        else:
            log(f"note: lab {lab} is running too; on this machine, names it shares with {name} resolve to {name}")


def up(topology: Topology, recreate: bool) -> None:
    started = time.monotonic()
    paths = Paths(topology)
    if not recreate and lab_is_healthy(topology, paths):
        write_inventory(topology, paths)
        log(f"lab {topology.name} is already up and healthy; inventory: {paths.inventory_dir}")
        return
    root = ensure_root()
    kvm = prepare_kvm(root)
    raise_inotify_limits()
    with sweep_lock():
        # Under the lock until this lab has a live process: a lab that another `up` is
        # building at the same moment never looks like a dead leftover to this one.
        remove_leftovers(topology.name)
        paths.state.mkdir(parents=True, exist_ok=True)
        public_key = setup_ssh(paths)
        setup_network(topology)
        start_apt_cache(topology)
    write_hosts_file_block(topology.name, [f"{a}\t{n}" for a, n in lab_name_table(topology)])
    for host in topology.hosts:
        merged = prepare_machine(topology, paths, root, host, public_key)
        boot_machine(topology, paths, host, merged, kvm)
    write_known_hosts(topology, paths)
    states = {host.name: wait_until_booted(topology, paths, host) for host in topology.hosts}
    inventory = write_inventory(topology, paths)
    paths.record.write_text(json.dumps({"topology": topology.as_dict(), "root": str(root), "kvm": kvm}, indent=2))
    log(f"lab {topology.name} up in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{n} ({s})" for n, s in states.items()))
    log(f"inventory: {inventory}")


def down(names: list[str]) -> None:
    # Under the lock of `up`'s leftover sweep: a lab half taken down here never looks like
    # a dead leftover to an `up` running at the same moment, which would tear it down too.
    with sweep_lock():
        for lab in names:
            teardown(lab)
            log(f"lab {lab} is down; nothing of it is left")


def recorded_topology(paths: Paths) -> Topology | None:
    """The topology the lab was brought up with, from its record (None when it has none)."""
    if not paths.record.exists():
        return None
    data = json.loads(paths.record.read_text())["topology"]
    return Topology(name=data["name"], subnet=ipaddress.ip_network(data["subnet"]), domain=data["domain"],
                    hosts=[Host(h["name"], h["address"], h["groups"], h["export_dirs"]) for h in data["hosts"]],
                    source=str(paths.record))


def status(asked: Topology, describe_asked: bool) -> int:
    """The lab as it was brought up (its record), or that it is down.

    A lab that left nothing on this machine is down: its name is all there is to report, plus,
    when the command named a topology, hosts or subnet, what `up` would bring up with them.
    """
    paths = Paths(asked)
    bridge = tagged_bridges().get(asked.name)
    if not bridge and not paths.state.exists() and not lab_processes(asked.name):
        line = f"lab {asked.name} is down (nothing of it on this machine)"
        if describe_asked:
            hosts = ", ".join(f"{h.name} {h.address}" for h in asked.hosts)
            line += f"; `up` with these arguments would bring up {hosts} on {asked.subnet}"
        print(line)
        return 3
    topology = recorded_topology(paths) or asked
    healthy = True
    print(f"lab {topology.name}: bridge {bridge or 'absent'}, state {paths.state if paths.state.exists() else 'absent'}")
    for host in topology.hosts:
        pids = cgroup_pids(lab_cgroup(cgroup_hierarchies()[0], topology.name, host.name))
        reachable = "-"
        if pids:
            try:
                result = ssh(paths, host, "systemctl is-system-running", timeout=10)
                reachable = result.stdout.strip() or result.stderr.strip()
            except subprocess.TimeoutExpired:
                reachable = "ssh timeout"
        up_ok = bool(pids) and reachable in ("running", "degraded")
        healthy &= up_ok
        print(f"  {host.name:<6} {host.address:<15} processes {len(pids):>4}  systemd {reachable}")
    return 0 if healthy else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("command", choices=["up", "down", "status", "inventory"])
    parser.add_argument("--topology", type=Path, default=Path(os.environ.get("VIRTOPS_LAB_TOPOLOGY", DEFAULT_TOPOLOGY)))
    parser.add_argument("--hosts", help="comma-separated subset of the topology's hosts")
    parser.add_argument("--name", default=os.environ.get("VIRTOPS_LAB_NAME"), help="lab name (overrides the topology's)")
    parser.add_argument("--subnet", default=os.environ.get("VIRTOPS_LAB_SUBNET"), help="lab subnet (renumbers the hosts)")
    parser.add_argument("--recreate", action="store_true", help="up: rebuild the machines even if the lab is healthy")
    parser.add_argument("--all", action="store_true", help="down: remove every lab found on this machine")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    topology_asked = any(arg.split("=", 1)[0] in ("--topology", "--hosts", "--subnet") for arg in given)
    if os.geteuid() != 0:
        print("the lab needs root (bridges, mounts, nspawn)", file=sys.stderr)
        return 2
    try:
        hosts = [h for h in (args.hosts or "").split(",") if h]
        topology = load_topology(args.topology, hosts, args.name, args.subnet)
        if args.command == "up":
            up(topology, args.recreate)
        elif args.command == "down":
            down(sorted(known_labs()) if args.all else [topology.name])
        elif args.command == "status":
            return status(topology, topology_asked)
        else:
            print(Paths(topology).inventory_dir)
    except LabError as error:
        print(f"[lab] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
