#!/usr/bin/env python3
"""Benchmark: full-system disk throughput of emu (MiB of guest data per second of host time).

Boots the guest kernels ``firmware/build/bench_dma.elf`` (READ DMA EXT in
128 KiB commands, IRQ 14 through the PIC, sti/hlt) and ``bench_pio.elf``
(READ MULTIPLE EXT, ``rep insl`` per 8 KiB block) in-process on a 16 MiB raw
disk, so the figure includes everything a guest pays for: Unicorn, port I/O
hooks, the ATA and bus master models, interrupt delivery and the clock.
The guest's digest of what it read is checked against the image, so a fast
but wrong run cannot pass.  Machine construction (Unicorn start-up, kernel
load) is outside the timed part.  Results: docs/benchmarks-disk.md.

    python tools/bench_disk.py [--mib 16] [--repeat 3] [--only dma|pio]
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emu.machine import EndReason, Machine, MachineConfig  # noqa: E402
from tools.benchlib import bare_copy_rate, bare_insn_rate  # noqa: E402

FIRMWARE = ROOT / "firmware" / "build"
MIB = 1 << 20
SECTOR = 512
FNV_OFFSET, FNV_PRIME = 2166136261, 16777619
LINE = re.compile(rb"(\d+) sectors in (\d+) [A-Z ]+ commands, (\d+) errors, digest ([0-9a-f]{8})")


def make_disk(path: Path, mib: int) -> Path:
    """Write ``mib`` MiB in the reference-disk layout of tools/qemu_ref.py (sector n: "emu reference disk sector n")."""
    ramp = bytes(range(256)) * 4
    with open(path, "wb") as f:
        for n in range(mib * MIB // SECTOR):
            head = f"emu reference disk sector {n}\n".encode()
            start = (n + len(head)) & 0xFF
            f.write(head + ramp[start:start + SECTOR - len(head)])
    return path


def expected_digest(path: Path, sectors: int) -> int:
    """What the bench kernels print: FNV-1a steps over the dwords at offsets 24 and 508 of each of ``sectors`` sectors."""
    h = FNV_OFFSET
    with open(path, "rb") as f:
        for _ in range(sectors):
            data = f.read(SECTOR)
            for off in (24, 508):
                h = ((h ^ int.from_bytes(data[off:off + 4], "little")) * FNV_PRIME) & 0xFFFFFFFF
    return h


@dataclass
class Result:
    """One timed run of a bench kernel."""

    kernel: str
    seconds: float
    cpu_seconds: float
    icount: int
    sectors: int
    transcript: bytes

    @property
    def mib_per_s(self) -> float:
        """Guest data read per second of host time."""
        return self.sectors * SECTOR / MIB / self.seconds

    @property
    def mib_per_cpu_s(self) -> float:
        """Guest data read per second of this process's CPU time (less sensitive to other load on the host)."""
        return self.sectors * SECTOR / MIB / max(self.cpu_seconds, 1e-9)


def run_once(kernel: str, disk: Path, workdir: Path) -> Result:
    """Boot ``kernel`` on a copy of ``disk`` and time ``Machine.run`` alone."""
    copy = workdir / "run.img"
    shutil.copyfile(disk, copy)
    out = bytearray()
    machine = Machine(MachineConfig(kernel=str(FIRMWARE / f"{kernel}.elf"), disks=[str(copy)]), console=out.append)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        result = machine.run()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        machine.close()
    m = LINE.search(bytes(out))
    if result.reason is not EndReason.DEBUG_EXIT or result.status != 1 or m is None:
        raise SystemExit(f"bench_disk: {kernel} failed ({result.message}): {bytes(out)!r}")
    sectors, _, errors, _ = m.groups()
    if int(errors):
        raise SystemExit(f"bench_disk: {kernel} reported errors: {bytes(out)!r}")
    return Result(kernel, elapsed, cpu, result.icount, int(sectors), bytes(out))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark and print one line per kernel."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16, help="disk size and guest data per run, 1..16 MiB (default 16)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per kernel; the best is reported (default 3)")
    ap.add_argument("--only", choices=("dma", "pio"), help="run one kernel only")
    args = ap.parse_args(argv)
    if not 1 <= args.mib <= 16:
        ap.error("--mib must be 1..16 (the kernels read at most 16 MiB)")
    kernels = [f"bench_{args.only}"] if args.only else ["bench_dma", "bench_pio"]
    with tempfile.TemporaryDirectory(prefix="bench_disk_") as tmp:
        work = Path(tmp)
        disk = make_disk(work / "disk.img", args.mib)
        want = expected_digest(disk, args.mib * MIB // SECTOR)
        print(f"full system, {args.mib} MiB per run, best of {args.repeat} (Machine.run only; digest checked)")
        copy, insns = bare_copy_rate(args.mib * MIB), bare_insn_rate()
        print(f"  bare Unicorn this run: mem_write {copy / MIB:.0f} MiB/s, {insns / 1e6:.0f} M insn/s (no hooks)")
        for kernel in kernels:
            best = min((run_once(kernel, disk, work) for _ in range(max(1, args.repeat))), key=lambda r: r.seconds)
            got = int(LINE.search(best.transcript).group(4), 16)
            if got != want:
                raise SystemExit(f"bench_disk: {kernel} digest {got:08x}, image says {want:08x}")
            print(f"  {kernel}: {best.mib_per_s:8.1f} MiB/s  ({best.seconds:.3f} s host wall, "
                  f"{best.mib_per_cpu_s:.1f} MiB/s of CPU time; {best.icount} guest instructions, "
                  f"{best.sectors} sectors)")
            print(f"    = {best.mib_per_cpu_s * MIB / copy:.3f} x bare mem_write; guest ran at "
                  f"{best.icount / best.cpu_seconds / insns:.3f} x the bare instruction rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
