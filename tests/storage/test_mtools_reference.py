"""The walker against mtools on images made by mkfs.fat + mcopy: same files, sizes, contents, attributes, chains.

Reference tools: `mdir -/ -a -b` (paths), `mcopy -s` (contents), `mattrib -/` (attribute letters),
`mshowfat` (cluster chains), `minfo` (boot sector / BPB / FSInfo fields).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from emu.storage.fat import FatType
from emu.storage.image import DiskImage
from emu.storage.structs import (
    ATTR_ARCHIVE,
    ATTR_HIDDEN,
    ATTR_READ_ONLY,
    ATTR_SYSTEM,
    BootSector,
    FSInfo,
)
from emu.storage.volume import open_volume

from .conftest import mtools, mtools_target

NAMES = ("fat12", "fat16-mbr", "fat32")
EXPECTED_TYPE = {"fat12": FatType.FAT12, "fat16-mbr": FatType.FAT16, "fat32": FatType.FAT32}


def open_image(images, name):
    image, spec = images[name]
    img = DiskImage(image, read_only=True)
    return img, open_volume(img.view()), mtools_target(image, spec)


def mdir_paths(target: str) -> set[str]:
    out = mtools("mdir", "-/", "-a", "-b", "-i", target, "::").decode("utf-8")
    return {line[2:] for line in out.splitlines() if line.startswith("::/")}


@pytest.mark.parametrize("name", NAMES)
def test_same_paths_as_mdir(images, name):
    img, vol, target = open_image(images, name)
    with img:
        assert vol.fs.fat_type is EXPECTED_TYPE[name]
        ours = {e.path + ("/" if e.is_dir else "") for e in vol.fs.entries()}
        assert ours == mdir_paths(target)
        assert not vol.warnings
        assert all(not e.warnings and e.error is None for e in vol.fs.entries())


@pytest.mark.parametrize("name", NAMES)
def test_same_sizes_and_contents_as_mcopy(images, name, tmp_path):
    img, vol, target = open_image(images, name)
    mtools("mcopy", "-s", "-n", "-i", target, "::/*", str(tmp_path))
    with img:
        files = [e for e in vol.fs.entries() if not e.is_dir]
        assert files
        for e in files:
            host = tmp_path / e.path.lstrip("/")
            data = vol.fs.read_file(e)
            assert e.size == host.stat().st_size, e.path
            assert data == host.read_bytes(), e.path
        dirs = {e.path for e in vol.fs.entries() if e.is_dir}
        assert dirs == {"/" + p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_dir()}


@pytest.mark.parametrize("name", NAMES)
def test_attributes_match_mattrib(images, name):
    img, vol, target = open_image(images, name)
    out = mtools("mattrib", "-/", "-i", target, "::").decode("utf-8")
    ref = {}
    for line in out.splitlines():
        letters, _, path = line.partition("::")
        if path and path != "/":
            ref[path] = set(letters.split())  # e.g. {"A", "HR"} -> letters
    with img:
        for e in vol.fs.entries():
            letters = "".join(sorted("".join(ref[e.path])))
            mine = "".join(sorted(c for c, bit in (("A", ATTR_ARCHIVE), ("H", ATTR_HIDDEN), ("R", ATTR_READ_ONLY),
                                                    ("S", ATTR_SYSTEM)) if e.attr & bit))
            assert mine == letters, e.path
        hidden = vol.fs.find("/SYS/HIDDEN.SYS")
        assert hidden.attr & ATTR_HIDDEN and hidden.attr & ATTR_READ_ONLY


def parse_showfat(line: str) -> list[tuple[int, int]]:
    runs = []
    for a, b in re.findall(r"<(\d+)(?:-(\d+))?>", line):
        first, last = int(a), int(b or a)
        runs.append((first, last - first + 1))
    return runs


@pytest.mark.parametrize("name", NAMES)
def test_cluster_chains_match_mshowfat(images, name):
    img, vol, target = open_image(images, name)
    with img:
        files = [e for e in vol.fs.entries() if not e.is_dir and e.size]
        out = mtools("mshowfat", "-i", target, *("::" + e.path for e in files)).decode("utf-8").splitlines()
        assert len(out) == len(files)
        multi_run = 0
        for e, line in zip(files, out):
            assert line.startswith("::" + e.path), line
            runs = parse_showfat(line[len("::" + e.path):])
            assert e.runs == runs, e.path
            assert e.first_cluster == runs[0][0]
            multi_run += e.chain_length > 20
        assert multi_run  # at least one file filling many clusters


def minfo(target: str) -> dict[str, str]:
    out = mtools("minfo", "-i", target, "::").decode("utf-8")
    fields = {}
    for line in out.splitlines():
        m = re.match(r"\s*([^:=]+?)\s*[:=]\s*(.*)$", line)
        if m:
            fields.setdefault(m.group(1), m.group(2).strip().strip('"'))
    return fields


def num(text: str) -> int:
    return int(text.split()[0], 0)


@pytest.mark.parametrize("name", NAMES)
def test_boot_sector_fields_match_minfo(images, name):
    image, spec = images[name]
    target = mtools_target(image, spec)
    ref = minfo(target)
    offset = int(spec.get("partition_start", 2048)) * 512 if spec.get("mbr") else 0
    raw = image.read_bytes()[offset:offset + 512]
    bs = BootSector.parse(raw)
    assert bs.BPB_BytsPerSec == num(ref["sector size"])
    assert bs.BPB_SecPerClus == num(ref["cluster size"])
    assert bs.BPB_RsvdSecCnt == num(ref["reserved (boot) sectors"])
    assert bs.BPB_NumFATs == num(ref["fats"])
    assert bs.BPB_RootEntCnt == num(ref["max available root directory slots"])
    assert bs.BPB_TotSec16 == num(ref["small size"])
    assert bs.BPB_Media == num(ref["media descriptor byte"])
    assert bs.BPB_FATSz16 == num(ref["sectors per fat"])
    assert bs.BPB_SecPerTrk == num(ref["sectors per track"])
    assert bs.BPB_NumHeads == num(ref["heads"])
    assert bs.BPB_HiddSec == num(ref["hidden sectors"])
    assert bs.ext.BS_DrvNum == num(ref["physical drive id"])
    assert bs.ext.BS_BootSig == num(ref["dos4"])
    assert f"{bs.ext.BS_VolID:08X}" == ref["serial number"] == spec["volume_id"]
    assert bs.ext.BS_VolLab.decode() == ref["disk label"]
    assert bs.ext.BS_FilSysType.decode() == ref["disk type"]
    if "big size" in ref:
        assert bs.BPB_TotSec32 == num(ref["big size"])
    if name == "fat32":
        assert bs.ext.BPB_FATSz32 == num(ref["Big fatlen"])
        assert bs.ext.BPB_ExtFlags == num(ref["Extended flags"])
        assert bs.ext.BPB_FSVer == num(ref["FS version"])
        assert bs.ext.BPB_RootClus == num(ref["rootCluster"])
        assert bs.ext.BPB_FSInfo == num(ref["infoSector location"])
        assert bs.ext.BPB_BkBootSec == num(ref["backup boot sector"])
        fsi = FSInfo.parse(raw_sector(image, offset // 512 + bs.ext.BPB_FSInfo))
        assert fsi.FSI_LeadSig == num(ref["signature"])
        assert fsi.FSI_Free_Count == num(ref["free clusters"])
        assert fsi.FSI_Nxt_Free == num(ref["last allocated cluster"])
    with DiskImage(image, read_only=True) as img:
        vol = open_volume(img.view())
        assert vol.fs.label == spec["label"]
        assert vol.fs.volume_id == int(spec["volume_id"], 16)


def raw_sector(image: Path, lba: int) -> bytes:
    with open(image, "rb") as f:
        f.seek(lba * 512)
        return f.read(512)


def test_directory_entry_fields_against_mdir(images):
    """Times, sizes and short names as mdir prints them (no -b: 8.3 name, size, date, time, long name)."""
    img, vol, target = open_image(images, "fat12")
    out = mtools("mdir", "-a", "-i", target, "::/").decode("utf-8")
    matched = 0
    with img:
        for line in out.splitlines():
            m = re.match(r"^(\S+)\s+(\S*)\s+(\d+|<DIR>)\s+(\d{4}-\d\d-\d\d)\s+(\d+):(\d\d)\s*(.*)$", line)
            if not m:
                continue
            base, ext, size, date, hh, mm, long_name = m.groups()
            e = vol.fs.find("/" + (long_name or (f"{base}.{ext}" if ext else base)))
            assert e is not None, line
            assert e.short_name.upper() == (f"{base}.{ext}" if ext else base).upper()
            if size != "<DIR>":
                assert e.size == int(size)
            assert e.write_time.startswith(f"{date}T{int(hh):02d}:{mm}")
            matched += 1
        assert matched == len([e for e in vol.fs.entries() if e.path.count("/") == 1])
        readme = vol.fs.find("/README.MD")
        assert readme.path == "/readme.md" and readme.write_time == "2001-09-09T01:46:40"


def test_deleted_files_are_skipped(images):
    img, vol, _ = open_image(images, "fat12")
    with img:
        tmp = [e.path for e in vol.fs.entries() if e.path.startswith("/TMP/")]
        assert tmp == ["/TMP/KEEP.TXT"]
        # the deleted entries really are on disk (0xE5), so the walker did skip something
        assert b"\xe5LD     TXT" in img.read(0, img.sectors)


def test_fsinfo_and_flags_reported(images):
    img, vol, _ = open_image(images, "fat32")
    with img:
        assert vol.fs.fsinfo is not None and vol.fs.fsinfo["free_count"] > 0
        assert not vol.fs.dirty and not vol.fs.hard_error
        assert vol.fs.find("/Unicode ñame é.txt") is not None


def test_find_by_long_short_and_mixed_names(images):
    img, vol, target = open_image(images, "fat16-mbr")
    with img:
        want = vol.fs.find("/Many/Files in a long directory name/F007.DAT")
        assert want is not None
        short_dir = vol.fs.find("/Many/Files in a long directory name").short_name
        assert short_dir != "Files in a long directory name"
        # mtools resolves the 8.3 spelling to the same file
        ref = mtools("mtype", "-i", target, f"::/MANY/{short_dir}/F007.DAT")
        assert vol.fs.find(f"/many/{short_dir.lower()}/f007.dat") is want
        assert vol.fs.read_file(want) == ref
        deep = vol.fs.find("/Docs/A long file name.txt")
        assert vol.fs.find("/DOCS/ALONGF~1.TXT") is deep and vol.fs.find("/docs/a LONG file NAME.TXT") is deep
        assert vol.fs.find("/Docs/nope") is None and vol.fs.find("/") is None
