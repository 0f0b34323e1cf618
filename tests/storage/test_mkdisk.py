"""tools/mkdisk: same input, same bytes; folder mode; one-line errors."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from conftest import require_tool
from emu.storage.image import DiskImage
from emu.storage.volume import open_volume

from .conftest import ROOT_DIR, SPECS, mtools

MKDISK = str(ROOT_DIR / "tools" / "mkdisk")


def test_same_spec_same_bytes_whatever_the_host_time_and_zone(tmp_path):
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    subprocess.run([MKDISK, str(SPECS / "fat16-mbr.json"), "-o", str(a)], check=True)
    time.sleep(1.1)
    subprocess.run([MKDISK, str(SPECS / "fat16-mbr.json"), "-o", str(b)], check=True,
                   env=dict(os.environ, TZ="Asia/Tokyo", SOURCE_DATE_EPOCH="1"))
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_demo_fixture_is_reproducible(tmp_path):
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    out = tmp_path / "demo.img"
    subprocess.run([MKDISK, str(SPECS / "demo.json"), "-o", str(out)], check=True)
    assert out.read_bytes() == (SPECS / "demo.img").read_bytes()


def test_folder_mode(tmp_path):
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    src = tmp_path / "tree"
    (src / "etc" / "deep").mkdir(parents=True)
    (src / "etc" / "net.cfg").write_text("VLAN=10\n")
    (src / "etc" / "deep" / "Long Name File.txt").write_bytes(b"x" * 5000)
    (src / "top.bin").write_bytes(bytes(range(256)))
    out = tmp_path / "f.img"
    r = subprocess.run([sys.executable, str(ROOT_DIR / "tools" / "mkdisk.py"), "--fat", "12", "--size", "1440K",
                        "--from", str(src), "--mbr", "--label", "FOLDER", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with DiskImage(out, read_only=True) as img:
        vol = open_volume(img.view())
        assert vol.partition.number == 1 and vol.fs.label == "FOLDER"
        files = {e.path: vol.fs.read_file(e) for e in vol.fs.entries() if not e.is_dir}
    assert files == {"/etc/net.cfg": b"VLAN=10\n", "/etc/deep/Long Name File.txt": b"x" * 5000,
                     "/top.bin": bytes(range(256))}
    listed = mtools("mdir", "-/", "-a", "-b", "-i", f"{out}@@{2048 * 512}", "::").decode().split()
    assert "::/etc/deep/Long" in listed  # mtools sees the same tree (bare listing splits at spaces here)


def test_bad_specs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    for spec, message in (({"fat": 13}, "fat must be 12, 16 or 32"), ({"size": "12X"}, "bad size"),
                          ({"size": 1000}, "not a positive multiple of 512")):
        bad.write_text(json.dumps(spec))
        r = subprocess.run([MKDISK, str(bad), "-o", str(tmp_path / "x.img")], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    r = subprocess.run([MKDISK, str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.img")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr == f"mkdisk: spec {tmp_path / 'missing.json'} not found\n"
