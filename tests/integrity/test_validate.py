"""Baseline + validate on images made by mkfs.fat/mcopy and then changed with mtools (mcopy -o, mdel, mattrib)."""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from emu import EmuError
from emu.integrity import Baseline, FindingKind, parse_rules, take_baseline, validate
from emu.storage.image import DiskImage


def baseline_of(path, **kw) -> Baseline:
    with DiskImage(path, read_only=True) as img:
        return take_baseline(img.view(), **kw)


def validate_file(path, base, **kw):
    with DiskImage(path, read_only=True) as img:
        return validate(img.view(), base, **kw)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["fat12", "fat16-mbr", "fat32"])
def test_untouched_image_is_clean_and_unchanged(disk, name):
    d = disk(name)
    base = baseline_of(d.path)
    assert len(base.files) > 10
    before = sha(d.path)
    findings = validate_file(d.path, base)
    assert findings.clean, findings.to_text()
    assert findings.checked == len(base.files)
    assert sha(d.path) == before


@pytest.mark.parametrize("name", ["fat12", "fat16-mbr", "fat32"])
def test_mcopy_o_gives_a_finding_naming_file_and_attributes(disk, name, tmp_path):
    d = disk(name)
    base = baseline_of(d.path)
    d.put("/Docs/A long file name.txt", b"replaced by mcopy -o\n", tmp_path)
    findings = validate_file(d.path, base)
    assert [(f.kind, f.path) for f in findings] == [(FindingKind.CHANGED, "/Docs/A long file name.txt")]
    attrs = findings.findings[0].attributes
    # mtools may also move the file to new clusters (it does on FAT32, following the FSInfo next-free hint)
    assert {"size", "sha256", "write_time"} <= set(attrs) <= {"size", "sha256", "write_time", "first_cluster"}
    assert attrs["size"] == {"baseline": 35, "actual": 21}
    assert attrs["write_time"]["actual"] == "2023-11-14T22:13:20"  # SOURCE_DATE_EPOCH=1700000000 in mtools
    assert attrs["sha256"]["actual"] == hashlib.sha256(b"replaced by mcopy -o\n").hexdigest()


def test_same_size_same_time_change_is_caught_by_hash(disk, tmp_path):
    d = disk("fat12")
    base = baseline_of(d.path)
    d.put("/HELLO.TXT", b"HELLO, WORLD\n", tmp_path, keep_time=True)
    findings = validate_file(d.path, base)
    assert [(f.kind, f.path, set(f.attributes)) for f in findings] == [
        (FindingKind.CHANGED, "/HELLO.TXT", {"sha256"})]


def test_raw_sector_write_behind_the_file_system(disk):
    d = disk("fat32")
    base = baseline_of(d.path)
    with DiskImage(d.path, read_only=True) as img:
        from emu.storage.volume import open_volume
        vol = open_volume(img.view())
        e = vol.fs.find("/BIGGER.BIN")
        lba = vol.fs.cluster_sector(e.runs[-1][0])
    with DiskImage(d.path) as img:
        img.write(lba, b"\xCC" * 512)
    findings = validate_file(d.path, base)
    assert [(f.kind, f.path, set(f.attributes)) for f in findings] == [
        (FindingKind.CHANGED, "/BIGGER.BIN", {"sha256"})]


def test_removed_added_and_attribute_byte(disk, tmp_path):
    d = disk("fat16-mbr")
    base = baseline_of(d.path)
    d.mtools("mdel", "::/BIG.BIN")
    d.put("/ETC/EXTRA.CFG", b"x=1\n", tmp_path)
    d.mtools("mattrib", "+r", "::/HELLO.TXT")
    findings = validate_file(d.path, base)
    got = {(f.kind, f.path) for f in findings}
    assert got == {(FindingKind.REMOVED, "/BIG.BIN"), (FindingKind.ADDED, "/ETC/EXTRA.CFG"),
                   (FindingKind.CHANGED, "/HELLO.TXT")}
    changed = findings.of_kind(FindingKind.CHANGED)[0]
    assert changed.attributes == {"attr": {"baseline": 0x20, "actual": 0x21}}


def test_paths_limit_what_is_protected(disk, tmp_path):
    d = disk("fat12")
    base = baseline_of(d.path, paths=["/ETC", "/Docs/*.txt"])
    assert sorted(base.files) == ["/Docs/A long file name.txt", "/ETC", "/ETC/NET.CFG"]
    d.put("/HELLO.TXT", b"unprotected change\n", tmp_path)
    d.put("/TMP/NEW.TXT", b"unprotected addition\n", tmp_path)
    assert validate_file(d.path, base).clean
    d.put("/etc/new.cfg", b"protected addition\n", tmp_path)
    assert [(f.kind, f.path) for f in validate_file(d.path, base)] == [(FindingKind.ADDED, "/ETC/new.cfg")]


