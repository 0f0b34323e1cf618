"""`emu disk ls|cat|info` through emu.cli.main and as `python -m emu`."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from emu.cli import main

from .conftest import ROOT_DIR, mtools, mtools_target


@pytest.mark.parametrize("name", ["fat12", "fat16-mbr", "fat32"])
def test_ls_json_lists_what_mtools_lists(images, name, capsys, tmp_path):
    image, spec = images[name]
    target = mtools_target(image, spec)
    assert main(["disk", "ls", str(image), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    listed = {r["path"] + ("/" if r["type"] == "dir" else "") for r in out["files"]}
    ref = mtools("mdir", "-/", "-a", "-b", "-i", target, "::").decode()
    assert listed == {line[2:] for line in ref.splitlines() if line.startswith("::/")}
    mtools("mcopy", "-s", "-n", "-i", target, "::/*", str(tmp_path))
    for r in out["files"]:
        if r["type"] == "file":
            data = (tmp_path / r["path"].lstrip("/")).read_bytes()
            assert r["size"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest(), r["path"]
    assert out["volume"]["fat_type"] == {"fat12": "FAT12", "fat16-mbr": "FAT16", "fat32": "FAT32"}[name]
    assert (out["volume"]["partition"] or {}).get("number") == (1 if spec.get("mbr") else None)


def test_ls_partition_option(images, capsys):
    image, _ = images["fat16-mbr"]
    assert main(["disk", "ls", str(image), "--partition", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"]
    assert main(["disk", "ls", str(image), "--partition", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no partition 3" in err
    assert main(["disk", "ls", str(image), "--partition", "0"]) == 2  # sector 0 is an MBR, not a FAT volume
    assert "not a FAT volume" in capsys.readouterr().err


def test_ls_text(images, capsys):
    image, _ = images["fat12"]
    assert main(["disk", "ls", str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    hello = [line.split("\t") for line in lines if line.startswith("/HELLO.TXT\t")][0]
    assert hello[1] == "13" and hello[2] == "-----A" and hello[-1] == hashlib.sha256(b"hello, world\n").hexdigest()


def test_cat_matches_mtype(images, capsysbinary):
    image, spec = images["fat32"]
    for path in ("/BIGGER.BIN", "/Docs/A long file name.txt", "/docs/alongf~1.txt", "/EMPTY.TXT"):
        assert main(["disk", "cat", str(image), path]) == 0
        ref = mtools("mtype", "-i", mtools_target(image, spec), "::" + path)
        assert capsysbinary.readouterr().out == ref


def test_cat_errors_are_one_line(images, capsys, tmp_path):
    image, _ = images["fat12"]
    assert main(["disk", "cat", str(image), "/NOPE.TXT"]) == 2
    assert capsys.readouterr().err == f"emu: {image}: /NOPE.TXT: no such file\n"
    assert main(["disk", "cat", str(image), "/Docs"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["disk", "cat", str(tmp_path / "missing.img"), "/X"]) == 2
    assert capsys.readouterr().err.endswith("no such file\n")


def test_info(images, capsys):
    image, _ = images["fat16-mbr"]
    assert main(["disk", "info", str(image), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mbr"] and info["partitions"][0]["start"] == 2048 and info["volume"]["clusters"] > 4085


def test_python_m_emu_disk_ls(images):
    image, _ = images["fat12"]
    r = subprocess.run([sys.executable, "-m", "emu", "disk", "ls", str(image), "--json"], cwd=ROOT_DIR,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    paths = [f["path"] for f in json.loads(r.stdout)["files"]]
    assert "/Docs/Sub/Deeper/DEEP.BIN" in paths and "/TMP/OLD.TXT" not in paths


def test_every_disk_subcommand_names_an_unusable_image(tmp_path, capsys):
    """An empty image: ls, cat and info each end with one line that names the file (status 2)."""
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    for argv in (["ls", str(empty)], ["cat", str(empty), "/X"], ["info", str(empty)]):
        assert main(["disk", *argv]) == 2
        err = capsys.readouterr().err
        assert err == f"emu: {empty}: empty disk: no sector 0\n", argv
