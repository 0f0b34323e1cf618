"""The management guest's validator kernel (firmware/kernels/mgmt_validator.c, issue 10) driven through its
hypercall ABI (docs/mgmt-validator.md) by a small Python monitor: its findings record must equal what
``emu.integrity.validate`` (the monitor-side validator) finds on the same disk, for a clean disk and for each kind
of tampering done with mtools; the deliberate write to the read-only mount must be aborted (ABRT) and leave the
disk byte-identical."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from conftest import FIRMWARE, FIXTURES, require_tool  # tests/conftest.py
from emu.integrity import FindingKind, take_baseline, validate
from emu.machine import Machine, MachineConfig
from emu.storage.image import DiskImage

KERNEL = FIRMWARE / "mgmt_validator.elf"
DEMO_IMG = FIXTURES / "demo" / "demo.img"
DEMO_BASELINE = FIXTURES / "demo" / "demo.baseline.json"
DEMO_PART_OFFSET = 2048 * 512
MT_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull, LC_ALL="C.UTF-8", TZ="UTC",
              SOURCE_DATE_EPOCH="1700000000")

LEAF_MOUNT_POLL, LEAF_FINDINGS, LEAF_UNMOUNT = 2, 3, 4
JOB_MAGIC, REC_MAGIC = 0x424F4A56, 0x444E4946
OK, CHANGED, REMOVED, ADDED, UNREADABLE = range(5)
PATH_LEN = 64
REC_ENTRY = struct.Struct("<64sII32s")
BUDGET = 1_000_000_000


@dataclass
class Job:
    """A job descriptor as the monitor writes it (ABI: struct job)."""

    job_id: int
    files: list[tuple[str, int, bytes]]          # path, size, sha256
    dirs: list[str]
    partition_lba: int = 0

    def pack(self) -> bytes:
        assert all(len(p.encode()) <= PATH_LEN for p in self.dirs + [f[0] for f in self.files])
        out = struct.pack("<6I", JOB_MAGIC, 1, self.job_id, self.partition_lba, len(self.dirs), len(self.files))
        out += b"".join(d.encode().ljust(PATH_LEN, b"\0") for d in self.dirs)
        out += b"".join(p.encode().ljust(PATH_LEN, b"\0") + struct.pack("<I", s) + h for p, s, h in self.files)
        return out


@dataclass
class Entry:
    """One entry of the kernel's findings record."""

    path: str
    status: int
    size: int
    sha256: bytes


@dataclass
class Record:
    job_id: int
    entries: list[Entry]

    def statuses(self) -> dict[str, int]:
        return {e.path.upper(): e.status for e in self.entries}


def parse_record(raw: bytes) -> Record:
    magic, version, job_id, n = struct.unpack_from("<4I", raw)
    assert (magic, version) == (REC_MAGIC, 1)
    assert len(raw) == 16 + n * REC_ENTRY.size
    entries = []
    for i in range(n):
        path, status, size, digest = REC_ENTRY.unpack_from(raw, 16 + i * REC_ENTRY.size)
        entries.append(Entry(path.rstrip(b"\0").decode(), status, size, digest))
    return Record(job_id, entries)


def mount(drive, image: DiskImage) -> None:
    """Put ``image`` at an empty drive position, read-only for the guest (AtaDrive.insert when the model has it)."""
    if hasattr(drive, "insert"):
        drive.insert(image, read_only=True)
    else:  # older model: make the position present, then attach
        drive.st.present = True
        drive.attach(image, read_only=True)
        drive.reset()


def unmount(drive) -> None:
    if hasattr(drive, "eject"):
        drive.eject()
    else:
        drive.detach()
        drive.st.present = False
        drive.reset()


