"""Every collection the shipped content names is declared in galaxy.yml.

Lists each fully qualified name the operators' content uses (modules and actions in
tasks, roles, lookup/filter/test plugins in Jinja expressions, module_utils and doc
fragments imported by the plugins) and fails when its collection is not a dependency
in galaxy.yml. ansible.builtin, ansible.legacy and the collection itself are exempt.
It also checks that the collections installed with the `ansible` package meet the
declared version ranges, since those are the versions the tests run against, and that
no shipped file reads a variable of the lab (``virtops_lab_*``): what only the lab needs
lives in the lab (lab/inventory/group_vars/virtops_lab.yml).

    python tests/packaging/check_dependencies.py [--root DIR]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

EXEMPT = {"ansible.builtin", "ansible.legacy", "ansible.module_utils"}
SHIPPED_YAML = ("playbooks/*.yml", "roles/*/tasks/*.yml", "roles/*/handlers/*.yml",
                "roles/*/meta/*.yml", "roles/*/defaults/*.yml", "roles/*/vars/*.yml")
SHIPPED_TEMPLATES = ("roles/*/templates/*.j2",)
SHIPPED_PYTHON = ("plugins/**/*.py",)

NAME = r"[a-z_][a-z0-9_]*"
FQCN = rf"{NAME}\.{NAME}\.{NAME}"
FQCN_ONLY = re.compile(rf"^{FQCN}$")
JINJA_PLUGIN = re.compile(
    rf"""(?:\b(?:lookup|query|q)\(\s*['"](?P<lookup>{FQCN})['"]"""
    rf"""|\|\s*(?P<filter>{FQCN})\b"""
    rf"""|\bis\s+(?:not\s+)?(?P<test>{FQCN})\b)"""
)
PYTHON_IMPORT = re.compile(rf"\bansible_collections\.(?P<collection>{NAME}\.{NAME})\.")
ROLE_ACTIONS = {"include_role", "import_role"}
LAB_VARIABLE = re.compile(r"\bvirtops_lab_[a-z0-9_]+")


class _AnyTagLoader(yaml.SafeLoader):
    """Reads Ansible YAML (!unsafe, !vault) as plain values."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                    if isinstance(node, yaml.ScalarNode) else None)


def collection_of(fqcn: str) -> str:
    return ".".join(fqcn.split(".")[:2])


def names_in_text(text: str) -> Iterator[tuple[str, str]]:
    for match in JINJA_PLUGIN.finditer(text):
        kind = match.lastgroup
        yield kind, match.group(kind)


def names_in_yaml(node: object) -> Iterator[tuple[str, str]]:
    """(kind, fqcn) for every module, role and Jinja plugin named in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            key = str(key)
            if FQCN_ONLY.match(key):
                yield "module", key
                if key.rsplit(".", 1)[1] in ROLE_ACTIONS and isinstance(value, dict) and "name" in value:
                    yield "role", str(value["name"])
            if key in ("action", "local_action") and isinstance(value, str):
                yield "module", value.split()[0]
            if key in ("roles", "dependencies") and isinstance(value, list):
                for entry in value:
                    role = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
                    if isinstance(role, str) and FQCN_ONLY.match(role):
                        yield "role", role
            yield from names_in_yaml(value)
    elif isinstance(node, list):
        for item in node:
            yield from names_in_yaml(item)
    elif isinstance(node, str):
        yield from names_in_text(node)


def names_in_python(source: str) -> Iterator[tuple[str, str]]:
    for match in PYTHON_IMPORT.finditer(source):
        yield "module_utils", match.group("collection") + ".*"
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
            continue
        target = getattr(node.targets[0], "id", "")
        if target not in ("DOCUMENTATION", "EXAMPLES"):
            continue
        document = yaml.load(node.value.value, Loader=_AnyTagLoader)
        if target == "DOCUMENTATION" and isinstance(document, dict):
            for fragment in document.get("extends_documentation_fragment") or []:
                yield "doc_fragment", fragment
        elif target == "EXAMPLES":
            yield from names_in_yaml(document)


def used_names(root: Path) -> dict[str, set[tuple[str, str]]]:
    """{fqcn: {(kind, file)}} over the shipped content."""
    used: dict[str, set[tuple[str, str]]] = {}

    def add(found: Iterator[tuple[str, str]], path: Path) -> None:
        for kind, name in found:
            used.setdefault(name, set()).add((kind, str(path.relative_to(root))))

    for pattern in SHIPPED_YAML:
        for path in sorted(root.glob(pattern)):
            for document in yaml.load_all(path.read_text(), Loader=_AnyTagLoader):
                add(names_in_yaml(document), path)
    for pattern in SHIPPED_TEMPLATES:
        for path in sorted(root.glob(pattern)):
            add(names_in_text(path.read_text()), path)
    for pattern in SHIPPED_PYTHON:
        for path in sorted(root.glob(pattern)):
            add(names_in_python(path.read_text()), path)
    return used


def installed_version(collection: str) -> str | None:
    import ansible_collections  # the `ansible` package's collections

    for base in ansible_collections.__path__:
        manifest = Path(base, *collection.split("."), "MANIFEST.json")
        if manifest.is_file():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    root = parser.parse_args().root
    galaxy = yaml.safe_load((root / "galaxy.yml").read_text())
    itself = f"{galaxy['namespace']}.{galaxy['name']}"
    declared = galaxy.get("dependencies") or {}

    problems = []
    used = used_names(root)
    by_collection: dict[str, list[str]] = {}
    for name in sorted(used):
        by_collection.setdefault(collection_of(name), []).append(name)
    for collection, names in sorted(by_collection.items()):
        state = ("exempt" if collection in EXEMPT else "itself" if collection == itself
                 else "declared" if collection in declared else "NOT DECLARED")
        print(f"{collection} ({state}):")
        for name in names:
            kinds = sorted({kind for kind, path in used[name]})
            files = sorted({path for kind, path in used[name]})
            print(f"  {name} [{', '.join(kinds)}] in {', '.join(files)}")
        if state == "NOT DECLARED":
            problems.append(f"{collection} is used ({', '.join(names)}) but is not a dependency in galaxy.yml")

    for collection, spec in sorted(declared.items()):
        if collection not in by_collection:
            problems.append(f"galaxy.yml declares {collection}, which no shipped content uses")
        version = installed_version(collection)
        if version is None:
            problems.append(f"{collection} is declared but not installed with the `ansible` package")
        elif spec != "*" and not SpecifierSet(str(spec)).contains(version):
            problems.append(f"{collection} {version} (the version tested) is outside galaxy.yml's range {spec}")
        else:
            print(f"{collection}: declared {spec}, tested {version}")

    problems += [f"{path} reads the lab variable {name}: shipped content must not know about the lab"
                 for path, name in lab_variables_read(root)]

    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


def lab_variables_read(root: Path) -> Iterator[tuple[str, str]]:
    """(file, variable) for each lab variable a shipped file names."""
    for pattern in SHIPPED_YAML + SHIPPED_TEMPLATES + SHIPPED_PYTHON:
        for path in sorted(root.glob(pattern)):
            for name in sorted(set(LAB_VARIABLE.findall(path.read_text()))):
                yield str(path.relative_to(root)), name


if __name__ == "__main__":
    sys.exit(main())
