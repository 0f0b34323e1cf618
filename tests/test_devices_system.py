"""The PC platform devices at the full-system level: guest kernels (firmware/kernels/pic_pit, ata_pio, ata_dma,
dma_active, bench_*) under `emu` and QEMU 7.2.

The per-kernel QEMU comparison (transcript, exit status, final disk) is tests/test_qemu_reference.py's
`test_emu_matches_qemu`; here: the device kernels are in that comparison, the guest sees BMISTA Active during a
long DMA at the same instruction count on every run, a 16 MiB DMA read reaches the guest intact, and the facts the
QEMU transcripts pin (golden values observed under qemu-system-i386 7.2 with tools/qemu_ref.py --qemu-only).
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FIRMWARE, ROOT, require_tool
from emu.machine import EndReason, Machine, MachineConfig


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return sys.modules[name]


qemu_ref = _load_tool("qemu_ref")
bench_disk = _load_tool("bench_disk")

DEVICE_KERNELS = ("pic_pit", "ata_pio", "ata_dma", "bench_dma", "bench_pio")
PCI_IDE_BAR4 = 0x80000000 | (1 << 11) | (1 << 8) | 0x20     # CONFIG_ADDRESS of 00:01.1 register 0x20
BMIS_ACTIVE, BMIS_INTERRUPT = 0x01, 0x04


@pytest.fixture(scope="module")
def ref_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1 MiB QEMU reference disk (tools/qemu_ref.make_reference_disk)."""
    return qemu_ref.make_reference_disk(tmp_path_factory.mktemp("disk") / "ref.img")


@dataclass
class GuestRun:
    """What one in-process run of a kernel left behind."""

    console: bytes
    icounts: list[int]
    status: int
    disk: bytes
    active_reads: list[tuple[int, int, bool]]   # (icount, BMIS value, engine moving data) for each BMIS read


def run_guest(kernel: str, disk: Path, workdir: Path) -> GuestRun:
    """Boot firmware/build/<kernel>.elf on a copy of ``disk``; record console icounts and every BMIS read."""
    copy = workdir / f"{kernel}.img"
    shutil.copyfile(disk, copy)
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(FIRMWARE / f"{kernel}.elf"), disks=[str(copy)]), console=out.append)
    m.console_icounts = []
    bm = m.platform.bmdma
    base = bm.state.base
    reads: list[tuple[int, int, bool]] = []

    def io_read(port: int, size: int) -> int:
        value = bm.io_read(port, size)
        if port == base + 2 and size == 1:
            reads.append((m.cpu.icount, value, bm.dma_in_flight))
        return value

    m.bus.unmap(base, 16)
    m.bus.map(base, 16, io_read, bm.io_write, bm.name)
    try:
        result = m.run(max_insns=50_000_000)
    finally:
        m.close()
    assert result.reason is EndReason.DEBUG_EXIT, result.message
    return GuestRun(bytes(out), list(m.console_icounts), result.status, copy.read_bytes(), reads)


def line_end_icounts(run: GuestRun, needle: bytes) -> list[int]:
    """Instruction count at which the guest wrote the newline of each console line containing ``needle``."""
    ends, start = [], 0
    for i, byte in enumerate(run.console):
        if byte == 0x0A:
            if needle in run.console[start:i]:
                ends.append(run.icounts[i])
            start = i + 1
    return ends


def test_device_kernels_are_compared_with_qemu() -> None:
    """The device kernels are in the QEMU comparison of every reference kernel; dma_active is emu-only."""
    names = {p.stem for p in qemu_ref.reference_kernels()}
    assert set(DEVICE_KERNELS) <= names
    assert qemu_ref.is_emu_only("dma_active") and "dma_active" not in names


