"""The built tarball, installed as an operator installs it, works from another directory.

Installs build/packaging/dist/*.tar.gz (made by check_tarball.py) with
`ansible-galaxy collection install` into an empty collections path, then, from an
empty directory and with the checkout out of every search path, runs with the given
ansible-core:
- `ansible-playbook --syntax-check` of every playbook by its FQCN (this
  resolves every module, action and role they name, community.libvirt's included);
- `ansible-doc` of every module and role of the collection.
The dependencies come from the `ansible` package of the developers' venv.

    python tests/packaging/check_installed.py [--ansible-bin DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from artifact import ArtifactError, dependencies_path, install
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ("bootstrap", "migrate", "evacuate", "restore", "rolling_maintenance", "cancel")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ansible-bin", type=Path, default=Path(sys.executable).parent,
                        help="bin directory of the ansible-core to use (default: this venv's)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "packaging")
    parser.add_argument("--lowest", action="store_true",
                        help="this ansible-core is the lowest tested: it must be meta/runtime.yml's floor")
    args = parser.parse_args()
    args.ansible_bin = args.ansible_bin.absolute()
    tarballs = sorted((args.out / "dist").glob("*.tar.gz"))
    if not tarballs:
        sys.exit(f"ERROR: no tarball in {args.out / 'dist'}: run tests/packaging/check_tarball.py first")
    tarball = tarballs[-1]

    work = args.out / f"installed-{args.ansible_bin.parent.name.lstrip('.')}"
    shutil.rmtree(work, ignore_errors=True)
    collections, elsewhere = work / "collections", work / "elsewhere"
    elsewhere.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{args.ansible_bin}{os.pathsep}{env['PATH']}",
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_COLLECTIONS_PATH=f"{collections}{os.pathsep}{dependencies_path()}",
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    version = run([str(args.ansible_bin / "ansible"), "--version"], elsewhere, env).stdout.splitlines()[0]
    print(f"{version}: {tarball.name} installed into {collections}")

    problems = []
    core = re.search(r"core (\d+\.\d+\.\d+)", version).group(1)
    claimed = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    floor = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(,.*)?", claimed.strip())
    if not SpecifierSet(claimed).contains(core):
        problems.append(f"ansible-core {core} is outside meta/runtime.yml's requires_ansible {claimed}")
    if args.lowest and (floor is None or floor.group(1) != core):
        problems.append(f"meta/runtime.yml claims {claimed}, but the lowest ansible-core tested is {core}")
    try:
        install(tarball, collections, args.ansible_bin, cwd=elsewhere)
    except ArtifactError as error:
        sys.exit(f"ERROR: {error}")
    content = collections / "ansible_collections" / "virtops" / "migration"
    playbooks = [f"virtops.migration.{playbook}" for playbook in PLAYBOOKS]
    checked = run([str(args.ansible_bin / "ansible-playbook"), "--syntax-check", "-i", "localhost,", *playbooks],
                  elsewhere, env)
    print(f"  ansible-playbook --syntax-check {' '.join(playbooks)}: {'ok' if checked.returncode == 0 else 'FAILED'}")
    if checked.returncode != 0:
        problems.append(f"syntax check: {checked.stdout}{checked.stderr}")
    for kind, pattern in (("module", "plugins/modules/*.py"), ("role", "roles/*/meta/main.yml")):
        names = sorted(f"virtops.migration.{path.stem if kind == 'module' else path.parents[1].name}"
                       for path in content.glob(pattern))
        shown = run([str(args.ansible_bin / "ansible-doc"), "-t", kind, *names], elsewhere, env)
        failed = shown.returncode != 0 or "ERROR" in shown.stderr
        print(f"  ansible-doc -t {kind} {' '.join(names)}: {'FAILED' if failed else 'ok'}")
        if failed:
            problems.append(f"ansible-doc -t {kind}: {shown.stderr.strip()}")

    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
