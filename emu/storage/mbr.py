"""Partition discovery: the legacy MBR, EBR chains of extended partitions, and the 'no MBR' (superfloppy) case.

Numbering follows Linux (block/partitions/msdos.c): primary records are partitions 1-4 by slot, logical
partitions inside an extended partition are 5, 6, ... in chain order; 0 means the whole disk.
EBR layout: UEFI 2.10 §5.2.1; record 0 describes the logical partition relative to its EBR, record 1 the
next EBR relative to the start of the extended partition.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from construct import ConstructError

from emu.storage.source import SectorSource, SliceSource, StorageError
from emu.storage.structs import EXTENDED_TYPES, FAT_TYPES, MBR_SIGNATURE, ExtendedBootRecord, MasterBootRecord

MAX_LOGICAL = 128
"""At most this many logical partitions are followed in an EBR chain (Linux stops at a similar bound)."""


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition: its number, type, absolute start LBA and length in sectors."""

    number: int
    os_type: int
    start: int
    sectors: int
    bootable: bool = False

    @property
    def is_fat(self) -> bool:
        """True for the FAT partition types (0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E and hidden variants)."""
        return self.os_type in FAT_TYPES

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {"number": self.number, "type": f"{self.os_type:#04x}", "start": self.start,
                "sectors": self.sectors, "bootable": self.bootable}


@dataclasses.dataclass
class PartitionTable:
    """What sector 0 holds: partitions (empty when there is no MBR) and anomalies found on the way."""

    has_mbr: bool
    partitions: list[Partition]
    warnings: list[str]

    def get(self, number: int) -> Partition:
        """The partition with this number, or StorageError."""
        for p in self.partitions:
            if p.number == number:
                return p
        have = ", ".join(str(p.number) for p in self.partitions) or "none"
        raise StorageError(f"no partition {number} on this disk (partitions: {have})")


def looks_like_fat_boot_sector(sector: bytes) -> bool:
    """A plausible FAT boot sector at sector 0 (fatgen103 §3.1 jump + sane BPB) rather than an MBR."""
    if len(sector) < 512:
        return False
    if not (sector[0] == 0xEB and sector[2] == 0x90 or sector[0] == 0xE9):
        return False
    bps = int.from_bytes(sector[11:13], "little")
    spc = sector[13]
    rsvd = int.from_bytes(sector[14:16], "little")
    nfats = sector[16]
    return bps in (512, 1024, 2048, 4096) and spc in (1, 2, 4, 8, 16, 32, 64, 128) and rsvd >= 1 and nfats >= 1


def read_partition_table(source: SectorSource) -> PartitionTable:
    """Parse sector 0 and any EBR chain; never raises for a corrupt table (anomalies go into ``warnings``)."""
    if source.sectors < 1:
        raise StorageError("empty disk: no sector 0")
    sector0 = source.read(0, 1)
    if sector0[510:512] != MBR_SIGNATURE:
        return PartitionTable(False, [], [])
    mbr = MasterBootRecord.parse(sector0)
    records = list(mbr.PartitionRecord)
    boot_flags_ok = all(r.BootIndicator in (0, 0x80) for r in records)
    used = [r for r in records if r.OSType != 0]
    if looks_like_fat_boot_sector(sector0) and not (boot_flags_ok and used):
        # A FAT boot sector at LBA 0 (a "superfloppy") whose 0x1BE area holds no valid partition record.
        # Like Linux (block/partitions/msdos.c) valid records win: mkfs.fat --mbr writes a record that spans
        # the whole disk from LBA 0, which then is partition 1.
        return PartitionTable(False, [], [])
    warnings: list[str] = []
    if not boot_flags_ok:
        warnings.append("MBR: invalid boot indicator (not 0x00 or 0x80) in a partition record")
    partitions: list[Partition] = []
    for slot, r in enumerate(records, start=1):
        if r.OSType == 0:
            continue
        if r.SizeInLBA == 0:
            warnings.append(f"MBR: partition {slot} has zero length")
            continue
        partitions.append(Partition(slot, r.OSType, r.StartingLBA, r.SizeInLBA, r.BootIndicator == 0x80))
    extended = [p for p in partitions if p.os_type in EXTENDED_TYPES]
    if len(extended) > 1:
        warnings.append("MBR: more than one extended partition; only the first is followed")
    if extended:
        partitions.extend(_walk_ebr_chain(source, extended[0], warnings))
    _check_extents(source, partitions, warnings)
    return PartitionTable(True, partitions, warnings)


