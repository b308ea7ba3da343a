# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a gzip'd newc initramfs holding busybox (static) and an /init script.

The script is run by busybox's shell: its "#!/bin/busybox sh" line is written here.

No cpio tool needed: the newc format is written directly.

Usage: make_initramfs.py BUSYBOX INIT OUTPUT
"""

from __future__ import annotations

import gzip
import sys

DIRS = ("bin", "dev", "proc", "sys", "tmp")
INIT_INTERPRETER = b"#!/bin/busybox sh\n"


def _entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    encoded = name.encode() + b"\x00"
    header = "070701" + "".join(f"{value:08X}" for value in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
    blob = header.encode() + encoded
    blob += bytes(-len(blob) % 4)
    blob += data + bytes(-len(data) % 4)
    return blob


def initramfs(busybox: bytes, init: bytes) -> bytes:
    archive = b""
    ino = 1
    for directory in DIRS:
        archive += _entry(directory, 0o040755, ino=ino)
        ino += 1
    archive += _entry("bin/busybox", 0o100755, busybox, ino=ino)
    archive += _entry("init", 0o100755, INIT_INTERPRETER + init, ino=ino + 1)
    archive += _entry("TRAILER!!!", 0)
    return gzip.compress(archive, mtime=0)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], "rb") as busybox, open(argv[2], "rb") as init:
        data = initramfs(busybox.read(), init.read())
    with open(argv[3], "wb") as output:
        output.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
