"""FAT details checked against fatgen103: ExtFlags active FAT, FAT[1] dirty/hard-error bits, FAT type boundaries."""
from __future__ import annotations

import struct
import subprocess

import pytest

from conftest import require_tool
from emu.integrity import validate
from emu.storage.fat import FatError, FatType, FatVolume
from emu.storage.source import MemorySource
from emu.storage.structs import DirEntry, LongNameEntry, lfn_checksum
from emu.storage.volume import open_volume

from .test_malformed import Pristine


@pytest.fixture(scope="module")
def p32(pristine) -> Pristine:
    return pristine["fuzz32"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from .conftest import build_fixture
    out = tmp_path_factory.mktemp("details")
    return {n: Pristine(build_fixture(n, out)[0]) for n in ("fuzz16", "fuzz32")}


def fat_offset(p: Pristine, index: int, cluster: int) -> int:
    return p.fats[index] + cluster * 4


def test_extflags_selects_the_active_fat(p32):
    big = p32.entries["/BIG.BIN"]
    buf = bytearray(p32.data)
    # break the chain in FAT 0 only
    struct.pack_into("<I", buf, fat_offset(p32, 0, big.first_cluster + 2), 0)
    assert "free cluster" in open_volume(MemorySource(bytes(buf))).fs.find("/BIG.BIN").error
    # BPB_ExtFlags (offset 40): bit 7 = mirroring off, bits 3:0 = active FAT 1 -> FAT 1 is used, chain intact
    struct.pack_into("<H", buf, p32.base + 40, 0x0081)
    fs = open_volume(MemorySource(bytes(buf))).fs
    assert fs.active_fat == 1 and fs.find("/BIG.BIN").error is None
    assert fs.read_file(fs.find("/BIG.BIN")) == FatVolume(MemorySource(p32.data)).read_file(big)
    # mirroring on (bit 7 clear): bits 3:0 are ignored and FAT 0 is used
    struct.pack_into("<H", buf, p32.base + 40, 0x0001)
    assert open_volume(MemorySource(bytes(buf))).fs.active_fat == 0


@pytest.mark.parametrize("name,clean_bit,hard_bit,width", [
    ("fuzz16", 0x8000, 0x4000, 2), ("fuzz32", 0x08000000, 0x04000000, 4)])
def test_dirty_and_hard_error_flags(pristine, name, clean_bit, hard_bit, width):
    p = pristine[name]
    fmt = "<H" if width == 2 else "<I"
    fs = open_volume(MemorySource(p.data)).fs
    assert not fs.dirty and not fs.hard_error
    for bits, dirty, hard in ((clean_bit, False, True), (hard_bit, True, False), (0, True, True)):
        buf = bytearray(p.data)
        off = p.fats[0] + 1 * width
        (v,) = struct.unpack_from(fmt, buf, off)
        struct.pack_into(fmt, buf, off, (v & ~(clean_bit | hard_bit)) | bits)
        fs = open_volume(MemorySource(bytes(buf))).fs
        assert (fs.dirty, fs.hard_error) == (dirty, hard)
        assert fs.notes and not fs.warnings
        # a mounted guest volume is often dirty: that alone is no finding
        assert validate(MemorySource(bytes(buf)), p.baseline).clean


def test_fat12_fat16_boundary_by_cluster_count(tmp_path):
    """mkfs.fat -F 12 / -F 16 near the 4085-cluster boundary: our type agrees with the count rule and minfo."""
    require_tool("mkfs.fat")
    for fat, blocks in ((12, 2000), (16, 2200)):
        image = tmp_path / f"b{fat}.img"
        subprocess.run(["mkfs.fat", "-C", "-F", str(fat), "-s", "1", "--invariant", str(image), str(blocks)],
                       check=True, capture_output=True)
        fs = FatVolume(MemorySource(image.read_bytes()))
        assert fs.fat_type is (FatType.FAT12 if fs.cluster_count < 4085 else FatType.FAT16)
        assert fs.fat_type.value == fat


def test_fat16_layout_with_fat32_cluster_count_is_refused(pristine):
    p = pristine["fuzz16"]
    buf = bytearray(p.data)
    struct.pack_into("<H", buf, p.base + 19, 0)          # BPB_TotSec16 = 0
    struct.pack_into("<I", buf, p.base + 32, 4_000_000)  # BPB_TotSec32: far more clusters than FAT16 allows
    with pytest.raises(FatError, match="make it FAT32"):
        open_volume(MemorySource(bytes(buf)))


def test_dir_entry_and_lfn_structs_against_an_mtools_entry(pristine):
    """The construct definitions decode the bytes mtools wrote: 8.3 entry, its LFN slots and their checksum."""
    p = pristine["fuzz16"]
    off = p.entry_offset(b"ALONGF~1TXT")
    d = DirEntry.parse(p.data[off:off + 32])
    e = p.entries["/Docs/A long file name.txt"]
    assert d.DIR_Name == b"ALONGF~1TXT" and d.DIR_FileSize == e.size == 35
    assert d.DIR_FstClusLO == e.first_cluster and d.DIR_Attr == 0x20
    slots = [LongNameEntry.parse(p.data[off - 32 * k:off - 32 * (k - 1)]) for k in (1, 2)]
    assert [s.LDIR_Ord for s in slots] == [0x01, 0x42]
    assert all(s.LDIR_Chksum == lfn_checksum(d.DIR_Name) for s in slots)
    name = b"".join(s.LDIR_Name1 + s.LDIR_Name2 + s.LDIR_Name3 for s in slots).decode("utf-16-le")  # ordinal 1 first
    assert name.split("\0")[0] == "A long file name.txt"


def test_4096_byte_logical_sectors(tmp_path):
    """mkfs.fat -S 4096: volume sectors of 8 disk sectors; contents equal what mcopy stored."""
    require_tool("mkfs.fat", "mcopy")
    from .conftest import MT_ENV
    image = tmp_path / "s4k.img"
    subprocess.run(["mkfs.fat", "-C", "-S", "4096", "--invariant", str(image), "32768"], check=True,
                   capture_output=True)
    payload = bytes(range(256)) * 400 + b"tail"
    (tmp_path / "data.bin").write_bytes(payload)
    subprocess.run(["mcopy", "-i", str(image), str(tmp_path / "data.bin"), "::/DATA.BIN"], env=MT_ENV, check=True)
    fs = open_volume(MemorySource(image.read_bytes())).fs
    assert fs.bytes_per_sector == 4096 and fs.ratio == 8
    assert fs.read_file(fs.find("/DATA.BIN")) == payload



def test_long_name_slot_with_upper_attribute_bits_is_still_a_long_name_slot(pristine):
    """fatgen103 §7: a slot is recognised by (DIR_Attr & ATTR_LONG_NAME_MASK) == ATTR_LONG_NAME; bits 6-7 are
    reserved and ignored, so such slots neither crash the walker nor lose the long name."""
    p = pristine["fuzz16"]
    off = p.entry_offset(b"ALONGF~1TXT")
    buf = bytearray(p.data)
    for k in (1, 2):
        assert buf[off - 32 * k + 11] == 0x0F
        buf[off - 32 * k + 11] = 0xCF
    fs = open_volume(MemorySource(bytes(buf))).fs
    entry = fs.find("/Docs/A long file name.txt")
    assert entry is not None and entry.size == 35 and not entry.warnings