def _walk_ebr_chain(source: SectorSource, ext: Partition, warnings: list[str]) -> list[Partition]:
    logical: list[Partition] = []
    seen: set[int] = set()
    offset = 0
    number = 5
    while True:
        lba = ext.start + offset
        if lba in seen:
            warnings.append(f"EBR chain loops back to LBA {lba}")
            break
        if len(logical) >= MAX_LOGICAL:
            warnings.append(f"EBR chain longer than {MAX_LOGICAL} logical partitions; stopped")
            break
        seen.add(lba)
        if lba >= source.sectors:
            warnings.append(f"EBR at LBA {lba} lies beyond the end of the disk")
            break
        try:
            ebr = ExtendedBootRecord.parse(source.read(lba, 1))
        except (ConstructError, StorageError) as exc:
            warnings.append(f"EBR at LBA {lba} unreadable: {exc}")
            break
        if ebr.Signature != MBR_SIGNATURE:
            warnings.append(f"EBR at LBA {lba} has no 0x55AA signature")
            break
        r0, r1 = ebr.PartitionRecord[0], ebr.PartitionRecord[1]
        if r0.OSType != 0 and r0.SizeInLBA:
            logical.append(Partition(number, r0.OSType, lba + r0.StartingLBA, r0.SizeInLBA, r0.BootIndicator == 0x80))
            number += 1
        if r1.OSType == 0 or r1.SizeInLBA == 0:
            break
        if r1.OSType not in EXTENDED_TYPES:
            warnings.append(f"EBR at LBA {lba}: link record has type {r1.OSType:#04x}, not extended")
        offset = r1.StartingLBA
    return logical


def _check_extents(source: SectorSource, partitions: list[Partition], warnings: list[str]) -> None:
    for p in partitions:
        if p.start + p.sectors > source.sectors:
            warnings.append(f"partition {p.number} ({p.start}+{p.sectors}) extends beyond the disk "
                            f"({source.sectors} sectors)")
    data = sorted((p for p in partitions if p.os_type not in EXTENDED_TYPES), key=lambda p: p.start)
    for a, b in zip(data, data[1:]):
        if b.start < a.start + a.sectors:
            warnings.append(f"partitions {a.number} and {b.number} overlap")
    exts = [p for p in partitions if p.os_type in EXTENDED_TYPES]
    for e in exts[:1]:
        for p in partitions:
            if p.number >= 5 and (p.start < e.start or p.start + p.sectors > e.start + e.sectors):
                warnings.append(f"logical partition {p.number} lies outside its extended partition")


def select_volume(source: SectorSource, partition: Optional[int] = None) -> tuple[SectorSource, Optional[Partition], PartitionTable]:
    """The sectors of the volume to analyse: partition N, or by default the first FAT partition, or the whole disk.

    ``partition=0`` forces the whole disk.  Raises StorageError when the chosen partition does not exist or
    lies (even partly) outside the disk.
    """
    table = read_partition_table(source)
    if partition == 0:
        return source, None, table
    if partition is not None:
        part = table.get(partition)
    elif not table.has_mbr or not table.partitions:
        return source, None, table
    else:
        candidates = [p for p in table.partitions if p.is_fat] or [
            p for p in table.partitions if p.os_type not in EXTENDED_TYPES]
        if not candidates:
            raise StorageError("the MBR lists no data partition")
        part = candidates[0]
    if part.os_type in EXTENDED_TYPES:
        raise StorageError(f"partition {part.number} is an extended partition (a container, not a volume)")
    if part.start + part.sectors > source.sectors:
        raise StorageError(f"partition {part.number} ({part.start}+{part.sectors}) extends beyond the disk "
                           f"({source.sectors} sectors)")
    return SliceSource(source, part.start, part.sectors), part, table
