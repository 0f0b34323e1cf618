"""The demo's guest firmware (docs/demo-firmware.md): demo_app and demo_mgmt under QEMU (the reference) and emu.

demo_app runs on a copy of fixtures/demo/demo.img; QEMU and `emu run` must give the same transcript, exit status
and final disk bytes. The expected disk content is read back with mtools and checked with fsck.fat (the reference
tools), the FNV-1a hash the kernel prints is recomputed from the file mtools extracts, and `emu validate` of the
final disk must report the tampered /ETC/NET.CFG and nothing else.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from conftest import FIRMWARE, FIXTURES, ROOT, require_tool

_spec = importlib.util.spec_from_file_location("qemu_ref", ROOT / "tools" / "qemu_ref.py")
assert _spec and _spec.loader
qemu_ref = sys.modules.get("qemu_ref") or importlib.util.module_from_spec(_spec)
if "qemu_ref" not in sys.modules:
    sys.modules["qemu_ref"] = qemu_ref
    _spec.loader.exec_module(qemu_ref)

DEMO = FIXTURES / "demo"
DISK = DEMO / "demo.img"
BASELINE = DEMO / "demo.baseline.json"
APP = FIRMWARE / "demo_app.elf"
MGMT = FIRMWARE / "demo_mgmt.elf"
PART_OFFSET = 2048 * 512                    # demo.json: mbr, partition_start 2048
TAMPER_CMDLINE = "hz=1000 ticks=600 log=50 save=100 check=100 tamper=300 vlan=99"
CLEAN_CMDLINE = "hz=1000 ticks=200 log=50 save=100 check=100 tamper=0"
MGMT_CMDLINE = "hz=1000 iterations=300 heartbeat=100 chunks=8 work=400"


@dataclass(frozen=True)
class Run:
    """One run: console bytes, exit status, and the disk copy it wrote (kept for inspection)."""

    stdout: bytes
    status: int
    disk: Optional[Path]
    stderr: bytes = b""


def _run(cmd: list[str], disk: Optional[Path], timeout: float, env: Optional[dict[str, str]] = None) -> Run:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
    return Run(proc.stdout, proc.returncode, disk, proc.stderr)


def run_qemu(kernel: Path, cmdline: str, disk: Optional[Path]) -> Run:
    """qemu-system-i386 with the reference command line (tools/qemu_ref.py) and `-append cmdline`."""
    require_tool("qemu-system-i386")
    cmd = qemu_ref.qemu_command(str(kernel), str(disk) if disk else None, append=cmdline)
    return _run(cmd, disk, timeout=60)


def run_emu(kernel: Path, cmdline: str, disk: Optional[Path]) -> Run:
    """`python -m emu run KERNEL --cmdline ...` (same kernel path string, so the same multiboot command line)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = qemu_ref.emu_command(str(kernel), str(disk) if disk else None) + ["--cmdline", cmdline]
    return _run(cmd, disk, timeout=120, env=env)


def disk_copy(tmp: Path, name: str) -> Path:
    path = tmp / name
    shutil.copyfile(DISK, path)
    return path


def mtools_read(image: Path, path: str) -> bytes:
    """A file's bytes as mtools reads them from the demo volume (partition 1)."""
    require_tool("mcopy")
    env = dict(os.environ, MTOOLSRC="/dev/null", TZ="UTC")
    return subprocess.run(["mcopy", "-n", "-i", f"{image}@@{PART_OFFSET}", "::" + path, "-"], env=env,
                          capture_output=True, check=True).stdout


