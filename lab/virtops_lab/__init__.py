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

Commands (``lab/virtops_lab.py`` or ``python -m virtops_lab``): ``up`` (idempotent:
a healthy lab of the same topology is kept), ``down`` (removes everything of the
lab), ``status``, ``inventory`` (prints the generated inventory's path).

Modules, by concern: ``topology`` (the hosts and their addresses), ``state`` (where a
lab keeps its files), ``ssh`` (the one ssh command line), ``rootfs`` (the cached machine
root), ``cgroups`` (a lab's processes), ``network`` (bridge, NAT, names), ``aptcache``,
``machines`` (overlay, nspawn, boot), ``inventory`` (the generated Ansible inventory),
``cleanup`` (what a lab leaves behind), ``lifecycle`` (up, down, status), ``cli``;
``client`` (``Lab``), ``ansible_runs`` and ``guests``: how the integration tests and the
benchmarks reach a running lab (``make setup`` puts lab/ on the venv's import path).
"""
