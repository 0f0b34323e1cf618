"""`emu baseline` / `emu validate`: exit 0 clean, 1 findings, 2 unusable input (one line on stderr)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import FIXTURES
from emu.cli import main


def test_baseline_then_validate_clean_then_findings(disk, tmp_path, capsys):
    d = disk("fat16-mbr")
    rules = tmp_path / "net.rules"
    rules.write_text("/ETC/NET.CFG VLAN == 10\n")
    out = tmp_path / "base.json"
    assert main(["baseline", str(d.path), "--paths", "/ETC", "/Docs", "--rules", str(rules), "-o", str(out)]) == 0
    capsys.readouterr()
    assert sorted(json.loads(out.read_text())["files"]) == [
        "/Docs", "/Docs/A long file name.txt", "/Docs/Sub", "/Docs/Sub/Deeper", "/Docs/Sub/Deeper/DEEP.BIN",
        "/ETC", "/ETC/NET.CFG"]
    assert main(["validate", str(d.path), "--baseline", str(out)]) == 0
    assert capsys.readouterr().out == "clean: 7 files match the baseline\n"
    d.put("/ETC/NET.CFG", b"VLAN=99\n", tmp_path)
    assert main(["validate", str(d.path), "--baseline", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "emu-findings" and report["version"] == 1 and not report["clean"]
    assert [(f["kind"], f["path"]) for f in report["findings"]] == [("changed", "/ETC/NET.CFG"),
                                                                  ("rule", "/ETC/NET.CFG")]
    assert report["findings"][1] == {"kind": "rule", "path": "/ETC/NET.CFG", "rule": "/ETC/NET.CFG VLAN == 10",
                                     "message": "VLAN is '99', expected '10'"}
    assert main(["validate", str(d.path), "--baseline", str(out)]) == 1
    text = capsys.readouterr().out.splitlines()
    original = [f["text"] for f in d.spec["files"] if f["path"] == "/ETC/NET.CFG"][0].encode()
    assert text[0].startswith(f"changed     /ETC/NET.CFG: size {len(original)} -> 8, write_time")
    assert text[1] == "rule        /ETC/NET.CFG: /ETC/NET.CFG VLAN == 10: VLAN is '99', expected '10'"
    assert text[-1].startswith("2 findings (1 changed, 1 rule)")


def test_unusable_inputs_exit_2_with_one_line(disk, tmp_path, capsys):
    d = disk("fat12")
    good = tmp_path / "b.json"
    assert main(["baseline", str(d.path), "-o", str(good)]) == 0
    capsys.readouterr()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps(dict(json.loads(good.read_text()), version=2)))
    bad_rules = tmp_path / "bad.rules"
    bad_rules.write_text("/ETC/NET.CFG VLAN ~= 10\n")
    cases = [
        (["validate", str(tmp_path / "none.img"), "--baseline", str(good)], "no such file"),
        (["validate", str(d.path), "--baseline", str(tmp_path / "none.json")], "no such file"),
        (["validate", str(d.path), "--baseline", str(bad_json)], "not JSON"),
        (["validate", str(d.path), "--baseline", str(v2)], "unsupported baseline version 2"),
        (["baseline", str(d.path), "--rules", str(bad_rules), "-o", str(tmp_path / "x.json")],
         "bad.rules:1: unknown operator '~='"),
        (["baseline", str(d.path), "--rules", str(tmp_path / "none.rules"), "-o", str(tmp_path / "x.json")],
         "No such file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("emu: ") and err.count("\n") == 1 and message in err, err


def test_corrupt_volume_is_a_finding_not_an_error(disk, tmp_path, capsys):
    d = disk("fat12")
    base = tmp_path / "b.json"
    assert main(["baseline", str(d.path), "-o", str(base)]) == 0
    with open(d.path, "r+b") as f:
        f.seek(11)
        f.write(b"\0\0")  # BPB_BytsPerSec = 0
    capsys.readouterr()
    assert main(["validate", str(d.path), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("unreadable  /: volume cannot be analysed: not a FAT volume: BPB_BytsPerSec is 0")


def test_python_m_emu_validate_demo_disk():
    disks = FIXTURES / "disks"
    r = subprocess.run([sys.executable, "-m", "emu", "validate", str(disks / "demo.img"), "--baseline",
                        str(disks / "demo.baseline.json"), "--json"], cwd=FIXTURES.parent, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["clean"] and report["checked"] == 8 and report["volume"]["partition"]["number"] == 1


def test_a_glob_that_matches_nothing_is_kept_and_warned_about(disk, tmp_path, capsys):
    """A glob that selects nothing still guards against files added under it later; the user is told."""
    d = disk("fat16-mbr")
    out = tmp_path / "base.json"
    assert main(["baseline", str(d.path), "--paths", "/NOPE/*", "/ETC", "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"emu: warning: --paths '/NOPE/*' matches nothing in {d.path} now "
                      "(only files added under it later will be reported)")
    assert len(err) == 2 and "/ETC" not in err[0]
    assert json.loads(out.read_text())["paths"] == ["/NOPE/*", "/ETC"]