def mtools_dir(image: Path, path: str) -> str:
    require_tool("mdir")
    env = dict(os.environ, MTOOLSRC="/dev/null", TZ="UTC")
    return subprocess.run(["mdir", "-i", f"{image}@@{PART_OFFSET}", "::" + path], env=env, capture_output=True,
                          check=True, text=True).stdout


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bits (Fowler/Noll/Vo: offset basis 0x811C9DC5, prime 0x01000193)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def state_pattern(n: int, size: int) -> bytes:
    """/VAR/STATE.BIN after save n: little-endian word i = (n << 24) ^ (i * 2654435761) (docs/demo-firmware.md)."""
    return b"".join((((n << 24) ^ (i * 2654435761)) & 0xFFFFFFFF).to_bytes(4, "little") for i in range(size // 4))


def log_line(tick: int, n: int, tampered: bool) -> bytes:
    text = f"tick {tick:06d} log {n:04d} {'tampered' if tampered else 'app ok'}"
    return text.ljust(31).encode() + b"\n"


@pytest.fixture(scope="module")
def tamper_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    """demo_app with tamper=300 under QEMU and under emu, each on its own copy of the demo disk."""
    tmp = tmp_path_factory.mktemp("demo_tamper")
    qemu = run_qemu(APP, TAMPER_CMDLINE, disk_copy(tmp, "qemu.img"))
    emu = run_emu(APP, TAMPER_CMDLINE, disk_copy(tmp, "emu.img"))
    return qemu, emu


@pytest.mark.qemu
def test_demo_app_identical_under_qemu_and_emu(tamper_runs: tuple[Run, Run]) -> None:
    qemu, emu = tamper_runs
    assert qemu.status == 1, qemu.stdout.decode(errors="replace")          # exit(0) -> (0 << 1) | 1
    assert emu.stdout == qemu.stdout, emu.stderr.decode(errors="replace")
    assert emu.status == qemu.status
    assert qemu_ref.sha256_file(emu.disk) == qemu_ref.sha256_file(qemu.disk)
    assert qemu_ref.sha256_file(qemu.disk) != qemu_ref.sha256_file(DISK)   # it wrote its copy, not the fixture


@pytest.mark.qemu
def test_demo_app_transcript(tamper_runs: tuple[Run, Run]) -> None:
    qemu, _ = tamper_runs
    out = qemu.stdout.decode()
    app_hash = fnv1a32(mtools_read(DISK, "/BIN/APP.EXE"))
    lines = out.splitlines()
    assert lines[0] == "demo_app: hz=1000 ticks=600 log=50 save=100 check=100 tamper=300 vlan=99 busy=5000 busyint=10"
    assert "net.cfg: VLAN=10" in lines
    assert "found /BIN/APP.EXE: 262144 bytes in 262144 allocated" in lines
    events = [ln for ln in lines if ln.startswith(("log write", "save", "check", "tamper"))]
    expected = []
    for tick in range(50, 601, 50):
        expected.append(f"log write {tick // 50} done (slot {tick // 50 - 1})")
        if tick % 100 == 0:
            expected.append(f"save {tick // 100} done: /VAR/STATE.BIN 262144 bytes")
        if tick == 300:
            expected += ["tamper at tick 300: /ETC/NET.CFG VLAN=10 -> VLAN=99 (79 -> 79 bytes)",
                         "tamper done: read back identical"]
        if tick % 100 == 0:
            expected.append(f"check {tick // 100}: /BIN/APP.EXE fnv1a {app_hash:08x}")
    assert events == expected
    assert lines[-2].startswith("demo_app done: 600 ticks, 12 log writes, 6 saves, 6 checks, tamper done, busy sum ")
    assert "unexpected" not in out and "DIFFERENT" not in out


@pytest.mark.qemu
def test_demo_app_final_disk_content(tamper_runs: tuple[Run, Run]) -> None:
    """Read back with mtools: NET.CFG tampered in place, the log lines, the last save; the rest untouched."""
    final = tamper_runs[0].disk
    original_cfg = mtools_read(DISK, "/ETC/NET.CFG")
    assert b"\nVLAN=10\n" in original_cfg
    assert mtools_read(final, "/ETC/NET.CFG") == original_cfg.replace(b"\nVLAN=10\n", b"\nVLAN=99\n")
    log = mtools_read(final, "/LOG/APP.LOG")
    assert len(log) == 1024
    expected_log = b"".join(log_line(50 * n, n, 50 * n > 300) for n in range(1, 13))
    assert log == expected_log + mtools_read(DISK, "/LOG/APP.LOG")[len(expected_log):]
    assert mtools_read(final, "/VAR/STATE.BIN") == state_pattern(6, 262144)
    for unchanged in ("/ETC/PASSWD", "/BIN/APP.EXE"):
        assert mtools_read(final, unchanged) == mtools_read(DISK, unchanged)
    etc = mtools_dir(final, "/ETC")
    assert [ln.split()[-2:] for ln in etc.splitlines() if ln.startswith(("NET", "PASSWD"))] == \
        [["2024-01-01", "0:00"], ["2020-09-13", "12:26"]]
    # Only the volume changed (the MBR and the gap before the partition did not), and fsck.fat finds it sound.
    assert final.read_bytes()[:PART_OFFSET] == DISK.read_bytes()[:PART_OFFSET]
    require_tool("fsck.fat")
    part = final.parent / "partition.img"
    part.write_bytes(final.read_bytes()[PART_OFFSET:])
    fsck = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def emu_validate(image: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "emu", "validate", str(image), "--baseline", str(BASELINE), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.qemu
def test_validate_reports_the_tampering_and_nothing_else(tamper_runs: tuple[Run, Run]) -> None:
    status, findings = emu_validate(tamper_runs[1].disk)
    assert status == 1
    kinds = sorted((f["kind"], f["path"]) for f in findings["findings"])
    assert kinds == [("changed", "/ETC/NET.CFG"), ("rule", "/ETC/NET.CFG")]
    changed = next(f for f in findings["findings"] if f["kind"] == "changed")
    assert set(changed["attributes"]) == {"sha256", "write_time"}
    assert changed["attributes"]["write_time"]["actual"] == "2024-01-01T00:00:00"
    rule = next(f for f in findings["findings"] if f["kind"] == "rule")
    assert rule["rule"] == "/ETC/NET.CFG VLAN == 10" and "'99'" in rule["message"]


@pytest.mark.qemu
def test_without_tampering_the_disk_validates_clean(tmp_path: Path) -> None:
    """Log lines and saves change /LOG and /VAR (not protected): validation stays clean; QEMU and emu agree."""
    qemu = run_qemu(APP, CLEAN_CMDLINE, disk_copy(tmp_path, "qemu.img"))
    emu = run_emu(APP, CLEAN_CMDLINE, disk_copy(tmp_path, "emu.img"))
    assert (emu.stdout, emu.status) == (qemu.stdout, qemu.status) and qemu.status == 1
    assert qemu_ref.sha256_file(emu.disk) == qemu_ref.sha256_file(qemu.disk)
    assert "tamper not done" in qemu.stdout.decode()
    assert mtools_read(emu.disk, "/VAR/STATE.BIN") == state_pattern(2, 262144)
    status, findings = emu_validate(emu.disk)
    assert (status, findings["clean"], findings["findings"]) == (0, True, [])
    assert emu_validate(DISK)[0] == 0


def test_write_in_progress_word_brackets_every_write() -> None:
    """Under emu: leaf 1 registers the word's address; every WRITE DMA / FLUSH CACHE is issued with the word = 1,
    the READ DMAs of the self-check with it = 0, and it is 0 at the end."""
    from elftools.elf.elffile import ELFFile
    from emu.machine import Machine, MachineConfig

    with open(APP, "rb") as f:
        symbol = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("write_in_progress")[0]
    addr = symbol["st_value"]
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        disk = disk_copy(Path(tmp), "emu.img")
        machine = Machine(MachineConfig(kernel=str(APP), cmdline="ticks=100 log=50 save=100 check=100 tamper=60",
                                        disks=[str(disk)]))
        commands: list[tuple[int, int]] = []
        original = machine.bus.write

        def spy(port: int, size: int, value: int) -> None:
            if port == 0x1F7:
                commands.append((value, int.from_bytes(machine.cpu.read_phys(addr, 4), "little")))
            original(port, size, value)

        machine.bus.write = spy
        try:
            result = machine.run()
        finally:
            machine.close()
        assert result.status == 1, machine.console_bytes.decode(errors="replace")
        assert machine.wip_addr == addr
        assert int.from_bytes(machine.cpu.read_phys(addr, 4), "little") == 0
    writes = [wip for cmd, wip in commands if cmd in (0xCA, 0xE7)]
    # log 50, log 100, save 100, tamper 60: 4 sequences, each ending with FLUSH CACHE
    assert sum(1 for cmd, _ in commands if cmd == 0xE7) == 4
    assert writes and all(wip == 1 for wip in writes)
    reads_outside = [wip for cmd, wip in commands if cmd == 0xC8 and wip == 0]
    assert len(reads_outside) >= 4 + 1                  # 256 KiB self-check = 4 READ DMAs of 64 KiB, plus mount


def xorshift_sum(iterations: int, chunks: int, work: int) -> int:
    """demo_mgmt's work: Marsaglia's 32-bit xorshift (13, 17, 5) from 0x2545F491, summed mod 2^32."""
    x, s = 0x2545F491, 0
    for _ in range(iterations * chunks * work):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        s = (s + x) & 0xFFFFFFFF
    return s


@pytest.mark.qemu
def test_demo_mgmt_identical_under_qemu_and_emu() -> None:
    qemu = run_qemu(MGMT, MGMT_CMDLINE, None)
    emu = run_emu(MGMT, MGMT_CMDLINE, None)
    assert (emu.stdout, emu.status) == (qemu.stdout, qemu.status)
    assert qemu.status == 1
    lines = qemu.stdout.decode().splitlines()
    assert lines[0] == "demo_mgmt: hz=1000 iterations=300 heartbeat=100 chunks=8 work=400"
    assert lines[1:] == [f"mgmt heartbeat {i}: {i * 8} port writes, sum {xorshift_sum(i, 8, 400):08x}"
                         for i in (100, 200, 300)] + \
        [f"demo_mgmt done: 300 iterations, 2400 port writes, sum {xorshift_sum(300, 8, 400):08x}"]


def test_demo_mgmt_gives_port_0x80_trap_points() -> None:
    """Under emu: one OUT to port 0x80 (an I/O instruction exit) after each chunk of `work` steps, a few thousand
    instructions apart inside an iteration."""
    from emu.machine import Machine, MachineConfig

    machine = Machine(MachineConfig(kernel=str(MGMT), cmdline="iterations=20 heartbeat=10 chunks=8 work=400"))
    outs: list[int] = []
    from emu.vmx.controls import PrimaryControls
    from emu.vmx.qualification import IoDirection
    machine.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO
    machine.vmx.observers.append(
        lambda e: outs.append(e.icount) if e.decoded.port == 0x80 and e.decoded.direction is IoDirection.OUT else None)
    try:
        result = machine.run()
    finally:
        machine.close()
    assert result.status == 1
    assert len(outs) == 20 * 8
    gaps = [b - a for i, (a, b) in enumerate(zip(outs, outs[1:])) if (i + 1) % 8]   # within one iteration
    assert gaps and all(1000 <= g <= 10000 for g in gaps), (min(gaps), max(gaps))


def test_demo_disk_fixture_is_reproducible(tmp_path: Path) -> None:
    """tools/mkdisk rebuilds demo.img bit for bit, and `emu baseline` gives the committed baseline."""
    require_tool("mkfs.fat", "mcopy", "mmd", "mattrib")
    image = tmp_path / "demo.img"
    subprocess.run([str(ROOT / "tools" / "mkdisk"), str(DEMO / "demo.json"), "-o", str(image)], check=True,
                   capture_output=True)
    assert hashlib.sha256(image.read_bytes()).hexdigest() == hashlib.sha256(DISK.read_bytes()).hexdigest()
    baseline = tmp_path / "baseline.json"
    subprocess.run([sys.executable, "-m", "emu", "baseline", str(image), "--paths", "/ETC", "/BIN", "--rules",
                    str(DEMO / "demo.rules"), "-o", str(baseline)], check=True, capture_output=True, cwd=ROOT)
    assert json.loads(baseline.read_text()) == json.loads(BASELINE.read_text())