@dataclass
class FakeMonitor:
    """The monitor side of the ABI: leaf 2 mounts the disk and writes the next job, leaf 3 takes the record,
    leaf 4 unmounts."""

    image_path: Path
    jobs: list[Job]
    writable_backing: bool = False
    records: list[Record] = field(default_factory=list)
    mounted: Optional[DiskImage] = None
    calls: list[int] = field(default_factory=list)

    def install(self, machine: Machine) -> None:
        machine.hypercalls[LEAF_MOUNT_POLL] = self.mount_poll
        machine.hypercalls[LEAF_FINDINGS] = self.findings
        machine.hypercalls[LEAF_UNMOUNT] = self.unmount

    def drive(self, machine: Machine):
        return machine.platform.ide[1].drives[0]

    def mount_poll(self, machine: Machine) -> int:
        self.calls.append(LEAF_MOUNT_POLL)
        if self.mounted is not None or not self.jobs:
            return 0
        addr, size = machine.cpu.reg("ebx"), machine.cpu.reg("ecx")
        blob = self.jobs.pop(0).pack()
        assert size >= len(blob) and machine.cpu.contains(addr, size)
        machine.cpu.write_phys(addr, blob)
        self.mounted = DiskImage(self.image_path, read_only=not self.writable_backing)
        mount(self.drive(machine), self.mounted)
        return 1

    def findings(self, machine: Machine) -> int:
        self.calls.append(LEAF_FINDINGS)
        addr, size = machine.cpu.reg("ebx"), machine.cpu.reg("ecx")
        self.records.append(parse_record(machine.cpu.read_phys(addr, size)))
        return 0

    def unmount(self, machine: Machine) -> int:
        self.calls.append(LEAF_UNMOUNT)
        assert self.mounted is not None
        unmount(self.drive(machine))
        self.mounted.close()
        self.mounted = None
        return 0


@dataclass
class Run:
    status: int
    console: str
    records: list[Record]
    icount: int
    calls: list[int]


def run_validator(image: Path, jobs: list[Job], cmdline: str = "", writable_backing: bool = False,
                  budget: int = BUDGET) -> Run:
    out = bytearray()
    machine = Machine(MachineConfig(kernel=str(KERNEL), cmdline=cmdline), console=out.append)
    monitor = FakeMonitor(image, list(jobs), writable_backing)
    monitor.install(machine)
    try:
        result = machine.run(max_insns=budget)
    finally:
        machine.close()
    return Run(result.status, out.decode(errors="replace"), monitor.records, result.icount, monitor.calls)


def job_from_baseline(baseline: dict, job_id: int = 1) -> Job:
    """What a monitor sends for a baseline: every file with its size and hash; the protected paths and the
    directories under them."""
    paths = baseline["paths"]
    files, dirs = [], list(paths)
    for path, rec in baseline["files"].items():
        if rec["type"] == "file":
            files.append((path, rec["size"], bytes.fromhex(rec["sha256"])))
        elif path not in dirs and any(path.upper().startswith(p.upper().rstrip("/") + "/") for p in paths):
            dirs.append(path)
    return Job(job_id, files, dirs)


def expected_statuses(image: Path, baseline) -> dict[str, int]:
    """The monitor-side validator's verdict in the ABI's terms (size or content change = CHANGED)."""
    with DiskImage(image, read_only=True) as img:
        findings = validate(img.view(), baseline)
    base = baseline if isinstance(baseline, dict) else baseline.to_json()
    out = {p.upper(): OK for p, r in base["files"].items() if r["type"] == "file"}
    for f in findings.findings:
        p = f.path.upper()
        if f.kind is FindingKind.REMOVED and p in out:
            out[p] = REMOVED
        elif f.kind is FindingKind.UNREADABLE and p in out:
            out[p] = UNREADABLE
        elif f.kind is FindingKind.CHANGED and p in out and {"size", "sha256", "type"} & f.attributes.keys():
            out[p] = CHANGED
        elif f.kind is FindingKind.ADDED:
            out[p] = ADDED
    return out


def mtools(image: Path, *args: str, offset: int = DEMO_PART_OFFSET) -> None:
    require_tool(args[0])
    subprocess.run([args[0], "-i", f"{image}@@{offset}", *args[1:]], env=MT_ENV, check=True, capture_output=True)


def mtools_read(image: Path, path: str, offset: int = DEMO_PART_OFFSET) -> bytes:
    require_tool("mcopy")
    return subprocess.run(["mcopy", "-n", "-i", f"{image}@@{offset}", "::" + path, "-"], env=MT_ENV, check=True,
                          capture_output=True).stdout


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    path = tmp_path / "app.img"
    shutil.copyfile(DEMO_IMG, path)
    return path


@pytest.fixture(scope="module")
def demo_baseline() -> dict:
    return json.loads(DEMO_BASELINE.read_text())


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def check_against_validate(run: Run, image: Path, baseline) -> Record:
    assert run.status == 1, run.console
    assert len(run.records) == 1, run.console
    rec = run.records[0]
    assert rec.statuses() == expected_statuses(image, baseline), run.console
    assert len(rec.entries) == len(rec.statuses())            # one entry per path
    return rec


