# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a gzip'd newc initramfs holding busybox (static), an /init script and kernel modules.

The script is run by busybox's shell: its "#!/bin/busybox sh" line is written here.
Modules land in /lib/modules with a ``load-order`` file listing them in the order given
(dependencies first), which /init loads with insmod.

No cpio tool needed: the newc format is written directly.

Usage: make_initramfs.py BUSYBOX INIT OUTPUT [MODULE.ko ...]
"""

from __future__ import annotations

import gzip
import os
import sys

DIRS = ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")
INIT_INTERPRETER = b"#!/bin/busybox sh\n"


def _entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    encoded = name.encode() + b"\x00"
    header = "070701" + "".join(f"{value:08X}" for value in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
    blob = header.encode() + encoded
    blob += bytes(-len(blob) % 4)
    blob += data + bytes(-len(data) % 4)
    return blob


def initramfs(busybox: bytes, init: bytes, modules: dict[str, bytes] | None = None) -> bytes:
    """The archive; ``modules`` maps file names to contents, in load order."""
    modules = modules or {}
    files = [("bin/busybox", 0o100755, busybox), ("init", 0o100755, INIT_INTERPRETER + init)]
    files += [(f"lib/modules/{name}", 0o100644, data) for name, data in modules.items()]
    if modules:
        files.append(("lib/modules/load-order", 0o100644, "".join(f"{name}\n" for name in modules).encode()))
    archive = b""
    ino = 1
    for directory in DIRS:
        archive += _entry(directory, 0o040755, ino=ino)
        ino += 1
    for name, mode, data in files:
        archive += _entry(name, mode, data, ino=ino)
        ino += 1
    archive += _entry("TRAILER!!!", 0)
    return gzip.compress(archive, mtime=0)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    modules = {os.path.basename(path): _read(path) for path in argv[4:]}
    data = initramfs(_read(argv[1]), _read(argv[2]), modules)
    with open(argv[3], "wb") as output:
        output.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
