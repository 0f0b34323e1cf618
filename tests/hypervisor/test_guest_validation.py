"""Validation by the management guest (issue 10, patent FIG. 3): its findings equal the monitor-side validator's
in full (kind, path, changed attributes with sizes and SHA-256, rule violations, messages), the disk is
byte-identical across every window, the application guest does not run during a window, the guest's write is
refused, a record that contradicts itself fails the validation, and a silent guest hits the deadline, counted in
its retired instructions."""
from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from conftest import require_tool
from emu import EmuError
from emu.hypervisor import guestval
from emu.hypervisor.host import Host
from emu.hypervisor.scenario import load
from emu.integrity import Baseline, validate
from emu.storage.structs import decode_fat_time

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "demo"
FW = ROOT / "firmware" / "build"
PART = 2048 * 512                  # the demo volume's first byte (mtools -i image@@offset)


def scenario(tmp_path: Path, disk: Path, app_cmdline: str, mgmt_cmdline: str, deadline: int = 20_000_000) -> Path:
    text = (DEMO / "scenario-guest.toml").read_text()
    text = text.replace('"../../firmware/build/', f'"{FW}/').replace('disks = ["demo.img"]', f'disks = ["{disk}"]')
    text = text.replace('baseline = "demo-etc.baseline.json"', f'baseline = "{DEMO / "demo-etc.baseline.json"}"')
    text = text.replace('cmdline = "hz=1000 ticks=400 log=50 check=100 tamper=250 vlan=99"', f'cmdline = "{app_cmdline}"')
    text = text.replace('cmdline = "hz=1000 jobs=0 ticks=300 trywrite=1"', f'cmdline = "{mgmt_cmdline}"')
    text = text.replace("deadline_insns = 20000000", f"deadline_insns = {deadline}")
    assert app_cmdline in text and mgmt_cmdline in text and f"deadline_insns = {deadline}" in text
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def full(findings) -> list[dict]:
    """Every field of every finding: kind, path, attributes (size, sha256, ... before and after), rule, message."""
    return [f.to_json() for f in findings]


def run_checked(path: Path, monkeypatch):
    """Run a scenario; at every window run the monitor-side validator on the same disk, hash the disk and read
    both guests' instruction counters at the mount and at the unmount."""
    windows = []
    real_mount, real_finish = guestval.GuestValidator.mount, guestval.GuestValidator._finish

    def mount(self, target, drive):
        job = real_mount(self, target, drive)
        windows.append({"before": hashlib.sha256(job.backing.read(0, job.backing.sectors)).hexdigest(),
                        "app_at_mount": (target.cpu.icount, target.cpu.vtime),
                        "validator_at_mount": (self.insns(), self.validator.cpu.vtime)})
        return job

    def finish(self, error=None):
        job = self.job
        w = windows[-1]
        w["after"] = hashlib.sha256(job.backing.read(0, job.backing.sectors)).hexdigest()
        w["monitor"] = validate(job.backing.view(), self.baseline)
        w["guest"] = job.findings
        w["error"] = error or job.error
        w["app_at_unmount"] = (job.target.cpu.icount, job.target.cpu.vtime)
        w["validator_at_unmount"] = (self.insns(), self.validator.cpu.vtime)
        return real_finish(self, error)

    monkeypatch.setattr(guestval.GuestValidator, "mount", mount)
    monkeypatch.setattr(guestval.GuestValidator, "_finish", finish)
    host = Host(load(path))
    consoles = []
    host.on_console = lambda guest, line: consoles.append((guest, line))
    summary = host.run()
    host.close()
    return host, summary, windows, consoles


def assert_same_as_monitor(w) -> None:
    assert w["error"] is None
    assert full(w["guest"]) == full(w["monitor"])          # every field, in the same order
    assert w["guest"].checked == w["monitor"].checked