def test_active_seen_during_long_dma_at_the_same_instruction_count(ref_disk: Path, tmp_path: Path) -> None:
    """The guest sees BMISTA Active while data is moving, at identical instruction counts on two runs; same disk."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_guest("dma_active", ref_disk, tmp_path / "a")
    second = run_guest("dma_active", ref_disk, tmp_path / "b")
    assert first.status == 1 and first.console.endswith(b"dma_active done\n")
    seen = line_end_icounts(first, b"seen active: yes")
    assert len(seen) == 2                                   # the 256 KiB write and the 1 MiB read
    assert seen == line_end_icounts(second, b"seen active: yes")
    assert first.icounts == second.icounts and first.console == second.console
    # The engine was really moving data at the reads that showed Active without Interrupt, and those reads
    # happened at the same instruction counts in both runs.
    in_flight = [(ic, v) for ic, v, moving in first.active_reads if v & (BMIS_ACTIVE | BMIS_INTERRUPT) == BMIS_ACTIVE]
    assert in_flight and all(moving for _, v, moving in first.active_reads
                             if v & (BMIS_ACTIVE | BMIS_INTERRUPT) == BMIS_ACTIVE)
    assert first.active_reads == second.active_reads
    assert in_flight[0][0] < seen[0]
    # Same final disk on both runs, and the kernel's write reached it (LBA 512-1023 changed, the rest did not).
    assert first.disk == second.disk
    original = ref_disk.read_bytes()
    assert first.disk[:512 * 512] == original[:512 * 512] and first.disk[1024 * 512:] == original[1024 * 512:]
    assert first.disk[512 * 512:1024 * 512] != original[512 * 512:1024 * 512]


@pytest.mark.qemu
@pytest.mark.parametrize("kernel", DEVICE_KERNELS + ("dma_active",))
def test_device_kernels_without_a_disk_match_qemu(kernel: str) -> None:
    """With no drive at all (QEMU -nodefaults, no -drive) the kernels take their no-disk paths identically."""
    require_tool("qemu-system-i386")
    result = qemu_ref.run_both(FIRMWARE / f"{kernel}.elf", None, timeout=60)
    assert result.identical, "; ".join(result.differences)
    assert result.qemu.status == (1 if kernel == "pic_pit" else 3)    # exit(0), or exit(1) "no disk"


@pytest.mark.qemu
def test_dma_active_disk_matches_qemu(ref_disk: Path, tmp_path: Path) -> None:
    """dma_active is emu-only for its "seen active" lines only: QEMU writes the same disk and prints the rest."""
    require_tool("qemu-system-i386")
    q = qemu_ref.run_qemu(FIRMWARE / "dma_active.elf", ref_disk, timeout=20)
    e = run_guest("dma_active", ref_disk, tmp_path)
    assert q.status == e.status == 1
    assert q.disk_sha256 == hashlib.sha256(e.disk).hexdigest()

    def strip(text: bytes) -> bytes:
        return b"\n".join(line.split(b": seen active")[0] for line in text.split(b"\n"))

    assert strip(q.stdout) == strip(e.console)


def test_bench_dma_reads_16_mib_intact(tmp_path: Path) -> None:
    """bench_dma reads a 16 MiB disk by DMA in 128 KiB commands without errors; its digest matches the image."""
    disk = bench_disk.make_disk(tmp_path / "d16.img", 16)
    run = run_guest("bench_dma", disk, tmp_path)
    m = bench_disk.LINE.search(run.console)
    assert m is not None, run.console
    sectors, commands, errors, digest = m.groups()
    assert (int(sectors), int(commands), int(errors)) == (32768, 128, 0)
    assert int(digest, 16) == bench_disk.expected_digest(disk, 32768)
    assert run.disk == disk.read_bytes()


def test_ide_bar4_is_what_the_reference_kernel_finds() -> None:
    """BAR4 of 00:01.1 as a multiboot kernel reads it under the reference QEMU command line (-nodefaults): 0xC001.

    Golden: observed under qemu-system-i386 7.2 with tools/qemu_ref.py (ata_dma printed "bar4 0000c001"), and
    docs/devices-ide.md's table (0xC001 with -nodefaults).
    """
    m = Machine(MachineConfig())
    m.bus.write(0xCF8, 4, PCI_IDE_BAR4)
    assert m.bus.read(0xCFC, 4) == 0x0000C001


# --- reference facts: QEMU transcripts of the device kernels (golden values from QEMU itself) --------------------

_qemu_cache: dict[str, "qemu_ref.RunResult"] = {}


def qemu_transcript(name: str, disk: Path) -> str:
    """QEMU's transcript of firmware/build/<name>.elf on the reference disk (one run per module)."""
    require_tool("qemu-system-i386")
    if name not in _qemu_cache:
        _qemu_cache[name] = qemu_ref.run_qemu(FIRMWARE / f"{name}.elf", disk, timeout=30)
    r = _qemu_cache[name]
    assert r.status == 1 and not r.timed_out, r.stdout[-300:]
    return r.stdout.decode()


@pytest.mark.qemu
def test_qemu_pic_pit_facts(ref_disk: Path) -> None:
    out = qemu_transcript("pic_pit", ref_disk)
    for line in [
        "poll with IRQ 0 unmasked: 80, then irr=00 isr=01",          # poll acknowledges: ISR set, EOI needed
        "default priority: INTA order irq0(isr 01) irq14(isr 44)",
        "set priority IR0 lowest: INTA order irq14(isr 44) irq0(isr 01)",
        "after the rotation: INTA order irq14(isr 44) irq0(isr 01)",
        "line dropped before INTA: master irr=04 slave irr=00",
        "spurious IRQ 15 (vector 2f) taken 1 time(s), master isr=04 slave isr=00 in the handler; "
        "other handlers ran 0 time(s)",
        "counter 2 mode 3 BCD: status & 3f = 37",
        "mode 0 one-shot: OUT2 in port 61 rose; read-back status b0",
        "AEOI: 3 timer interrupts, isr in handler not 00: 0 times",
    ]:
        assert line + "\n" in out, line
    assert "PIT mode 2, count 11932: 10 interrupts taken" in out and "FAIL" not in out


@pytest.mark.qemu
def test_qemu_ata_facts(ref_disk: Path) -> None:
    pio = qemu_transcript("ata_pio", ref_disk)
    for line in [
        '  model "QEMU HARDDISK"',
        "  capacity LBA28 2048 sectors, LBA48 0000000000000800",
        "SET MULTIPLE 3: status 41 error 04",
        "READ SECTORS at lba = capacity: status 41 error 04",          # QEMU: ABRT, never IDNF
        "after SRST: status 50 error 01 count 01 lba 01 00 00 device a0",
        "nIEN set, IDENTIFY: slave irr=00",
        "IRQ-driven READ SECTORS lba 5 count 3: 3 interrupts, status 50",
    ]:
        assert line + "\n" in pio, line
    dma = qemu_transcript("ata_dma", ref_disk)
    assert "bus mastering enabled: command 0107\n" in dma
    assert "larger PRD table (12 KiB): irqs 1, bmista at irq 05, ata at irq 50, bmista 05, after Stop 04" in dma
    assert "smaller PRD table (2 KiB): irqs 0, bmista 00, ata 50, memory untouched: yes\n" in dma
    assert "READ DMA with bus mastering off: irqs 1, bmista 05, ata 50, memory untouched: yes\n" in dma
    assert dma.count("read back matches: yes") == 3 and "matches: no" not in dma
