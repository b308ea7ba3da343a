"""The lab's command line: up, down, status, inventory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import virtops_lab
from virtops_lab.cleanup import known_labs
from virtops_lab.lifecycle import down, status, up
from virtops_lab.state import LabPaths
from virtops_lab.system import LabError
from virtops_lab.topology import DEFAULT_TOPOLOGY, load_topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=virtops_lab.__doc__.split("\n\n", maxsplit=1)[0])
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
            print(LabPaths(topology.name).inventory_dir)
    except LabError as error:
        print(f"[lab] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