def test_clean_demo_disk_all_ok(demo_copy, demo_baseline):
    before = hashlib.sha256(demo_copy.read_bytes()).hexdigest()
    run = run_validator(demo_copy, [job_from_baseline(demo_baseline, 7)], "jobs=1")
    rec = check_against_validate(run, demo_copy, demo_baseline)
    assert rec.job_id == 7
    assert all(e.status == OK for e in rec.entries)
    for e in rec.entries:   # the kernel reports the actual size and hash even when they match
        assert (e.size, e.sha256.hex()) == (demo_baseline["files"][e.path]["size"],
                                            demo_baseline["files"][e.path]["sha256"])
    assert "validator: job 7: 3 entries, 0 not OK" in run.console
    assert run.calls[-2:] == [LEAF_FINDINGS, LEAF_UNMOUNT]
    assert hashlib.sha256(demo_copy.read_bytes()).hexdigest() == before


def test_tampering_kinds_match_the_monitor_validator(demo_copy, demo_baseline, tmp_path):
    """Changed content and size, same-size content change, a deleted file and an added file, in one image."""
    cfg = mtools_read(demo_copy, "/ETC/NET.CFG")
    grown = cfg.replace(b"VLAN=10", b"VLAN=1000")
    (tmp_path / "net.cfg").write_bytes(grown)
    mtools(demo_copy, "mcopy", "-o", str(tmp_path / "net.cfg"), "::/ETC/NET.CFG")
    passwd = mtools_read(demo_copy, "/ETC/PASSWD")
    same_size = passwd.replace(b"root", b"r00t")
    assert len(same_size) == len(passwd) and same_size != passwd
    (tmp_path / "passwd").write_bytes(same_size)
    mtools(demo_copy, "mcopy", "-o", "-m", str(tmp_path / "passwd"), "::/ETC/PASSWD")
    mtools(demo_copy, "mdel", "::/BIN/APP.EXE")
    added = b"#!/bin/sh\necho added\n" * 100
    (tmp_path / "EVIL.SH").write_bytes(added)
    mtools(demo_copy, "mcopy", str(tmp_path / "EVIL.SH"), "::/ETC/EVIL.SH")

    run = run_validator(demo_copy, [job_from_baseline(demo_baseline)], "jobs=1")
    rec = check_against_validate(run, demo_copy, demo_baseline)
    by = {e.path: e for e in rec.entries}
    assert {p: e.status for p, e in by.items()} == {
        "/ETC/NET.CFG": CHANGED, "/ETC/PASSWD": CHANGED, "/BIN/APP.EXE": REMOVED, "/ETC/EVIL.SH": ADDED}
    assert (by["/ETC/NET.CFG"].size, by["/ETC/NET.CFG"].sha256) == (len(grown), sha256(grown))
    assert (by["/ETC/PASSWD"].size, by["/ETC/PASSWD"].sha256) == (len(same_size), sha256(same_size))
    assert (by["/ETC/EVIL.SH"].size, by["/ETC/EVIL.SH"].sha256) == (len(added), sha256(added))
    assert (by["/BIN/APP.EXE"].size, by["/BIN/APP.EXE"].sha256) == (0, bytes(32))
    assert "validator: job 1: 4 entries, 4 not OK" in run.console


def test_trywrite_is_refused_and_the_disk_unchanged(demo_copy, demo_baseline):
    """The backing file is writable; only the read-only mount (the drive) stands between the guest and the disk."""
    before = demo_copy.read_bytes()
    run = run_validator(demo_copy, [job_from_baseline(demo_baseline)], "jobs=1 trywrite=1", writable_backing=True)
    assert "validator: trywrite: WRITE SECTORS at lba 0 refused (status 0x41, error 0x04" in run.console, run.console
    check_against_validate(run, demo_copy, demo_baseline)
    assert demo_copy.read_bytes() == before