def assert_app_held(host, windows) -> None:
    """The application guest retires no instruction and its clock does not move from the mount to the unmount,
    while the validator runs; the events 350/355/360 carry the same application-guest count."""
    for w in windows:
        assert w["app_at_unmount"] == w["app_at_mount"]
        assert w["validator_at_unmount"][0] > w["validator_at_mount"][0]
    steps = [e for e in host.events if e.get("kind") == "trap_step" and e["block"] in (340, 350, 355, 360)]
    windows_seen = 0
    for i, e in enumerate(steps):
        if e["block"] == 350:
            unmount, back = steps[i + 1], steps[i + 2]
            assert (unmount["block"], back["block"]) == (355, 360)
            assert e["guest"] == back["guest"] == "app" and back["icount"] == e["icount"]
            assert back.get("vtime") == e.get("vtime")
            windows_seen += 1
    assert windows_seen == len(windows)


def test_tampering_during_the_run_found_by_the_guest_as_by_the_monitor(tmp_path, monkeypatch):
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    path = scenario(tmp_path, disk, "hz=1000 ticks=120 log=50 check=100 tamper=60 vlan=99",
                    "hz=1000 jobs=0 ticks=100 trywrite=1")
    host, summary, windows, consoles = run_checked(path, monkeypatch)
    assert summary["guests"]["app"]["status"] == 1 and summary["guests"]["mgmt"]["status"] == 1
    assert len(windows) >= 3
    for w in windows:
        assert_same_as_monitor(w)
        assert w["before"] == w["after"]                   # not a byte changed during the window
    assert full(windows[0]["guest"]) == []
    last = {(f.kind.value, f.path, f.rule) for f in windows[-1]["guest"]}
    assert ("changed", "/ETC/NET.CFG", None) in last
    assert ("rule", "/ETC/NET.CFG", "/ETC/NET.CFG VLAN == 10") in last    # evaluated on the guest's bytes
    assert summary["restricted"]
    assert_app_held(host, windows)
    refused = [line for guest, line in consoles if guest == "mgmt" and "trywrite:" in line]
    assert refused and all("refused" in line for line in refused)
    steps = [e["block"] for e in host.events if e.get("kind") == "trap_step" and e["block"] in (340, 350, 355, 360)]
    assert steps[:4] == [340, 350, 355, 360]


def tamper_disk(disk: Path, tmp_path: Path, tamper: str) -> None:
    """Change the demo volume with mtools (the reference FAT implementation), not with emu's code."""
    img = f"{disk}@@{PART}"
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
    elif tamper == "add":
        env_file.write_bytes(b"#!/bin/sh\necho evil\n")
        subprocess.run(["mcopy", "-i", img, str(env_file), "::/ETC/EVIL.SH"], check=True)
    elif tamper == "rule":
        original = subprocess.run(["mtype", "-i", img, "::/ETC/NET.CFG"], check=True, capture_output=True).stdout
        assert b"VLAN=10\n" in original
        env_file.write_bytes(original.replace(b"VLAN=10\n", b"VLAN=11\n"))   # same size, the rule fails
        subprocess.run(["mcopy", "-o", "-m", "-i", img, str(env_file), "::/ETC/NET.CFG"], check=True)
    else:
        assert tamper == "clean"


EXPECTED = {"clean": None, "size": ("changed", "/ETC/NET.CFG"), "content": ("changed", "/ETC/PASSWD"),
            "delete": ("removed", "/ETC/PASSWD"), "add": ("added", "/ETC/EVIL.SH"), "rule": ("rule", "/ETC/NET.CFG")}


@pytest.mark.parametrize("tamper", list(EXPECTED))
def test_each_kind_of_tampering(tmp_path, monkeypatch, tamper):
    require_tool("mcopy", "mdel", "mtype")
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    tamper_disk(disk, tmp_path, tamper)
    path = scenario(tmp_path, disk, "hz=1000 ticks=40 log=50 check=100 tamper=0", "hz=1000 jobs=1 ticks=100")
    host, summary, windows, _ = run_checked(path, monkeypatch)
    assert len(windows) == 1
    w = windows[0]
    assert_same_as_monitor(w)
    assert_app_held(host, windows)
    got = {(f.kind.value, f.path) for f in w["guest"]}
    if EXPECTED[tamper] is None:
        assert got == set() and w["guest"].checked == 3
    else:
        assert EXPECTED[tamper] in got
    if tamper == "size":
        changed = next(f for f in w["guest"] if f.kind.value == "changed")
        grown = b"VLAN=10\nGATEWAY=10.0.0.1\n# grown\n" + b"x" * 100      # the bytes given to mcopy
        assert changed.attributes["size"] == {"baseline": 79, "actual": len(grown)}
        assert changed.attributes["sha256"]["actual"] == hashlib.sha256(grown).hexdigest()
    if tamper == "rule":
        rule = next(f for f in w["guest"] if f.kind.value == "rule")
        assert rule.rule == "/ETC/NET.CFG VLAN == 10" and rule.message == "VLAN is '11', expected '10'"


