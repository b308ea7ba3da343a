"""The collection as operators get it: the tarball of this tree, built and installed.

One home for building the tarball (``ansible-galaxy collection build`` from the files a fresh
clone would have, plus work not yet committed) and installing it into an empty collections
path (``ansible-galaxy collection install``, as the README tells operators). The packaging
checks and the lab integration suites use it; so does ``make demo``:

    python tests/packaging/artifact.py DEST     # prints the ANSIBLE_COLLECTIONS_PATH to use

The dependencies (community.libvirt, community.crypto, ansible.posix) come from the ``ansible``
package of the venv: Galaxy is not reachable from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ArtifactError(RuntimeError):
    """Building or installing the tarball failed; the message holds ansible-galaxy's output."""


def venv_tool(name: str) -> str:
    """A command of the virtualenv this script runs in (the Makefile's PATH has it first too)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def dependencies_path() -> str:
    """The directory holding the `ansible` package's ansible_collections/."""
    import ansible_collections

    return str(Path(next(iter(ansible_collections.__path__))).parent)


def source_copy(root: Path, dest: Path) -> None:
    """The files of a fresh clone plus the work not yet committed, without ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    shutil.rmtree(dest, ignore_errors=True)
    for name in filter(None, listed):
        source = root / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def build(source: Path, out: Path, ansible_bin: Path | None = None) -> Path:
    """``ansible-galaxy collection build`` of ``source`` into an emptied ``out``; the tarball."""
    shutil.rmtree(out, ignore_errors=True)
    galaxy = str(ansible_bin / "ansible-galaxy") if ansible_bin else venv_tool("ansible-galaxy")
    built = subprocess.run([galaxy, "collection", "build", "--force", "--output-path", str(out), str(source)],
                           check=False, capture_output=True, text=True)
    if built.returncode != 0:
        raise ArtifactError(f"ansible-galaxy collection build failed:\n{built.stdout}{built.stderr}")
    (tarball,) = out.glob("*.tar.gz")
    return tarball


def install(tarball: Path, collections: Path, ansible_bin: Path | None = None, cwd: Path | None = None) -> None:
    """``ansible-galaxy collection install`` into an emptied ``collections`` path.

    ``--offline``: the dependencies galaxy.yml declares must already be installed where
    Ansible looks (the venv's ``ansible`` package), and the install fails when one is missing.
    """
    shutil.rmtree(collections, ignore_errors=True)
    collections.mkdir(parents=True)
    galaxy = str(ansible_bin / "ansible-galaxy") if ansible_bin else venv_tool("ansible-galaxy")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=dependencies_path(), ANSIBLE_HOME=str(collections.parent / "home"))
    installed = subprocess.run([galaxy, "collection", "install", "--offline", "-p", str(collections), str(tarball)],
                               cwd=cwd or collections, env=env, check=False, capture_output=True, text=True)
    if installed.returncode != 0:
        raise ArtifactError(f"ansible-galaxy collection install failed:\n{installed.stdout}{installed.stderr}")


def collections_path(collections: Path) -> str:
    """ANSIBLE_COLLECTIONS_PATH for the installed collection and its dependencies."""
    return f"{collections}{os.pathsep}{dependencies_path()}"


def build_and_install(dest: Path) -> str:
    """Build this tree's tarball under ``dest`` and install it there; the ANSIBLE_COLLECTIONS_PATH to use."""
    source_copy(ROOT, dest / "source")
    tarball = build(dest / "source", dest / "dist")
    install(tarball, dest / "collections")
    return collections_path(dest / "collections")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(build_and_install(Path(sys.argv[1]).absolute()))
    except ArtifactError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
