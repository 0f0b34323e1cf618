"""IDENTIFY DEVICE data and disk geometry exactly as QEMU 7.2 builds them for a raw ``ide-hd`` disk.

Sources: ATA/ATAPI-6 (T13 1410D) section 8.16 table 27 for the word meanings;
QEMU 7.2 ``hw/ide/core.c`` ``ide_identify`` and ``hw/block/hd-geometry.c``
(read, not copied) for the values; every word was checked against an IDENTIFY
read back from ``qemu-system-i386`` 7.2 (``tests/devices/qemu_ide_probe.c``).
Strings are ATA strings: space padded, the two bytes of each word swapped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MAX_MULT_SECTORS = 16
"""Largest READ/WRITE MULTIPLE block (QEMU MAX_MULT_SECTORS); IDENTIFY word 47 = 0x8000 | 16."""
QEMU_MODEL = "QEMU HARDDISK"
"""Model string of QEMU's ``ide-hd``."""
QEMU_FIRMWARE = "2.5+"
"""Firmware revision QEMU reports (``qemu_hw_version()`` for machine types >= 2.5)."""


def qemu_serial(index: int) -> str:
    """QEMU's default serial ``QM%05d``; drives are numbered from 1 in order primary master, slave, secondary."""
    return f"QM{index:05d}"


@dataclass(frozen=True)
class Geometry:
    """Physical CHS geometry reported in IDENTIFY words 1/3/6 and 54-58."""

    cylinders: int
    heads: int
    sectors: int


def _chs_for_size(total: int) -> Geometry:
    """QEMU ``guess_chs_for_size``: 16 heads, 63 sectors, cylinders clamped to 2..16383."""
    cyls = total // (16 * 63)
    cyls = max(2, min(cyls, 16383))
    return Geometry(cyls, 16, 63)


def _lchs_from_mbr(sector0: bytes, total: int) -> Optional[Geometry]:
    """QEMU ``guess_disk_lchs``: heads/sectors from the first usable partition's end CHS."""
    if len(sector0) < 512 or sector0[510] != 0x55 or sector0[511] != 0xAA:
        return None
    for i in range(4):
        entry = sector0[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        nr_sects = int.from_bytes(entry[12:16], "little")
        end_head = entry[5]
        if nr_sects and end_head:
            heads = end_head + 1
            secs = entry[6] & 63
            if secs == 0:
                continue
            cyls = total // (heads * secs)
            if cyls < 1 or cyls > 16383:
                continue
            return Geometry(cyls, heads, secs)
    return None


def guess_geometry(total: int, sector0: bytes) -> Geometry:
    """QEMU ``hd_geometry_guess``: a partition table with <= 16 heads gives the geometry, else 16/63."""
    lchs = _lchs_from_mbr(sector0, total)
    if lchs is None or lchs.heads > 16:
        return _chs_for_size(total)
    return lchs


def ata_string(text: str, length: int) -> bytes:
    """``text`` as an ATA string field of ``length`` bytes (space padded, bytes swapped in each word)."""
    raw = text.encode("ascii", "replace")[:length].ljust(length, b" ")
    out = bytearray(length)
    out[0::2] = raw[1::2]
    out[1::2] = raw[0::2]
    return bytes(out)


def identify_words(total: int, geometry: Geometry, serial: str, model: str = QEMU_MODEL,
                   firmware: str = QEMU_FIRMWARE, mult_sectors: int = MAX_MULT_SECTORS,
                   write_cache: bool = True) -> bytearray:
    """The 512-byte IDENTIFY DEVICE block of a QEMU 7.2 raw hard disk of ``total`` sectors."""
    w = [0] * 256
    c, h, s = geometry.cylinders, geometry.heads, geometry.sectors
    w[0] = 0x0040                          # fixed device
    w[1], w[3], w[6] = c, h, s             # default CHS (obsolete in ATA-6)
    w[4], w[5] = (512 * s) & 0xFFFF, 512   # retired: bytes per track / per sector
    w[20], w[21], w[22] = 3, 512, 4        # retired buffer type, buffer size, ECC bytes
    w[47] = 0x8000 | MAX_MULT_SECTORS      # READ/WRITE MULTIPLE up to 16 sectors
    w[48] = 1                              # dword I/O
    w[49] = (1 << 11) | (1 << 9) | (1 << 8)  # IORDY, LBA, DMA
    w[51] = w[52] = 0x200                  # PIO / DMA timing modes
    w[53] = 0x7                            # words 54-58, 64-70 and 88 valid
    w[54], w[55], w[56] = c, h, s          # current CHS
    old = c * h * s
    w[57], w[58] = old & 0xFFFF, (old >> 16) & 0xFFFF
    if mult_sectors:
        w[59] = 0x100 | mult_sectors
    lba28 = min(total, (1 << 28) - 1)
    w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
    w[62] = 0x07                           # single word DMA 0-2
    w[63] = 0x07                           # multiword DMA 0-2
    w[64] = 0x03                           # PIO 3-4
    w[65] = w[66] = w[67] = w[68] = 120    # cycle times (ns)
    w[69] = 1 << 14                        # deterministic TRIM (QEMU ide-hd discard_granularity 512)
    w[80] = 0xF0                           # ATA-4..7
    w[81] = 0x16
    w[82] = (1 << 14) | (1 << 5) | 1       # NOP, write cache, SMART supported
    w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10)  # FLUSH CACHE EXT, FLUSH CACHE, LBA48
    w[84] = 1 << 14
    w[85] = (1 << 14) | (1 << 5) | 1 if write_cache else (1 << 14) | 1
    w[86] = (1 << 13) | (1 << 12) | (1 << 10)
    w[87] = 1 << 14
    w[88] = 0x3F | (1 << 13)               # UDMA 0-5 supported, UDMA 5 selected
    w[93] = 1 | (1 << 14) | 0x2000         # hardware reset result
    w[100], w[101] = total & 0xFFFF, (total >> 16) & 0xFFFF
    w[102], w[103] = (total >> 32) & 0xFFFF, (total >> 48) & 0xFFFF
    w[106] = 0x6000                        # one logical sector per physical sector
    w[169] = 1                             # DATA SET MANAGEMENT (TRIM) supported
    block = bytearray(b"".join(v.to_bytes(2, "little") for v in w))
    block[20:40] = ata_string(serial, 20)      # words 10-19
    block[46:54] = ata_string(firmware, 8)     # words 23-26
    block[54:94] = ata_string(model, 40)       # words 27-46
    return block


def set_identify_size(block: bytearray, total: int) -> None:
    """Rewrite words 60-61 and 100-103 for a new capacity (QEMU ``ide_identify_size``)."""
    lba28 = min(total, (1 << 28) - 1)
    for word, value in ((60, lba28 & 0xFFFF), (61, lba28 >> 16), (100, total & 0xFFFF),
                        (101, (total >> 16) & 0xFFFF), (102, (total >> 32) & 0xFFFF),
                        (103, (total >> 48) & 0xFFFF)):
        block[2 * word:2 * word + 2] = value.to_bytes(2, "little")


def put_word(block: bytearray, word: int, value: int) -> None:
    """Store one IDENTIFY word."""
    block[2 * word:2 * word + 2] = value.to_bytes(2, "little")
