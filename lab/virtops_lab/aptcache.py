"""The lab's apt cache: an apt-cacher-ng on the controller address, the machines' only way to packages."""

from __future__ import annotations

import shutil

from virtops_lab.cgroups import spawn_in_cgroup
from virtops_lab.state import CACHE_ROOT
from virtops_lab.system import wait_for_port
from virtops_lab.topology import Topology

APT_CACHE_PORT = 3142
# apt inside a machine reaches the registries only through the lab's apt cache. A connection to it
# that goes dead (the cache closed it, or stopped answering) must fail within this many seconds and
# be retried, never hold apt-get, and with it a role's package step, for as long as it stays open.
APT_TIMEOUT_S = 20
APT_RETRIES = 2
# The cache's own wait on the registries, shorter than apt's: the cache answers with an error
# (which apt retries) before apt would give up on it.
APT_CACHE_UPSTREAM_TIMEOUT_S = 15


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


def apt_proxy_conf(topology: Topology) -> str:
    return (
        f'Acquire::http::Proxy "http://{topology.controller_address}:{APT_CACHE_PORT}";\n'
        f'Acquire::http::Timeout "{APT_TIMEOUT_S}";\n'
        f'Acquire::Retries "{APT_RETRIES}";\n'
    )