def test_trywrite_on_a_writable_mount_is_accepted(demo_copy, demo_baseline):
    """Control for the test above: the same attempt on a writable drive changes sector 0 (so the test can fail)."""
    before = demo_copy.read_bytes()

    class WritableMonitor(FakeMonitor):
        def mount_poll(self, machine):
            r = super().mount_poll(machine)
            if r == 1:
                self.drive(machine).st.read_only = False
            return r

    out = bytearray()
    machine = Machine(MachineConfig(kernel=str(KERNEL), cmdline="jobs=1 trywrite=1"), console=out.append)
    WritableMonitor(demo_copy, [job_from_baseline(demo_baseline)], writable_backing=True).install(machine)
    machine.run(max_insns=BUDGET)
    machine.close()
    assert "WRITE SECTORS at lba 0 ACCEPTED" in out.decode()
    after = demo_copy.read_bytes()
    assert after[:16] == b"mgmt_validator d" and after[512:] == before[512:]


def test_an_added_directory_and_its_content(demo_copy, demo_baseline, tmp_path):
    """mmd /ETC/NEW.D and a file in it: the monitor-side validator reports both as added; so does the kernel."""
    mtools(demo_copy, "mmd", "::/ETC/NEW.D")
    mtools(demo_copy, "mmd", "::/ETC/NEW.D/Sub dir")
    payload = b"planted\n"
    (tmp_path / "planted.cfg").write_bytes(payload)
    mtools(demo_copy, "mcopy", str(tmp_path / "planted.cfg"), "::/ETC/NEW.D/Sub dir/planted.cfg")
    run = run_validator(demo_copy, [job_from_baseline(demo_baseline)], "jobs=1")
    rec = check_against_validate(run, demo_copy, demo_baseline)
    added = {e.path: (e.size, e.sha256) for e in rec.entries if e.status == ADDED}
    assert added == {"/ETC/NEW.D": (0, bytes(32)), "/ETC/NEW.D/Sub dir": (0, bytes(32)),
                     "/ETC/NEW.D/Sub dir/planted.cfg": (len(payload), sha256(payload))}


def set_fat16_entry(image: Path, cluster: int, value: int) -> None:
    """Write one FAT16 entry in every FAT copy of the demo volume (fatgen103 3.1 BPB, 4 FAT entries)."""
    with open(image, "r+b") as f:
        f.seek(DEMO_PART_OFFSET)
        bs = f.read(512)
        rsvd, nfats, fatsz = struct.unpack_from("<H", bs, 14)[0], bs[16], struct.unpack_from("<H", bs, 22)[0]
        for i in range(nfats):
            f.seek(DEMO_PART_OFFSET + (rsvd + i * fatsz) * 512 + 2 * cluster)
            f.write(struct.pack("<H", value))


def test_a_short_chain_is_unreadable_and_a_free_link_after_the_content_is_not(demo_copy, demo_baseline):
    """/BIN/APP.EXE's chain cut after its first cluster (1 of 256): UNREADABLE; /ETC/NET.CFG's single cluster
    followed by a free link: only an anomaly for the monitor-side validator, OK for the kernel."""
    set_fat16_entry(demo_copy, demo_baseline["files"]["/BIN/APP.EXE"]["first_cluster"], 0xFFFF)
    set_fat16_entry(demo_copy, demo_baseline["files"]["/ETC/NET.CFG"]["first_cluster"], 0x0000)
    run = run_validator(demo_copy, [job_from_baseline(demo_baseline)], "jobs=1")
    rec = check_against_validate(run, demo_copy, demo_baseline)
    assert rec.statuses() == {"/BIN/APP.EXE": UNREADABLE, "/ETC/NET.CFG": OK, "/ETC/PASSWD": OK}
    assert rec.entries[[e.path for e in rec.entries].index("/BIN/APP.EXE")].size == 262144


@pytest.mark.parametrize("lba, status", [(2048, OK), (1, UNREADABLE)])
def test_partition_lba_given_by_the_monitor(demo_copy, demo_baseline, lba, status):
    """partition_lba != 0 is used as is: the demo volume's start gives all OK, a sector without a BPB nothing."""
    job = job_from_baseline(demo_baseline)
    job.partition_lba = lba
    run = run_validator(demo_copy, [job], "jobs=1")
    assert run.status == 1
    assert {e.status for e in run.records[0].entries} == {status}


def test_two_jobs_and_the_idle_exit(demo_copy, demo_baseline):
    jobs = [job_from_baseline(demo_baseline, 1), job_from_baseline(demo_baseline, 2)]
    run = run_validator(demo_copy, jobs, "ticks=50")
    assert run.status == 1, run.console
    assert [r.job_id for r in run.records] == [1, 2]
    assert "validator: no job for 50 ticks" in run.console
    assert run.calls.count(LEAF_UNMOUNT) == 2


