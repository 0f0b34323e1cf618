"""Partition discovery: MBRs written by mtools' mpartition and mkfs.fat --mbr, EBR chains laid out per UEFI 2.10 §5.2.1."""
from __future__ import annotations

import struct
import subprocess

import pytest

from conftest import require_tool
from emu.storage.mbr import read_partition_table, select_volume
from emu.storage.source import MemorySource, StorageError
from emu.storage.structs import MasterBootRecord
from emu.storage.volume import open_volume

from .conftest import MT_ENV


def record(boot: int, os_type: int, start: int, size: int) -> bytes:
    """A partition record packed by hand from UEFI 2.10 table 5-2 (independent of the construct definitions)."""
    return struct.pack("<B3sB3sII", boot, b"\xfe\xff\xff", os_type, b"\xfe\xff\xff", start, size)


def table_sector(*records: bytes) -> bytes:
    recs = b"".join(records).ljust(64, b"\0")
    return bytes(446) + recs + b"\x55\xaa"


def disk(sectors: int, writes: dict[int, bytes]) -> MemorySource:
    data = bytearray(sectors * 512)
    for lba, sec in writes.items():
        data[lba * 512:lba * 512 + len(sec)] = sec
    return MemorySource(bytes(data))


def test_mpartition_mbr(tmp_path):
    require_tool("mpartition", "mkfs.fat", "mcopy")
    image = tmp_path / "p.img"
    image.write_bytes(bytes(8 << 20))
    rc = tmp_path / "mtoolsrc"
    rc.write_text(f'drive z: file="{image}" partition=1\nmtools_skip_check=1\n')
    env = dict(MT_ENV, MTOOLSRC=str(rc))
    subprocess.run(["mpartition", "-I", "z:"], env=env, check=True, capture_output=True)
    subprocess.run(["mpartition", "-c", "-T", "0x06", "-b", "63", "-l", "16000", "z:"], env=env, check=True,
                   capture_output=True)
    subprocess.run(["mkfs.fat", "--offset=63", "-h", "63", "-F", "16", "-s", "1", "--invariant", str(image), "8000"],
                   check=True, capture_output=True)
    (tmp_path / "x.txt").write_bytes(b"inside partition 1\n")
    subprocess.run(["mcopy", "-i", f"{image}@@{63 * 512}", str(tmp_path / "x.txt"), "::/X.TXT"], env=env,
                   check=True, capture_output=True)
    raw = image.read_bytes()
    mbr = MasterBootRecord.parse(raw[:512])
    assert mbr.PartitionRecord[0].OSType == 0x06
    assert mbr.PartitionRecord[0].StartingLBA == 63 and mbr.PartitionRecord[0].SizeInLBA == 16000
    src = MemorySource(raw)
    table = read_partition_table(src)
    assert table.has_mbr and [(p.number, p.start, p.sectors, p.os_type) for p in table.partitions] == [
        (1, 63, 16000, 0x06)]
    assert not table.warnings
    vol = open_volume(src)
    assert vol.partition.number == 1
    assert vol.fs.read_file(vol.fs.find("/X.TXT")) == b"inside partition 1\n"


def test_mkfs_fat_fake_mbr_is_the_whole_disk(tmp_path):
    require_tool("mkfs.fat")
    image = tmp_path / "f.img"
    subprocess.run(["mkfs.fat", "-C", "--mbr=y", "--invariant", "-F", "12", str(image), "1440"], check=True,
                   capture_output=True)
    src = MemorySource(image.read_bytes())
    table = read_partition_table(src)
    assert table.has_mbr and len(table.partitions) == 1 and table.partitions[0].start == 0
    vol = open_volume(src)
    assert vol.fs.entries() == [] and vol.fs.fat_type.name == "FAT12"


def test_superfloppy_without_mbr_is_the_whole_disk(tmp_path):
    require_tool("mkfs.fat")
    image = tmp_path / "s.img"
    subprocess.run(["mkfs.fat", "-C", "--invariant", "-F", "12", str(image), "1440"], check=True, capture_output=True)
    src = MemorySource(image.read_bytes())
    assert not read_partition_table(src).has_mbr
    vol_src, part, _ = select_volume(src)
    assert part is None and vol_src is src


def test_ebr_chain_logical_partitions_numbered_from_5():
    # Extended partition at 100 (len 900); EBR 1 at 100 -> logical at 100+10 (len 100), next EBR at ext+200;
    # EBR 2 at 300 -> logical at 300+5 (len 50), end of chain.
    writes = {
        0: table_sector(record(0x80, 0x0C, 2, 90), record(0, 0x0F, 100, 900)),
        100: table_sector(record(0, 0x0B, 10, 100), record(0, 0x05, 200, 300)),
        300: table_sector(record(0, 0x06, 5, 50)),
    }
    table = read_partition_table(disk(1000, writes))
    assert [(p.number, p.os_type, p.start, p.sectors) for p in table.partitions] == [
        (1, 0x0C, 2, 90), (2, 0x0F, 100, 900), (5, 0x0B, 110, 100), (6, 0x06, 305, 50)]
    assert table.partitions[0].bootable and not table.warnings


def test_ebr_loop_is_reported_not_followed():
    writes = {
        0: table_sector(record(0, 0x05, 100, 900)),
        100: table_sector(record(0, 0x0B, 10, 100), record(0, 0x05, 200, 300)),
        300: table_sector(record(0, 0x0B, 10, 50), record(0, 0x05, 0, 300)),  # links back to the first EBR
    }
    table = read_partition_table(disk(1000, writes))
    assert [p.number for p in table.partitions] == [1, 5, 6]
    assert any("loops" in w for w in table.warnings)


def test_overlapping_and_out_of_disk_partitions_are_reported():
    writes = {0: table_sector(record(0, 0x06, 10, 100), record(0, 0x0B, 50, 100), record(0, 0x0C, 500, 600))}
    table = read_partition_table(disk(1000, writes))
    assert any("partitions 1 and 2 overlap" in w for w in table.warnings)
    assert any("partition 3" in w and "beyond the disk" in w for w in table.warnings)
    with pytest.raises(StorageError, match="beyond the disk"):
        select_volume(disk(1000, writes), 3)
    with pytest.raises(StorageError, match="no partition 4"):
        select_volume(disk(1000, writes), 4)
