"""Validation by the management guest (issue 10, patent FIG. 3): its findings equal the monitor's, the disk is
byte-identical across every window, its write is refused, and a silent guest hits the deadline."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from emu.hypervisor import guestval, trap as trap_mod
from emu.hypervisor.host import Host
from emu.hypervisor.scenario import load
from emu.integrity import validate

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "demo"
FW = ROOT / "firmware" / "build"


def scenario(tmp_path: Path, disk: Path, app_cmdline: str, mgmt_cmdline: str, deadline: int = 20_000_000) -> Path:
    text = (DEMO / "scenario-guest.toml").read_text()
    text = text.replace('"../../firmware/build/', f'"{FW}/').replace('disks = ["demo.img"]', f'disks = ["{disk}"]')
    text = text.replace('baseline = "demo-etc.baseline.json"', f'baseline = "{DEMO / "demo-etc.baseline.json"}"')
    text = text.replace('cmdline = "hz=1000 ticks=400 log=50 check=100 tamper=250 vlan=99"', f'cmdline = "{app_cmdline}"')
    text = text.replace('cmdline = "hz=1000 jobs=0 ticks=300 trywrite=1"', f'cmdline = "{mgmt_cmdline}"')
    text = text.replace("deadline_insns = 20000000", f"deadline_insns = {deadline}")
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def file_level(findings) -> set[tuple[str, str]]:
    return {(f.kind.value, f.path) for f in findings if f.kind.value in ("added", "removed", "changed", "unreadable")}


def run_checked(path: Path, monkeypatch):
    """Run a scenario; at every window compare with the monitor-side validator and hash the disk around it."""
    windows = []
    real_mount, real_finish = guestval.GuestValidator.mount, guestval.GuestValidator._finish

    def mount(self, target, drive):
        job = real_mount(self, target, drive)
        windows.append({"before": hashlib.sha256(job.backing.read(0, job.backing.sectors)).hexdigest()})
        return job

    def finish(self, error=None):
        job = self.job
        w = windows[-1]
        w["after"] = hashlib.sha256(job.backing.read(0, job.backing.sectors)).hexdigest()
        w["monitor"] = file_level(validate(job.backing.view(), self.baseline))
        w["guest"] = None if job.findings is None else file_level(job.findings)
        w["error"] = error or job.error
        return real_finish(self, error)

    monkeypatch.setattr(guestval.GuestValidator, "mount", mount)
    monkeypatch.setattr(guestval.GuestValidator, "_finish", finish)
    host = Host(load(path))
    consoles = []
    host.on_console = lambda guest, line: consoles.append((guest, line))
    summary = host.run()
    host.close()
    return host, summary, windows, consoles


def test_tampering_during_the_run_found_by_the_guest_as_by_the_monitor(tmp_path, monkeypatch):
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    path = scenario(tmp_path, disk, "hz=1000 ticks=120 log=50 check=100 tamper=60 vlan=99",
                    "hz=1000 jobs=0 ticks=100 trywrite=1")
    host, summary, windows, consoles = run_checked(path, monkeypatch)
    assert summary["guests"]["app"]["status"] == 1 and summary["guests"]["mgmt"]["status"] == 1
    assert len(windows) >= 3
    for w in windows:
        assert w["error"] is None
        assert w["guest"] == w["monitor"]            # same findings as the monitor-side validator
        assert w["before"] == w["after"]             # not a byte changed during the window
    kinds = [w["guest"] for w in windows]
    assert kinds[0] == set() and ("changed", "/ETC/NET.CFG") in kinds[-1]
    refused = [line for guest, line in consoles if guest == "mgmt" and "trywrite:" in line]
    assert refused and all("refused" in line for line in refused)
    steps = [e["block"] for e in host.events if e.get("kind") == "trap_step" and e["block"] in (340, 350, 355, 360)]
    assert steps[:4] == [340, 350, 355, 360]


@pytest.mark.parametrize("tamper", ["size", "content", "delete", "add"])
def test_each_kind_of_tampering(tmp_path, monkeypatch, tamper):
    require_tool("mcopy", "mdel")
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    img = f"{disk}@@{2048 * 512}"
    env_file = tmp_path / "f"
    if tamper == "size":
        env_file.write_bytes(b"VLAN=10\nGATEWAY=10.0.0.1\n# grown\n" + b"x" * 100)
        subprocess.run(["mcopy", "-o", "-i", img, str(env_file), "::/ETC/NET.CFG"], check=True)
    elif tamper == "content":
        original = subprocess.run(["mtype", "-i", img, "::/ETC/PASSWD"], check=True, capture_output=True).stdout
        env_file.write_bytes(original[:-1] + (b"#" if original[-1:] != b"#" else b"!"))
        subprocess.run(["mcopy", "-o", "-i", img, str(env_file), "::/ETC/PASSWD"], check=True)
    elif tamper == "delete":
        subprocess.run(["mdel", "-i", img, "::/ETC/PASSWD"], check=True)
    else:
        env_file.write_bytes(b"#!/bin/sh\necho evil\n")
        subprocess.run(["mcopy", "-i", img, str(env_file), "::/ETC/EVIL.SH"], check=True)
    path = scenario(tmp_path, disk, "hz=1000 ticks=40 log=50 check=100 tamper=0", "hz=1000 jobs=1 ticks=100")
    host, summary, windows, _ = run_checked(path, monkeypatch)
    assert windows and windows[0]["guest"] == windows[0]["monitor"] != set()
    expected = {"size": ("changed", "/ETC/NET.CFG"), "content": ("changed", "/ETC/PASSWD"),
                "delete": ("removed", "/ETC/PASSWD"), "add": ("added", "/ETC/EVIL.SH")}[tamper]
    assert expected in windows[0]["guest"]


def test_a_silent_management_guest_hits_the_deadline(tmp_path, monkeypatch):
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    path = scenario(tmp_path, disk, "hz=1000 ticks=200 log=50 check=100 tamper=0", "hz=1000 hang=1",
                    deadline=2_000_000)
    path.write_text(path.read_text().replace("seed = 7", "seed = 7\nmax_ns = 4000000000"))
    host, summary, windows, _ = run_checked(path, monkeypatch)
    assert windows and windows[0]["guest"] is None and "did not finish" in windows[0]["error"]
    failed = [e for e in host.events if e.get("block") == 410]
    assert failed and failed[0]["clean"] is False and "did not finish" in failed[0]["error"]
    assert summary["guests"]["app"]["status"] == 1          # the application guest ran on to its end
    assert "virtual-time limit" in summary["guests"]["mgmt"]["end"]   # the silent one never ended by itself
    assert not summary["restricted"]                         # a failed validation restricts nobody


def test_demo_with_guest_validation():
    proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--validation", "guest:mgmt"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "validator: job 1:" in proc.stdout and "restricted:" in proc.stdout


_ = trap_mod
