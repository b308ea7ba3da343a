"""The collection tarball holds what operators use, and nothing else.

Builds the tarball with `ansible-galaxy collection build` from a copy of the files git
knows (tracked or not ignored, as a fresh clone would have them), checks every member
against the allow-list below, that each required file is there, and reports the
tarball's size and file count.

    python tests/packaging/check_tarball.py [--root DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
from pathlib import Path

from artifact import ArtifactError, build, source_copy

# What an operator gets: the content, its metadata, its documentation.
ALLOWED = (
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "CHANGELOG.rst",
    "bindep.txt",
    "changelogs/changelog.yaml",
    "meta/*.yml",
    "meta/*.txt",
    "playbooks/*.yml",
    "plugins/modules/*.py",
    "plugins/filter/*.py",
    "plugins/module_utils/*/*.py",
    "plugins/doc_fragments/*.py",
    "roles/*/README.md",
    "roles/*/defaults/*.yml",
    "roles/*/vars/*.yml",
    "roles/*/meta/main.yml",
    "roles/*/meta/argument_specs.yml",
    "roles/*/handlers/*.yml",
    "roles/*/tasks/*.yml",
    "roles/*/templates/**",
    "roles/*/files/**",
)
REQUIRED = (
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "CHANGELOG.rst",
    "bindep.txt",
    "changelogs/changelog.yaml",
    "meta/runtime.yml",
    "meta/execution-environment.yml",
    "meta/ee-requirements.txt",
    "playbooks/bootstrap.yml",
    "playbooks/migrate.yml",
    "playbooks/evacuate.yml",
    "playbooks/restore.yml",
    "playbooks/rolling_maintenance.yml",
    "playbooks/cancel.yml",
    "roles/rolling_maintenance/meta/argument_specs.yml",
    "plugins/modules/migrate.py",
    "plugins/modules/migration_job.py",
    "plugins/modules/evacuate.py",
    "plugins/modules/guest_placement.py",
    "plugins/modules/restore.py",
    "plugins/filter/roll_state.py",
)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A glob where * stays within one path component and ** crosses them."""
    parts = (re.escape(part).replace(r"\*", "[^/]*") for part in pattern.split("**"))
    return re.compile(".*".join(parts) + r"\Z")


ALLOWED_REGEXES = tuple(pattern_regex(pattern) for pattern in ALLOWED)


def disallowed(members: list[str]) -> list[str]:
    return [name for name in members
            if not any(regex.match(name) for regex in ALLOWED_REGEXES)
            or "__pycache__" in name or name.endswith(".pyc")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or args.root / "build" / "packaging"
    source = out / "source"
    source_copy(args.root, source)
    try:
        tarball = build(source, out / "dist")
    except ArtifactError as error:
        sys.exit(f"ERROR: {error}")

    with tarfile.open(tarball) as archive:
        members = sorted(member.name for member in archive.getmembers() if member.isfile())
    problems = [f"{name} is not for operators (not in tests/packaging/check_tarball.py's allow-list)"
                for name in disallowed(members)]
    problems += [f"{name} is missing" for name in REQUIRED if name not in members]

    size_kib = tarball.stat().st_size / 1024
    print(f"{tarball.name}: {size_kib:.0f} KiB, {len(members)} files")
    for top in sorted({name.split('/')[0] for name in members}):
        print(f"  {top}: {sum(1 for name in members if name.split('/')[0] == top)}")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