# --- a lying validator: the record in the management guest's memory is rewritten before the monitor reads it ---
def _lie(record: bytearray, how: str) -> None:
    """Make the record contradict itself the way ``how`` says."""
    _, _, _, n, n_config, _ = guestval.FIND_HEADER.unpack_from(record)
    entries = guestval.FIND_HEADER.size
    configs = entries + n * guestval.FIND_ENTRY.size
    data = configs + n_config * guestval.FIND_CONFIG.size

    def entry_of(path: bytes) -> int:
        for i in range(n):
            at = entries + i * guestval.FIND_ENTRY.size
            if record[at:at + len(path) + 1] == path + b"\0":
                return at
        raise AssertionError(path)

    if how == "ok_with_a_wrong_hash":              # the file was changed, the guest says OK with the hash it read
        at = entry_of(b"/ETC/PASSWD")
        assert struct.unpack_from("<I", record, at + 64)[0] == guestval.CHANGED
        struct.pack_into("<I", record, at + 64, guestval.OK)
    elif how == "changed_with_the_baseline_values":   # a clean file reported as changed
        at = entry_of(b"/ETC/PASSWD")
        assert struct.unpack_from("<I", record, at + 64)[0] == guestval.OK
        struct.pack_into("<I", record, at + 64, guestval.CHANGED)
    elif how in ("other_config_bytes", "other_config_bytes_and_hash"):   # hide the VLAN the file really has
        text = bytes(record[data:])
        assert b"VLAN=99\n" in text
        record[data:] = text.replace(b"VLAN=99\n", b"VLAN=10\n")
        if how == "other_config_bytes_and_hash":
            _, _, size, _, offset, length = guestval.FIND_CONFIG.unpack_from(record, configs)
            digest = hashlib.sha256(record[data + offset:data + offset + length]).digest()
            record[configs + 72:configs + 104] = digest
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how, tamper, why", [
    ("ok_with_a_wrong_hash", "content", "/ETC/PASSWD: status ok but "),
    ("changed_with_the_baseline_values", "clean", "/ETC/PASSWD: status changed but its values equal the baseline's"),
    ("other_config_bytes", "vlan99", "/ETC/NET.CFG: the bytes returned do not hash to the SHA-256 reported"),
    ("other_config_bytes_and_hash", "vlan99",
     "/ETC/NET.CFG: the configuration bytes are not the file the listed entry hashed"),
])
def test_an_inconsistent_record_fails_the_validation(tmp_path, monkeypatch, how, tamper, why):
    require_tool("mcopy", "mtype")
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    if tamper == "vlan99":
        img = f"{disk}@@{PART}"
        original = subprocess.run(["mtype", "-i", img, "::/ETC/NET.CFG"], check=True, capture_output=True).stdout
        (tmp_path / "f").write_bytes(original.replace(b"VLAN=10\n", b"VLAN=99\n"))
        subprocess.run(["mcopy", "-o", "-m", "-i", img, str(tmp_path / "f"), "::/ETC/NET.CFG"], check=True)
    else:
        tamper_disk(disk, tmp_path, tamper)
    real_findings = guestval.GuestValidator._findings

    def lying(self, machine):
        cpu = machine.cpu
        addr, size = cpu.reg("ebx"), cpu.reg("ecx")
        record = bytearray(cpu.read_phys(addr, size))
        _lie(record, how)
        cpu.write_phys(addr, bytes(record))
        return real_findings(self, machine)

    monkeypatch.setattr(guestval.GuestValidator, "_findings", lying)
    path = scenario(tmp_path, disk, "hz=1000 ticks=40 log=50 check=100 tamper=0", "hz=1000 jobs=1 ticks=100")
    host, summary, windows, consoles = run_checked(path, monkeypatch)
    assert len(windows) == 1 and windows[0]["guest"] is None
    error = windows[0]["error"]
    assert error.startswith(f"inconsistent record: {why}")
    if how == "ok_with_a_wrong_hash":
        assert error.endswith("sha256 differ from the baseline")
    analysis = [e for e in host.events if e.get("block") == 410]
    assert analysis[0]["clean"] is False and analysis[0]["error"] == error
    assert not summary["restricted"]                         # a failed validation restricts nobody
    assert any("FINDINGS returned -22" in line for guest, line in consoles if guest == "mgmt")