RULES = """
# demo rules
/ETC/NET.CFG VLAN == 10
/ETC/NET.CFG DHCP in no,off
/ETC/NET.CFG MODE matches "bri.*"
/ETC/NET.CFG TELNET absent
/ETC/NET.CFG VLAN present
"""


def test_rules_hold_then_break_after_mcopy(disk, tmp_path):
    d = disk("fat12")
    base = baseline_of(d.path, paths=["/ETC"], rules=parse_rules(RULES))
    assert validate_file(d.path, base).clean
    d.put("/ETC/NET.CFG", b"VLAN=20\r\nDHCP=yes\r\nMODE: bridge\r\nTELNET=on\r\n", tmp_path)
    findings = validate_file(d.path, base)
    rules = findings.of_kind(FindingKind.RULE)
    assert [f.rule for f in rules] == ["/ETC/NET.CFG VLAN == 10", "/ETC/NET.CFG DHCP in no,off",
                                       "/ETC/NET.CFG TELNET absent"]
    assert rules[0].message == "VLAN is '20', expected '10'"
    assert findings.of_kind(FindingKind.CHANGED)[0].path == "/ETC/NET.CFG"


def test_rule_on_missing_file(disk):
    d = disk("fat12")
    base = baseline_of(d.path, paths=["/ETC"], rules=parse_rules("/ETC/NET.CFG VLAN == 10\n"))
    d.mtools("mdel", "::/ETC/NET.CFG")
    findings = validate_file(d.path, base)
    assert {(f.kind, f.message) for f in findings} == {
        (FindingKind.REMOVED, "file is gone"), (FindingKind.RULE, "file does not exist")}


def test_baseline_json_round_trip_and_version(disk, tmp_path):
    d = disk("fat12")
    base = baseline_of(d.path, rules=parse_rules(RULES))
    out = tmp_path / "b.json"
    base.save(out)
    loaded = json.loads(out.read_text())
    assert loaded["format"] == "emu-baseline" and loaded["version"] == 1
    assert loaded["files"]["/HELLO.TXT"]["sha256"] == hashlib.sha256(b"hello, world\n").hexdigest()
    assert loaded["volume"]["volume_id"] == "12AB34CD" and loaded["volume"]["fat_type"] == "FAT12"
    assert Baseline.load(out).dumps() == out.read_text()
    assert validate_file(d.path, out).clean  # a path works as well
    loaded["version"] = 2
    with pytest.raises(EmuError, match="unsupported baseline version 2"):
        Baseline.from_json(loaded)
    with pytest.raises(EmuError, match="not an emu baseline"):
        Baseline.from_json({"files": {}})


def test_baseline_is_deterministic(built):
    path, _ = built("fat16-mbr")
    assert baseline_of(path).dumps() == baseline_of(path).dumps()


def test_other_volume_is_reported(built):
    base = baseline_of(built("fat12")[0])
    findings = validate_file(built("fat32")[0], base)
    vol = [f for f in findings if f.path == "/"]
    assert vol and set(vol[0].attributes) == {"volume.fat_type", "volume.volume_id", "volume.label"}


def test_lfn_with_bad_checksum_is_a_finding_naming_the_file(disk):
    d = disk("fat12")
    base = baseline_of(d.path)
    with DiskImage(d.path) as img:
        raw = bytearray(img.read(0, img.sectors))
        # the LFN slot of "A long file name.txt": first UTF-16 chars 'A',' ','l','o','n' at offset 1
        off = raw.find("A lon".encode("utf-16-le")) - 1
        assert raw[off + 11] == 0x0F
        raw[off + 13] ^= 0xFF  # LDIR_Chksum
        sec = off // 512
        img.write(sec, bytes(raw[sec * 512:(sec + 1) * 512]))
    findings = validate_file(d.path, base)
    kinds = {(f.kind, f.path) for f in findings}
    assert (FindingKind.CHANGED, "/Docs/A long file name.txt") in kinds
    changed = [f for f in findings if f.kind is FindingKind.CHANGED][0]
    assert changed.attributes["path"] == {"baseline": "/Docs/A long file name.txt", "actual": "/Docs/ALONGF~1.TXT"}
    assert any(f.kind is FindingKind.ANOMALY and "checksum" in f.message for f in findings)


def test_demo_disk_validates_fast():
    from conftest import FIXTURES
    base = Baseline.load(FIXTURES / "disks" / "demo.baseline.json")
    with DiskImage(FIXTURES / "disks" / "demo.img", read_only=True) as img:
        view = img.view()
        assert validate(view, base).clean
        best = min(_timed(lambda: validate(view, base)) for _ in range(5))
    assert best < 0.050, f"{best * 1000:.1f} ms"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
