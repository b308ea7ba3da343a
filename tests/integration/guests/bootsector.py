# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the smallest guest: a raw disk whose boot sector prints one line on COM1 and idles.

The sector (real mode, loaded at 0x7c00) writes MESSAGE to the serial port 0x3f8, then loops on
``sti; hlt; jmp`` so the vCPU sleeps between timer interrupts instead of spinning (TCG would burn a
host core on a bare ``jmp $``).  The image is padded to 1 MiB.

Usage: bootsector.py OUTPUT [SIZE_BYTES]
"""

from __future__ import annotations

import sys

MESSAGE = b"virtops boot sector guest up\r\n\x00"
SECTOR = 512
DEFAULT_SIZE = 1024 * 1024
CODE_AT = 0x7C00


def boot_sector() -> bytes:
    message_at = CODE_AT + 23  # the code below is 23 bytes long
    code = bytes([
        0xFA,                                      # cli
        0x31, 0xC0,                                # xor ax, ax
        0x8E, 0xD8,                                # mov ds, ax
        0xBE, message_at & 0xFF, message_at >> 8,  # mov si, MESSAGE
        0xBA, 0xF8, 0x03,                          # mov dx, 0x3f8
        0xAC,                                      # next: lodsb
        0x84, 0xC0,                                # test al, al
        0x74, 0x03,                                # jz done
        0xEE,                                      # out dx, al
        0xEB, 0xF8,                                # jmp next
        0xFB,                                      # done: sti
        0xF4,                                      # idle: hlt
        0xEB, 0xFD,                                # jmp idle
    ])
    assert len(code) == message_at - CODE_AT
    sector = code + MESSAGE
    sector += bytes(SECTOR - 2 - len(sector)) + b"\x55\xaa"
    assert len(sector) == SECTOR
    return sector


def image(size: int = DEFAULT_SIZE) -> bytes:
    if size < SECTOR or size % SECTOR:
        raise ValueError(f"image size must be a multiple of {SECTOR} bytes")
    return boot_sector() + bytes(size - SECTOR)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    size = int(argv[2]) if len(argv) == 3 else DEFAULT_SIZE
    with open(argv[1], "wb") as handle:
        handle.write(image(size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