def test_the_same_records_without_the_lie_are_accepted(tmp_path, monkeypatch):
    """Control for the lying-validator test: the same disks, the record untouched, give findings, no error."""
    require_tool("mcopy", "mtype")
    for tamper in ("content", "clean"):
        disk = tmp_path / f"{tamper}.img"
        shutil.copyfile(DEMO / "demo.img", disk)
        tamper_disk(disk, tmp_path, tamper)
        path = scenario(tmp_path, disk, "hz=1000 ticks=40 log=50 check=100 tamper=0", "hz=1000 jobs=1 ticks=100")
        _, _, windows, _ = run_checked(path, monkeypatch)
        assert_same_as_monitor(windows[0])


def test_a_silent_management_guest_hits_the_deadline_in_its_instructions(tmp_path, monkeypatch):
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    deadline = 3_000                # a few dozen PIT ticks of the hung guest's interrupt handler
    path = scenario(tmp_path, disk, "hz=1000 ticks=100 log=50 check=100 tamper=0", "hz=1000 hang=1",
                    deadline=deadline)
    path.write_text(path.read_text().replace("seed = 7", "seed = 7\nmax_ns = 4000000000"))
    host, summary, windows, _ = run_checked(path, monkeypatch)
    w = windows[0]
    assert w["guest"] is None and w["error"].startswith(f"management guest did not finish within {deadline} instructions")
    retired = w["validator_at_unmount"][0] - w["validator_at_mount"][0]
    slice_max = host.scenario.quantum + host.scenario.jitter
    assert deadline < retired <= deadline + slice_max        # checked between slices: at most one slice late
    assert f"(it retired {retired} since the mount)" in w["error"]
    halted = (w["validator_at_unmount"][1] - w["validator_at_mount"][1]) - retired
    assert halted > 10 * deadline                            # time spent in HLT did not count
    failed = [e for e in host.events if e.get("block") == 410]
    assert failed and failed[0]["clean"] is False and "did not finish" in failed[0]["error"]
    assert summary["guests"]["app"]["status"] == 1          # the application guest ran on to its end
    assert "virtual-time limit" in summary["guests"]["mgmt"]["end"]   # the silent one never ended by itself
    assert not summary["restricted"]                         # a failed validation restricts nobody
    assert_app_held(host, windows)


@given(st.integers(0, 127), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 29))
def test_write_time_round_trip(year, month, day, hour, minute, half_second):
    """The job carries the baseline's write_time as the raw DIR_WrtDate/DIR_WrtTime the guest compares."""
    date, time = year << 9 | month << 5 | day, hour << 11 | minute << 5 | half_second
    assert guestval.encode_fat_time(decode_fat_time(date, time)) == date << 16 | time


def test_a_path_longer_than_the_abi_is_refused_at_setup():
    baseline = Baseline.load(DEMO / "demo-etc.baseline.json")
    baseline.files["/ETC/" + "L" * 60] = dict(baseline.files["/ETC/PASSWD"])
    with pytest.raises(EmuError, match="is longer than the ABI's 64 bytes"):
        guestval.GuestValidator(SimpleNamespace(hypercalls={}), baseline, 1000, lambda job: None)


def test_demo_with_guest_validation():
    proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--validation", "guest:mgmt"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "validator: job 1:" in proc.stdout and "restricted:" in proc.stdout
    assert "/ETC/NET.CFG VLAN == 10: VLAN is '99', expected '10'" in proc.stdout   # the rule, as the monitor has it
