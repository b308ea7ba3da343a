"""ansible-builder sees what the collection needs on the controller, and nothing of the developers'.

With the tarball made by check_tarball.py, installed into an empty collections path:
- `ansible-builder introspect` lists exactly meta/ee-requirements.txt and bindep.txt
  (none of the developers' pins of the top-level requirements.txt);
- `ansible-builder create` writes the build context of tests/packaging/ee/
  execution-environment.yml (the README's example; there is no container engine on
  the test machines, so the image itself is not built).

    python tests/packaging/check_execution_environment.py [--out DIR]
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

ROOT = Path(__file__).resolve().parents[2]
EE_DEFINITION = ROOT / "tests" / "packaging" / "ee" / "execution-environment.yml"


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def requirement_lines(path: Path) -> list[str]:
    """Requirement lines of a pip or bindep file, comments dropped."""
    lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def project_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def run(command: list[str], cwd: Path) -> str:
    """Runs with no Ansible setting of the caller: the checkout must not count as installed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["ANSIBLE_HOME"] = str(cwd / "home")
    done = subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ERROR: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "packaging")
    args = parser.parse_args()
    tarballs = sorted((args.out / "dist").glob("*.tar.gz"))
    if not tarballs:
        sys.exit(f"ERROR: no tarball in {args.out / 'dist'}: run tests/packaging/check_tarball.py first")
    tarball = tarballs[-1]
    work = args.out / "ee"
    shutil.rmtree(work, ignore_errors=True)
    collections = work / "collections"
    collections.mkdir(parents=True)
    run([tool("ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(collections), str(tarball)], work)

    problems = []
    introspected = run([tool("ansible-builder"), "introspect", "--sanitize", str(collections)], work)
    found = yaml.safe_load(introspected) or {}
    python = [re.sub(r"\s+#.*$", "", line) for line in found.get("python") or []]
    system = [re.sub(r"\s+#.*$", "", line) for line in found.get("system") or []]
    print("ansible-builder introspect:")
    print("  python: " + ", ".join(python))
    print("  system: " + ", ".join(system))
    expected_python = requirement_lines(ROOT / "meta" / "ee-requirements.txt")
    expected_system = requirement_lines(ROOT / "bindep.txt")
    if sorted(python) != sorted(expected_python):
        problems.append(f"introspect lists Python {python}, meta/ee-requirements.txt says {expected_python}")
    if sorted(system) != sorted(expected_system):
        problems.append(f"introspect lists system {system}, bindep.txt says {expected_system}")
    developer_pins = {project_name(line) for line in requirement_lines(ROOT / "requirements.txt")}
    leaked = sorted(developer_pins & {project_name(line) for line in python})
    if leaked:
        problems.append(f"developers' pins reach the execution environment: {', '.join(leaked)}")

    definition = yaml.safe_load(EE_DEFINITION.read_text())
    wanted = [entry["src"] for entry in definition.get("additional_build_files", [])]
    if tarball.name not in wanted:
        problems.append(f"{EE_DEFINITION.relative_to(ROOT)} copies {wanted}, not {tarball.name} (the version built)")
    shutil.copy2(EE_DEFINITION, work / EE_DEFINITION.name)
    shutil.copy2(tarball, work / tarball.name)
    run([tool("ansible-builder"), "create", "-f", EE_DEFINITION.name, "-c", "context"], work)
    context = work / "context"
    made = sorted(str(path.relative_to(context)) for path in context.rglob("*") if path.is_file())
    print(f"ansible-builder create: {len(made)} files in {context}")
    for needed in ("_build/requirements.yml", f"_build/collections/{tarball.name}"):
        if needed not in made:
            problems.append(f"the build context lacks {needed}")
    if not {"Containerfile", "Dockerfile"} & set(made):
        problems.append("the build context has no Containerfile")

    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
