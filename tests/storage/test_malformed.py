"""Malformed images: each case ends in findings or one clear EmuError, never a traceback or a hang, and the image
bytes are unchanged.  Named corruptions first, then hypothesis-mutated images (bounded)."""
from __future__ import annotations

import hashlib
import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import EmuError
from emu.integrity import FindingKind, take_baseline, validate
from emu.storage.cli import listing
from emu.storage.fat import FatType
from emu.storage.image import DiskImage
from emu.storage.source import MemorySource, StorageError
from emu.storage.volume import open_volume

from .conftest import build_fixture


class Pristine:
    """A fuzz image held in memory, its baseline and the byte layout of its volume."""

    def __init__(self, path):
        self.data = path.read_bytes()
        src = MemorySource(self.data)
        self.baseline = take_baseline(src)
        vol = open_volume(src)
        fs = vol.fs
        self.base = (vol.partition.start if vol.partition else 0) * 512
        self.fs = fs
        self.fat_type = fs.fat_type
        self.fats = [self.base + (fs.fat_start + i * fs.fat_sectors) * 512 for i in range(fs.boot.BPB_NumFATs)]
        self.max_cluster = fs.max_cluster
        self.metadata_end = self.base + fs.first_data_sector * 512
        self.entries = {e.path: e for e in fs.entries()}
        dir_areas = [(self.base + fs.root_dir_start * 512, fs.root_dir_sectors * 512)] if fs.root_dir_sectors else []
        for e in fs.entries():
            if e.is_dir or e.path == "/":
                for start, count in e.runs:
                    dir_areas.append((self.base + fs.cluster_sector(start) * 512, count * fs.cluster_bytes))
        if fs.fat_type is FatType.FAT32:
            rc = fs.boot.ext.BPB_RootClus
            dir_areas.append((self.base + fs.cluster_sector(rc) * 512, fs.cluster_bytes))
        self.dir_slots = [off + i for off, size in dir_areas for i in range(0, size, 32)
                          if self.data[off + i] not in (0,)]

    def entry_offset(self, short11: bytes) -> int:
        off = self.data.find(short11, self.base)
        assert off >= 0 and off % 32 == 0, short11
        return off

    def set_fat(self, buf: bytearray, cluster: int, value: int) -> None:
        for fat in self.fats:
            if self.fat_type is FatType.FAT32:
                struct.pack_into("<I", buf, fat + cluster * 4, value)
            elif self.fat_type is FatType.FAT16:
                struct.pack_into("<H", buf, fat + cluster * 2, value & 0xFFFF)
            else:
                off = fat + cluster + cluster // 2
                old = buf[off] | buf[off + 1] << 8
                new = (old & 0x000F) | (value & 0xFFF) << 4 if cluster & 1 else (old & 0xF000) | (value & 0xFFF)
                buf[off], buf[off + 1] = new & 0xFF, new >> 8


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    return {name: Pristine(build_fixture(name, out)[0]) for name in ("fuzz12", "fuzz16", "fuzz32")}


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) if the body runs longer than ``seconds``."""
    def boom(*_):
        raise TimeoutError(f"took more than {seconds} s (a hang?)")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def analyse(p: Pristine, buf: bytearray):
    """Validate and list the mutated image; returns the findings. Asserts the bytes were not touched."""
    before = hashlib.sha256(buf).digest()
    with time_limit(20):
        try:
            src = MemorySource(buf)
        except StorageError:
            return None
        findings = validate(src, p.baseline)
        text = findings.to_text()
        assert text and findings.dumps()
        try:
            listing(open_volume(src))
        except EmuError as exc:
            assert "\n" not in str(exc)
    assert hashlib.sha256(buf).digest() == before
    return findings


def kinds(findings) -> set[tuple[str, str]]:
    return {(f.kind.value, f.path) for f in findings}


# --- named corruptions --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_pristine_is_clean(pristine, name):
    assert analyse(pristine[name], bytearray(pristine[name].data)).clean


def test_truncated_image(pristine, tmp_path):
    p = pristine["fuzz12"]
    cut = p.base + (p.fs.cluster_sector(p.entries["/BIG.BIN"].first_cluster) + 2) * 512
    buf = bytearray(p.data[:cut])
    f = analyse(p, buf)
    assert ("unreadable", "/BIG.BIN") in kinds(f)
    assert any(x.kind is FindingKind.ANOMALY and "truncated" in x.message for x in f)
    odd = tmp_path / "odd.img"
    odd.write_bytes(p.data[:1000])
    with pytest.raises(StorageError, match="not a multiple of 512"):
        DiskImage(odd, read_only=True)


@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_zero_bytes_per_sector(pristine, name):
    p = pristine[name]
    buf = bytearray(p.data)
    buf[p.base + 11:p.base + 13] = b"\0\0"
    f = analyse(p, buf)
    assert [(x.kind, x.path) for x in f] == [(FindingKind.UNREADABLE, "/")]
    assert "BPB_BytsPerSec is 0" in f.findings[0].message


@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_cluster_chain_loop(pristine, name):
    p = pristine[name]
    big = p.entries["/BIG.BIN"]
    buf = bytearray(p.data)
    p.set_fat(buf, big.first_cluster + 5, big.first_cluster)
    f = analyse(p, buf)
    assert kinds(f) == {("unreadable", "/BIG.BIN")}
    assert "loops" in f.findings[0].message


@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_out_of_range_cluster(pristine, name):
    p = pristine[name]
    big = p.entries["/BIG.BIN"]
    buf = bytearray(p.data)
    p.set_fat(buf, big.first_cluster + 1, p.max_cluster + 7)
    f = analyse(p, buf)
    assert kinds(f) == {("unreadable", "/BIG.BIN")} and "leaves the volume" in f.findings[0].message
    buf = bytearray(p.data)
    off = p.entry_offset(b"HELLO   TXT")
    struct.pack_into("<H", buf, off + 26, 0xFFF0 if p.fat_type is not FatType.FAT12 else 0xFF0)
    if p.fat_type is FatType.FAT32:
        struct.pack_into("<H", buf, off + 20, 0x0FFF)  # DIR_FstClusHI
    f = analyse(p, buf)
    assert ("unreadable", "/HELLO.TXT") in kinds(f)


@pytest.mark.parametrize("name", ["fuzz12", "fuzz32"])
def test_cross_linked_chains(pristine, name):
    p = pristine[name]
    buf = bytearray(p.data)
    off = p.entry_offset(b"HELLO   TXT")
    struct.pack_into("<H", buf, off + 26, p.entries["/BIG.BIN"].first_cluster + 3)
    f = analyse(p, buf)
    hello = [x for x in f if x.path == "/HELLO.TXT"]
    assert {x.kind for x in hello} == {FindingKind.UNREADABLE, FindingKind.CHANGED}
    assert any("cross-linked" in x.message and "/BIG.BIN" in x.message for x in hello)


@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_directory_pointing_at_itself(pristine, name):
    p = pristine[name]
    buf = bytearray(p.data)
    sub = p.entries["/Docs/Sub"]
    docs = p.entries["/Docs"]
    off = p.entry_offset(b"SUB        ")
    struct.pack_into("<H", buf, off + 26, docs.first_cluster & 0xFFFF)
    f = analyse(p, buf)
    assert ("removed", "/Docs/Sub/DEEP.BIN") in kinds(f)
    changed = [x for x in f if x.path == "/Docs/Sub" and x.kind is FindingKind.CHANGED][0]
    assert changed.attributes["first_cluster"] == {"baseline": sub.first_cluster, "actual": docs.first_cluster}
    assert any(x.path == "/Docs/Sub" and "directory loop" in x.message for x in f)
    # and the root: a subdirectory pointing back at the root directory's cluster (FAT32) or cluster 0
    buf = bytearray(p.data)
    struct.pack_into("<H", buf, off + 26, p.fs.boot.ext.get("BPB_RootClus", 0) & 0xFFFF)
    assert ("removed", "/Docs/Sub/DEEP.BIN") in kinds(analyse(p, buf))


def test_lfn_with_bad_checksum_falls_back_to_8_3(pristine):
    p = pristine["fuzz16"]
    buf = bytearray(p.data)
    off = buf.find("A lon".encode("utf-16-le"), p.base) - 1
    buf[off + 13] ^= 0x5A
    vol = open_volume(MemorySource(bytes(buf)))
    e = vol.fs.find("/Docs/ALONGF~1.TXT")
    assert e.path == "/Docs/ALONGF~1.TXT" and "checksum" in e.warnings[0] and "8.3 name" in e.warnings[0]
    assert vol.fs.find("/Docs/A long file name.txt") is e or vol.fs.find("/Docs/A long file name.txt") is None


def test_truncated_lfn_sequence(pristine):
    p = pristine["fuzz12"]
    buf = bytearray(p.data)
    off = buf.find("A lon".encode("utf-16-le"), p.base) - 1  # slot 1 (the last slot on disk before the 8.3 entry)
    assert buf[off] == 0x01
    buf[off] = 0xE5  # delete the final slot: the sequence no longer reaches ordinal 1
    vol = open_volume(MemorySource(bytes(buf)))
    e = vol.fs.find("/Docs/ALONGF~1.TXT")
    assert e.path == "/Docs/ALONGF~1.TXT" and e.warnings


def test_overlapping_mbr_partitions(pristine):
    p = pristine["fuzz16"]
    buf = bytearray(p.data)
    # a second partition record overlapping partition 1 (UEFI 2.10 table 5-2 layout)
    buf[0x1CE:0x1DE] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x06, b"\0\0\0", 1000, 2000)
    f = analyse(p, buf)
    assert [(x.kind, x.message) for x in f] == [(FindingKind.ANOMALY, "partitions 1 and 2 overlap")]


def test_partition_beyond_disk_end(pristine):
    p = pristine["fuzz16"]
    buf = bytearray(p.data)
    struct.pack_into("<I", buf, 0x1BE + 12, 10_000_000)
    f = analyse(p, buf)
    assert [(x.kind, x.path) for x in f] == [(FindingKind.UNREADABLE, "/")]
    assert "beyond the disk" in f.findings[0].message


# --- property-based: random mutations of the metadata ------------------------------------------------------

SPECIAL = [0, 1, 2, 3, 0xFF7, 0xFF8, 0xFFF, 0xFFF7, 0xFFF8, 0xFFFF, 0x0FFFFFF7, 0x0FFFFFF8, 0x0FFFFFFF,
           0xFFFFFFFF, 0x10000000]


@st.composite
def mutations(draw, p: Pristine):
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "fat", "dirent", "bpb", "truncate"]))
        if kind == "byte":
            ops.append(("byte", draw(st.integers(0, p.metadata_end - 1)), draw(st.integers(0, 255))))
        elif kind == "fat":
            cluster = draw(st.integers(0, min(p.max_cluster + 3, 400)))
            value = draw(st.one_of(st.sampled_from(SPECIAL), st.integers(0, p.max_cluster + 5)))
            ops.append(("fat", cluster, value))
        elif kind == "dirent":
            slot = draw(st.sampled_from(p.dir_slots))
            field = draw(st.sampled_from([0, 11, 12, 13, 20, 21, 26, 27, 28, 31]))
            ops.append(("byte", slot + field, draw(st.integers(0, 255))))
        elif kind == "bpb":
            ops.append(("byte", p.base + draw(st.integers(11, 0x5A)), draw(st.integers(0, 255))))
        else:
            ops.append(("truncate", draw(st.integers(0, len(p.data) // 512)), 0))
    return ops


def apply(p: Pristine, ops) -> bytearray:
    buf = bytearray(p.data)
    for op, a, b in sorted(ops, key=lambda o: o[0] == "truncate"):  # truncations last
        if op == "byte":
            buf[a] = b
        elif op == "fat":
            p.set_fat(buf, a, b)
        else:
            del buf[a * 512:]
    return buf


@pytest.mark.parametrize("name", ["fuzz12", "fuzz16", "fuzz32"])
def test_mutated_images_never_crash_or_hang(pristine, name):
    p = pristine[name]

    @settings(max_examples=60 if name != "fuzz32" else 30, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations(p))
    def run(ops):
        analyse(p, apply(p, ops))

    run()


def test_duplicate_entry_shadowing_a_protected_file(pristine):
    """A second 8.3 entry named like a protected file (hand-made: DOS would find the first) is an anomaly."""
    p = pristine["fuzz12"]
    buf = bytearray(p.data)
    hello = p.entry_offset(b"HELLO   TXT")
    free = next(off for off in range(hello, len(p.data), 32) if p.data[off] == 0)  # first free slot after it
    buf[free:free + 32] = buf[hello:hello + 32]
    f = analyse(p, buf)
    assert [(x.kind, x.path, x.message) for x in f] == [
        (FindingKind.ANOMALY, "/HELLO.TXT", "duplicate name in its directory"),
        (FindingKind.ANOMALY, "/HELLO.TXT", "cross-linked: cluster %d also belongs to /HELLO.TXT (0 of 1 clusters)"
         % p.entries["/HELLO.TXT"].first_cluster)]