def test_hang_takes_the_job_and_never_answers(demo_copy, demo_baseline):
    run = run_validator(demo_copy, [job_from_baseline(demo_baseline)], "hang=1", budget=100_000)
    assert run.records == [] and LEAF_FINDINGS not in run.calls and LEAF_UNMOUNT not in run.calls
    assert "never answering" in run.console
    assert run.status == 124         # still running (sleeping) when the budget ran out


def test_bad_job_descriptor_gives_an_empty_record(demo_copy):
    class Bad(Job):
        def pack(self) -> bytes:
            return b"XXXX" + super().pack()[4:]
    run = run_validator(demo_copy, [Bad(5, [], [])], "jobs=1")
    assert run.status == 1 and "bad job descriptor" in run.console
    assert run.records[0].job_id == 5 and run.records[0].entries == []


def test_no_volume_makes_every_file_unreadable(tmp_path, demo_baseline):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    run = run_validator(blank, [job_from_baseline(demo_baseline)], "jobs=1")
    assert run.status == 1
    assert {e.status for e in run.records[0].entries} == {UNREADABLE}
    assert "no FAT volume" in run.console


@pytest.mark.parametrize("spec", ["fat12", "fat16-mbr", "fat32"])
def test_fixture_disks_long_names_and_fat_types(spec, tmp_path):
    """Every file of the integrity fixtures (FAT12/16/32, long and non-ASCII names, subdirectories) with "/" as
    the protected directory: clean -> all OK; then a file removed and a long-named file added."""
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    from emu.storage.mkdisk import build
    spec_json = json.loads((FIXTURES / "disks" / f"{spec}.json").read_text())
    image = build(spec_json, tmp_path / f"{spec}.img", FIXTURES / "disks")
    offset = int(spec_json.get("partition_start", 2048)) * 512 if spec_json.get("mbr") else 0
    with DiskImage(image, read_only=True) as img:
        base = take_baseline(img.view(), paths=["/"]).to_json()
    job = job_from_baseline(base)
    run = run_validator(image, [job], "jobs=1")
    rec = check_against_validate(run, image, base)
    assert len(rec.entries) == len(job.files) and all(e.status == OK for e in rec.entries)

    victim = next(p for p, r in base["files"].items() if r["type"] == "file" and r["size"] > 0)
    mtools(image, "mdel", "::" + victim, offset=offset)
    (tmp_path / "payload").write_bytes(b"an added file with a long name\n")
    mtools(image, "mcopy", str(tmp_path / "payload"), "::/Docs/Added later with a long name.txt", offset=offset)
    run = run_validator(image, [job], "jobs=1")
    rec = check_against_validate(run, image, base)
    st = rec.statuses()
    assert st[victim.upper()] == REMOVED
    assert st["/DOCS/ADDED LATER WITH A LONG NAME.TXT"] == ADDED


def test_no_straight_line_code_longer_than_emus_exact_stop_window():
    """emu stops a run at an exact instruction inside a translated block only when that instruction lies in the
    block's first 256 bytes (emu/cpu/vcpu.py _finish_exact); a longer block (e.g. an unrolled SHA-256 round loop)
    made Machine.run spin forever when a timer deadline fell late in it. Keep every straight-line stretch of the
    kernel's code below that until emu handles it."""
    from capstone import CS_ARCH_X86, CS_GRP_CALL, CS_GRP_INT, CS_GRP_IRET, CS_GRP_JUMP, CS_GRP_RET, CS_MODE_32, Cs
    from elftools.elf.elffile import ELFFile
    with open(KERNEL, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, base = text.data(), text["sh_addr"]
    md = Cs(CS_ARCH_X86, CS_MODE_32)
    md.detail = True
    longest, start = 0, None
    for insn in md.disasm(code, base):
        start = insn.address if start is None else start
        if any(insn.group(g) for g in (CS_GRP_JUMP, CS_GRP_CALL, CS_GRP_RET, CS_GRP_INT, CS_GRP_IRET)) or \
                insn.mnemonic in ("hlt", "ud2"):
            longest = max(longest, insn.address + insn.size - start)
            start = None
    assert sum(i.size for i in md.disasm(code, base)) > len(code) - 64     # the sweep covered the code
    assert 0 < longest < 256
